import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import {
  defineFleet,
  type SimDeviceWithSecret,
  type SimulatorHandle,
  startSimulator,
} from '../device-sim/index.ts'
import { startTestPlatform, type TestPlatform } from './helpers/platform.ts'

/*
 * "The simulator runs 2,000 devices against the platform on this 2-core machine for a minute without
 * errors": 2,000 real mqtt.js clients, each with its own credentials, every device reporting every 10 s
 * (200 readings/s in all), against the whole platform in this process. Asserts behaviour only: everyone
 * connected, no errors, every acknowledged reading stored; no timing.
 */

const DEVICES = 2000
const INTERVAL_MS = 10_000
const RUN_MS = 60_000

describe('simulator at scale', () => {
  let platform: TestPlatform
  let sim: SimulatorHandle | undefined

  beforeAll(async () => {
    // All 2,000 clients come from 127.0.0.1: lift the per-address connection cap for this test.
    platform = await startTestPlatform({ env: { MQTT_MAX_CONNECTIONS_PER_IP: '10000' } })
  })
  afterAll(async () => {
    await sim?.stop()
    await platform?.close()
  })

  it('runs 2,000 devices for a minute: all connected, no errors, every acknowledged reading stored', async () => {
    const perKind = DEVICES / 4
    const specs = defineFleet({ perKind, seed: 3 })
    expect(specs).toHaveLength(DEVICES)
    const devices: SimDeviceWithSecret[] = []
    for (const spec of specs) {
      const { secret } = await platform.registry.register(
        { ...spec, reportingIntervalMs: INTERVAL_MS },
        'test',
      )
      devices.push({ ...spec, secret })
    }

    const startedAt = Date.now()
    const handle = await startSimulator({
      url: platform.mqttUrl,
      devices,
      intervalMs: INTERVAL_MS,
      seed: 5,
      // A fleet powering up together, spread over ten seconds, as after a power cut.
      connectJitterMs: 10_000,
      connectTimeoutMs: 30_000,
    })
    sim = handle
    await handle.ready(45_000)
    const elapsed = Date.now() - startedAt
    await new Promise((resolve) => setTimeout(resolve, Math.max(0, RUN_MS - elapsed)))

    const running = handle.stats()
    expect(running.connected).toBe(DEVICES)
    expect(running.errors).toBe(0)
    expect(running.reconnects).toBe(0)
    expect(running.disconnects).toBe(0)
    expect(running.selfCheckFailures).toBe(0)

    await handle.stop()
    sim = undefined
    const stats = handle.stats()
    expect(stats.errors).toBe(0)
    // Each device reported about once per 10 s for a minute, its first reading within the first interval.
    expect(stats.ackedReadings).toBeGreaterThanOrEqual(DEVICES * 5)
    expect(await platform.spool.whenDrained(20_000)).toBe(true)

    const missing: string[] = []
    for (const device of devices) {
      const rows = await platform.store.queryDevice({
        kind: device.kind,
        device: device.id,
        from: startedAt - 60_000,
        to: Date.now() + 60_000,
        limit: 10_000,
      })
      const stored = new Set(rows.map((r) => r.seq))
      expect(stored.size, `${device.id}: a seq stored twice`).toBe(rows.length)
      const acked = stats.perDevice.find((d) => d.id === device.id)!.ackedReadings
      expect(acked, `${device.id} acknowledged nothing`).toBeGreaterThan(0)
      for (const seq of handle.sent[device.id]!.toArray()) {
        if (!stored.has(seq)) missing.push(`${device.id}#${seq}`)
      }
    }
    expect(missing.slice(0, 10), `${missing.length} acknowledged readings not stored`).toEqual([])
  }, 120_000)
})
