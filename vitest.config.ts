import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    // Uses DATABASE_URL, or starts a throwaway embedded Postgres.
    globalSetup: ['test/support/global-setup.ts'],
    // Each test file gets its own process and its own database.
    pool: 'forks',
    // The default (CPUs - 1) is a single worker on a 2-CPU machine, yet the
    // tests mostly wait on Postgres. Each file may hold ~50 connections at
    // once, and a stock server allows 100, so two files run side by side.
    // Override with --maxWorkers.
    maxWorkers: 2,
    // Tests race real concurrent transactions against each other.
    testTimeout: 60_000,
    hookTimeout: 60_000,
    teardownTimeout: 60_000,
  },
});
