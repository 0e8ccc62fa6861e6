import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { type Influxd, startInfluxd } from './helpers/influxd.ts'
import {
  connectDevice,
  eventually,
  publishQos1,
  RIVER_DEVICE,
  registerDevice,
  startTestPlatform,
  type TestPlatform,
} from './helpers/platform.ts'
import { storedSeqsByDevice } from './helpers/stored.ts'

interface Commissioning {
  rejections: Array<{ code: string; message: string }>
}

describe('readings the store refuses', () => {
  let influx: Influxd
  let platform: TestPlatform

  beforeAll(async () => {
    influx = await startInfluxd()
    platform = await startTestPlatform({ influx })
  })
  afterAll(async () => {
    await platform?.close()
    await influx?.stop()
  })

  it('stores the rest of a batch and sets the refused line aside with its reason', async () => {
    const id = 'dps-river-950'
    const secret = await registerDevice(platform, { ...RIVER_DEVICE, id })
    const now = Date.now()
    // Another writer made `flow` a string field in this shard: any float `flow` line is now a 400.
    const pre = await influx.write('city', `river-level,device=legacy-gauge flow="broken" ${now - 60_000}`)
    expect(pre.status).toBe(204)

    const device = await connectDevice(platform.mqttUrl, id, secret)
    const readings = Array.from({ length: 10 }, (_, i) => ({
      ts: now - 10_000 + i * 1000,
      seq: i,
      waterLevel: 120 + i,
      ...(i === 5 ? { flow: 3.2 } : {}),
    }))
    await publishQos1(device, `devices/${id}/telemetry`, JSON.stringify({ v: 1, readings }))

    // The PUBACK says the readings are in the broker thread's spool log; the platform thread hears of them
    // by message, which may come after the PUBACK. So wait for the store, then for the spool to be empty.
    const stored = await eventually(async () => {
      const seqs = (await storedSeqsByDevice(influx, 'river-level')).get(id)
      return seqs !== undefined && seqs.length >= 9 && platform.spool.pendingCount === 0 ? seqs : undefined
    }, 20_000)
    expect(stored.sort((a, b) => a - b)).toEqual([0, 1, 2, 3, 4, 6, 7, 8, 9])

    const view = await platform.api<Commissioning>('GET', `/api/v1/devices/${id}/commissioning`)
    const refused = view.body.rejections.filter((r) => r.code === 'store_refused')
    expect(refused).toHaveLength(1)
    expect(refused[0]!.message).toMatch(/field type conflict|conflict/i)

    const deadLetters = readFileSync(join(platform.dataDir, 'spool', 'dead-letter.ndjson'), 'utf8')
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as { reason: string; reading: { device: string; seq: number } })
    expect(deadLetters.map((d) => [d.reading.device, d.reading.seq])).toEqual([[id, 5]])
    const metrics = await (await fetch(`${platform.httpUrl}/metrics`)).text()
    expect(metrics).toMatch(/ingest_readings_dead_lettered_total 1\b/)
    device.end(true)
  })

  it('acknowledges but never stores a reading stamped too far in the future', async () => {
    const id = 'dps-river-951'
    const secret = await registerDevice(platform, { ...RIVER_DEVICE, id })
    const device = await connectDevice(platform.mqttUrl, id, secret)
    await publishQos1(
      device,
      `devices/${id}/telemetry`,
      JSON.stringify({ seq: 1, ts: Date.now() + 3_600_000, waterLevel: 1 }),
    )
    await publishQos1(
      device,
      `devices/${id}/telemetry`,
      JSON.stringify({ seq: 2, ts: Date.now() - 1000, waterLevel: 2 }),
    )
    const view = await eventually(async () => {
      const r = await platform.api<Commissioning>('GET', `/api/v1/devices/${id}/commissioning`)
      return r.body.rejections.length > 0 ? r.body : undefined
    })
    expect(view.rejections.map((r) => r.code)).toEqual(['future_timestamp'])
    await eventually(async () =>
      (await storedSeqsByDevice(influx, 'river-level')).get(id) ? true : undefined,
    )
    expect((await storedSeqsByDevice(influx, 'river-level')).get(id)).toEqual([2])
    device.end(true)
  })
})
