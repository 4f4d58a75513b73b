// The frameworks the HTTP section measures, in the report's order. Adding one is a file,
// `<framework>-server.ts` exporting `framework` (see framework-server.ts), and a line here.
import type { FrameworkServer } from './framework-server.ts';

export const FRAMEWORK_MODULES: (() => Promise<{ framework: FrameworkServer }>)[] = [
  () => import('./express-server.ts'),
  () => import('./fastify-server.ts'),
  () => import('./hono-server.ts'),
  () => import('./node-http-server.ts'),
];
