/**
 * A throwaway Postgres in a Docker container, for developers who want to test against a specific
 * server image: `TEST_POSTGRES_IMAGE=postgres:17-alpine npm test`. Opt-in only: it needs a Docker
 * engine and `@testcontainers/postgresql`, which is not a dependency of this package
 * (`npm install --no-save @testcontainers/postgresql`). Without the variable nothing here runs.
 */

interface StartedContainer {
  getConnectionUri(): string;
  stop(): Promise<unknown>;
}

interface ContainerModule {
  PostgreSqlContainer: new (image: string) => { start(): Promise<StartedContainer> };
}

export async function startContainerPostgres(
  image: string,
): Promise<{ url: string; stop(): Promise<void> }> {
  // A variable, not a literal, so that neither TypeScript nor the bundler requires the package.
  const moduleName = '@testcontainers/postgresql';
  let module: ContainerModule;
  try {
    module = (await import(moduleName)) as ContainerModule;
  } catch (error) {
    throw new Error(
      `TEST_POSTGRES_IMAGE=${image} needs ${moduleName}: npm install --no-save ${moduleName}`,
      { cause: error },
    );
  }
  let container: StartedContainer;
  try {
    container = await new module.PostgreSqlContainer(image).start();
  } catch (error) {
    throw new Error(
      `Could not start ${image} with testcontainers; is a Docker engine running? ` +
        'Unset TEST_POSTGRES_IMAGE to use DATABASE_URL or embedded Postgres instead.',
      { cause: error },
    );
  }
  return {
    url: container.getConnectionUri(),
    stop: async () => {
      await container.stop();
    },
  };
}
