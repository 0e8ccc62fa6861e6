import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { pino } from 'pino'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { PlatformBus } from '../ingest/events.ts'
import { Ingest, type IngestDone } from '../ingest/ingest.ts'
import { createMetrics } from '../ingest/metrics.ts'
import type { Device } from '../ingest/registry.ts'
import { createDuckDbStore } from '../ingest/store/duckdb.ts'
import type { StoredReading, TimeSeriesStore } from '../ingest/store/types.ts'
import { RIVER_DEVICE } from './helpers/platform.ts'

// A device without a clock sends readings without `ts`; the platform stamps them with its receive time.
// A point's identity in the store is its series and time, so readings stamped alike were one point: a
// backlog batch kept only its last reading, and two messages within one millisecond only the second.
// Both were acknowledged.

const SKEW_MS = 300_000

function device(id: string): Device {
  return {
    ...RIVER_DEVICE,
    id,
    thresholds: { ...RIVER_DEVICE.thresholds },
    calibrationOffset: 0,
    status: 'active',
    createdAt: 0,
    updatedAt: 0,
    createdBy: 'test',
    updatedBy: 'test',
  }
}

describe('readings without ts', () => {
  const appended: StoredReading[] = []
  let ingest: Ingest
  let dir: string
  let store: TimeSeriesStore

  const send = (d: Device, payload: object, receivedAt: number) =>
    new Promise<number>((resolve, reject) => {
      const done: IngestDone = (err, accepted) => (err ? reject(err) : resolve(accepted))
      ingest.telemetry(d, Buffer.from(JSON.stringify(payload)), done, false, receivedAt)
    })

  beforeAll(async () => {
    ingest = new Ingest(
      { maxFutureSkewMs: SKEW_MS, maxPayloadBytes: 65_536 },
      {
        spool: {
          full: false,
          appendWith: (readings, done) => {
            appended.push(...readings)
            done(undefined, readings.length)
          },
        },
        bus: new PlatformBus(),
        metrics: createMetrics(),
        log: pino({ level: 'silent' }),
      },
    )
    dir = mkdtempSync(join(tmpdir(), 'server-time-'))
    store = createDuckDbStore({ path: join(dir, 'store.duckdb') })
    await store.init()
  })

  afterAll(async () => {
    await store?.close()
    rmSync(dir, { recursive: true, force: true })
  })

  it('each get a millisecond of their own, in order, and all of them are stored', async () => {
    appended.length = 0
    const gauge = device('dps-river-951')
    const other = device('dps-river-952')
    const at = Date.UTC(2026, 11, 7, 8, 0, 0)
    // A backlog of five, then two single readings in the same millisecond, then one a second later.
    const batch = { v: 1, readings: [1, 2, 3, 4, 5].map((seq) => ({ seq, waterLevel: 100 + seq })) }
    expect(await send(gauge, batch, at)).toBe(5)
    expect(await send(gauge, { v: 1, seq: 6, waterLevel: 106 }, at)).toBe(1)
    expect(await send(gauge, { v: 1, seq: 7, waterLevel: 107 }, at)).toBe(1)
    expect(await send(gauge, { v: 1, seq: 8, waterLevel: 108 }, at + 1000)).toBe(1)
    // Another device in the same millisecond starts from the receive time: its times are its own.
    expect(await send(other, { v: 1, seq: 1, waterLevel: 50 }, at)).toBe(1)

    const ofGauge = appended.filter((r) => r.device === gauge.id)
    expect(ofGauge.map((r) => r.seq)).toEqual([1, 2, 3, 4, 5, 6, 7, 8])
    expect(ofGauge.map((r) => r.ts - at)).toEqual([0, 1, 2, 3, 4, 5, 6, 1000])
    expect(ofGauge.every((r) => r.receivedAt >= at && r.receivedAt <= at + 1000)).toBe(true)
    expect(appended.find((r) => r.device === other.id)?.ts).toBe(at)

    await store.write(appended)
    const rows = await store.queryDevice({
      kind: 'river-level',
      device: gauge.id,
      from: at,
      to: at + 2000,
      limit: 100,
    })
    expect(rows.map((r) => r.seq)).toEqual([1, 2, 3, 4, 5, 6, 7, 8])
  })

  it('keep the device time when it sends one, and never run further ahead than the allowed skew', async () => {
    appended.length = 0
    const gauge = device('dps-river-953')
    const at = Date.UTC(2026, 11, 7, 9, 0, 0)
    await send(gauge, { v: 1, ts: at - 60_000, seq: 1, waterLevel: 101 }, at)
    expect(appended[0]?.ts).toBe(at - 60_000)

    // 1,000 readings a message, far more than a millisecond each per second: the times would run ahead
    // of the clock without end; past the skew they start again at the receive time.
    const big = { v: 1, readings: Array.from({ length: 1000 }, (_, i) => ({ seq: i, waterLevel: 100 })) }
    for (let i = 0; i < 320; i++) await send(gauge, big, at)
    const ts = appended.slice(1).map((r) => r.ts)
    expect(ts).toHaveLength(320_000)
    expect(ts.reduce((a, b) => Math.max(a, b)) - at).toBeLessThanOrEqual(SKEW_MS)
    expect(ts.reduce((a, b) => Math.min(a, b))).toBe(at)
  })
})
