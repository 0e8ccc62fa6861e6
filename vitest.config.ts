import { defineConfig } from 'vitest/config'

export default defineConfig({
  test: {
    include: ['tests/**/*.test.ts', '*/**/*.test.ts'],
    exclude: ['node_modules/**', 'data/**'],
    // Real brokers, databases and browsers start inside tests: give them room on a 2-core machine.
    testTimeout: 60_000,
    hookTimeout: 120_000,
    pool: 'forks',
    maxWorkers: 2,
  },
})
