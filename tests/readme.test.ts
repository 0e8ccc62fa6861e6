import { readFileSync } from 'node:fs'
import { describe, expect, it } from 'vitest'
import { BrokerEnvSchema } from '../broker/index.ts'
import { DashboardEnvSchema } from '../dashboard-api/index.ts'
import { IngestEnvSchema } from '../ingest/config.ts'
import { PlatformEnvSchema } from '../platform/config.ts'

describe('README', () => {
  const readme = readFileSync(new URL('../README.md', import.meta.url), 'utf8')

  it('documents every environment variable the components read', () => {
    const variables = [BrokerEnvSchema, DashboardEnvSchema, IngestEnvSchema, PlatformEnvSchema].flatMap(
      (schema) => Object.keys((schema as { shape: Record<string, unknown> }).shape),
    )
    expect(variables.length).toBeGreaterThan(30)
    const missing = variables.filter((v) => !readme.includes(`| \`${v}\` |`))
    expect(missing, 'add these to the configuration table in README.md').toEqual([])
  })

  it('has a Quick start of exactly two commands', () => {
    const quick = readme.split('## Quick start')[1]!.split('```sh')[1]!.split('```')[0]!
    const commands = quick.split('\n').filter((l) => l.trim() && !l.trim().startsWith('#'))
    expect(commands.map((c) => c.split('#')[0]!.trim())).toEqual(['npm start', 'npm test'])
  })
})
