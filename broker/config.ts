import { z } from 'zod'
import { envInt, envPort, parseEnv } from '../firmware-contracts/index.ts'

const INTERNAL_NAME = /^internal-[a-z0-9-]{1,40}$/

/** `internal-<name>:<secret>` pairs of internal platform clients (dashboard, bridges); null when malformed. */
export function parseInternalCredentials(value: string): Array<{ name: string; secret: string }> | null {
  const out: Array<{ name: string; secret: string }> = []
  for (const part of value
    .split(',')
    .map((p) => p.trim())
    .filter(Boolean)) {
    const at = part.indexOf(':')
    const name = part.slice(0, Math.max(at, 0))
    const secret = part.slice(at + 1)
    if (at <= 0 || !INTERNAL_NAME.test(name) || secret.length < 24) return null
    out.push({ name, secret })
  }
  return out
}

export const BrokerEnvSchema = z
  .object({
    MQTT_HOST: z.string().trim().min(1).default('0.0.0.0'),
    MQTT_PORT: envPort.default(1883),
    /** MQTT over WebSocket (path `/mqtt`); unset: off. */
    MQTT_WS_PORT: envPort.optional(),
    /** MQTT over TLS; unset: off. Needs MQTT_TLS_CERT_FILE and MQTT_TLS_KEY_FILE. */
    MQTT_TLS_PORT: envPort.optional(),
    MQTT_TLS_CERT_FILE: z.string().trim().min(1).optional(),
    MQTT_TLS_KEY_FILE: z.string().trim().min(1).optional(),
    /** A client must send CONNECT within this time or is dropped. */
    MQTT_CONNECT_TIMEOUT_MS: envInt(1000, 120_000).default(10_000),
    /** Highest keepalive (seconds) a device may ask for. */
    MQTT_KEEPALIVE_LIMIT_S: envInt(10, 3600).default(600),
    /** Packets queued per client before CONNECT completes. */
    MQTT_QUEUE_LIMIT: envInt(1, 10_000).default(100),
    MQTT_MAX_TOPIC_LEVELS: envInt(3, 100).default(8),
    /** A packet declaring a larger remaining length closes the connection before it is buffered. */
    MQTT_MAX_PACKET_BYTES: envInt(1024, 256 * 1024 ** 2).default(1024 ** 2),
    /** Sustained publishes per second per device (token bucket refill). */
    MQTT_DEVICE_RATE_PER_SEC: envInt(1, 100_000).default(20),
    /** Publishes a device may send at once before it is slowed down (a backlog batch counts as one). */
    MQTT_DEVICE_BURST: envInt(1, 1_000_000).default(200),
    /** Publishes held back (slowed down) beyond the burst before a flooding device is disconnected. */
    MQTT_DEVICE_FLOOD_LIMIT: envInt(1, 1_000_000).default(200),
    /** Open connections per remote address, loopback included (load tests raise it). */
    MQTT_MAX_CONNECTIONS_PER_IP: envInt(1, 1_000_000).default(500),
    /**
     * Seconds a device's persistent session (clean=false) is kept while the device is offline: its
     * subscriptions and the config/cmd messages queued for it. MQTT 3.1.1 has no expiry of its own.
     */
    MQTT_SESSION_EXPIRY_S: envInt(1, 365 * 86_400).default(7 * 86_400),
    /** Internal platform clients: `internal-<name>:<secret>,…`; unset: none accepted. */
    MQTT_INTERNAL_CREDENTIALS: z.string().trim().optional(),
  })
  .superRefine((e, ctx) => {
    if (
      e.MQTT_INTERNAL_CREDENTIALS !== undefined &&
      parseInternalCredentials(e.MQTT_INTERNAL_CREDENTIALS) === null
    )
      ctx.addIssue({
        code: 'custom',
        // A path other than the variable itself keeps the secrets out of the error message.
        path: ['MQTT_INTERNAL_CREDENTIALS (value not shown)'],
        message: 'expected comma-separated internal-<name>:<secret> pairs with secrets of 24+ characters',
      })
    if (e.MQTT_TLS_PORT === undefined) return
    for (const key of ['MQTT_TLS_CERT_FILE', 'MQTT_TLS_KEY_FILE'] as const) {
      if (e[key] === undefined)
        ctx.addIssue({ code: 'custom', path: [key], message: 'required when MQTT_TLS_PORT is set' })
    }
  })

export interface BrokerConfig {
  readonly host: string
  readonly port: number
  readonly wsPort: number | undefined
  readonly tls: { readonly port: number; readonly certFile: string; readonly keyFile: string } | undefined
  readonly connectTimeoutMs: number
  readonly keepaliveLimitS: number
  readonly queueLimit: number
  readonly maxTopicLevels: number
  readonly maxPacketBytes: number
  readonly deviceRatePerSec: number
  readonly deviceBurst: number
  readonly deviceFloodLimit: number
  readonly maxConnectionsPerIp: number
  readonly sessionExpiryS: number
  readonly internalCredentials: ReadonlyArray<{ readonly name: string; readonly secret: string }>
}

export function brokerConfigFromEnv(env: Readonly<Record<string, string | undefined>>): BrokerConfig {
  const e = parseEnv('broker', BrokerEnvSchema, env)
  return {
    host: e.MQTT_HOST,
    port: e.MQTT_PORT,
    wsPort: e.MQTT_WS_PORT,
    tls:
      e.MQTT_TLS_PORT !== undefined && e.MQTT_TLS_CERT_FILE && e.MQTT_TLS_KEY_FILE
        ? { port: e.MQTT_TLS_PORT, certFile: e.MQTT_TLS_CERT_FILE, keyFile: e.MQTT_TLS_KEY_FILE }
        : undefined,
    connectTimeoutMs: e.MQTT_CONNECT_TIMEOUT_MS,
    keepaliveLimitS: e.MQTT_KEEPALIVE_LIMIT_S,
    queueLimit: e.MQTT_QUEUE_LIMIT,
    maxTopicLevels: e.MQTT_MAX_TOPIC_LEVELS,
    maxPacketBytes: e.MQTT_MAX_PACKET_BYTES,
    deviceRatePerSec: e.MQTT_DEVICE_RATE_PER_SEC,
    deviceBurst: e.MQTT_DEVICE_BURST,
    deviceFloodLimit: e.MQTT_DEVICE_FLOOD_LIMIT,
    maxConnectionsPerIp: e.MQTT_MAX_CONNECTIONS_PER_IP,
    sessionExpiryS: e.MQTT_SESSION_EXPIRY_S,
    internalCredentials: parseInternalCredentials(e.MQTT_INTERNAL_CREDENTIALS ?? '') ?? [],
  }
}
