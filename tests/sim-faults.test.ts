import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import {
  defineFleet,
  type FaultsInput,
  type SimDeviceSpec,
  type SimDeviceWithSecret,
  type SimulatorHandle,
  type SimulatorOptions,
  startSimulator,
} from '../device-sim/index.ts'
import type { RejectReason } from '../firmware-contracts/index.ts'
import { startTestPlatform, type TestPlatform } from './helpers/platform.ts'

/*
 * Each fault of the device simulator, switched on at a high rate against the whole platform in this
 * process, with the outcome the fault table in device-sim/README.md documents. For every fault, every seq
 * the simulator saw acknowledged in a valid payload is in the store, exactly once per timestamp.
 */

const INTERVAL_MS = 250
const RUN_MS = 3000
/** Per-device publish limits, set explicitly so that the flood test knows them (ignored by a broker without). */
const RATE_PER_SEC = 20
const BURST = 60
const FLOOD_LIMIT = 400

let platform: TestPlatform
const pool: SimDeviceSpec[] = defineFleet({ perKind: 12, seed: 7 })
const used = new Set<string>()

beforeAll(async () => {
  platform = await startTestPlatform({
    env: {
      MQTT_DEVICE_RATE_PER_SEC: String(RATE_PER_SEC),
      MQTT_DEVICE_BURST: String(BURST),
      MQTT_DEVICE_FLOOD_LIMIT: String(FLOOD_LIMIT),
    },
  })
})
afterAll(async () => {
  await platform?.close()
})

/** Fresh devices for one test, one of each kind in turn, registered like an installer would. */
async function register(count: number): Promise<SimDeviceWithSecret[]> {
  const out: SimDeviceWithSecret[] = []
  const kinds = ['river-level', 'air-quality', 'crowd-counter', 'rain-gauge']
  for (let i = 0; out.length < count; i++) {
    const kind = kinds[i % kinds.length]
    const spec = pool.find((s) => s.kind === kind && !used.has(s.id))
    if (spec === undefined) throw new Error('device pool exhausted')
    used.add(spec.id)
    const { secret } = await platform.registry.register(spec, 'test')
    out.push({ ...spec, secret })
  }
  return out
}

interface Run {
  readonly sim: SimulatorHandle
  readonly devices: SimDeviceWithSecret[]
  readonly startedAt: number
}

async function runWith(
  faults: FaultsInput,
  options: { devices?: number; runMs?: number; sim?: Partial<SimulatorOptions> } = {},
): Promise<Run> {
  const devices = await register(options.devices ?? 3)
  const startedAt = Date.now()
  const sim = await startSimulator({
    url: platform.mqttUrl,
    devices,
    intervalMs: INTERVAL_MS,
    seed: 11,
    faults,
    connectJitterMs: 100,
    reconnectPeriodMs: 200,
    ...options.sim,
  })
  await sim.ready(10_000)
  await new Promise((resolve) => setTimeout(resolve, options.runMs ?? RUN_MS))
  await sim.stop()
  expect(await platform.spool.whenDrained(15_000)).toBe(true)
  const stats = sim.stats()
  expect(stats.selfCheckFailures).toBe(0)
  return { sim, devices, startedAt }
}

async function storedRows(device: SimDeviceWithSecret, from: number) {
  return platform.store.queryDevice({
    kind: device.kind,
    device: device.id,
    from: from - 60_000,
    to: Date.now() + 3_600_000,
    limit: 1_000_000,
  })
}

/** Every acknowledged valid seq is stored, and no timestamp is stored twice. Returns the rows per device. */
async function expectAllAckedStored(run: Run) {
  const rowsById = new Map<string, Awaited<ReturnType<typeof storedRows>>>()
  for (const device of run.devices) {
    const rows = await storedRows(device, run.startedAt)
    rowsById.set(device.id, rows)
    const tss = rows.map((r) => r.ts)
    expect(new Set(tss).size, `${device.id}: a timestamp stored twice`).toBe(tss.length)
    const storedSeqs = new Map<number, number>()
    for (const r of rows) storedSeqs.set(r.seq, (storedSeqs.get(r.seq) ?? 0) + 1)
    const acked = run.sim.sent[device.id]!.toArray()
    const missing = acked.filter((s) => !storedSeqs.has(s))
    expect(missing, `${device.id}: acknowledged but not stored`).toEqual([])
    const twice = acked.filter((s) => (storedSeqs.get(s) ?? 0) > 1)
    expect(twice, `${device.id}: stored more than once`).toEqual([])
  }
  return rowsById
}

async function rejectedTotal(reason: RejectReason): Promise<number> {
  const res = await fetch(`${platform.httpUrl}/metrics`)
  const text = await res.text()
  const line = text
    .split('\n')
    .find((l) => l.startsWith(`ingest_readings_rejected_total{reason="${reason}"}`))
  return line === undefined ? 0 : Number(line.split(' ').pop())
}

async function commissioningCodes(deviceId: string): Promise<string[]> {
  const res = await platform.api<{ rejections: Array<{ code: string }> }>(
    'GET',
    `/api/v1/devices/${deviceId}/commissioning`,
  )
  expect(res.status).toBe(200)
  return res.body.rejections.map((r) => r.code)
}

/** A payload fault at rate 0.5: half the payloads are rejected with `reason`, the other half stored. */
async function expectRejectedAs(faults: FaultsInput, reason: RejectReason) {
  const before = await rejectedTotal(reason)
  const run = await runWith(faults)
  const expected = run.sim.rejected.filter((r) => r.reason === reason)
  expect(expected.length).toBeGreaterThan(0)
  // Only the fault's reason is expected (the simulator classifies every payload as it sends it).
  expect(new Set(run.sim.rejected.map((r) => r.reason))).toEqual(new Set([reason]))
  // Every rejection the simulator saw acknowledged was counted; one in flight at stop may add to it.
  expect((await rejectedTotal(reason)) - before).toBeGreaterThanOrEqual(expected.length)
  for (const device of run.devices) {
    if (!expected.some((r) => r.deviceId === device.id)) continue
    expect(await commissioningCodes(device.id)).toContain(reason)
  }
  const rows = await expectAllAckedStored(run)
  // No rejected reading slipped into the store.
  for (const r of expected) {
    const seqs = new Set(rows.get(r.deviceId)!.map((row) => row.seq))
    for (const seq of r.seqs)
      expect(seqs.has(seq), `${r.deviceId} seq ${seq} rejected yet stored`).toBe(false)
  }
  expect(run.sim.stats().ackedReadings).toBeGreaterThan(0)
}

describe('simulator faults at the platform', () => {
  it('malformedJson: acknowledged, rejected invalid_json, shown in commissioning and /metrics', async () => {
    await expectRejectedAs({ malformedJson: { rate: 0.5 } }, 'invalid_json')
  })

  it('schemaViolation: rejected schema', async () => {
    await expectRejectedAs({ schemaViolation: { rate: 0.5 } }, 'schema')
  })

  it('outOfRange: rejected out_of_range', async () => {
    await expectRejectedAs({ outOfRange: { rate: 0.5 } }, 'out_of_range')
  })

  it('clockSkew into the future: rejected future_timestamp', async () => {
    await expectRejectedAs({ clockSkew: { rate: 0.5, skewMs: 600_000 } }, 'future_timestamp')
  })

  it('oversized (256 KiB): rejected too_large, the broker stays up', async () => {
    await expectRejectedAs({ oversized: { rate: 0.3, bytes: 256 * 1024 } }, 'too_large')
    const health = await platform.api<{ status: string }>('GET', '/api/v1/health')
    expect(health.status).toBe(200)
  })

  it('duplicate: both copies acknowledged, each reading stored once', async () => {
    const run = await runWith({ duplicate: { rate: 0.5 } })
    const stats = run.sim.stats()
    expect(stats.faults.duplicate).toBeGreaterThan(0)
    // Two publishes per duplicated reading, all acknowledged.
    expect(stats.acked).toBeGreaterThan(stats.ackedReadings - stats.faults.duplicate)
    const rows = await expectAllAckedStored(run)
    for (const device of run.devices) {
      const seqs = rows.get(device.id)!.map((r) => r.seq)
      expect(new Set(seqs).size, `${device.id}: a seq stored twice`).toBe(seqs.length)
      expect(seqs.length).toBe(run.sim.sent[device.id]!.size)
    }
  })

  it('offline: the backlog arrives later as a batch and every reading is stored with its own ts', async () => {
    const run = await runWith({ offline: { rate: 0.15, durationMs: 1200 } }, { runMs: 4000 })
    const stats = run.sim.stats()
    expect(stats.faults.offline).toBeGreaterThan(0)
    const rows = await expectAllAckedStored(run)
    // Late data: some readings reached the platform well after their own timestamp.
    const late = [...rows.values()].flat().filter((r) => r.receivedAt - r.ts >= 800)
    expect(late.length).toBeGreaterThan(0)
    for (const device of run.devices) {
      const s = stats.perDevice.find((d) => d.id === device.id)!
      // Nothing measured was dropped: every reading but those still unsent at stop was acknowledged.
      expect(run.sim.sent[device.id]!.size).toBe(s.ackedReadings)
    }
  })

  it('disconnect: devices reconnect and keep publishing; nothing acknowledged is lost', async () => {
    const run = await runWith({ disconnect: { ratePerMin: 20 } }, { runMs: 4000 })
    const stats = run.sim.stats()
    expect(stats.faults.disconnect).toBeGreaterThan(0)
    expect(stats.reconnects).toBeGreaterThan(0)
    await expectAllAckedStored(run)
    for (const s of stats.perDevice) {
      if (s.faults.disconnect === 0) continue
      expect(s.connects, s.id).toBeGreaterThan(1)
      // Still publishing after reconnecting: the latest acknowledged seq is near the latest reading.
      expect(s.lastSeqAcked, s.id).toBeGreaterThanOrEqual(s.readings - 1 - Math.ceil(1000 / INTERVAL_MS) * 2)
    }
  })

  it('flood: the device is throttled, the platform keeps serving the others and stores everything acknowledged', async () => {
    const run = await runWith(
      { flood: { rate: 0.2, durationMs: 2000, maxInflight: 100 } },
      { devices: 4, runMs: 4000 },
    )
    const stats = run.sim.stats()
    expect(stats.faults.flood).toBeGreaterThan(0)
    const flooders = stats.perDevice.filter((d) => d.faults.flood > 0)
    const others = stats.perDevice.filter((d) => d.faults.flood === 0)
    expect(others.length).toBeGreaterThan(0)
    // Other devices kept their schedule: most of their readings were acknowledged.
    for (const s of others) expect(s.ackedReadings, s.id).toBeGreaterThanOrEqual(Math.floor(s.readings * 0.7))
    await expectAllAckedStored(run)
    // The broker limits each device: a flood is slowed down (acks held) or cut off, never served at full
    // speed (unlimited, an in-process broker acknowledges thousands of messages in the flood's 2 s).
    for (const s of flooders) {
      const allowance = BURST + RATE_PER_SEC * ((4000 + 5000) / 1000) + FLOOD_LIMIT
      expect(s.acked, `${s.id}: acknowledged messages`).toBeLessThanOrEqual(allowance)
    }
    const health = await platform.api<{ status: string }>('GET', '/api/v1/health')
    expect(health.status).toBe(200)
  })
})
