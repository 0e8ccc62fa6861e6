import { createServer, type Server } from 'node:net'
import { Aedes } from 'aedes'
import fc from 'fast-check'
import { generate } from 'mqtt-packet'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import {
  defineFleet,
  runLoad,
  type SimDeviceWithSecret,
  type SimulatorHandle,
  type SimulatorOptions,
  startSimulator,
} from '../device-sim/index.ts'
import { encodePublish } from '../device-sim/load.ts'
import { parseTopic, validateStatus, validateTelemetry } from '../firmware-contracts/index.ts'

/** What the broker saw, per device: every publish in order, and the credentials of every CONNECT. */
interface Seen {
  readonly topic: string
  readonly payload: Buffer
  readonly at: number
}

interface TestBroker {
  readonly url: string
  readonly seen: Map<string, Seen[]>
  readonly logins: Array<{ clientId: string; username: string | undefined; password: string | undefined }>
  close(): Promise<void>
}

async function startBroker(secrets: ReadonlyMap<string, string>): Promise<TestBroker> {
  const logins: TestBroker['logins'] = []
  const broker = await Aedes.createBroker({
    authenticate(client, username, password, done) {
      logins.push({ clientId: client.id, username, password: password?.toString() })
      done(
        null,
        username === client.id && password !== undefined && secrets.get(client.id) === password.toString(),
      )
    },
  })
  const seen = new Map<string, Seen[]>()
  broker.on('publish', (packet, client) => {
    if (client === null) return
    const list = seen.get(client.id) ?? []
    list.push({ topic: packet.topic, payload: Buffer.from(packet.payload), at: Date.now() })
    seen.set(client.id, list)
  })
  const server: Server = createServer(broker.handle)
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const address = server.address()
  if (address === null || typeof address === 'string') throw new Error('no address')
  return {
    url: `mqtt://127.0.0.1:${address.port}`,
    seen,
    logins,
    close: async () => {
      await new Promise<void>((resolve) => broker.close(() => resolve()))
      await new Promise<void>((resolve) => server.close(() => resolve()))
    },
  }
}

async function waitFor(condition: () => boolean, timeoutMs = 15_000, what = 'condition'): Promise<void> {
  const deadline = Date.now() + timeoutMs
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`)
    await new Promise((resolve) => setTimeout(resolve, 20))
  }
}

function withSecrets(specs: ReturnType<typeof defineFleet>): SimDeviceWithSecret[] {
  return specs.map((spec) => ({ ...spec, secret: `s3cret-${spec.id}-${spec.id.length}` }))
}

/** Readings (from single messages and batches) the broker received on a device's telemetry topic. */
function telemetrySeqs(seen: readonly Seen[] | undefined, kind: string): number[] {
  const seqs: number[] = []
  for (const s of seen ?? []) {
    const topic = parseTopic(s.topic)
    if (!topic.ok || topic.channel !== 'telemetry') continue
    const result = validateTelemetry(kind, s.payload, { now: s.at })
    if (result.ok) seqs.push(...result.readings.map((r) => r.seq))
  }
  return seqs
}

function statuses(seen: readonly Seen[] | undefined) {
  return (seen ?? [])
    .filter((s) => s.topic.endsWith('/status'))
    .map((s) => {
      const result = validateStatus(s.payload, { now: s.at })
      if (!result.ok) throw new Error(`bad status ${s.payload.toString()}: ${result.rejection.message}`)
      return result.value
    })
}

const fleet = withSecrets(defineFleet({ perKind: 2, seed: 11 }))
const secrets = new Map(fleet.map((d) => [d.id, d.secret]))
let broker: TestBroker
const running: SimulatorHandle[] = []

async function simulate(options: Omit<SimulatorOptions, 'url'>): Promise<SimulatorHandle> {
  const sim = await startSimulator({
    url: broker.url,
    connectJitterMs: 50,
    reconnectPeriodMs: 200,
    ...options,
  })
  running.push(sim)
  return sim
}

beforeAll(async () => {
  broker = await startBroker(secrets)
})

afterAll(async () => {
  await Promise.all(running.map((s) => s.stop()))
  await broker.close()
})

describe('simulator against a real Aedes broker', () => {
  it('connects with its credentials, sends a birth, then telemetry with increasing seq, and records acks', async () => {
    const devices = fleet.filter((d) => d.id === 'dps-river-001' || d.id === 'dps-crowd-001')
    const sim = await simulate({ devices, intervalMs: 100, seed: 3 })
    await sim.ready(10_000)
    await waitFor(
      () => devices.every((d) => telemetrySeqs(broker.seen.get(d.id), d.kind).length >= 8),
      15_000,
      'eight readings per device',
    )
    await sim.stop()

    for (const device of devices) {
      expect(broker.logins).toContainEqual({
        clientId: device.id,
        username: device.id,
        password: device.secret,
      })
      const seen = broker.seen.get(device.id)!
      expect(seen[0]!.topic).toBe(`devices/${device.id}/status`)
      const status = statuses(seen)
      expect(status[0]).toMatchObject({ online: true, reason: 'power-on' })
      expect(status.at(-1)).toMatchObject({ online: false, reason: 'shutdown' })

      const seqs = telemetrySeqs(seen, device.kind)
      expect(seqs.length).toBeGreaterThanOrEqual(8)
      for (let i = 1; i < seqs.length; i++) expect(seqs[i]).toBeGreaterThan(seqs[i - 1]!)
      expect(seqs[0]).toBe(0)

      // Every acknowledged seq reached the broker; after a clean stop, everything sent was acknowledged.
      const acked = sim.sent[device.id]!
      expect(acked.size).toBe(seqs.length)
      for (const seq of acked.toArray()) expect(seqs).toContain(seq)
      const stats = sim.stats().perDevice.find((s) => s.id === device.id)!
      expect(stats.errors).toBe(0)
      expect(stats.acked).toBe(stats.published)
      expect(stats.lastSeqAcked).toBe(seqs.at(-1))
    }
    expect(sim.stats().selfCheckFailures).toBe(0)
    expect(sim.rejected).toEqual([])
  })

  it('does not connect with a wrong secret, and counts the refusals instead of crashing', async () => {
    const device = { ...fleet.find((d) => d.id === 'dps-rain-001')!, secret: 'wrong' }
    const sim = await simulate({ devices: [device], intervalMs: 100 })
    await expect(sim.ready(1500)).rejects.toThrow(/dps-rain-001/)
    await waitFor(() => sim.stats().errors > 0, 5000, 'an error')
    expect(sim.stats().connected).toBe(0)
    expect(sim.stats().acked).toBe(0)
    await sim.stop()
  })

  it('sends payloads that the platform must reject, and says why it expects so', async () => {
    const device = fleet.find((d) => d.id === 'dps-air-001')!
    const sim = await simulate({
      devices: [device],
      intervalMs: 50,
      faults: {
        malformedJson: { rate: 0.3 },
        outOfRange: { rate: 0.3 },
        clockSkew: { rate: 0.3, skewMs: 3_600_000 },
      },
    })
    await waitFor(
      () => new Set(sim.rejected.map((r) => r.reason)).size === 3,
      15_000,
      'three kinds of rejection',
    )
    await sim.stop()
    const byFault = new Map(sim.rejected.map((r) => [r.fault, r.reason]))
    expect(byFault.get('malformedJson')).toBe('invalid_json')
    expect(byFault.get('outOfRange')).toBe('out_of_range')
    expect(byFault.get('clockSkew')).toBe('future_timestamp')
    // What the broker received agrees: the stored seqs are exactly the valid payloads.
    const valid = telemetrySeqs(broker.seen.get(device.id), device.kind)
    expect(sim.sent[device.id]!.toArray()).toEqual(valid)
    for (const r of sim.rejected) for (const seq of r.seqs) expect(valid).not.toContain(seq)
  })

  it('sends duplicates twice and an offline backlog as a batch, after the last will', async () => {
    const duplicating = fleet.find((d) => d.id === 'dps-crowd-002')!
    const offline = fleet.find((d) => d.id === 'dps-river-002')!
    const sim = await simulate({
      devices: [duplicating, offline],
      intervalMs: 60,
      faults: { duplicate: { rate: 1 }, offline: { rate: 0.15, durationMs: 400 } },
    })
    const isBatch = (s: Seen) =>
      s.topic.endsWith('/telemetry') && s.payload.toString().startsWith('{"v":1,"readings":[')
    await waitFor(() => (broker.seen.get(offline.id) ?? []).some(isBatch), 20_000, 'a backlog batch')
    await waitFor(
      () =>
        telemetrySeqs(
          (broker.seen.get(duplicating.id) ?? []).filter((s) => !isBatch(s)),
          duplicating.kind,
        ).length >= 6,
      10_000,
      'duplicates',
    )
    await sim.stop()

    // Faults apply to every device, so this one goes offline too: its backlog batches are sent once.
    const singles = (broker.seen.get(duplicating.id) ?? []).filter((s) => !isBatch(s))
    const dupSeqs = telemetrySeqs(singles, duplicating.kind)
    const counts = new Map<number, number>()
    for (const seq of dupSeqs) counts.set(seq, (counts.get(seq) ?? 0) + 1)
    expect(counts.size).toBeGreaterThanOrEqual(2)
    expect([...counts.values()].every((n) => n === 2)).toBe(true)

    const seen = broker.seen.get(offline.id)!
    const will = statuses(seen).find((s) => s.online === false && s.reason === 'connection-lost')
    expect(will).toBeDefined()
    const batch = seen.find(isBatch)!
    const result = validateTelemetry(offline.kind, batch.payload, { now: batch.at })
    expect(result.ok).toBe(true)
    if (result.ok) {
      expect(result.readings.length).toBeGreaterThanOrEqual(1)
      for (const r of result.readings) expect(r.ts!).toBeLessThanOrEqual(batch.at)
    }
    const stats = sim.stats().perDevice.find((s) => s.id === offline.id)!
    expect(stats.faults.offline).toBeGreaterThanOrEqual(1)
    expect(stats.connects).toBeGreaterThanOrEqual(2)
    // No reading is lost to an offline spell: the broker got every seq up to the last one it saw (those
    // still in the backlog when the simulator stopped never left the device).
    const offlineSeqs = [...new Set(telemetrySeqs(seen, offline.kind))].sort((a, b) => a - b)
    expect(offlineSeqs).toEqual(Array.from({ length: offlineSeqs.length }, (_, i) => i))
    expect(sim.sent[offline.id]!.toArray()).toEqual(offlineSeqs)
  })

  it('drops the connection abruptly, so the broker sends the last will, then reconnects and carries on', async () => {
    const device = fleet.find((d) => d.id === 'dps-air-002')!
    const sim = await simulate({
      devices: [device],
      intervalMs: 100,
      faults: { disconnect: { ratePerMin: 60 } },
    })
    await waitFor(
      () => statuses(broker.seen.get(device.id)).some((s) => s.online && s.reason === 'reconnect'),
      20_000,
      'a reconnect',
    )
    await waitFor(() => sim.stats().acked >= 3, 10_000, 'readings after the reconnect')
    await sim.stop()
    const status = statuses(broker.seen.get(device.id))
    expect(status).toContainEqual(expect.objectContaining({ online: false, reason: 'connection-lost' }))
    const stats = sim.stats()
    expect(stats.faults.disconnect).toBeGreaterThanOrEqual(1)
    expect(stats.reconnects).toBeGreaterThanOrEqual(1)
    expect(stats.disconnects).toBeGreaterThanOrEqual(1)
    const seqs = [...new Set(telemetrySeqs(broker.seen.get(device.id), device.kind))].sort((a, b) => a - b)
    expect(seqs).toEqual(Array.from({ length: seqs.length }, (_, i) => i))
  })

  it('runs signal time faster than the clock while stamping readings with wall time', async () => {
    const device = fleet.find((d) => d.id === 'dps-crowd-002')!
    // 02:00 WITA on a market day; ten signal hours pass per real second.
    const signalStart = Date.UTC(2025, 0, 6, 18)
    const start = Date.now()
    const sim = await simulate({ devices: [device], intervalMs: 100, timeScale: 36_000, signalStart })
    const occupied = () =>
      (broker.seen.get(device.id) ?? []).some((s) => {
        if (!s.topic.endsWith('/telemetry') || s.at < start) return false
        const r = validateTelemetry(device.kind, s.payload, { now: s.at })
        return r.ok && r.readings.some((reading) => (reading.fields.occupancy ?? 0) > 0)
      })
    await waitFor(occupied, 10_000, 'a busy morning market')
    await sim.stop()
    for (const s of broker.seen.get(device.id) ?? []) {
      if (!s.topic.endsWith('/telemetry') || s.at < start) continue
      const r = validateTelemetry(device.kind, s.payload, { now: s.at })
      if (r.ok) for (const reading of r.readings) expect(Math.abs(reading.ts! - s.at)).toBeLessThan(5000)
    }
  })

  it('floods from one device while the broker keeps up, then returns to normal', async () => {
    const device = fleet.find((d) => d.id === 'dps-rain-002')!
    const sim = await simulate({
      devices: [device],
      intervalMs: 100,
      faults: { flood: { rate: 1, durationMs: 300, maxMessages: 500, maxInflight: 50 } },
    })
    await waitFor(() => sim.stats().faults.flood >= 1 && sim.stats().acked >= 500, 15_000, 'a flood')
    await sim.stop()
    const seqs = telemetrySeqs(broker.seen.get(device.id), device.kind)
    expect(seqs.length).toBeGreaterThanOrEqual(500)
    expect(sim.stats().selfCheckFailures).toBe(0)
    expect(sim.sent[device.id]!.size).toBe(new Set(seqs).size)
  })
})

describe('load mode against a real Aedes broker', () => {
  it('leaves publishes of the warm-up out of the steady-state latency, and only those', async () => {
    const report = await runLoad({
      url: broker.url,
      devices: fleet.slice(0, 4),
      ratePerSec: 400,
      durationMs: 1000,
      warmupMs: 500,
      qos: 1,
      firstSeq: 50_000,
    })
    expect(report.acked).toBe(400)
    expect(report.latencyAll.count).toBe(400)
    // About half the publishes fall in the first 500 ms of a 1 s window sent at an even rate.
    expect(report.latency.count).toBeGreaterThan(100)
    expect(report.latency.count).toBeLessThan(300)
  })

  it('publishes the configured number of messages and records every acknowledged seq', async () => {
    const devices = fleet.slice(0, 8)
    const before = new Map(devices.map((d) => [d.id, telemetrySeqs(broker.seen.get(d.id), d.kind).length]))
    const report = await runLoad({ url: broker.url, devices, ratePerSec: 400, durationMs: 1000, qos: 1 })
    expect(report.devices).toEqual({ requested: 8, connected: 8, failed: 0 })
    expect(report.target.messages).toBe(400)
    expect(report.sent).toBe(400)
    expect(report.acked).toBe(400)
    expect(report.unacked).toBe(0)
    expect(report.latency.count).toBe(400)
    expect(report.latencyAll.count).toBe(400)
    expect(report.latency.p99Ms).toBeGreaterThanOrEqual(report.latency.p50Ms)
    let received = 0
    let total = 0
    for (const device of devices) {
      const acked = report.ackedSeqs[device.id]!
      // Round-robin: every device gets about its share (a device whose socket is busy is skipped for a
      // turn), numbered from 0 without gaps.
      expect(acked.size).toBeGreaterThan(40)
      expect(acked.size).toBeLessThan(60)
      expect(acked.ranges()).toEqual([[0, acked.size - 1]])
      total += acked.size
      received += telemetrySeqs(broker.seen.get(device.id), device.kind).length - before.get(device.id)!
    }
    expect(total).toBe(400)
    expect(received).toBe(400)
  })

  it('sends several publishes to one device within a tick, each acknowledged once', async () => {
    const devices = fleet.slice(0, 2)
    // 2,000/s over 2 devices in 5 ms ticks: about 5 publishes per device per tick, corked into one write.
    // A window large enough that a slow broker (a loaded test machine) never holds the generator back.
    const report = await runLoad({
      url: broker.url,
      devices,
      ratePerSec: 2000,
      durationMs: 500,
      qos: 1,
      maxInflightPerDevice: 1000,
    })
    expect(report.sent).toBe(1000)
    expect(report.acked).toBe(1000)
    for (const device of devices) {
      const acked = report.ackedSeqs[device.id]!
      expect(acked.ranges()).toEqual([[0, acked.size - 1]])
    }
  })

  it('encodes PUBLISH packets byte for byte as mqtt-packet does', () => {
    fc.assert(
      fc.property(
        fc.string({ unit: 'grapheme', minLength: 1, maxLength: 300 }),
        fc.string({ unit: 'grapheme', maxLength: 20_000 }),
        fc.constantFrom(0 as const, 1 as const),
        fc.integer({ min: 1, max: 65_535 }),
        (topic, payload, qos, messageId) => {
          const field = Buffer.alloc(2 + Buffer.byteLength(topic))
          field.writeUInt16BE(Buffer.byteLength(topic))
          field.write(topic, 2)
          const expected = generate({
            cmd: 'publish',
            topic,
            payload,
            qos,
            messageId,
            retain: false,
            dup: false,
          })
          expect(encodePublish(field, payload, qos, messageId).equals(expected)).toBe(true)
        },
      ),
      { numRuns: 300 },
    )
  })

  it('stops at maxMessages and reports devices it could not connect', async () => {
    const devices = [
      ...fleet.slice(0, 3),
      { id: 'dps-river-999', kind: 'river-level' as const, secret: 'nope' },
    ]
    const report = await runLoad({
      url: broker.url,
      devices,
      ratePerSec: 1000,
      durationMs: 2000,
      maxMessages: 123,
    })
    expect(report.devices).toEqual({ requested: 4, connected: 3, failed: 1 })
    expect(report.firstConnectError).toMatch(/dps-river-999/)
    expect(report.sent).toBe(123)
    expect(report.acked).toBe(123)
  })
})
