import type { AedesOptions, AuthenticateError, Client, PublishPacket, Subscription } from 'aedes'
import type { Logger } from 'pino'
import { CHANNELS, parseTopic, topicFor, validateStatus } from '../firmware-contracts/index.ts'
import type { PlatformBus } from '../ingest/events.ts'
import type { Ingest } from '../ingest/ingest.ts'
import type { PlatformMetrics } from '../ingest/metrics.ts'
import type { Device, DeviceRegistry } from '../ingest/registry.ts'

/** CONNACK return codes of MQTT 3.1.1 (Aedes maps them for MQTT 5). */
export const CONNACK = {
  BAD_USERNAME_OR_PASSWORD: 4,
  NOT_AUTHORIZED: 5,
} as const

export interface HookDeps {
  readonly registry: DeviceRegistry
  readonly ingest: Ingest
  readonly bus: PlatformBus
  readonly metrics: PlatformMetrics
  readonly log: Logger
}

function authError(message: string, returnCode: number): AuthenticateError {
  return Object.assign(new Error(message), { returnCode }) as AuthenticateError
}

/**
 * The broker's security and ingest hooks, in the shape Aedes injects them. Safe defaults: anything not
 * explicitly allowed is refused. A device speaks only for itself: client id = username = device id.
 */
export function createHooks(deps: HookDeps) {
  const devices = new WeakMap<Client, Device>()

  const authenticate: NonNullable<AedesOptions['authenticate']> = (client, username, password, done) => {
    const device =
      typeof username === 'string' && client.id === username
        ? deps.registry.verify(username, password)
        : undefined
    if (device === undefined) {
      const reason = client.id !== username ? 'client_id_mismatch' : 'bad_credentials'
      deps.metrics.mqttConnectionsRefused.inc({ reason })
      deps.log.warn({ clientId: String(client.id).slice(0, 64), reason }, 'connection refused')
      return done(authError('bad username or password', CONNACK.BAD_USERNAME_OR_PASSWORD), false)
    }
    devices.set(client, device)
    done(null, true)
  }

  const refusePublish = (client: Client, reason: string, cb: (error?: Error | null) => void) => {
    deps.metrics.mqttPublishesRefused.inc({ reason })
    deps.log.warn({ deviceId: client.id, reason }, 'publish refused')
    cb(new Error(`publish refused: ${reason}`))
  }

  const authorizePublish: NonNullable<AedesOptions['authorizePublish']> = (client, packet, cb) => {
    // Publishes by the platform itself (no client) pass; a device's last will passes here with its client.
    if (client === null) return cb(null)
    const device = devices.get(client)
    if (device === undefined) return refusePublish(client, 'unauthenticated', cb)
    const topic = parseTopic(packet.topic)
    if (!topic.ok) return refusePublish(client, 'bad_topic', cb)
    if (topic.deviceId !== device.id) return refusePublish(client, 'foreign_topic', cb)
    if (CHANNELS[topic.channel].direction !== 'up') return refusePublish(client, 'down_channel', cb)
    if (packet.retain) return refusePublish(client, 'retain', cb)
    // Refresh: the registry may have revoked or re-tagged the device since CONNECT.
    const current = deps.registry.get(device.id)
    if (current === undefined || (current.status !== 'active' && current.status !== 'provisioned')) {
      return refusePublish(client, 'revoked', cb)
    }

    switch (topic.channel) {
      case 'telemetry':
        return onTelemetry(current, packet, cb)
      case 'status':
        onStatus(current, packet)
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
      deps.ingest
        .telemetry(device, payload)
        .catch((err) => deps.log.error({ err, deviceId: device.id }, 'ingest failed'))
      return
    }
    // Acknowledged means durable: Aedes writes the PUBACK only after this callback, so it waits for the spool.
    deps.ingest.telemetry(device, payload).then(
      () => cb(null),
      (err) => {
        deps.log.error({ err, deviceId: device.id }, 'ingest failed; not acknowledging')
        cb(err instanceof Error ? err : new Error(String(err)))
      },
    )
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

  const authorizeSubscribe: NonNullable<AedesOptions['authorizeSubscribe']> = (client, sub, cb) => {
    const device = devices.get(client)
    const allowed =
      device !== undefined &&
      (sub.topic === topicFor(device.id, 'config') || sub.topic === topicFor(device.id, 'cmd'))
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
    deviceOf: (client: Client) => devices.get(client),
  }
}
