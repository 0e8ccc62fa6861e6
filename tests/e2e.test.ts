import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { defineFleet, startSimulator } from '../device-sim/index.ts'
import { type Influxd, startInfluxd } from './helpers/influxd.ts'
import {
  connectDevice,
  eventually,
  openLive,
  publishQos1,
  RIVER_DEVICE,
  registerDevice,
  startTestPlatform,
  type TestPlatform,
} from './helpers/platform.ts'

/** InfluxQL straight to the server: the test checks what InfluxDB holds, not what our API says it holds. */
async function influxQuery(influx: Influxd, q: string) {
  const url = `${influx.url}/query?db=city&epoch=ms&q=${encodeURIComponent(q)}`
  const res = await fetch(url)
  const body = (await res.json()) as {
    results: Array<{ series?: Array<{ columns: string[]; values: unknown[][] }> }>
  }
  const series = body.results[0]?.series?.[0]
  if (!series) return []
  return series.values.map((row) => Object.fromEntries(series.columns.map((c, i) => [c, row[i]])))
}

for (const storeKind of ['influxdb', 'duckdb'] as const) {
  describe(`a reading travels end to end (${storeKind})`, () => {
    let influx: Influxd | undefined
    let platform: TestPlatform

    beforeAll(async () => {
      if (storeKind === 'influxdb') influx = await startInfluxd()
      platform = await startTestPlatform({ influx })
    })
    afterAll(async () => {
      await platform?.close()
      await influx?.stop()
    })

    it('stores a QoS 1 reading with registry tags and streams it to the wall display', async () => {
      expect(platform.store.kind).toBe(storeKind)
      const secret = await registerDevice(platform, RIVER_DEVICE)
      const live = await openLive(platform.httpUrl)
      const snapshot = await live.waitFor((m) => m.type === 'snapshot')
      expect(snapshot.type === 'snapshot' && snapshot.devices.map((d) => d.id)).toContain(RIVER_DEVICE.id)

      const device = await connectDevice(platform.mqttUrl, RIVER_DEVICE.id, secret)
      const ts = Date.now() - 2000
      await publishQos1(
        device,
        `devices/${RIVER_DEVICE.id}/telemetry`,
        JSON.stringify({ v: 1, ts, seq: 7, waterLevel: 123.4, battery: 88 }),
      )

      const delta = await live.waitFor(
        (m) => m.type === 'delta' && m.devices.some((d) => d.id === RIVER_DEVICE.id && d.latest?.seq === 7),
      )
      const seen = delta.type === 'delta' ? delta.devices.find((d) => d.id === RIVER_DEVICE.id) : undefined
      expect(seen?.latest?.fields).toEqual({ waterLevel: 123.4, battery: 88 })
      expect(seen?.latest?.ts).toBe(ts)
      expect(seen?.online).toBe(true)

      if (influx) {
        const rows = await eventually(async () => {
          const r = await influxQuery(
            influx!,
            `SELECT * FROM "river-level" WHERE "device" = '${RIVER_DEVICE.id}'`,
          )
          return r.length > 0 ? r : undefined
        })
        expect(rows).toHaveLength(1)
        expect(rows[0]).toMatchObject({
          time: ts,
          device: RIVER_DEVICE.id,
          district: 'Denpasar Barat',
          regency: 'Kota Denpasar',
          kind: 'river-level',
          waterLevel: 123.4,
          battery: 88,
          seq: 7,
        })
        expect(rows[0]!.receivedAt).toBeGreaterThanOrEqual(ts)
      }

      const stored = await eventually(async () => {
        const r = await platform.api<{ readings: Array<Record<string, unknown>> }>(
          'GET',
          `/api/v1/devices/${RIVER_DEVICE.id}/readings?from=-1h`,
        )
        return r.body.readings.length > 0 ? r.body.readings : undefined
      })
      expect(stored).toHaveLength(1)
      expect(stored[0]).toMatchObject({
        ts,
        seq: 7,
        device: RIVER_DEVICE.id,
        district: 'Denpasar Barat',
        regency: 'Kota Denpasar',
        kind: 'river-level',
        fields: { waterLevel: 123.4, battery: 88 },
      })

      device.end(true)
      live.close()
    })

    it('takes a simulated river gauge from the device simulator to the store and the live stream', async () => {
      const spec = defineFleet({ perKind: 1, seed: 7, kinds: ['river-level'] })[0]!
      const { secret } = await platform.registry.register({ ...spec, reportingIntervalMs: 1000 }, 'test')
      const live = await openLive(platform.httpUrl)
      const sim = await startSimulator({
        url: platform.mqttUrl,
        devices: [{ ...spec, secret }],
        seed: 7,
        intervalMs: 1000,
      })
      try {
        await live.waitFor(
          (m) => m.type === 'delta' && m.devices.some((d) => d.id === spec.id && d.latest !== null),
        )
        const acked = await eventually(async () =>
          sim.sent[spec.id]!.size >= 2 ? sim.sent[spec.id]!.toArray() : undefined,
        )
        const stored = await eventually(async () => {
          const rows = await platform.store.queryDevice({
            kind: 'river-level',
            device: spec.id,
            from: Date.now() - 600_000,
            to: Date.now() + 60_000,
            limit: 100,
          })
          return acked.every((seq) => rows.some((r) => r.seq === seq)) ? rows : undefined
        })
        expect(stored[0]).toMatchObject({
          device: spec.id,
          district: spec.district,
          regency: spec.regency,
          kind: 'river-level',
        })
        expect(stored[0]!.fields.waterLevel).toBeTypeOf('number')
        if (influx) {
          const rows = await influxQuery(influx, `SELECT * FROM "river-level" WHERE "device" = '${spec.id}'`)
          expect(rows.length).toBeGreaterThanOrEqual(acked.length)
          expect(rows[0]).toMatchObject({ device: spec.id, district: spec.district, regency: spec.regency })
        }
      } finally {
        await sim.stop()
        live.close()
      }
    })

    it('refuses a device with a wrong password at CONNECT', async () => {
      const id = 'dps-river-902'
      await registerDevice(platform, { ...RIVER_DEVICE, id })
      const err = await connectDevice(platform.mqttUrl, id, 'not-the-secret').then(
        (c) => {
          c.end(true)
          return undefined
        },
        (e: Error & { code?: number }) => e,
      )
      expect(err?.code).toBe(4)
      const metrics = await (await fetch(`${platform.httpUrl}/metrics`)).text()
      expect(metrics).toMatch(/broker_connections_refused_total\{reason="bad_credentials"\} [1-9]/)
    })

    it('acknowledges an invalid payload, never stores it, and shows why', async () => {
      const id = 'dps-river-903'
      const secret = await registerDevice(platform, { ...RIVER_DEVICE, id })
      const device = await connectDevice(platform.mqttUrl, id, secret)
      await publishQos1(device, `devices/${id}/telemetry`, JSON.stringify({ seq: 1, waterlevel: 12 }))
      await publishQos1(device, `devices/${id}/telemetry`, '{not json')
      await publishQos1(device, `devices/${id}/telemetry`, JSON.stringify({ seq: 2, waterLevel: 99_999 }))

      const commissioning = await eventually(async () => {
        const r = await platform.api<{ rejections: Array<{ code: string; payload: string }> }>(
          'GET',
          `/api/v1/devices/${id}/commissioning`,
        )
        return r.body.rejections.length === 3 ? r.body : undefined
      })
      expect(commissioning.rejections.map((r) => r.code)).toEqual(['schema', 'invalid_json', 'out_of_range'])
      expect(commissioning.rejections[1]!.payload).toBe('{not json')

      const metrics = await (await fetch(`${platform.httpUrl}/metrics`)).text()
      expect(metrics).toMatch(/ingest_readings_rejected_total\{reason="schema"\} 1/)
      expect(metrics).toMatch(/ingest_readings_rejected_total\{reason="invalid_json"\} 1/)

      // A valid reading after them is stored, and nothing of the invalid ones is.
      await publishQos1(device, `devices/${id}/telemetry`, JSON.stringify({ seq: 3, waterLevel: 42 }))
      const stored = await eventually(async () => {
        const r = await platform.api<{ readings: Array<{ seq: number }> }>(
          'GET',
          `/api/v1/devices/${id}/readings?from=-1h`,
        )
        return r.body.readings.length > 0 ? r.body.readings : undefined
      })
      expect(stored.map((r) => r.seq)).toEqual([3])
      if (influx) {
        const rows = await influxQuery(influx, `SELECT * FROM "river-level" WHERE "device" = '${id}'`)
        expect(rows.map((r) => r.seq)).toEqual([3])
      }
      device.end(true)
    })

    it("applies a river gauge's calibration offset before storing and showing its level", async () => {
      const id = 'dps-river-906'
      const secret = await registerDevice(platform, { ...RIVER_DEVICE, id, calibrationOffset: -12.5 })
      const device = await connectDevice(platform.mqttUrl, id, secret)
      await publishQos1(
        device,
        `devices/${id}/telemetry`,
        JSON.stringify({ seq: 1, waterLevel: 100, battery: 90 }),
      )
      const stored = await eventually(async () => {
        const r = await platform.api<{ readings: Array<{ fields: Record<string, number> }> }>(
          'GET',
          `/api/v1/devices/${id}/readings?from=-1h`,
        )
        return r.body.readings[0]
      })
      expect(stored.fields).toEqual({ waterLevel: 87.5, battery: 90 })
      device.end(true)
    })

    it('keeps a device to its own topics', async () => {
      const a = 'dps-river-904'
      const b = 'dps-river-905'
      const secretA = await registerDevice(platform, { ...RIVER_DEVICE, id: a })
      await registerDevice(platform, { ...RIVER_DEVICE, id: b })
      const device = await connectDevice(platform.mqttUrl, a, secretA)
      // mqtt.js reports a refused subscription as an error that carries the SUBACK.
      const suback = await new Promise<{ granted?: number[] }>((resolve) =>
        device.subscribe('#', { qos: 1 }, (err) =>
          resolve((err as { packet?: { granted?: number[] } })?.packet ?? {}),
        ),
      )
      expect(suback.granted).toEqual([128])
      expect(device.connected).toBe(true)
      // Publishing as another device gets the connection closed (MQTT 3.1.1 has no negative PUBACK).
      const closed = new Promise<void>((resolve) => device.once('close', () => resolve()))
      device.publish(`devices/${b}/telemetry`, JSON.stringify({ seq: 1, waterLevel: 1 }), { qos: 1 })
      await closed
      const r = await platform.api<{ readings: unknown[] }>('GET', `/api/v1/devices/${b}/readings?from=-1h`)
      expect(r.body.readings).toEqual([])
      device.end(true)
    })
  })
}
