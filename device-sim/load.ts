import { connect as netConnect, type Socket } from 'node:net'
import { performance } from 'node:perf_hooks'
import { generate, type Packet, parser } from 'mqtt-packet'
import { z } from 'zod'
import {
  DEVICE_KINDS,
  DeviceIdSchema,
  type DeviceKind,
  DeviceKindSchema,
  topicFor,
} from '../firmware-contracts/index.ts'
import { LatencyHistogram, type LatencySummary } from './histogram.ts'
import { SeqSet } from './seq-set.ts'
import { initialSignalState, sampleMetrics } from './signals.ts'
import type { SimLogger } from './simulator.ts'

/*
 * Load mode: thousands of devices from one process at a fixed total rate. mqtt.js costs a stream pipeline,
 * a store and timers per client; here a device is a raw socket, an mqtt-packet parser and a small map of
 * in-flight message ids, so the generator stays a small share of a 2-core machine.
 */

export const LoadDeviceSchema = z.object({
  id: DeviceIdSchema,
  kind: DeviceKindSchema,
  secret: z.string().min(1).max(512),
})
export type LoadDevice = z.infer<typeof LoadDeviceSchema>

export const LoadOptionsSchema = z.object({
  url: z
    .string()
    .regex(/^mqtt:\/\/[^\s/:]+(:\d+)?\/?$/, 'url: load mode speaks plain TCP, mqtt://host:port')
    .default('mqtt://127.0.0.1:1883'),
  devices: z.array(LoadDeviceSchema).min(1).max(100_000),
  /** Total messages per second over all devices. */
  ratePerSec: z.number().positive().max(1_000_000),
  durationMs: z.number().int().min(1).max(3_600_000),
  qos: z.union([z.literal(0), z.literal(1)]).default(1),
  /** Contract of the payloads: each device's own kind, or one kind for all (air-quality is the heaviest). */
  payloadKind: z.enum([...DEVICE_KINDS, 'device']).default('device'),
  /** Defaults to ratePerSec × duration. */
  maxMessages: z.number().int().min(1).max(100_000_000).optional(),
  maxInflightPerDevice: z.number().int().min(1).max(65_535).default(64),
  connectConcurrency: z.number().int().min(1).max(10_000).default(100),
  connectTimeoutMs: z.number().int().min(100).max(600_000).default(30_000),
  /** After the last publish, how long to wait for outstanding PUBACKs. */
  drainTimeoutMs: z.number().int().min(0).max(600_000).default(10_000),
  keepaliveSec: z.number().int().min(0).max(65_535).default(60),
  tickMs: z.number().int().min(1).max(100).default(5),
  firstSeq: z.number().int().min(0).default(0),
  /**
   * Publishes sent in the first `warmupMs` of the send window count everywhere except `latency` (they are
   * in `latencyAll`): steady-state latency without the connection burst and the broker's first moments.
   */
  warmupMs: z.number().int().min(0).max(600_000).default(0),
  seed: z.number().int().default(1),
  /** Signal time the payload values are taken at (values are fixed per device during a run). */
  signalTime: z.number().int().optional(),
  log: z.custom<SimLogger>((v) => typeof v === 'function', 'log must be a function').optional(),
})
export type LoadOptions = z.input<typeof LoadOptionsSchema>

export interface LoadReport {
  readonly url: string
  readonly devices: { readonly requested: number; readonly connected: number; readonly failed: number }
  readonly firstConnectError: string | undefined
  readonly target: { readonly messages: number; readonly ratePerSec: number; readonly durationMs: number }
  readonly sent: number
  /** PUBACKs received (QoS 1); 0 at QoS 0. */
  readonly acked: number
  readonly unacked: number
  readonly errors: number
  /** Connections the broker closed during the run. */
  readonly disconnects: number
  /** Ticks in which messages were due but every connection was blocked (in-flight cap or socket buffer). */
  readonly stalls: number
  readonly connectMs: number
  readonly sendMs: number
  readonly achievedRatePerSec: number
  /** Publish to PUBACK, as seen by the generator, for publishes sent after the warm-up. */
  readonly latency: LatencySummary
  /** Publish to PUBACK over the whole send window, warm-up included. */
  readonly latencyAll: LatencySummary
  /**
   * Per second of the send window (by send time): acknowledgements, and the slowest publish to PUBACK in
   * ms. Shows whether a tail is one stall or spread over the window.
   */
  readonly bySecond: ReadonlyArray<{ readonly acked: number; readonly maxMs: number }>
  /** Wall-clock time (epoch ms) at which sending started: second 0 of `bySecond`, to line it up with other logs. */
  readonly sendStartedAtMs: number
  /** CPU of this whole process over the send window (the broker too, if it runs in-process). */
  readonly cpu: { readonly userMs: number; readonly systemMs: number; readonly percentOfOneCore: number }
  /** Per device, the seqs that were acknowledged: the platform must have stored every one of them. */
  readonly ackedSeqs: Readonly<Record<string, SeqSet>>
}

interface Conn {
  readonly device: LoadDevice
  /** The telemetry topic as MQTT writes it (2-byte length, then UTF-8), built once. */
  readonly topicField: Buffer
  /** The metrics part of the payload, `"waterLevel":81.2,...`, built once. */
  readonly fragment: string
  readonly acked: SeqSet
  readonly inflight: Map<number, { seq: number; sentAt: number }>
  socket: Socket | undefined
  state: 'idle' | 'connecting' | 'ready' | 'closed' | 'failed'
  blocked: boolean
  corked: boolean
  /** The tick in which this connection last sent: a second publish in one tick corks the socket. */
  sentInTick: number
  nextMessageId: number
  seq: number
  lastTs: number
  lastWriteAt: number
}

function parseUrl(url: string): { host: string; port: number } {
  const u = new URL(url)
  return { host: u.hostname, port: u.port === '' ? 1883 : Number(u.port) }
}

function quietLog(): void {}

/** An MQTT string field: 2-byte big-endian length, then the UTF-8 bytes. */
function mqttString(text: string): Buffer {
  const bytes = Buffer.from(text, 'utf8')
  const field = Buffer.allocUnsafe(2 + bytes.length)
  field.writeUInt16BE(bytes.length, 0)
  bytes.copy(field, 2)
  return field
}

/**
 * A PUBLISH packet (MQTT 3.1.1, no retain, no dup) in one buffer. mqtt-packet's `generate` does the same
 * through a generic path that costs more than the broker's side of the message; the load generator must
 * stay a small share of the machine it measures. `tests/device-sim-mqtt.test.ts` checks the two agree.
 */
export function encodePublish(topicField: Buffer, payload: string, qos: 0 | 1, messageId: number): Buffer {
  const payloadBytes = Buffer.byteLength(payload, 'utf8')
  const remaining = topicField.length + (qos > 0 ? 2 : 0) + payloadBytes
  let lengthBytes = 1
  for (let n = remaining >> 7; n > 0; n >>= 7) lengthBytes++
  const packet = Buffer.allocUnsafe(1 + lengthBytes + remaining)
  packet[0] = 0x30 | (qos << 1)
  let at = 1
  let n = remaining
  do {
    const digit = n & 0x7f
    n >>= 7
    packet[at++] = n > 0 ? digit | 0x80 : digit
  } while (n > 0)
  at += topicField.copy(packet, at)
  if (qos > 0) {
    packet[at++] = messageId >> 8
    packet[at++] = messageId & 0xff
  }
  packet.write(payload, at, 'utf8')
  return packet
}

/** True when the chunk is one or more whole PUBACKs (0x40 0x02 id id) and nothing else. */
function onlyPubacks(chunk: Buffer): boolean {
  if (chunk.length === 0 || (chunk.length & 3) !== 0) return false
  for (let i = 0; i < chunk.length; i += 4) if (chunk[i] !== 0x40 || chunk[i + 1] !== 0x02) return false
  return true
}

/**
 * Publishes `ratePerSec × durationMs` telemetry messages (or `maxMessages`) spread round-robin over the
 * devices, then waits for acknowledgements and disconnects. Bounded: connecting takes at most
 * `connectTimeoutMs`, sending at most 1.5 × duration + 1 s, draining at most `drainTimeoutMs`.
 */
export async function runLoad(input: LoadOptions): Promise<LoadReport> {
  const options = LoadOptionsSchema.parse(input)
  const log = options.log ?? quietLog
  const { host, port } = parseUrl(options.url)
  const total =
    options.maxMessages ?? Math.max(1, Math.round((options.ratePerSec * options.durationMs) / 1000))
  const signalTime = options.signalTime ?? Date.now()
  const latency = new LatencyHistogram()
  const latencyAll = new LatencyHistogram()
  /** performance.now() from which publishes count in `latency`; set when sending starts. */
  let steadyFrom = Number.POSITIVE_INFINITY
  const bySecond: Array<{ acked: number; maxMs: number }> = []
  const counters = { sent: 0, acked: 0, errors: 0, disconnects: 0, stalls: 0 }
  let firstConnectError: string | undefined
  let sending = false
  let onAllAcked: (() => void) | undefined

  const conns: Conn[] = options.devices.map((device) => {
    const kind: DeviceKind = options.payloadKind === 'device' ? device.kind : options.payloadKind
    const spec = {
      id: device.id,
      kind,
      name: device.id,
      regency: '',
      district: '',
      reportingIntervalMs: 60_000,
    }
    const { metrics } = sampleMetrics(spec, signalTime, options.seed, initialSignalState(signalTime))
    return {
      device,
      topicField: mqttString(topicFor(device.id, 'telemetry')),
      fragment: JSON.stringify(metrics).slice(1, -1),
      acked: new SeqSet(),
      inflight: new Map(),
      socket: undefined,
      state: 'idle',
      blocked: false,
      corked: false,
      sentInTick: -1,
      nextMessageId: 1,
      seq: options.firstSeq,
      lastTs: 0,
      lastWriteAt: 0,
    }
  })

  const onPuback = (conn: Conn, messageId: number) => {
    const entry = conn.inflight.get(messageId)
    if (entry === undefined) return
    conn.inflight.delete(messageId)
    const ms = performance.now() - entry.sentAt
    latencyAll.record(ms)
    if (entry.sentAt >= steadyFrom) latency.record(ms)
    // Seconds since sending started (before that, steadyFrom is infinite and this is negative).
    const second = Math.floor((entry.sentAt - (steadyFrom - options.warmupMs)) / 1000)
    if (second >= 0 && second < 3600) {
      for (let i = bySecond.length; i <= second; i++) bySecond.push({ acked: 0, maxMs: 0 })
      const b = bySecond[second]!
      b.acked++
      if (ms > b.maxMs) b.maxMs = Math.round(ms)
    }
    conn.acked.add(entry.seq)
    counters.acked++
    if (!sending && onAllAcked !== undefined && counters.acked >= counters.sent) onAllAcked()
  }

  const onPacket = (conn: Conn, packet: Packet, settle: (error?: string) => void) => {
    if (packet.cmd === 'puback') {
      onPuback(conn, packet.messageId ?? -1)
    } else if (packet.cmd === 'connack') {
      const code = packet.returnCode ?? packet.reasonCode ?? 0
      settle(code === 0 ? undefined : `CONNACK return code ${code}`)
    }
  }

  const open = (conn: Conn) =>
    new Promise<void>((resolve) => {
      conn.state = 'connecting'
      const socket = netConnect({ host, port })
      conn.socket = socket
      socket.setNoDelay(true)
      let settled = false
      const timer = setTimeout(() => settle('connect timeout'), options.connectTimeoutMs)
      function settle(error?: string) {
        if (settled) return
        settled = true
        clearTimeout(timer)
        if (error === undefined) {
          conn.state = 'ready'
        } else {
          conn.state = 'failed'
          firstConnectError ??= `${conn.device.id}: ${error}`
          socket.destroy()
        }
        resolve()
      }
      const p = parser({ protocolVersion: 4 })
      p.on('packet', (packet: Packet) => onPacket(conn, packet, settle))
      p.on('error', (err: Error) => {
        counters.errors++
        settle(err.message)
        socket.destroy()
      })
      // Almost every chunk is nothing but PUBACKs: read those directly, and hand the parser anything else
      // (and everything while it holds part of a packet).
      let parserHolds = 0
      socket.on('data', (chunk: Buffer) => {
        if (parserHolds === 0 && onlyPubacks(chunk)) {
          for (let i = 0; i < chunk.length; i += 4) onPuback(conn, (chunk[i + 2]! << 8) | chunk[i + 3]!)
        } else {
          parserHolds = p.parse(chunk)
        }
      })
      socket.on('drain', () => {
        conn.blocked = false
      })
      socket.on('error', (err) => {
        counters.errors++
        settle(err.message)
      })
      socket.on('close', () => {
        if (conn.state === 'ready') counters.disconnects++
        if (conn.state !== 'failed') conn.state = 'closed'
        settle('connection closed')
      })
      socket.on('connect', () => {
        socket.write(
          generate({
            cmd: 'connect',
            protocolId: 'MQTT',
            protocolVersion: 4,
            clientId: conn.device.id,
            username: conn.device.id,
            password: Buffer.from(conn.device.secret),
            clean: true,
            keepalive: options.keepaliveSec,
          }),
        )
      })
    })

  // Connect with bounded concurrency: thousands of simultaneous SYNs overflow the listen backlog.
  const connectStart = performance.now()
  let next = 0
  const worker = async () => {
    while (next < conns.length) {
      const conn = conns[next++]!
      await open(conn)
    }
  }
  await Promise.all(Array.from({ length: Math.min(options.connectConcurrency, conns.length) }, worker))
  const connectMs = performance.now() - connectStart
  const ready = conns.filter((c) => c.state === 'ready').length
  log('info', `load: ${ready} of ${conns.length} devices connected in ${Math.round(connectMs)} ms`, { ready })

  const sendOne = (conn: Conn, now: number) => {
    const socket = conn.socket!
    let messageId = 0
    if (options.qos > 0) {
      messageId = conn.nextMessageId
      while (conn.inflight.has(messageId)) messageId = messageId === 65_535 ? 1 : messageId + 1
      conn.nextMessageId = messageId === 65_535 ? 1 : messageId + 1
    }
    const seq = conn.seq++
    // Strictly increasing per device: a reading's identity in the store is (device, ts).
    const ts = Math.max(now, conn.lastTs + 1)
    conn.lastTs = ts
    const payload = `{"v":1,"ts":${ts},"seq":${seq},${conn.fragment}}`
    const packet = encodePublish(conn.topicField, payload, options.qos, messageId)
    // Most ticks send a connection one publish, which goes out as it is; corking pays off only for more.
    if (conn.sentInTick === tickNo && !conn.corked) {
      socket.cork()
      conn.corked = true
      corked.push(conn)
    }
    conn.sentInTick = tickNo
    if (options.qos > 0) conn.inflight.set(messageId, { seq, sentAt: performance.now() })
    if (!socket.write(packet)) conn.blocked = true
    conn.lastWriteAt = now
    counters.sent++
  }

  const canSend = (conn: Conn) =>
    conn.state === 'ready' && !conn.blocked && conn.inflight.size < options.maxInflightPerDevice
  const corked: Conn[] = []
  const sendStart = performance.now()
  const sendStartedAtMs = Date.now()
  steadyFrom = sendStart + options.warmupMs
  const cpuStart = process.cpuUsage()
  const hardStopMs = options.durationMs * 1.5 + 1000
  const maxPerTick = Math.max(1, Math.ceil(options.ratePerSec / 4))
  let cursor = 0
  let tickNo = 0

  if (ready > 0) {
    sending = true
    await new Promise<void>((resolve) => {
      const tick = () => {
        tickNo++
        const elapsed = performance.now() - sendStart
        const byNow =
          elapsed >= options.durationMs ? total : Math.floor((options.ratePerSec * elapsed) / 1000)
        let due = Math.min(maxPerTick, Math.min(total, byNow) - counters.sent)
        const now = Date.now()
        let misses = 0
        while (due > 0 && misses < conns.length) {
          const conn = conns[cursor]!
          cursor = cursor + 1 === conns.length ? 0 : cursor + 1
          if (!canSend(conn)) {
            misses++
            continue
          }
          misses = 0
          sendOne(conn, now)
          due--
        }
        if (due > 0) counters.stalls++
        for (const conn of corked) {
          conn.corked = false
          conn.socket?.uncork()
        }
        corked.length = 0
        const nobodyLeft = conns.every((c) => c.state !== 'ready')
        if (counters.sent >= total || elapsed >= hardStopMs || nobodyLeft) {
          clearInterval(timer)
          clearInterval(keepalive)
          resolve()
        }
      }
      const timer = setInterval(tick, options.tickMs)
      // Devices that send rarely at low total rates still need to show the broker they are alive.
      const keepalive = setInterval(
        () => {
          const idleSince = Date.now() - (options.keepaliveSec * 1000) / 2
          for (const conn of conns) {
            if (conn.state === 'ready' && conn.lastWriteAt < idleSince) {
              conn.socket?.write(generate({ cmd: 'pingreq' }))
              conn.lastWriteAt = Date.now()
            }
          }
        },
        Math.max(1000, (options.keepaliveSec * 1000) / 4),
      )
      if (options.keepaliveSec === 0) clearInterval(keepalive)
    })
    sending = false
  }
  const sendMs = performance.now() - sendStart
  const cpu = process.cpuUsage(cpuStart)
  log('info', `load: send window over after ${Math.round(sendMs)} ms`, {})

  if (options.qos > 0 && counters.acked < counters.sent) {
    await new Promise<void>((resolve) => {
      const done = () => {
        clearInterval(poll)
        clearTimeout(timer)
        onAllAcked = undefined
        resolve()
      }
      const timer = setTimeout(done, options.drainTimeoutMs)
      // Connections that died cannot deliver their PUBACKs: stop waiting once only they are left.
      const poll = setInterval(() => {
        if (!conns.some((c) => c.state === 'ready' && c.inflight.size > 0)) done()
      }, 50)
      onAllAcked = done
    })
  }

  await closeAll(conns)
  const ackedSeqs: Record<string, SeqSet> = {}
  for (const conn of conns) ackedSeqs[conn.device.id] = conn.acked
  const report: LoadReport = {
    url: options.url,
    devices: { requested: conns.length, connected: ready, failed: conns.length - ready },
    firstConnectError,
    target: { messages: total, ratePerSec: options.ratePerSec, durationMs: options.durationMs },
    sent: counters.sent,
    acked: counters.acked,
    unacked: options.qos > 0 ? counters.sent - counters.acked : 0,
    errors: counters.errors,
    disconnects: counters.disconnects,
    stalls: counters.stalls,
    connectMs: Math.round(connectMs),
    sendMs: Math.round(sendMs),
    achievedRatePerSec: sendMs > 0 ? Math.round((counters.sent * 1000) / sendMs) : 0,
    latency: latency.summary(),
    latencyAll: latencyAll.summary(),
    bySecond,
    sendStartedAtMs,
    cpu: {
      userMs: Math.round(cpu.user / 1000),
      systemMs: Math.round(cpu.system / 1000),
      percentOfOneCore: sendMs > 0 ? Math.round(((cpu.user + cpu.system) / 1000 / sendMs) * 1000) / 10 : 0,
    },
    ackedSeqs,
  }
  log('info', `load: sent ${report.sent}, acked ${report.acked}, p99 ${report.latency.p99Ms} ms`, {})
  return report
}

/** Says DISCONNECT so the broker drops the session without publishing wills, then closes the sockets. */
async function closeAll(conns: readonly Conn[]): Promise<void> {
  const disconnect = generate({ cmd: 'disconnect' })
  await Promise.all(
    conns.map(
      (conn) =>
        new Promise<void>((resolve) => {
          const socket = conn.socket
          if (socket === undefined || socket.destroyed) {
            resolve()
            return
          }
          const timer = setTimeout(() => socket.destroy(), 1000)
          socket.once('close', () => {
            clearTimeout(timer)
            resolve()
          })
          if (conn.state === 'ready') {
            conn.state = 'closed'
            socket.end(disconnect)
          } else {
            socket.destroy()
          }
        }),
    ),
  )
}
