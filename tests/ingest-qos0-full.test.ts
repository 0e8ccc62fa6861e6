import { randomBytes } from 'node:crypto'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import mqtt from 'mqtt'
import { pino } from 'pino'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { brokerConfigFromEnv } from '../broker/config.ts'
import { createBroker, type PlatformBroker } from '../broker/index.ts'
import { PlatformBus, type RejectedRecord } from '../ingest/events.ts'
import { Ingest } from '../ingest/ingest.ts'
import { createMetrics } from '../ingest/metrics.ts'
import { type Device, hashSecret } from '../ingest/registry.ts'
import { RegistryReplica } from '../ingest/registry-replica.ts'
import { SpoolLog } from '../ingest/spool.ts'
import { eventually, RIVER_DEVICE } from './helpers/platform.ts'
import { riverReading } from './helpers/readings.ts'

// Through a long store outage the spool reaches its disk limit, and QoS 1 devices are slowed down by
// holding their PUBACKs. QoS 0 has no acknowledgement to hold: its readings used to be written all the
// same, past the limit, each leaving a waiter in memory until the store came back. They are now rejected
// as `spool_full`, counted and kept like any rejection, and the spool stays where it was.

const SECRET = 'device-secret-0123456789abcdef'

describe('QoS 0 telemetry while the spool is at its disk limit', () => {
  let dir: string
  let spool: SpoolLog
  let broker: PlatformBroker
  let device: mqtt.MqttClient
  const rejected: RejectedRecord[] = []
  const metrics = createMetrics()

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'qos0-full-'))
    spool = SpoolLog.open({ dir, segmentBytes: 1024, maxBytes: 2000 })
    const key = randomBytes(32)
    const now = Date.now()
    const entry: Device = {
      ...RIVER_DEVICE,
      calibrationOffset: 0,
      status: 'active',
      createdAt: now,
      updatedAt: now,
      createdBy: 'test',
      updatedBy: 'test',
    }
    const registry = new RegistryReplica(
      key,
      [{ device: entry, secretHash: hashSecret(key, SECRET).toString('base64') }],
      () => undefined,
    )
    const log = pino({ level: 'silent' })
    const bus = new PlatformBus()
    bus.on('reading.rejected', (r) => rejected.push(r))
    const ingest = new Ingest(
      { maxFutureSkewMs: 300_000, maxPayloadBytes: 65_536 },
      { spool, bus, metrics, log },
    )
    broker = await createBroker(brokerConfigFromEnv({ MQTT_HOST: '127.0.0.1', MQTT_PORT: '0' }), {
      registry,
      ingest,
      bus,
      metrics,
      log,
    })
    const { port } = await broker.start()
    device = mqtt.connect(`mqtt://127.0.0.1:${port}`, {
      clientId: RIVER_DEVICE.id,
      username: RIVER_DEVICE.id,
      password: SECRET,
      reconnectPeriod: 0,
    })
    await new Promise((resolve, reject) => device.once('connect', resolve).once('error', reject))
  })

  afterAll(async () => {
    device?.end(true)
    await broker?.stop()
    await spool?.close().catch(() => undefined)
    rmSync(dir, { recursive: true, force: true })
  })

  const publishQos0 = async (seq: number) =>
    device.publishAsync(
      `devices/${RIVER_DEVICE.id}/telemetry`,
      JSON.stringify({ v: 1, seq, waterLevel: 120 + seq }),
      {
        qos: 0,
      },
    )

  it('rejects them as spool_full without writing them, and keeps them again once there is room', async () => {
    // The outage: readings stay unconfirmed until the spool is full; the last appends are held.
    let seq = 0
    const held: Array<Promise<void>> = []
    while (!spool.full && seq < 1000) {
      held.push(spool.append([riverReading(seq++)]))
      // Durable then, but past the limit not acknowledged: wait for the commit, not the append.
      await spool.flushed()
    }
    expect(spool.full).toBe(true)
    const bytes = spool.diskBytes
    const durable = spool.durableOffset

    for (let i = 0; i < 50; i++) await publishQos0(1000 + i)
    await eventually(async () => {
      expect(rejected.filter((r) => r.code === 'spool_full')).toHaveLength(50)
      return true
    })
    await spool.flushed()
    expect(spool.diskBytes).toBe(bytes)
    expect(spool.durableOffset).toBe(durable)
    const record = rejected.find((r) => r.code === 'spool_full')!
    expect(record.deviceId).toBe(RIVER_DEVICE.id)
    expect(record.payload).toContain('"seq":1000')
    const counted = (await metrics.registry.getSingleMetric('ingest_readings_rejected_total')?.get())?.values
    expect(counted?.find((v) => v.labels.reason === 'spool_full')?.value).toBe(50)

    // The store comes back and confirms everything: room again, the held appends are released.
    spool.commit(durable)
    await Promise.all(held)
    expect(spool.full).toBe(false)
    await publishQos0(2000)
    await eventually(async () => {
      expect(spool.durableOffset).toBe(durable + 1)
      return true
    })
    expect(rejected.filter((r) => r.code === 'spool_full')).toHaveLength(50)
  })
})
