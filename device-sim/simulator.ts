import { connect, type MqttClient } from 'mqtt'
import { z } from 'zod'
import {
  COMMAND_ID_PATTERN,
  DEFAULT_MAX_FUTURE_SKEW_MS,
  DEFAULT_MAX_PAYLOAD_BYTES,
  type RejectReason,
  topicFor,
  validateCmd,
  validateConfig,
  validateTelemetry,
} from '../firmware-contracts/index.ts'
import {
  chunkBacklog,
  clockSkewPayload,
  encodeReading,
  FAULT_NAMES,
  type FaultName,
  FaultsSchema,
  malformedJsonPayload,
  outOfRangePayload,
  oversizedPayload,
  PAYLOAD_FAULTS,
  type PayloadFault,
  schemaViolationPayload,
} from './faults.ts'
import { type SimDeviceWithSecret, SimDeviceWithSecretSchema } from './fleet.ts'
import { hashInts, hashString, mulberry32 } from './random.ts'
import { SeqSet } from './seq-set.ts'
import {
  initialSignalState,
  type SignalSpec,
  type SignalState,
  type SimReading,
  sampleMetrics,
} from './signals.ts'

export type SimLogLevel = 'debug' | 'info' | 'warn' | 'error'
export type SimLogger = (level: SimLogLevel, message: string, fields?: Record<string, unknown>) => void

const MQTT_URL = /^(mqtts?|wss?):\/\/[^\s/]+/

export const SimulatorOptionsSchema = z.object({
  url: z
    .string()
    .regex(MQTT_URL, 'url: mqtt://host:port (or mqtts://, ws://, wss://)')
    .default('mqtt://127.0.0.1:1883'),
  devices: z.array(SimDeviceWithSecretSchema).min(1).max(50_000),
  /** Overrides every device's reporting interval (ms), e.g. to make a demo lively. */
  intervalMs: z.number().int().min(10).max(86_400_000).optional(),
  seed: z.number().int().default(1),
  qos: z.union([z.literal(0), z.literal(1)]).default(1),
  faults: FaultsSchema.prefault({}),
  /**
   * Signal time runs this many times faster than wall time, so a demo shows a market day in minutes.
   * Timestamps (`ts`) stay wall-clock time: the platform would reject readings stamped in the future.
   */
  timeScale: z.number().positive().max(100_000).default(1),
  /** Signal time at start, ms since epoch; defaults to now. */
  signalStart: z
    .number()
    .int()
    .min(Date.UTC(2000, 0, 1))
    .max(Date.UTC(2100, 0, 1))
    .optional(),
  keepaliveSec: z.number().int().min(0).max(65_535).default(30),
  reconnectPeriodMs: z.number().int().min(50).max(600_000).default(2000),
  connectTimeoutMs: z.number().int().min(100).max(600_000).default(10_000),
  /** Devices connect at random moments within this window, as a fleet does after a power cut. */
  connectJitterMs: z.number().int().min(0).max(600_000).default(1000),
  /** Readings kept while offline; the oldest go first when it overflows (as a ring buffer in flash). */
  maxBacklog: z.number().int().min(0).max(1_000_000).default(10_000),
  stopTimeoutMs: z.number().int().min(0).max(600_000).default(5000),
  /** The platform's limits, so that each payload can be classified as it is sent: stored or rejected why. */
  expect: z
    .object({
      maxFutureSkewMs: z.number().int().min(0).default(DEFAULT_MAX_FUTURE_SKEW_MS),
      maxPayloadBytes: z.number().int().min(1).default(DEFAULT_MAX_PAYLOAD_BYTES),
    })
    .prefault({}),
  firmware: z.string().min(1).max(100).default('0.1.0+device-sim'),
  log: z.custom<SimLogger>((v) => typeof v === 'function', 'log must be a function').optional(),
})
export type SimulatorOptions = z.input<typeof SimulatorOptionsSchema>
type Options = z.output<typeof SimulatorOptionsSchema>

export interface DeviceStats {
  readonly id: string
  readonly kind: string
  readonly connected: boolean
  /** Readings generated, i.e. the next seq. */
  readonly readings: number
  readonly lastSeqSent: number | undefined
  readonly lastSeqAcked: number | undefined
  /** Telemetry messages handed to the client (a batch is one message). */
  readonly published: number
  /** Telemetry messages the broker acknowledged. */
  readonly acked: number
  /** Readings acknowledged that the platform should have stored. */
  readonly ackedReadings: number
  /** Faulty messages in flight when a connection was torn down on purpose (valid readings are resent). */
  readonly lost: number
  readonly connects: number
  readonly reconnects: number
  readonly disconnects: number
  readonly errors: number
  readonly lastError: string | undefined
  readonly backlog: number
  readonly backlogDropped: number
  /** Reporting interval now in force (ms): the option or spec, changed by config and set-interval. */
  readonly intervalMs: number
  /** Config messages applied, and refused because they failed the contract. */
  readonly configsApplied: number
  readonly configsRejected: number
  /** Commands answered on cmd/ack (ok or not), and reboots carried out. */
  readonly commandsAnswered: number
  readonly reboots: number
  readonly faults: Readonly<Record<FaultName, number>>
}

export interface SimStats {
  readonly devices: number
  readonly connected: number
  readonly readings: number
  readonly published: number
  readonly acked: number
  readonly ackedReadings: number
  readonly lost: number
  readonly connects: number
  readonly reconnects: number
  readonly disconnects: number
  readonly errors: number
  readonly backlog: number
  readonly backlogDropped: number
  readonly configsApplied: number
  readonly configsRejected: number
  readonly commandsAnswered: number
  /** Acknowledged payloads that the platform should have rejected (see `rejected`). */
  readonly expectedRejections: number
  /** Payloads that failed the contract although no fault asked for it: a simulator bug if not 0. */
  readonly selfCheckFailures: number
  readonly faults: Readonly<Record<FaultName, number>>
  readonly perDevice: readonly DeviceStats[]
}

/** An acknowledged payload the platform should have kept as a rejection rather than a reading. */
export interface ExpectedRejection {
  readonly deviceId: string
  readonly seqs: readonly number[]
  readonly reason: RejectReason
  readonly fault: FaultName | undefined
  readonly at: number
}

export interface SimulatorHandle {
  /** Stops publishing, says goodbye (status online:false, DISCONNECT) and closes every connection. */
  stop(): Promise<void>
  stats(): SimStats
  /** Per device, the seqs the broker acknowledged in payloads the contract accepts: they must be stored. */
  readonly sent: Readonly<Record<string, SeqSet>>
  /** Acknowledged payloads that the platform must reject, with the reason code it should give (bounded). */
  readonly rejected: readonly ExpectedRejection[]
  /** Resolves once every device has connected at least once; rejects after `timeoutMs` naming the laggards. */
  ready(timeoutMs?: number): Promise<void>
}

const MAX_REJECTIONS_KEPT = 10_000
const ERROR_LOG_INTERVAL_MS = 60_000

type Expected = 'stored' | RejectReason

interface Session {
  readonly client: MqttClient
  /** Unacknowledged messages by a local token; valid readings among them go back to the backlog on a drop. */
  readonly pending: Map<number, { readonly readings: readonly SimReading[]; readonly valid: boolean }>
  retired: boolean
}

interface Shared {
  readonly options: Options
  readonly log: SimLogger
  readonly realStart: number
  readonly signalStart: number
  readonly sent: Record<string, SeqSet>
  readonly rejected: ExpectedRejection[]
  rejectedTotal: number
  selfCheckFailures: number
  flooding: SimDevice | undefined
  stopped: boolean
}

function emptyFaultCounts(): Record<FaultName, number> {
  return Object.fromEntries(FAULT_NAMES.map((n) => [n, 0])) as Record<FaultName, number>
}

function quietLog(): void {}

/** The `id` of a command that failed its contract, if it has a usable one. */
function commandIdOf(payload: Buffer): string | undefined {
  try {
    const value: unknown = JSON.parse(payload.toString('utf8'))
    if (typeof value !== 'object' || value === null) return undefined
    const id = (value as { id?: unknown }).id
    return typeof id === 'string' && COMMAND_ID_PATTERN.test(id) ? id : undefined
  } catch {
    return undefined
  }
}

class SimDevice {
  private session: Session | undefined
  private signalSpec: SignalSpec
  /** The interval from options or spec; `config` replaces it, `set-interval` overrides it for a while. */
  private baseIntervalMs: number
  private overrideIntervalMs: number | undefined
  private overrideTimer: NodeJS.Timeout | undefined
  private rebootTimer: NodeJS.Timeout | undefined
  private rebooting = false
  private readonly rand: () => number
  private readonly statusTopic: string
  private readonly telemetryTopic: string
  private readonly configTopic: string
  private readonly cmdTopic: string
  private readonly cmdAckTopic: string
  private signalState: SignalState
  private seq = 0
  private lastTs = 0
  private backlog: SimReading[] = []
  private offlineUntil = 0
  private tickTimer: NodeJS.Timeout | undefined
  private offlineTimer: NodeJS.Timeout | undefined
  private connectTimer: NodeJS.Timeout | undefined
  private nextDue = 0
  private everConnected = false
  private nextToken = 0
  /** Whether the current connection came up, so that a failed attempt's close is not a disconnect. */
  private connectedSinceClose = false
  private lastErrorLogAt = 0
  private readonly counters = {
    published: 0,
    acked: 0,
    ackedReadings: 0,
    lost: 0,
    connects: 0,
    reconnects: 0,
    disconnects: 0,
    errors: 0,
    backlogDropped: 0,
    lastSeqSent: undefined as number | undefined,
    lastSeqAcked: undefined as number | undefined,
    lastError: undefined as string | undefined,
    configsApplied: 0,
    configsRejected: 0,
    commandsAnswered: 0,
    reboots: 0,
  }
  readonly faultCounts = emptyFaultCounts()
  readonly connectedOnce: Promise<void>
  private markConnected!: () => void

  constructor(
    readonly spec: SimDeviceWithSecret,
    private readonly shared: Shared,
  ) {
    const { options } = shared
    this.baseIntervalMs = options.intervalMs ?? spec.reportingIntervalMs
    this.signalSpec = this.signalSpecFor(this.baseIntervalMs)
    this.rand = mulberry32(hashInts(options.seed, hashString(spec.id), 0x73696d))
    this.statusTopic = topicFor(spec.id, 'status')
    this.telemetryTopic = topicFor(spec.id, 'telemetry')
    this.configTopic = topicFor(spec.id, 'config')
    this.cmdTopic = topicFor(spec.id, 'cmd')
    this.cmdAckTopic = topicFor(spec.id, 'cmdAck')
    this.signalState = initialSignalState(shared.signalStart)
    this.connectedOnce = new Promise((resolve) => {
      this.markConnected = resolve
    })
    shared.sent[spec.id] = new SeqSet()
  }

  private get intervalMs(): number {
    return this.overrideIntervalMs ?? this.baseIntervalMs
  }

  private signalSpecFor(intervalMs: number): SignalSpec {
    return {
      ...this.spec,
      reportingIntervalMs: Math.max(1, Math.round(intervalMs * this.shared.options.timeScale)),
    }
  }

  /** Puts a new interval in force from the next reading on, as firmware does after a config or command. */
  private setInterval(base: number | undefined, override: number | undefined): void {
    const before = this.intervalMs
    if (base !== undefined) this.baseIntervalMs = base
    this.overrideIntervalMs = override
    const after = this.intervalMs
    this.signalSpec = this.signalSpecFor(after)
    if (after === before || this.shared.stopped) return
    clearTimeout(this.tickTimer)
    this.nextDue = Math.min(this.nextDue, Date.now() + after)
    this.scheduleTick()
  }

  get connected(): boolean {
    return this.session?.client.connected === true
  }

  start(): void {
    const { options } = this.shared
    this.connectTimer = setTimeout(
      () => this.guard('connect', () => this.openSession()),
      Math.floor(this.rand() * options.connectJitterMs),
    )
    // Jittered first reading, then a fixed schedule that does not drift with event-loop delays.
    this.nextDue = Date.now() + Math.floor(this.rand() * this.intervalMs)
    this.scheduleTick()
  }

  private scheduleTick(): void {
    if (this.shared.stopped) return
    this.tickTimer = setTimeout(
      () => this.guard('tick', () => this.tick()),
      Math.max(0, this.nextDue - Date.now()),
    )
  }

  /** Timer callbacks must never throw into the event loop: a simulator bug should be counted, not crash it. */
  private guard(what: string, fn: () => void): void {
    try {
      fn()
    } catch (err) {
      this.noteError(err, what)
    }
  }

  private noteError(err: unknown, context: string): void {
    const message = err instanceof Error ? err.message : String(err)
    this.counters.errors++
    this.counters.lastError = message
    const now = Date.now()
    if (now - this.lastErrorLogAt >= ERROR_LOG_INTERVAL_MS) {
      this.lastErrorLogAt = now
      this.shared.log('warn', `${this.spec.id}: ${context}: ${message}`, {
        device: this.spec.id,
        errors: this.counters.errors,
      })
    }
  }

  private openSession(): void {
    if (this.shared.stopped) return
    const { options } = this.shared
    const will = JSON.stringify({ v: 1, online: false, reason: 'connection-lost' })
    const client = connect(options.url, {
      clientId: this.spec.id,
      username: this.spec.id,
      password: this.spec.secret,
      clean: true,
      keepalive: options.keepaliveSec,
      reconnectPeriod: options.reconnectPeriodMs,
      connectTimeout: options.connectTimeoutMs,
      protocolVersion: 4,
      // onConnect subscribes after every connect; mqtt.js resubscribing as well would double every SUBSCRIBE.
      resubscribe: false,
      will: { topic: this.statusTopic, payload: Buffer.from(will), qos: 1, retain: false },
    })
    const session: Session = { client, pending: new Map(), retired: false }
    this.session = session
    client.on('connect', () => this.guard('connect', () => this.onConnect(session)))
    client.on('reconnect', () => {
      if (!session.retired) this.counters.reconnects++
    })
    client.on('close', () => {
      if (session.retired) return
      if (this.connectedSinceClose) this.counters.disconnects++
      this.connectedSinceClose = false
    })
    client.on('error', (err) => this.noteError(err, 'mqtt'))
    client.on('message', (topic, payload) => {
      if (!session.retired) this.guard('message', () => this.onMessage(session, topic, payload))
    })
  }

  /** `config` and `cmd` from the platform, checked against the firmware contract before anything is applied. */
  private onMessage(session: Session, topic: string, payload: Buffer): void {
    const now = Date.now()
    if (topic === this.configTopic) {
      const result = validateConfig(this.spec.kind, payload, { now })
      if (!result.ok) {
        this.counters.configsRejected++
        this.shared.log('warn', `${this.spec.id}: config refused: ${result.rejection.code}`, {
          device: this.spec.id,
          reason: result.rejection.code,
        })
        return
      }
      this.counters.configsApplied++
      // A config replaces the whole configuration, so a temporary set-interval ends with it.
      clearTimeout(this.overrideTimer)
      this.setInterval(result.value.interval * 1000, undefined)
      this.shared.log('info', `${this.spec.id}: config applied, interval ${result.value.interval} s`, {
        device: this.spec.id,
      })
      return
    }
    if (topic !== this.cmdTopic) return
    const result = validateCmd(payload, { now })
    if (!result.ok) {
      // Answer if the command's id can be read, so the platform learns why; otherwise there is no one to answer.
      const id = commandIdOf(payload)
      if (id !== undefined) this.answer(session, id, false, `invalid-command: ${result.rejection.code}`)
      return
    }
    const cmd = result.value
    switch (cmd.name) {
      case 'ping':
      case 'sync-time':
        // The simulated clock is the host's, already synchronised: nothing to set.
        this.answer(session, cmd.id, true)
        return
      case 'set-interval': {
        clearTimeout(this.overrideTimer)
        this.setInterval(undefined, cmd.args.interval * 1000)
        if (cmd.args.duration !== undefined) {
          this.overrideTimer = setTimeout(
            () => this.guard('set-interval', () => this.setInterval(undefined, undefined)),
            cmd.args.duration * 1000,
          )
        }
        this.answer(session, cmd.id, true)
        return
      }
      case 'reboot':
        this.answer(session, cmd.id, true, undefined, () => this.reboot())
        return
    }
  }

  private answer(session: Session, id: string, ok: boolean, error?: string, then?: () => void): void {
    const ack = JSON.stringify(
      ok ? { v: 1, id, ok, ts: Date.now() } : { v: 1, id, ok, error: error?.slice(0, 200), ts: Date.now() },
    )
    this.counters.commandsAnswered++
    session.client.publish(this.cmdAckTopic, ack, { qos: 1, retain: false }, (err) => {
      if (err) this.noteError(err, 'cmd/ack')
      then?.()
    })
  }

  /** Restarts: the connection closes abruptly (as a reset does), and the device is back after a second. */
  private reboot(): void {
    if (this.shared.stopped) return
    this.counters.reboots++
    this.rebooting = true
    this.dropSession()
    this.rebootTimer = setTimeout(() => this.guard('reboot', () => this.openSession()), 1000)
  }

  private onConnect(session: Session): void {
    if (session.retired) return
    this.counters.connects++
    this.connectedSinceClose = true
    const reason = this.rebooting ? 'reboot-command' : this.everConnected ? 'reconnect' : 'power-on'
    this.rebooting = false
    this.everConnected = true
    this.markConnected()
    const birth = JSON.stringify({
      v: 1,
      online: true,
      firmware: this.shared.options.firmware,
      ts: Date.now(),
      reason,
    })
    session.client.publish(this.statusTopic, birth, { qos: 1, retain: false }, (err) => {
      if (err) this.noteError(err, 'birth')
    })
    // The broker allows a device exactly these two subscriptions; clean sessions need them after every connect.
    session.client.subscribe([this.configTopic, this.cmdTopic], { qos: 1 }, (err, granted) => {
      if (err) return this.noteError(err, 'subscribe')
      const refused = (granted ?? []).filter((g) => g.qos === 128)
      if (refused.length > 0)
        this.noteError(new Error(`subscription refused: ${refused[0]!.topic}`), 'subscribe')
    })
    this.flushBacklog()
  }

  /**
   * Retires the current connection abruptly (no DISCONNECT, so the broker publishes the last will). Like
   * firmware that deletes a reading only on PUBACK, unacknowledged valid readings are sent again later.
   */
  private dropSession(): void {
    const session = this.session
    if (session === undefined) return
    session.retired = true
    const again = new Map<number, SimReading>()
    for (const { readings, valid } of session.pending.values()) {
      if (!valid) this.counters.lost++
      else for (const r of readings) again.set(r.seq, r)
    }
    if (again.size > 0) this.backlog = [...again.values(), ...this.backlog].sort((a, b) => a.seq - b.seq)
    if (this.connectedSinceClose) this.counters.disconnects++
    this.connectedSinceClose = false
    session.client.end(true)
    this.session = undefined
  }

  private signalNow(): number {
    const { realStart, signalStart, options } = this.shared
    return signalStart + (Date.now() - realStart) * options.timeScale
  }

  private nextReading(): SimReading {
    const sample = sampleMetrics(
      this.signalSpec,
      this.signalNow(),
      this.shared.options.seed,
      this.signalState,
    )
    this.signalState = sample.state
    // Strictly increasing per device: a reading's identity in the store is (device, ts).
    const ts = Math.max(Date.now(), this.lastTs + 1)
    this.lastTs = ts
    const reading = { ts, seq: this.seq++, metrics: sample.metrics }
    this.counters.lastSeqSent = reading.seq
    return reading
  }

  private tick(): void {
    if (this.shared.stopped) return
    this.nextDue += this.intervalMs
    // After a long stall (laptop asleep), skip missed slots rather than firing them all at once.
    if (this.nextDue < Date.now()) this.nextDue = Date.now() + this.intervalMs
    this.scheduleTick()

    const { faults } = this.shared.options
    const now = Date.now()
    const reading = this.nextReading()
    if (now < this.offlineUntil || !this.connected) {
      this.keep(reading)
      return
    }
    if (this.roll(faults.disconnect.ratePerMin * (this.intervalMs / 60_000))) {
      this.faultCounts.disconnect++
      this.shared.log('info', `${this.spec.id}: fault disconnect`, { device: this.spec.id })
      this.keep(reading)
      this.session?.client.stream.destroy()
      return
    }
    if (this.roll(faults.offline.rate)) {
      this.goOffline(faults.offline.durationMs)
      this.keep(reading)
      return
    }
    const flood = this.roll(faults.flood.rate)
    if (flood && this.shared.flooding === undefined) this.startFlood()
    const hits = PAYLOAD_FAULTS.map((name) => this.roll(faults[name].rate))
    this.publishReading(reading, PAYLOAD_FAULTS[hits.indexOf(true)])
  }

  private roll(p: number): boolean {
    // Callers roll every fault each time, so a seed gives the same decisions whichever faults are on.
    const u = this.rand()
    return p > 0 && u < p
  }

  private keep(reading: SimReading): void {
    const max = this.shared.options.maxBacklog
    if (max === 0) {
      this.counters.backlogDropped++
      return
    }
    if (this.backlog.length >= max) {
      this.backlog.shift()
      this.counters.backlogDropped++
    }
    this.backlog.push(reading)
  }

  private goOffline(durationMs: number): void {
    this.faultCounts.offline++
    this.shared.log('info', `${this.spec.id}: fault offline for ${durationMs} ms`, { device: this.spec.id })
    this.offlineUntil = Date.now() + durationMs
    this.dropSession()
    this.offlineTimer = setTimeout(() => this.guard('online', () => this.openSession()), durationMs)
  }

  private flushBacklog(): void {
    if (this.backlog.length === 0 || !this.connected) return
    const backlog = this.backlog
    this.backlog = []
    for (const chunk of chunkBacklog(backlog, this.shared.options.expect.maxPayloadBytes)) {
      this.publish(chunk.payload, chunk.readings, undefined)
    }
  }

  private payloadFor(reading: SimReading, fault: PayloadFault | undefined): string | Buffer {
    const { faults } = this.shared.options
    const kind = this.spec.kind
    switch (fault) {
      case 'malformedJson':
        return malformedJsonPayload(reading, this.rand())
      case 'schemaViolation':
        return schemaViolationPayload(kind, reading, this.rand())
      case 'outOfRange':
        return outOfRangePayload(kind, reading, this.rand())
      case 'oversized':
        return oversizedPayload(reading, faults.oversized.bytes)
      case 'clockSkew':
        return clockSkewPayload(reading, faults.clockSkew.skewMs)
      default:
        return encodeReading(reading)
    }
  }

  private publishReading(reading: SimReading, fault: PayloadFault | undefined): void {
    const payload = this.payloadFor(reading, fault)
    if (fault !== undefined) this.faultCounts[fault]++
    this.publish(payload, [reading], fault)
    if (fault === 'duplicate') this.publish(payload, [reading], fault)
  }

  private publish(
    payload: string | Buffer,
    readings: readonly SimReading[],
    fault: FaultName | undefined,
    done?: () => void,
  ): void {
    const session = this.session
    if (session === undefined || !session.client.connected) {
      done?.()
      return
    }
    const { options } = this.shared
    const verdict = validateTelemetry(this.spec.kind, payload, {
      now: Date.now(),
      maxFutureSkewMs: options.expect.maxFutureSkewMs,
      maxPayloadBytes: options.expect.maxPayloadBytes,
    })
    const expected: Expected = verdict.ok ? 'stored' : verdict.rejection.code
    if (expected !== 'stored' && (fault === undefined || fault === 'duplicate' || fault === 'flood')) {
      this.shared.selfCheckFailures++
      this.shared.log('error', `${this.spec.id}: generated payload fails the contract: ${expected}`, {
        device: this.spec.id,
      })
    }
    this.counters.published++
    const token = this.nextToken++
    session.pending.set(token, { readings, valid: expected === 'stored' })
    session.client.publish(this.telemetryTopic, payload, { qos: options.qos, retain: false }, (err) => {
      done?.()
      if (session.retired) return
      session.pending.delete(token)
      if (err) {
        this.noteError(err, 'publish')
        return
      }
      if (options.qos === 0) return
      this.onAck(
        readings.map((r) => r.seq),
        expected,
        fault,
      )
    })
  }

  private onAck(seqs: readonly number[], expected: Expected, fault: FaultName | undefined): void {
    this.counters.acked++
    const last = seqs[seqs.length - 1]
    if (
      last !== undefined &&
      (this.counters.lastSeqAcked === undefined || last > this.counters.lastSeqAcked)
    ) {
      this.counters.lastSeqAcked = last
    }
    if (expected === 'stored') {
      const set = this.shared.sent[this.spec.id]!
      for (const s of seqs) set.add(s)
      this.counters.ackedReadings += seqs.length
      return
    }
    this.shared.rejectedTotal++
    if (this.shared.rejected.length < MAX_REJECTIONS_KEPT) {
      this.shared.rejected.push({ deviceId: this.spec.id, seqs, reason: expected, fault, at: Date.now() })
    }
  }

  /** Publishes valid readings back to back, keeping at most `maxInflight` unacknowledged, for a while. */
  private startFlood(): void {
    const { durationMs, maxMessages, maxInflight } = this.shared.options.faults.flood
    this.shared.flooding = this
    this.faultCounts.flood++
    this.shared.log('info', `${this.spec.id}: fault flood for ${durationMs} ms`, { device: this.spec.id })
    const until = Date.now() + durationMs
    const session = this.session
    let sent = 0
    let inflight = 0
    let finished = false
    const finish = () => {
      if (finished) return
      finished = true
      if (this.shared.flooding === this) this.shared.flooding = undefined
      this.shared.log('info', `${this.spec.id}: flood over after ${sent} messages`, {
        device: this.spec.id,
        sent,
      })
    }
    const pump = () => {
      if (finished) return
      while (inflight < maxInflight) {
        if (this.session !== session) {
          // The connection was retired: its in-flight callbacks will never come.
          finish()
          return
        }
        // Timestamps stay strictly increasing, so a fast flood runs the device clock ahead: stop well
        // before the platform would call the readings future ones.
        const ahead = this.lastTs - Date.now() > this.shared.options.expect.maxFutureSkewMs / 2
        if (this.shared.stopped || !this.connected || Date.now() >= until || sent >= maxMessages || ahead) {
          if (inflight === 0) finish()
          return
        }
        inflight++
        sent++
        const reading = this.nextReading()
        this.publish(encodeReading(reading), [reading], 'flood', () => {
          inflight--
          setImmediate(() => this.guard('flood', pump))
        })
      }
    }
    // A flood that loses its connection must still end, so that another device may flood later.
    setTimeout(finish, durationMs + 5000).unref()
    pump()
  }

  stats(): DeviceStats {
    return {
      id: this.spec.id,
      kind: this.spec.kind,
      connected: this.connected,
      readings: this.seq,
      ...this.counters,
      intervalMs: this.intervalMs,
      backlog: this.backlog.length,
      faults: { ...this.faultCounts },
    }
  }

  async stop(deadline: number): Promise<void> {
    clearTimeout(this.tickTimer)
    clearTimeout(this.offlineTimer)
    clearTimeout(this.connectTimer)
    clearTimeout(this.overrideTimer)
    clearTimeout(this.rebootTimer)
    const session = this.session
    if (session === undefined) return
    const { client } = session
    if (!client.connected) {
      session.retired = true
      client.end(true)
      return
    }
    const bye = JSON.stringify({ v: 1, online: false, ts: Date.now(), reason: 'shutdown' })
    await new Promise<void>((resolve) => {
      const timer = setTimeout(
        () => {
          // Still waiting for acknowledgements that will not come: end(true) stops reconnecting (a no-op
          // when end(false) already did), destroying the stream cuts the socket either way.
          session.retired = true
          client.end(true)
          client.stream.destroy()
          resolve()
        },
        Math.max(0, deadline - Date.now()),
      )
      client.publish(this.statusTopic, bye, { qos: 1, retain: false }, () => {
        client.end(false, {}, () => {
          clearTimeout(timer)
          session.retired = true
          resolve()
        })
      })
    })
  }
}

/**
 * Starts one MQTT client per device. Never rejects for broker trouble: connection errors are counted
 * and retried, as field devices do; only invalid options throw.
 */
export async function startSimulator(input: SimulatorOptions): Promise<SimulatorHandle> {
  const options = SimulatorOptionsSchema.parse(input)
  const ids = new Set<string>()
  for (const d of options.devices) {
    if (ids.has(d.id)) throw new Error(`device ${d.id} is listed twice`)
    ids.add(d.id)
  }
  const now = Date.now()
  const shared: Shared = {
    options,
    log: options.log ?? quietLog,
    realStart: now,
    signalStart: options.signalStart ?? now,
    sent: {},
    rejected: [],
    rejectedTotal: 0,
    selfCheckFailures: 0,
    flooding: undefined,
    stopped: false,
  }
  const devices = options.devices.map((spec) => new SimDevice(spec, shared))
  for (const device of devices) device.start()
  shared.log('info', `simulating ${devices.length} devices against ${options.url}`, {
    devices: devices.length,
  })

  let stopping: Promise<void> | undefined
  const stop = () => {
    stopping ??= (async () => {
      shared.stopped = true
      const deadline = Date.now() + options.stopTimeoutMs
      await Promise.all(devices.map((d) => d.stop(deadline)))
      shared.log('info', 'simulator stopped', {})
    })()
    return stopping
  }

  const stats = (): SimStats => {
    const perDevice = devices.map((d) => d.stats())
    const sum = (pick: (s: DeviceStats) => number) => perDevice.reduce((acc, s) => acc + pick(s), 0)
    const faults = emptyFaultCounts()
    for (const s of perDevice) for (const name of FAULT_NAMES) faults[name] += s.faults[name]
    return {
      devices: perDevice.length,
      connected: perDevice.filter((s) => s.connected).length,
      readings: sum((s) => s.readings),
      published: sum((s) => s.published),
      acked: sum((s) => s.acked),
      ackedReadings: sum((s) => s.ackedReadings),
      lost: sum((s) => s.lost),
      connects: sum((s) => s.connects),
      reconnects: sum((s) => s.reconnects),
      disconnects: sum((s) => s.disconnects),
      errors: sum((s) => s.errors),
      backlog: sum((s) => s.backlog),
      backlogDropped: sum((s) => s.backlogDropped),
      configsApplied: sum((s) => s.configsApplied),
      configsRejected: sum((s) => s.configsRejected),
      commandsAnswered: sum((s) => s.commandsAnswered),
      expectedRejections: shared.rejectedTotal,
      selfCheckFailures: shared.selfCheckFailures,
      faults,
      perDevice,
    }
  }

  const ready = async (timeoutMs = 30_000) => {
    let timer: NodeJS.Timeout | undefined
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => {
        const waiting = devices.filter((d) => d.stats().connects === 0).map((d) => d.stats())
        const sample = waiting
          .slice(0, 5)
          .map((s) => `${s.id}${s.lastError ? ` (${s.lastError})` : ''}`)
          .join(', ')
        reject(
          new Error(
            `${waiting.length} of ${devices.length} devices never connected within ${timeoutMs} ms: ${sample}`,
          ),
        )
      }, timeoutMs)
    })
    try {
      await Promise.race([Promise.all(devices.map((d) => d.connectedOnce)), timeout])
    } finally {
      clearTimeout(timer)
    }
  }

  return { stop, stats, sent: shared.sent, rejected: shared.rejected, ready }
}
