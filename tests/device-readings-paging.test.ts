import { randomBytes } from 'node:crypto'
import { mkdtempSync, rmSync } from 'node:fs'
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
import type { TimeSeriesStore } from '../ingest/store/types.ts'
import { RIVER_DEVICE, TEST_API_TOKEN } from './helpers/platform.ts'

// A device's readings come oldest first, at most `limit` of them: a range holding more left its newest
// readings out, and nothing in the answer said so.

describe("a device's readings past its limit", () => {
  let dir: string
  let registry: DeviceRegistry
  let store: TimeSeriesStore
  let app: FastifyInstance
  const T0 = Date.UTC(2026, 11, 7, 0, 0, 0)

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'device-readings-'))
    registry = await DeviceRegistry.open({ path: join(dir, 'registry.duckdb'), key: randomBytes(32) })
    await registry.register({ ...RIVER_DEVICE }, 'test')
    store = createDuckDbStore({ path: join(dir, 'store.duckdb') })
    await store.init()
    await store.write(
      [0, 1, 2, 3, 4].map((i) => ({
        kind: 'river-level' as const,
        device: RIVER_DEVICE.id,
        district: RIVER_DEVICE.district,
        regency: RIVER_DEVICE.regency,
        ts: T0 + i * 60_000,
        receivedAt: T0 + i * 60_000,
        seq: i,
        fields: { waterLevel: 100 + i },
      })),
    )
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

  const page = async (from: number, limit: number) => {
    const res = await app.inject({
      method: 'GET',
      url: `/api/v1/devices/${RIVER_DEVICE.id}/readings?from=${from}&to=${T0 + 3_600_000}&limit=${limit}`,
      headers: { authorization: `Bearer ${TEST_API_TOKEN}` },
    })
    expect(res.statusCode).toBe(200)
    return res.json() as {
      count: number
      truncated: boolean
      next?: number
      readings: Array<{ seq: number }>
    }
  }

  it('says it is truncated and where the next page starts, and the pages hold every reading once', async () => {
    const first = await page(T0, 2)
    expect(first).toMatchObject({ count: 2, truncated: true, next: T0 + 60_000 + 1 })
    const seqs = first.readings.map((r) => r.seq)
    let next = first.next
    while (next !== undefined) {
      const p = await page(next, 2)
      seqs.push(...p.readings.map((r) => r.seq))
      next = p.next
      expect(seqs.length).toBeLessThanOrEqual(5)
    }
    expect(seqs).toEqual([0, 1, 2, 3, 4])
    expect(await page(T0, 5)).toMatchObject({ count: 5, truncated: false })
    expect((await page(T0, 5)).next).toBeUndefined()
  })
})
