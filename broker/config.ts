import { z } from 'zod'
import { envInt, envPort, parseEnv } from '../firmware-contracts/index.ts'

export const BrokerEnvSchema = z.object({
  MQTT_HOST: z.string().trim().min(1).default('0.0.0.0'),
  MQTT_PORT: envPort.default(1883),
  /** A client must send CONNECT within this time or is dropped. */
  MQTT_CONNECT_TIMEOUT_MS: envInt(1000, 120_000).default(10_000),
  /** Highest keepalive (seconds) a device may ask for. */
  MQTT_KEEPALIVE_LIMIT_S: envInt(10, 3600).default(600),
  /** Packets queued per client before CONNECT completes. */
  MQTT_QUEUE_LIMIT: envInt(1, 10_000).default(100),
  MQTT_MAX_TOPIC_LEVELS: envInt(3, 100).default(8),
})

export interface BrokerConfig {
  readonly host: string
  readonly port: number
  readonly connectTimeoutMs: number
  readonly keepaliveLimitS: number
  readonly queueLimit: number
  readonly maxTopicLevels: number
}

export function brokerConfigFromEnv(env: Readonly<Record<string, string | undefined>>): BrokerConfig {
  const e = parseEnv('broker', BrokerEnvSchema, env)
  return {
    host: e.MQTT_HOST,
    port: e.MQTT_PORT,
    connectTimeoutMs: e.MQTT_CONNECT_TIMEOUT_MS,
    keepaliveLimitS: e.MQTT_KEEPALIVE_LIMIT_S,
    queueLimit: e.MQTT_QUEUE_LIMIT,
    maxTopicLevels: e.MQTT_MAX_TOPIC_LEVELS,
  }
}
