import { randomBytes } from 'node:crypto'
import mqtt from 'mqtt'
import { pino } from 'pino'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { brokerConfigFromEnv } from '../broker/config.ts'
import { createBroker, type PlatformBroker } from '../broker/index.ts'
import { ownBytes } from '../broker/shared-read-buffer.ts'
import { PlatformBus } from '../ingest/events.ts'
import { Ingest } from '../ingest/ingest.ts'
import { createMetrics } from '../ingest/metrics.ts'
import { type Device, hashSecret } from '../ingest/registry.ts'
import { RegistryReplica } from '../ingest/registry-replica.ts'
import { eventually, RIVER_DEVICE } from './helpers/platform.ts'

// Reads arrive as slices of 8 KiB slabs that many reads share (shared-read-buffer.ts); what the broker
// keeps for long must not be such a slice, or each kept message holds a whole slab. Driven in-process, so
// that Aedes's own copies can be looked at.

const SECRET = 'device-secret-0123456789abcdef'
const INTERNAL = { name: 'internal-ops', secret: 'internal-secret-0123456789abcdef' }

/** A Buffer that owns exactly its bytes, nothing around them. */
const ownsItsMemory = (b: Buffer) => b.byteOffset === 0 && b.buffer.byteLength === b.length

describe('what the broker keeps of a read', () => {
  let broker: PlatformBroker
  let url: string

  beforeAll(async () => {
    const key = randomBytes(32)
    const now = Date.now()
    const device: Device = {
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
      [{ device, secretHash: hashSecret(key, SECRET).toString('base64') }],
      () => undefined,
    )
    const log = pino({ level: 'silent' })
    const metrics = createMetrics()
    const bus = new PlatformBus()
    // Durability is not what this test is about: every append is durable at once.
    const spool = {
      appendWith: (readings: readonly unknown[], done: (err: undefined, n: number) => void) =>
        done(undefined, readings.length),
      full: false,
    }
    const ingest = new Ingest(
      { maxFutureSkewMs: 300_000, maxPayloadBytes: 65_536 },
      { spool, bus, metrics, log },
    )
    const config = brokerConfigFromEnv({
      MQTT_HOST: '127.0.0.1',
      MQTT_PORT: '0',
      MQTT_INTERNAL_CREDENTIALS: `${INTERNAL.name}:${INTERNAL.secret}`,
    })
    broker = await createBroker(config, { registry, ingest, bus, metrics, log })
    const addresses = await broker.start()
    url = `mqtt://127.0.0.1:${addresses.port}`
  })

  afterAll(async () => {
    await broker?.stop()
  })

  it('copies a bit of a slab into memory of its own', () => {
    const slab = Buffer.from('....last will....')
    const slice = slab.subarray(4, 13)
    const own = ownBytes(slice)
    expect(own.equals(slice)).toBe(true)
    expect(ownsItsMemory(slice)).toBe(false)
    expect(ownsItsMemory(own)).toBe(true)
  })

  it("keeps a device's last will and a retained config message in memory of their own", async () => {
    const will = JSON.stringify({ v: 1, online: false, reason: 'connection-lost' })
    const device = mqtt.connect(url, {
      clientId: RIVER_DEVICE.id,
      username: RIVER_DEVICE.id,
      password: SECRET,
      reconnectPeriod: 0,
      will: { topic: `devices/${RIVER_DEVICE.id}/status`, payload: Buffer.from(will), qos: 1, retain: false },
    })
    await new Promise((resolve, reject) => device.once('connect', resolve).once('error', reject))
    const aedes = broker.aedes as unknown as {
      clients: Record<string, { will?: { payload: Buffer } }>
      persistence: { createRetainedStream(pattern: string): AsyncIterable<{ payload: Buffer }> }
    }
    const kept = aedes.clients[RIVER_DEVICE.id]?.will?.payload
    expect(kept?.toString()).toBe(will)
    expect(ownsItsMemory(kept!)).toBe(true)

    const ops = mqtt.connect(url, {
      clientId: INTERNAL.name,
      username: INTERNAL.name,
      password: INTERNAL.secret,
      reconnectPeriod: 0,
    })
    await new Promise((resolve, reject) => ops.once('connect', resolve).once('error', reject))
    const config = JSON.stringify({ v: 1, interval: 300 })
    await ops.publishAsync(`devices/${RIVER_DEVICE.id}/config`, config, { qos: 1, retain: true })
    const retained = await eventually(async () => {
      const found: Buffer[] = []
      for await (const packet of aedes.persistence.createRetainedStream(`devices/${RIVER_DEVICE.id}/config`))
        found.push(packet.payload)
      return found.length > 0 ? found : undefined
    })
    expect(retained.map(String)).toEqual([config])
    expect(ownsItsMemory(retained[0]!)).toBe(true)
    ops.end(true)
    device.end(true)
  })
})
