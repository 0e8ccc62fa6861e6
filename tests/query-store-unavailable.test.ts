import { randomBytes } from 'node:crypto'
import { mkdtempSync, rmSync } from 'node:fs'
import type { AddressInfo } from 'node:net'
import { createServer } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import type { FastifyInstance } from 'fastify'
import { pino } from 'pino'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { buildApp, dashboardConfigFromEnv, LiveState } from '../dashboard-api/index.ts'
import { PlatformBus } from '../ingest/events.ts'
import { createMetrics } from '../ingest/metrics.ts'
import { DeviceRegistry } from '../ingest/registry.ts'
import { RejectionLog } from '../ingest/rejections.ts'
import { createDuckDbStore } from '../ingest/store/duckdb.ts'
import { createInfluxStore } from '../ingest/store/influx.ts'
import type { TimeSeriesStore } from '../ingest/store/types.ts'
import { RIVER_DEVICE, TEST_API_TOKEN } from './helpers/platform.ts'

/** The query API when its store cannot be reached: 503 store_unavailable, not a 500. */

async function closedPortUrl(): Promise<string> {
  const server = createServer()
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const port = (server.address() as AddressInfo).port
  await new Promise<void>((resolve) => server.close(() => resolve()))
  return `http://127.0.0.1:${port}`
}

const unreachableStores: Record<string, (dir: string) => Promise<TimeSeriesStore>> = {
  'InfluxDB on a closed port': async () =>
    createInfluxStore({ url: await closedPortUrl(), apiVersion: 'v1', database: 'city' }),
  'a closed embedded store': async (dir) => {
    const store = createDuckDbStore({ path: join(dir, 'store.duckdb') })
    await store.init()
    await store.close()
    return store
  },
}

describe.each(Object.entries(unreachableStores))('analyst API with %s', (_name, makeStore) => {
  let dir: string
  let registry: DeviceRegistry
  let store: TimeSeriesStore
  let app: FastifyInstance

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'query-unavailable-'))
    registry = await DeviceRegistry.open({ path: join(dir, 'registry.duckdb'), key: randomBytes(32) })
    await registry.register({ ...RIVER_DEVICE }, 'test')
    store = await makeStore(dir)
    const config = dashboardConfigFromEnv({ API_TOKEN: TEST_API_TOKEN })
    const bus = new PlatformBus()
    app = await buildApp(config, {
      registry,
      store,
      live: new LiveState(registry, bus, config.aggregates),
      rejections: new RejectionLog(),
      metrics: createMetrics(),
      bus,
      ingestStatus: () => ({ pending: 0 }),
      log: pino({ level: 'silent' }),
    })
  })
  afterAll(async () => {
    await app?.close()
    await store?.close()
    await registry?.close()
    rmSync(dir, { recursive: true, force: true })
  })

  const get = (url: string) =>
    app.inject({ method: 'GET', url, headers: { authorization: `Bearer ${TEST_API_TOKEN}` } })

  it.each([
    ['readings as JSON', `/api/v1/readings?devices=${RIVER_DEVICE.id}&metrics=waterLevel&from=-1d`],
    ['readings as CSV', `/api/v1/readings?kind=river-level&metrics=waterLevel&window=1h&from=-1d&format=csv`],
    ['completeness', `/api/v1/readings/completeness?device=${RIVER_DEVICE.id}`],
    ["a device's readings", `/api/v1/devices/${RIVER_DEVICE.id}/readings`],
  ])('answers %s with 503 store_unavailable, without details', async (_what, url) => {
    const res = await get(url)
    expect(res.statusCode).toBe(503)
    const { error } = res.json() as { error: { code: string; message: string } }
    expect(error.code).toBe('store_unavailable')
    // The store's address and the cause stay in the log.
    expect(error.message).not.toMatch(/127\.0\.0\.1|ECONNREFUSED|closed|duckdb/i)
  })

  it('still answers a bad query with its own 4xx code', async () => {
    const malformed = await get('/api/v1/readings?kind=river-level&metrics=pm25')
    expect(malformed.statusCode).toBe(400)
    expect(malformed.json().error.code).toBe('bad_request')
    const unknown = await get('/api/v1/readings/completeness?device=nope-9')
    expect(unknown.statusCode).toBe(404)
    expect(unknown.json().error.code).toBe('not_found')
  })
})
