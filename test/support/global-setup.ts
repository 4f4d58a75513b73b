// Decides which PostgreSQL server the tests use and hands its admin URL to
// the test files: DATABASE_URL if set; else, when TEST_POSTGRES_IMAGE names an
// image, a Docker container (opt-in, needs a Docker engine); otherwise a
// throwaway embedded server that lives as long as the test run. Then it builds the migrated
// template database the test files clone, and drops it when the run ends.

import pg from 'pg';
import type { TestProject } from 'vitest/node';
import { startContainerPostgres } from '../../scripts/container-postgres.ts';
import { startEmbeddedPostgres } from '../../scripts/embedded-postgres.ts';
import { createLedgerTemplate, type LedgerTemplate } from './ledger-template.ts';

declare module 'vitest' {
  export interface ProvidedContext {
    /** Superuser connection string; test files create their databases with it. */
    adminDatabaseUrl: string;
    /** The migrated database that ledger fixtures are cloned from; nobody connects to it. */
    ledgerTemplateDatabase: string;
  }
}

export default async function setup(project: TestProject): Promise<() => Promise<void>> {
  let url = process.env.DATABASE_URL;
  let server: { url: string; stop(): Promise<void> } | undefined;
  const image = process.env.TEST_POSTGRES_IMAGE;
  if (!url) {
    server = image ? await startContainerPostgres(image) : await startEmbeddedPostgres();
    url = server.url;
  }
  let template: LedgerTemplate | undefined;
  const teardown = async () => {
    try {
      await template?.drop();
    } finally {
      await server?.stop();
    }
  };
  try {
    const settings = await readSettings(url);
    const { hostname, port } = new URL(url);
    const source = !server ? 'DATABASE_URL' : image ? `container ${image}` : 'embedded';
    console.log(
      `Testing against PostgreSQL ${settings.server_version} (${source}, ${hostname}:${port || 5432}, max_connections=${settings.max_connections})`,
    );
    template = await createLedgerTemplate(url);
    project.provide('adminDatabaseUrl', url);
    project.provide('ledgerTemplateDatabase', template.name);
  } catch (error) {
    // Vitest runs no teardown when the setup throws: clean up here, and report the setup's error.
    await teardown().catch(() => undefined);
    throw error;
  }
  return teardown;
}

async function readSettings(url: string): Promise<Record<string, string>> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    const { rows } = await client.query<{ name: string; setting: string }>(
      `select name, current_setting(name) as setting from unnest(array['server_version', 'max_connections']) as name`,
    );
    return Object.fromEntries(rows.map((row) => [row.name, row.setting]));
  } finally {
    await client.end();
  }
}
