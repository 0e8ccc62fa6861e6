import type { MqttClient } from 'mqtt'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { defineFleet, type SimulatorHandle, startSimulator } from '../device-sim/index.ts'
import { topicFor, validateCmdAck, validateStatus } from '../firmware-contracts/index.ts'
import {
  connectDevice,
  eventually,
  publishQos1,
  startTestPlatform,
  type TestPlatform,
} from './helpers/platform.ts'

/*
 * Simulated devices answer the platform: they subscribe to their own config and cmd topics (the broker
 * allows exactly these), apply a config's reporting interval, and answer every command on cmd/ack as the
 * firmware contract says. The platform side is an internal MQTT client of the real broker.
 */

const OPERATOR = 'internal-ops'
const OPERATOR_SECRET = 'ops-secret-0123456789abcdefghij'

describe('simulated devices take config and commands', () => {
  let platform: TestPlatform
  let sim: SimulatorHandle
  let ops: MqttClient
  const seen: Array<{ topic: string; payload: Buffer }> = []
  const [river, crowd] = defineFleet({ perKind: 1, seed: 4, kinds: ['river-level', 'crowd-counter'] })

  beforeAll(async () => {
    platform = await startTestPlatform({
      env: { MQTT_INTERNAL_CREDENTIALS: `${OPERATOR}:${OPERATOR_SECRET}` },
    })
    const devices = []
    for (const spec of [river!, crowd!]) {
      const { secret } = await platform.registry.register(spec, 'test')
      devices.push({ ...spec, secret })
    }
    ops = await connectDevice(platform.mqttUrl, OPERATOR, OPERATOR_SECRET)
    ops.on('message', (topic, payload) => seen.push({ topic, payload: Buffer.from(payload) }))
    await ops.subscribeAsync(['devices/+/cmd/ack', 'devices/+/status'], { qos: 1 })
    sim = await startSimulator({
      url: platform.mqttUrl,
      devices,
      intervalMs: 200,
      seed: 2,
      connectJitterMs: 50,
    })
    await sim.ready(10_000)
  })
  afterAll(async () => {
    await sim?.stop()
    ops?.end(true)
    await platform?.close()
  })

  const deviceStats = (id: string) => sim.stats().perDevice.find((d) => d.id === id)!

  async function command(deviceId: string, body: Record<string, unknown>) {
    await publishQos1(ops, topicFor(deviceId, 'cmd'), JSON.stringify(body))
    const ackTopic = topicFor(deviceId, 'cmdAck')
    return eventually(async () => {
      for (const m of seen) {
        if (m.topic !== ackTopic) continue
        const ack = validateCmdAck(m.payload, { now: Date.now() })
        if (!ack.ok) throw new Error(`ack fails the contract: ${ack.rejection.message}`)
        if (ack.value.id === body.id) return ack.value
      }
      return undefined
    }, 5000)
  }

  it('subscribes to its own config and cmd topics without refusals, and answers ping', async () => {
    // The subscriptions are in place once SUBACK came back; a refusal would be counted as an error.
    await eventually(async () => (deviceStats(river!.id).errors === 0 ? true : undefined))
    const ack = await command(river!.id, { v: 1, id: 'ping-1', name: 'ping' })
    expect(ack).toMatchObject({ id: 'ping-1', ok: true })
    expect(sim.stats().errors).toBe(0)
  })

  it('answers set-interval and reports at the new interval', async () => {
    const ack = await command(crowd!.id, { v: 1, id: 'fast-1', name: 'set-interval', args: { interval: 30 } })
    expect(ack).toMatchObject({ id: 'fast-1', ok: true })
    expect(deviceStats(crowd!.id).intervalMs).toBe(30_000)
    const before = deviceStats(crowd!.id).readings
    await new Promise((resolve) => setTimeout(resolve, 1500))
    // At 200 ms it would have measured ~7 more readings; at 30 s at most one.
    expect(deviceStats(crowd!.id).readings - before).toBeLessThanOrEqual(1)
  })

  it('applies a valid config and ignores one that fails the contract', async () => {
    await publishQos1(ops, topicFor(river!.id, 'config'), JSON.stringify({ v: 1, interval: 20 }))
    await eventually(async () => (deviceStats(river!.id).configsApplied === 1 ? true : undefined))
    expect(deviceStats(river!.id).intervalMs).toBe(20_000)
    // 5 s is below the contract's 10 s minimum: refused, the interval stays.
    await publishQos1(ops, topicFor(river!.id, 'config'), JSON.stringify({ v: 1, interval: 5 }))
    await eventually(async () => (deviceStats(river!.id).configsRejected === 1 ? true : undefined))
    expect(deviceStats(river!.id).intervalMs).toBe(20_000)
  })

  it('answers an invalid command with ok:false and a reason, and does nothing else', async () => {
    const ack = await command(river!.id, { v: 1, id: 'bad-1', name: 'self-destruct' })
    expect(ack.ok).toBe(false)
    expect(ack.error).toMatch(/invalid-command/)
    expect(deviceStats(river!.id).connected).toBe(true)
  })

  it('acknowledges reboot, then comes back with a birth saying why', async () => {
    const connectsBefore = deviceStats(crowd!.id).connects
    const ack = await command(crowd!.id, { v: 1, id: 'boot-1', name: 'reboot' })
    expect(ack).toMatchObject({ id: 'boot-1', ok: true })
    await eventually(
      async () => (deviceStats(crowd!.id).connects > connectsBefore ? true : undefined),
      10_000,
    )
    const statusTopic = topicFor(crowd!.id, 'status')
    const reasons = await eventually(async () => {
      const all = seen
        .filter((m) => m.topic === statusTopic)
        .map((m) => validateStatus(m.payload, { now: Date.now() }))
        .flatMap((r) => (r.ok ? [r.value.reason] : []))
      return all.includes('reboot-command') ? all : undefined
    })
    // power-on at start, the last will when the reset cut the connection, then the birth after the reboot.
    expect(reasons.slice(0, 1)).toEqual(['power-on'])
    expect(reasons).toContain('connection-lost')
    expect(reasons.indexOf('connection-lost')).toBeLessThan(reasons.indexOf('reboot-command'))
    expect(deviceStats(crowd!.id).reboots).toBe(1)
  })
})
