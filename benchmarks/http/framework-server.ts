// What one framework contributes to the HTTP section: a server with the bare route and the
// idempotent route (see charge-route.ts). Each framework is one `<framework>-server.ts` file
// exporting `framework`, listed in frameworks.ts.
import { readFileSync } from 'node:fs';
import type { Server } from 'node:http';
import { findPackageJSON } from 'node:module';
import type { AddressInfo } from 'node:net';
import type { Kysely } from 'kysely';
import type { HttpBenchDB } from './charge-route.ts';

export interface RunningServer {
  port: number;
  /** Stops accepting connections and closes those still open. */
  close(): Promise<void>;
}

export interface FrameworkServer {
  /** The adapter's subpath, as the report names it: `express`, `node-http`... */
  name: string;
  /** The framework's version, for the record. */
  version: string;
  /** Listens on 127.0.0.1, on a free port, serving BARE_PATH and IDEMPOTENT_PATH. */
  start(db: Kysely<HttpBenchDB>): Promise<RunningServer>;
}

/** Starts a `node:http` server (Express, @hono/node-server...) on a free port of 127.0.0.1. */
export function listenOnFreePort(server: Server): Promise<RunningServer> {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      server.off('error', reject);
      resolve({
        port: (server.address() as AddressInfo).port,
        close: () =>
          new Promise<void>((done, fail) => {
            server.close((error) => (error ? fail(error) : done()));
            server.closeAllConnections();
          }),
      });
    });
  });
}

/** The version in an installed package's package.json. */
export function installedVersion(name: string): string {
  // Found from the package's entry point: not every package exports its package.json.
  const path = findPackageJSON(name, import.meta.url);
  if (!path) throw new Error(`${name} is not installed`);
  return (JSON.parse(readFileSync(path, 'utf8')) as { version: string }).version;
}
