import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { runLoad } from '../device-sim/index.ts'
import { type Influxd, startInfluxd } from './helpers/influxd.ts'
import { eventually, RIVER_DEVICE, startTestPlatform, type TestPlatform } from './helpers/platform.ts'
import { compareAcked, storedSeqsByDevice } from './helpers/stored.ts'

const DEVICES = 50
const RATE_PER_SEC = 1000
const OUTAGE_MS = 60_000

describe('InfluxDB outage', () => {
  let influx: Influxd
  let platform: TestPlatform

  beforeAll(async () => {
    influx = await startInfluxd()
    // A small memory window, so the outage also exercises reading the backlog back from disk.
    platform = await startTestPlatform({ influx, env: { SPOOL_MAX_MEMORY_READINGS: '5000' } })
  })
  afterAll(async () => {
    await platform?.close()
    await influx?.stop()
  })

  it('stores every acknowledged reading exactly once after InfluxDB was down for 60 s', {
    timeout: 180_000,
  }, async () => {
    const devices = []
    for (let i = 0; i < DEVICES; i++) {
      const id = `dps-river-${String(i).padStart(3, '0')}`
      const { secret } = await platform.registry.register({ ...RIVER_DEVICE, id }, 'test')
      devices.push({ id, kind: 'river-level' as const, secret })
    }

    await influx.halt()
    // 60,000 readings while the store is down: more than the InfluxDB client's own buffer (32,000 lines by
    // default) would hold, and more than the spool keeps in memory here.
    const report = await runLoad({
      url: platform.mqttUrl,
      devices,
      ratePerSec: RATE_PER_SEC,
      durationMs: OUTAGE_MS,
      qos: 1,
      payloadKind: 'device',
    })
    expect(report.devices.connected).toBe(DEVICES)
    expect(report.errors).toBe(0)
    expect(report.acked).toBeGreaterThan(0.9 * RATE_PER_SEC * (OUTAGE_MS / 1000))
    expect(platform.spool.pendingCount).toBeGreaterThanOrEqual(report.acked)
    const health = await platform.api<{ status: string; ingest: { lastError?: { retryable: boolean } } }>(
      'GET',
      '/api/v1/health',
    )
    expect(health.body.status).toBe('degraded')
    expect(health.body.ingest.lastError?.retryable).toBe(true)

    await influx.start()
    await eventually(async () => (platform.spool.pendingCount === 0 ? true : undefined), 90_000, 250)

    const stored = await storedSeqsByDevice(influx, 'river-level')
    const { missing, duplicated, ackedTotal } = compareAcked(report.ackedSeqs, stored)
    expect(ackedTotal).toBe(report.acked)
    expect(missing).toEqual({})
    expect(duplicated).toEqual({})
    const storedTotal = [...stored.values()].reduce((n, s) => n + s.length, 0)
    expect(storedTotal).toBe(report.acked)
  })
})
