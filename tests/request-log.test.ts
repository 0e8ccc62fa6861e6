import { randomBytes } from 'node:crypto'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { pino } from 'pino'
import { describe, expect, it } from 'vitest'
import { buildApp, dashboardConfigFromEnv, LiveState } from '../dashboard-api/index.ts'
import { redactUrl } from '../dashboard-api/request-log.ts'
import { ConfigError } from '../firmware-contracts/index.ts'
import { ingestConfigFromEnv } from '../ingest/config.ts'
import { PlatformBus } from '../ingest/events.ts'
import { createMetrics } from '../ingest/metrics.ts'
import { DeviceRegistry } from '../ingest/registry.ts'
import { RejectionLog } from '../ingest/rejections.ts'
import { createDuckDbStore } from '../ingest/store/duckdb.ts'
import { TEST_API_TOKEN } from './helpers/platform.ts'

// Tokens and keys stay out of logs and terminals: a wall display's `?token=` in the request log, a key
// with a typo in a configuration error.

const DISPLAY_TOKEN = 'display-token-0123456789abcdef'

describe('what the platform writes about tokens and keys', () => {
  it('redacts the display token from every logged URL', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'request-log-'))
    const lines: string[] = []
    const log = pino({ level: 'info' }, { write: (line: string) => lines.push(line) })
    const registry = await DeviceRegistry.open({ path: join(dir, 'registry.duckdb'), key: randomBytes(32) })
    const store = createDuckDbStore({ path: ':memory:' })
    const config = dashboardConfigFromEnv({ API_TOKEN: TEST_API_TOKEN, DISPLAY_TOKEN })
    const bus = new PlatformBus()
    const app = await buildApp(config, {
      registry,
      store,
      live: new LiveState(registry, bus, config.aggregates),
      rejections: new RejectionLog(),
      metrics: createMetrics(),
      bus,
      ingestStatus: () => ({ pending: 0 }),
      log,
    })
    try {
      for (const url of [
        `/?token=${DISPLAY_TOKEN}&view=overview`,
        `/no-such-page?view=x&token=${DISPLAY_TOKEN}`,
        // Accepted as the token by the page (the parser decodes the key), so it must not be logged either.
        `/?%74oken=${DISPLAY_TOKEN}`,
      ]) {
        await app.inject({ method: 'GET', url })
      }
      const logged = lines.join('')
      expect(logged).toContain('token=[redacted]')
      expect(logged).toContain('view=overview')
      expect(logged).not.toContain(DISPLAY_TOKEN)
    } finally {
      await app.close()
      await store.close()
      await registry.close()
      rmSync(dir, { recursive: true, force: true })
    }
  })

  it('redacts token parameters wherever they stand in a query string', () => {
    expect(redactUrl('/?token=abc')).toBe('/?token=[redacted]')
    expect(redactUrl('/x?a=1&TOKEN=abc&b=2')).toBe('/x?a=1&TOKEN=[redacted]&b=2')
    expect(redactUrl('/x?mytoken=abc')).toBe('/x?mytoken=abc')
    expect(redactUrl('/api/v1/devices')).toBe('/api/v1/devices')
    // Keys are compared as the query parser decodes them.
    expect(redactUrl('/?%74oken=abc&view=x')).toBe('/?%74oken=[redacted]&view=x')
    expect(redactUrl('/?%54%4F%4B%45%4E=abc')).toBe('/?%54%4F%4B%45%4E=[redacted]')
    expect(redactUrl('/?%zz=abc&token=def')).toBe('/?%zz=abc&token=[redacted]')
    expect(redactUrl('/?to+ken=abc')).toBe('/?to+ken=abc')
  })

  it('names a bad key in a configuration error without printing it', () => {
    const key = 'ab'.repeat(31) + 'zz'
    let error: unknown
    try {
      ingestConfigFromEnv({ REGISTRY_KEY: key, INGEST_MAX_PAYLOAD_BYTES: 'lots' })
    } catch (err) {
      error = err
    }
    expect(error).toBeInstanceOf(ConfigError)
    const message = (error as Error).message
    expect(message).toContain('REGISTRY_KEY')
    expect(message).toContain('value hidden, 64 characters')
    expect(message).not.toContain(key)
    // Other values are still shown, so that a typo can be seen.
    expect(message).toContain('"lots"')
  })

  it('shows a bad URL list without the credentials in its URLs', () => {
    let error: unknown
    try {
      dashboardConfigFromEnv({
        API_TOKEN: TEST_API_TOKEN,
        ALARM_WEBHOOK_SECRET: 'webhook-secret-0123456789',
        ALARM_WEBHOOK_URLS: 'https://gw:pa55word@sms.example/hook?apikey=K3Y,ftp://x',
      })
    } catch (err) {
      error = err
    }
    expect(error).toBeInstanceOf(ConfigError)
    const message = (error as Error).message
    expect(message).toContain('ALARM_WEBHOOK_URLS')
    expect(message).toContain('sms.example/hook')
    expect(message).toContain('ftp://x')
    expect(message).not.toContain('pa55word')
    expect(message).not.toContain('K3Y')
  })
})
