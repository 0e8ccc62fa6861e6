import { createHash, timingSafeEqual } from 'node:crypto'
import type { AedesOptions, AuthenticateError, Client, PublishPacket, Subscription } from 'aedes'
import type { Logger } from 'pino'
import { CHANNELS, parseTopic, topicFor, validateStatus } from '../firmware-contracts/index.ts'
import type { PlatformBus } from '../ingest/events.ts'
import type { Ingest } from '../ingest/ingest.ts'
import type { PlatformMetrics } from '../ingest/metrics.ts'
import type { Device } from '../ingest/registry.ts'
import type { DeviceDirectory } from '../ingest/registry-replica.ts'

/** CONNACK return codes of MQTT 3.1.1 (Aedes maps them for MQTT 5). */
export const CONNACK = {
  BAD_USERNAME_OR_PASSWORD: 4,
  NOT_AUTHORIZED: 5,
} as const

export interface HookDeps {
  readonly registry: DeviceDirectory
  readonly ingest: Ingest
  readonly bus: PlatformBus
  readonly metrics: PlatformMetrics
  readonly log: Logger
}

export interface HookOptions {
  /** Token bucket per device: refill per second, capacity, and how far below empty before disconnecting. */
  readonly ratePerSec: number
  readonly burst: number
  readonly floodLimit: number
  readonly internalCredentials: ReadonlyArray<{ readonly name: string; readonly secret: string }>
  /** A device sent more than its bucket and flood allowance: the broker disconnects it. */
  readonly onFlood: (client: Client, deviceId: string) => void
  /** A publish was held back to slow a device down. */
  readonly onThrottle: (deviceId: string) => void
}

export const INTERNAL_PREFIX = 'internal-'
const TELEMETRY_SUFFIX = `/${CHANNELS.telemetry.path}`

/** A device's token bucket: publishes it may still send at once, as of `last` (performance.now()). */
interface Bucket {
  tokens: number
  last: number
}

type Identity =
  | {
      readonly kind: 'device'
      readonly device: Device
      readonly bucket: Bucket
      /** How many session-ending registry changes the device had when it authenticated (see endSessions). */
      readonly ended: number
    }
  | { readonly kind: 'internal'; readonly name: string }

type PublishCallback = (error?: Error | null) => void

/** What the hooks need of Aedes's persistence, reached through the client (`client.broker.persistence`). */
interface IncomingStore {
  incomingGetPacket(client: Client, packet: { messageId?: number }): Promise<unknown>
}

/** A QoS 2 PUBLISH whose reading is on its way to the spool, and the resends (dup) waiting for it. */
interface Qos2InFlight {
  readonly client: Client
  readonly resends: Array<{ readonly client: Client; readonly cb: PublishCallback }>
}

function authError(message: string, returnCode: number): AuthenticateError {
  return Object.assign(new Error(message), { returnCode }) as AuthenticateError
}

const digest = (v: Uint8Array | string) => createHash('sha256').update(v).digest()

/**
 * The broker's security and ingest hooks, in the shape Aedes injects them. Safe defaults: anything not
 * explicitly allowed is refused. A device speaks only for itself: client id = username = device id.
 * Internal platform clients (`internal-<name>`) may send config/cmd down to devices and read what they send up.
 */
export function createHooks(deps: HookDeps, options: HookOptions) {
  const identities = new WeakMap<Client, Identity>()
  const internal = new Map(options.internalCredentials.map((c) => [c.name, digest(c.secret)]))
  // Longest first, so that the first name an id extends is its owner.
  const internalNames = [...internal.keys()].sort((a, b) => b.length - a.length)
  const internalOwnerOf = (id: string) => internalNames.find((n) => id === n || id.startsWith(`${n}-`))
  const ratePerMs = options.ratePerSec / 1000
  /**
   * Per device id, not per connection: a device disconnected for flooding that reconnected at once got a
   * full bucket again, another burst and flood allowance each time. Only registered devices get one.
   */
  const buckets = new Map<string, Bucket>()
  /**
   * Per device id, how many times the registry ended its sessions (rotation, revocation). A change that
   * lands between a CONNECT's authentication and its CONNACK finds no live session to close; the broker
   * asks `outlived` when the CONNACK is out. Only devices that had such a change get an entry.
   */
  const sessionEnds = new Map<string, { count: number; reason: string }>()
  /** By device id and packet id: QoS 2 readings waiting for their commit (see receiveQos2). */
  const qos2InFlight = new Map<string, Qos2InFlight>()

  const refuseConnect = (
    client: Client,
    reason: string,
    done: Parameters<AedesOptions['authenticate'] & {}>[3],
  ) => {
    deps.metrics.mqttConnectionsRefused.inc({ reason })
    deps.log.warn({ clientId: String(client.id).slice(0, 64), reason }, 'connection refused')
    done(authError('bad username or password', CONNACK.BAD_USERNAME_OR_PASSWORD), false)
  }

  const authenticate: NonNullable<AedesOptions['authenticate']> = (client, username, password, done) => {
    if (typeof username !== 'string') return refuseConnect(client, 'bad_credentials', done)
    if (username.startsWith(INTERNAL_PREFIX)) {
      const expected = internal.get(username)
      // Internal clients may run several connections: client id = username or username-<suffix>. An id
      // belongs to the longest name it so extends: `internal-a` may not take `internal-a-b-1`'s session.
      const idOk = internalOwnerOf(String(client.id)) === username
      if (expected === undefined || password === undefined || !idOk)
        return refuseConnect(client, 'bad_credentials', done)
      if (!timingSafeEqual(digest(password), expected)) return refuseConnect(client, 'bad_credentials', done)
      // Readings are kept by the spool; what internal clients get is a live copy. A persistent session
      // would queue every routed reading in memory while its client is away (20,000 a second at load).
      if (!client.clean) return refuseConnect(client, 'persistent_session', done)
      identities.set(client, { kind: 'internal', name: username })
      return done(null, true)
    }
    if (client.id !== username) return refuseConnect(client, 'client_id_mismatch', done)
    const device = deps.registry.verify(username, password)
    if (device === undefined) return refuseConnect(client, 'bad_credentials', done)
    let bucket = buckets.get(device.id)
    if (bucket === undefined) {
      bucket = { tokens: options.burst, last: performance.now() }
      buckets.set(device.id, bucket)
    }
    identities.set(client, { kind: 'device', device, bucket, ended: sessionEnds.get(device.id)?.count ?? 0 })
    done(null, true)
  }

  const refusePublish = (client: Client, reason: string, cb: (error?: Error | null) => void) => {
    deps.metrics.mqttPublishesRefused.inc({ reason })
    deps.log.warn({ clientId: String(client.id).slice(0, 64), reason }, 'publish refused')
    cb(new Error(`publish refused: ${reason}`))
  }

  const authorizePublish: NonNullable<AedesOptions['authorizePublish']> = (client, packet, cb) => {
    // Publishes by the platform itself (no client) pass; a device's last will passes here with its client.
    if (client === null) return cb(null)
    const identity = identities.get(client)
    if (identity === undefined) return refusePublish(client, 'unauthenticated', cb)
    const topic = parseTopic(packet.topic)
    if (!topic.ok) return refusePublish(client, 'bad_topic', cb)
    if (identity.kind === 'internal') {
      if (CHANNELS[topic.channel].direction !== 'down') return refusePublish(client, 'up_channel', cb)
      if (packet.retain && topic.channel !== 'config') return refusePublish(client, 'retain', cb)
      return cb(null)
    }
    const device = identity.device
    if (topic.deviceId !== device.id) return refusePublish(client, 'foreign_topic', cb)
    if (CHANNELS[topic.channel].direction !== 'up') return refusePublish(client, 'down_channel', cb)
    if (packet.retain) return refusePublish(client, 'retain', cb)
    // Refresh: the registry may have revoked or re-tagged the device since CONNECT.
    const current = deps.registry.get(device.id)
    if (current === undefined || (current.status !== 'active' && current.status !== 'provisioned')) {
      return refusePublish(client, 'revoked', cb)
    }
    // A last will has no packet id: nothing to deduplicate.
    if (packet.qos === 2 && packet.messageId !== undefined)
      return receiveQos2(client, identity.bucket, current, packet, topic.channel, cb)
    admit(client, identity.bucket, current, packet, topic.channel, cb)
  }

  /**
   * Exactly once for QoS 2. Aedes asks authorizePublish before it looks for the packet id among the
   * session's unreleased QoS 2 messages, so every resend (dup=1, before PUBREL, on the same connection or
   * a persistent session's next one) used to be validated and spooled again. A resend now waits for the
   * first one's commit, or is answered at once when Aedes holds the message already (it sends PUBREC
   * again without publishing). Only a PUBLISH marked dup is taken for a resend: a device that lost its
   * session state and reuses an unreleased packet id for a new reading (against MQTT, but it happens
   * after a reboot) gets that reading stored rather than acknowledged and dropped.
   */
  function receiveQos2(
    client: Client,
    bucket: Bucket,
    device: Device,
    packet: PublishPacket,
    channel: string,
    cb: PublishCallback,
  ) {
    const key = `${device.id}/${packet.messageId}`
    const pending = packet.dup ? qos2InFlight.get(key) : undefined
    // The same session: this connection, or the next one of a persistent session. A clean session that
    // took over starts afresh, and its packet ids are its own.
    if (pending !== undefined && (pending.client === client || !client.clean)) {
      pending.resends.push({ client, cb })
      return
    }
    const entry: Qos2InFlight = { client, resends: [] }
    qos2InFlight.set(key, entry)
    const settle = (err?: Error | null) => {
      if (qos2InFlight.get(key) === entry) qos2InFlight.delete(key)
      answerQos2(client, cb, err)
      // After the first one's PUBREC path has stored the message, so that Aedes answers the resends as such.
      for (const resend of entry.resends) setImmediate(answerQos2, resend.client, resend.cb, err)
    }
    if (!packet.dup) return admit(client, bucket, device, packet, channel, settle)
    const store = (client as unknown as { broker: { persistence: IncomingStore } }).broker.persistence
    store.incomingGetPacket(client, packet).then(
      () => settle(null),
      () => admit(client, bucket, device, packet, channel, settle),
    )
  }

  /**
   * Aedes keeps a QoS 2 message for its PUBREL under the client id once `cb` succeeds. For a session that
   * ended meanwhile (a clean one, or one a clean session took over) that entry would outlive it and make the
   * next session's new message with this packet id look like a resend, acknowledged and never stored: such
   * a connection gets an error instead (it is closed; its reading is durable all the same).
   */
  function answerQos2(client: Client, cb: PublishCallback, err: Error | null | undefined) {
    if (err) cb(err)
    else if (sessionEnded(client)) cb(new Error('session ended before its QoS 2 reading was durable'))
    else cb(null)
  }

  /** A closed connection whose session did not carry over: clean, or taken over by a clean one. */
  function sessionEnded(client: Client): boolean {
    if (!client.closed) return false
    if (client.clean) return true
    const successor = (client as unknown as { broker: { clients: Record<string, Client | undefined> } })
      .broker.clients[client.id]
    return successor !== undefined && successor !== client && successor.clean
  }

  /** The device's token bucket, then the reading itself. */
  function admit(
    client: Client,
    bucket: Bucket,
    device: Device,
    packet: PublishPacket,
    channel: string,
    cb: PublishCallback,
  ) {
    // Token bucket, computed on arrival (no timer unless the device is over its rate).
    const now = performance.now()
    bucket.tokens = Math.min(options.burst, bucket.tokens + (now - bucket.last) * ratePerMs) - 1
    bucket.last = now
    let delayMs = 0
    if ((client as Client & { closed?: boolean }).closed === true) {
      // A last will: nothing left to hold back, but it is the device's publish all the same. Uncounted, a
      // device that connected and dropped at once left one more reading per connection (40 in 0.3 s at
      // 1/s in the test). Past the flood allowance it is dropped, and the debt goes no deeper.
      if (bucket.tokens < -options.floodLimit) {
        bucket.tokens = -options.floodLimit
        return refusePublish(client, 'will_over_rate', cb)
      }
    } else {
      if (bucket.tokens < -options.floodLimit) {
        // No burst for its next connection: it starts at its sustained rate.
        bucket.tokens = 0
        deps.log.warn({ deviceId: device.id }, 'device flooding; disconnecting')
        options.onFlood(client, device.id)
        return cb(new Error('publish refused: flood'))
      }
      if (bucket.tokens < 0) {
        // Slow down first: hold the acknowledgement (and Aedes's next read) until the bucket refills.
        delayMs = Math.ceil(-bucket.tokens / ratePerMs)
        options.onThrottle(device.id)
      }
    }
    // No closure per publish unless it is held back: this runs for every reading.
    if (delayMs > 0) setTimeout(accept, delayMs, device, packet, channel, cb)
    else accept(device, packet, channel, cb)
  }

  function accept(
    device: Device,
    packet: PublishPacket,
    channel: string,
    cb: (error?: Error | null) => void,
  ) {
    switch (channel) {
      case 'telemetry':
        return onTelemetry(device, packet, cb)
      case 'status':
        onStatus(device, packet)
        return cb(null)
      default:
        return cb(null)
    }
  }

  function onTelemetry(device: Device, packet: PublishPacket, cb: (error?: Error | null) => void) {
    const payload = Buffer.isBuffer(packet.payload) ? packet.payload : Buffer.from(packet.payload)
    if (packet.qos === 0) {
      // QoS 0 is best effort by definition: no acknowledgement to hold, so accept first and store after.
      cb(null)
      deps.ingest.telemetry(
        device,
        payload,
        (err, accepted) => {
          if (err !== undefined) deps.log.error({ err, deviceId: device.id }, 'ingest failed')
          else deps.metrics.countAccepted(device.kind, accepted)
        },
        true,
      )
      return
    }
    // Acknowledged means durable: Aedes writes the PUBACK only after `cb`, so it waits for the spool.
    const started = performance.now()
    deps.ingest.telemetry(device, payload, (err, accepted) => {
      if (err !== undefined) {
        deps.log.error({ err, deviceId: device.id }, 'ingest failed; not acknowledging')
        return cb(err)
      }
      deps.metrics.countAccepted(device.kind, accepted)
      deps.metrics.publishToDurableSeconds.observe((performance.now() - started) / 1000)
      // Aedes writes the PUBACK through mqtt-packet, which corks the socket until the next tick: a
      // commit's acknowledgements to one device, released in one pass, leave in one write.
      cb(null)
    })
  }
  function onStatus(device: Device, packet: PublishPacket) {
    const result = validateStatus(packet.payload, { now: Date.now() })
    if (!result.ok) {
      // A malformed status is logged and ignored; the broker's own connect/disconnect events still tell the truth.
      deps.log.warn({ deviceId: device.id, reason: result.rejection.code }, 'status message rejected')
      return
    }
    const online = result.value.online
    deps.bus.emit('device.status', {
      deviceId: device.id,
      online,
      at: Date.now(),
      source: online ? 'birth' : 'will',
    })
  }

  const UP_CHANNEL_PATHS = new Set<string>(
    Object.values(CHANNELS)
      .filter((c) => c.direction === 'up')
      .map((c) => c.path),
  )

  /** Internal clients read what devices send up: `devices/+/<up channel>`, `devices/<id>/<up channel>`. */
  function internalMaySubscribe(filter: string): boolean {
    const levels = filter.split('/')
    if (levels[0] !== 'devices' || levels.length < 3 || levels.length > 4) return false
    const id = levels[1] as string
    if (id !== '+' && !parseTopic(`devices/${id}/telemetry`).ok) return false
    return UP_CHANNEL_PATHS.has(levels.slice(2).join('/'))
  }

  // Set for good once an internal client subscribes to an up channel: from then on every device publish is
  // routed through Aedes (online and offline sessions alike), as a plain broker would.
  let upChannelSubscribed = false

  /** The one subscription rule: a device its own config and cmd, an internal client the up channels. */
  function maySubscribe(client: Client, topic: string): boolean {
    const identity = identities.get(client)
    if (identity?.kind === 'device')
      return topic === topicFor(identity.device.id, 'config') || topic === topicFor(identity.device.id, 'cmd')
    return identity?.kind === 'internal' && internalMaySubscribe(topic)
  }

  const authorizeSubscribe: NonNullable<AedesOptions['authorizeSubscribe']> = (client, sub, cb) => {
    const allowed = maySubscribe(client, sub.topic)
    if (allowed && identities.get(client)?.kind === 'internal') upChannelSubscribed = true
    if (!allowed) {
      deps.metrics.mqttPublishesRefused.inc({ reason: 'subscribe_refused' })
      // A refusal (SUBACK 0x80), not an error: the device stays connected and learns what it may not do.
      return cb(null, null as unknown as Subscription)
    }
    cb(null, sub)
  }

  return {
    authenticate,
    authorizePublish,
    authorizeSubscribe,
    maySubscribe,
    /**
     * A device's telemetry publish that no subscriber can want: nothing but internal clients may subscribe
     * to up channels, and none has. Its reading is in the spool already (authorizePublish).
     */
    unrouted: (client: Client | null, packet: PublishPacket): boolean =>
      !upChannelSubscribed &&
      client !== null &&
      identities.get(client)?.kind === 'device' &&
      packet.topic.endsWith(TELEMETRY_SUFFIX),
    /** The registry ended a device's sessions (rotation, revocation): one that is still connecting is outlived. */
    endSessions: (deviceId: string, reason: string): void => {
      sessionEnds.set(deviceId, { count: (sessionEnds.get(deviceId)?.count ?? 0) + 1, reason })
    },
    /** Why a device connection authenticated before the registry ended its sessions must end; else undefined. */
    outlived: (client: Client): string | undefined => {
      const identity = identities.get(client)
      if (identity?.kind !== 'device') return undefined
      const ends = sessionEnds.get(identity.device.id)
      return ends !== undefined && ends.count !== identity.ended ? ends.reason : undefined
    },
    deviceOf: (client: Client): Device | undefined => {
      const identity = identities.get(client)
      return identity?.kind === 'device' ? identity.device : undefined
    },
  }
}
