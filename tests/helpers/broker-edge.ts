import { randomBytes } from 'node:crypto'
import { connect, type Socket } from 'node:net'
import mqttPacket from 'mqtt-packet'
import { pino } from 'pino'
import { brokerConfigFromEnv } from '../../broker/config.ts'
import { createBroker, type PlatformBroker } from '../../broker/index.ts'
import { type DeviceStatusEvent, PlatformBus, type RejectedRecord } from '../../ingest/events.ts'
import { Ingest, type IngestDone } from '../../ingest/ingest.ts'
import { createMetrics, type PlatformMetrics } from '../../ingest/metrics.ts'
import { type Device, hashSecret } from '../../ingest/registry.ts'
import { RegistryReplica } from '../../ingest/registry-replica.ts'
import type { StoredReading } from '../../ingest/store/types.ts'
import { RIVER_DEVICE } from './platform.ts'

// The broker in this process, on a port from the OS, with a spool whose commits a test releases: what the
// broker does while a reading is on its way to disk can be looked at exactly, not raced against.

/** A spool whose commits wait while held; `stored` holds what was committed, in order. */
export class HeldSpool {
  readonly stored: StoredReading[] = []
  readonly full = false
  private held = false
  private readonly queue: Array<() => void> = []

  appendWith(readings: readonly StoredReading[], done: IngestDone): void {
    const commit = () => {
      this.stored.push(...readings)
      done(undefined, readings.length)
    }
    if (this.held) this.queue.push(commit)
    else setImmediate(commit)
  }

  hold(): void {
    this.held = true
  }

  /** Appends waiting for their commit. */
  get waiting(): number {
    return this.queue.length
  }

  releaseNext(): void {
    this.queue.shift()?.()
  }

  release(): void {
    this.held = false
    for (const commit of this.queue.splice(0)) commit()
  }

  seqs(): Array<number | undefined> {
    return this.stored.map((r) => r.seq)
  }
}

export const EDGE_SECRET = 'device-secret-0123456789abcdef'
export const EDGE_INTERNAL = { name: 'internal-ops', secret: 'internal-secret-0123456789abcdef' }

export interface EdgeBroker {
  readonly broker: PlatformBroker
  readonly port: number
  readonly spool: HeldSpool
  readonly metrics: PlatformMetrics
  readonly statuses: DeviceStatusEvent[]
  readonly rejected: RejectedRecord[]
  /** A registered, active river gauge with EDGE_SECRET. */
  addDevice(id: string): Device
  /** The registry gives the device a new secret (as POST /devices/:id/rotate does). */
  rotate(id: string, secret: string): void
  /** The registry revokes the device. */
  revoke(id: string): void
  /** The registry decommissions the device. */
  decommission(id: string): void
  /** A decommissioned id registered again (a new record and secret), as POST /devices does. */
  reregister(id: string, secret: string): Device
  close(): Promise<void>
}

export async function startEdgeBroker(env: Record<string, string> = {}): Promise<EdgeBroker> {
  const key = randomBytes(32)
  const registry = new RegistryReplica(key, [], () => undefined)
  const hashOf = (secret: string) => hashSecret(key, secret).toString('base64')
  const log = pino({ level: process.env.TEST_LOG_LEVEL ?? 'silent' })
  const metrics = createMetrics()
  const bus = new PlatformBus()
  const statuses: DeviceStatusEvent[] = []
  const rejected: RejectedRecord[] = []
  bus.on('device.status', (e) => statuses.push(e))
  bus.on('reading.rejected', (r) => rejected.push(r))
  const spool = new HeldSpool()
  const ingest = new Ingest(
    { maxFutureSkewMs: 300_000, maxPayloadBytes: 65_536 },
    { spool, bus, metrics, log },
  )
  const config = brokerConfigFromEnv({
    MQTT_HOST: '127.0.0.1',
    MQTT_PORT: '0',
    MQTT_INTERNAL_CREDENTIALS: `${EDGE_INTERNAL.name}:${EDGE_INTERNAL.secret}`,
    ...env,
  })
  const broker = await createBroker(config, { registry, ingest, bus, metrics, log })
  const { port } = await broker.start()
  const devices = new Map<string, { device: Device; secretHash: string }>()
  return {
    broker,
    port,
    spool,
    metrics,
    statuses,
    rejected,
    addDevice(id) {
      const now = Date.now()
      const device: Device = {
        ...RIVER_DEVICE,
        id,
        calibrationOffset: 0,
        status: 'active',
        createdAt: now,
        updatedAt: now,
        createdBy: 'test',
        updatedBy: 'test',
      }
      const entry = { device, secretHash: hashOf(EDGE_SECRET) }
      devices.set(id, entry)
      registry.apply({ action: 'register', device }, entry)
      return device
    },
    rotate(id, secret) {
      const entry = { device: devices.get(id)!.device, secretHash: hashOf(secret) }
      devices.set(id, entry)
      registry.apply({ action: 'rotate-secret', device: entry.device }, entry)
    },
    revoke(id) {
      const old = devices.get(id)!
      const entry = { ...old, device: { ...old.device, status: 'revoked' as const } }
      devices.set(id, entry)
      registry.apply({ action: 'status', device: entry.device }, entry)
    },
    decommission(id) {
      const old = devices.get(id)!
      const entry = { ...old, device: { ...old.device, status: 'decommissioned' as const } }
      devices.set(id, entry)
      registry.apply({ action: 'status', device: entry.device }, entry)
    },
    reregister(id, secret) {
      const now = Date.now()
      const device: Device = {
        ...devices.get(id)!.device,
        status: 'provisioned',
        createdAt: now,
        updatedAt: now,
      }
      const entry = { device, secretHash: hashOf(secret) }
      devices.set(id, entry)
      registry.apply({ action: 'register', device }, entry)
      return device
    },
    close: () => broker.stop(),
  }
}

type Packet = mqttPacket.Packet & Record<string, unknown>

/** One MQTT connection on a raw socket: every packet it sends is spelled out, every packet back is kept. */
export class RawMqtt {
  readonly received: Packet[] = []
  closed = false
  private readonly taken = new Set<Packet>()
  private readonly listeners = new Set<() => void>()
  readonly whenClosed: Promise<void>

  private constructor(readonly socket: Socket) {
    const parser = mqttPacket.parser({ protocolVersion: 4 })
    parser.on('packet', (p) => {
      this.received.push(p as Packet)
      for (const l of this.listeners) l()
    })
    parser.on('error', () => socket.destroy())
    socket.on('data', (d) => parser.parse(d))
    socket.on('error', () => undefined)
    this.whenClosed = new Promise((resolve) =>
      socket.once('close', () => {
        this.closed = true
        for (const l of this.listeners) l()
        resolve()
      }),
    )
  }

  static async open(port: number): Promise<RawMqtt> {
    const socket = connect(port, '127.0.0.1')
    socket.setNoDelay(true)
    await new Promise<void>((resolve, reject) => socket.once('connect', resolve).once('error', reject))
    return new RawMqtt(socket)
  }

  /** Opens a connection and sends CONNECT as `id` (client id = username), resolving with the CONNACK. */
  static async connect(
    port: number,
    id: string,
    options: { secret?: string; clean?: boolean; will?: Record<string, unknown> } = {},
  ): Promise<{ client: RawMqtt; returnCode: number | undefined }> {
    const client = await RawMqtt.open(port)
    client.send({
      cmd: 'connect',
      protocolId: 'MQTT',
      protocolVersion: 4,
      clean: options.clean ?? true,
      clientId: id,
      keepalive: 60,
      username: id,
      password: Buffer.from(options.secret ?? EDGE_SECRET),
      ...(options.will && { will: options.will }),
    })
    const connack = await client.next('connack')
    return { client, returnCode: connack.returnCode as number | undefined }
  }

  send(packet: Record<string, unknown>, options?: { protocolVersion: number }): void {
    this.socket.write(mqttPacket.generate(packet as unknown as mqttPacket.Packet, options))
  }

  /** The first packet of this kind (and match) not taken yet; waits for it. Rejects if the connection closes. */
  next(cmd: string, match: (p: Packet) => boolean = () => true, timeoutMs = 5000): Promise<Packet> {
    return new Promise((resolve, reject) => {
      const look = () => {
        const found = this.received.find((p) => p.cmd === cmd && !this.taken.has(p) && match(p))
        if (found !== undefined) {
          this.taken.add(found)
          done()
          resolve(found)
        } else if (this.closed) {
          done()
          reject(new Error(`connection closed before ${cmd}`))
        }
      }
      const timer = setTimeout(() => {
        done()
        reject(new Error(`no ${cmd} within ${timeoutMs} ms`))
      }, timeoutMs)
      const done = () => {
        clearTimeout(timer)
        this.listeners.delete(look)
      }
      this.listeners.add(look)
      look()
    })
  }

  /** Packets of this kind received so far, taken or not. */
  count(cmd: string, match: (p: Packet) => boolean = () => true): number {
    return this.received.filter((p) => p.cmd === cmd && match(p)).length
  }

  destroy(): Promise<void> {
    this.socket.destroy()
    return this.whenClosed
  }
}

/** A telemetry PUBLISH of one river reading, numbered `seq`, without a timestamp (the broker stamps it). */
export function telemetry(
  id: string,
  seq: number,
  options: { qos?: number; messageId?: number; dup?: boolean } = {},
): Record<string, unknown> {
  return {
    cmd: 'publish',
    topic: `devices/${id}/telemetry`,
    payload: Buffer.from(JSON.stringify({ v: 1, seq, waterLevel: 100 + seq })),
    qos: options.qos ?? 2,
    messageId: options.messageId ?? 1,
    dup: options.dup ?? false,
    retain: false,
  }
}

export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms))
