import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import {
  connectDevice,
  eventually,
  publishQos1,
  RIVER_DEVICE,
  registerDevice,
  startTestPlatform,
  type TestPlatform,
} from './helpers/platform.ts'

const metric = async (httpUrl: string, pattern: RegExp) => {
  const m = (await (await fetch(`${httpUrl}/metrics`)).text()).match(pattern)
  return m ? Number(m[1]) : 0
}

describe('per-device publish rate', () => {
  let platform: TestPlatform
  beforeAll(async () => {
    platform = await startTestPlatform({
      env: { MQTT_DEVICE_RATE_PER_SEC: '20', MQTT_DEVICE_BURST: '20', MQTT_DEVICE_FLOOD_LIMIT: '40' },
    })
  }, 60_000)
  afterAll(async () => platform?.close())

  it('slows a flooding device, then disconnects it, while other devices keep flowing', async () => {
    const flooderId = 'dps-river-301'
    const normalId = 'dps-river-302'
    const flooderSecret = await registerDevice(platform, { ...RIVER_DEVICE, id: flooderId })
    const normalSecret = await registerDevice(platform, { ...RIVER_DEVICE, id: normalId })
    const flooder = await connectDevice(platform.mqttUrl, flooderId, flooderSecret)
    const normal = await connectDevice(platform.mqttUrl, normalId, normalSecret)

    // Within its rate a device is never held back: a burst of 20 passes without throttling.
    for (let seq = 1; seq <= 20; seq++)
      await publishQos1(
        flooder,
        `devices/${flooderId}/telemetry`,
        JSON.stringify({ v: 1, seq, waterLevel: 1 }),
      )
    expect(await metric(platform.httpUrl, /broker_publishes_throttled_total (\d+)/)).toBeLessThanOrEqual(1)

    // Then a flood: QoS 0 as fast as the socket takes it.
    const closed = new Promise<void>((resolve) => flooder.once('close', () => resolve()))
    for (let seq = 21; seq <= 3000; seq++)
      flooder.publish(`devices/${flooderId}/telemetry`, JSON.stringify({ v: 1, seq, waterLevel: 2 }), {
        qos: 0,
      })

    // Meanwhile the other device's acknowledged readings keep being stored.
    // Explicit, distinct timestamps: a point's identity is its timestamp.
    const base = Date.now() - 60_000
    const normalReading = (n: number) => JSON.stringify({ v: 1, seq: n, ts: base + n * 10, waterLevel: 5 })
    let seq = 0
    let floodOver = false
    void closed.then(() => {
      floodOver = true
    })
    while (!floodOver && seq < 200) {
      await publishQos1(normal, `devices/${normalId}/telemetry`, normalReading(++seq))
      await new Promise((r) => setTimeout(r, 20))
    }
    await closed
    // Reconnecting at once buys no new burst: the bucket is the device's, not the connection's, so
    // nearly every publish of the next 25 is held to the sustained rate (a fresh bucket let 20 through).
    const throttledBefore = await metric(platform.httpUrl, /broker_publishes_throttled_total (\d+)/)
    const again = await connectDevice(platform.mqttUrl, flooderId, flooderSecret)
    for (let n = 1; n <= 25; n++)
      await publishQos1(
        again,
        `devices/${flooderId}/telemetry`,
        JSON.stringify({ v: 1, seq: 5000 + n, waterLevel: 3 }),
      )
    const throttledAgain =
      (await metric(platform.httpUrl, /broker_publishes_throttled_total (\d+)/)) - throttledBefore
    expect(throttledAgain).toBeGreaterThanOrEqual(15)
    again.end(true)
    for (let i = 0; i < 5; i++)
      await publishQos1(normal, `devices/${normalId}/telemetry`, normalReading(++seq))

    expect(await metric(platform.httpUrl, /broker_publishes_throttled_total (\d+)/)).toBeGreaterThan(0)
    expect(await metric(platform.httpUrl, /broker_devices_disconnected_total\{reason="flood"\} (\d+)/)).toBe(
      1,
    )
    const stored = await eventually(async () => {
      const r = await platform.api<{ readings: Array<{ seq: number }> }>(
        'GET',
        `/api/v1/devices/${normalId}/readings?from=-1h&limit=1000`,
      )
      return r.body.readings.length >= seq ? r.body.readings : undefined
    }).catch(async (err) => {
      const r = await platform.api<{ readings: Array<{ seq: number }> }>(
        'GET',
        `/api/v1/devices/${normalId}/readings?from=-1h&limit=1000`,
      )
      throw new Error(
        `${String(err)}; sent ${seq}, stored ${JSON.stringify(r.body.readings.map((x) => x.seq))}`,
      )
    })
    expect(stored.map((r) => r.seq)).toEqual(Array.from({ length: seq }, (_, i) => i + 1))
    // Far fewer flood readings got in than were sent: the rest never passed the bucket.
    const flooded = await platform.api<{ readings: unknown[] }>(
      'GET',
      `/api/v1/devices/${flooderId}/readings?from=-1h&limit=10000`,
    )
    expect(flooded.body.readings.length).toBeLessThan(225)
    normal.end(true)
    flooder.end(true)
  })
})
