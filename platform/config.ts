import { isIP } from 'node:net'
import { z } from 'zod'
import { type BrokerConfig, brokerConfigFromEnv, TELEMETRY_PUBLISH_OVERHEAD_BYTES } from '../broker/index.ts'
import { type DashboardConfig, dashboardConfigFromEnv } from '../dashboard-api/index.ts'
import { ConfigError, envBool, envInt, parseEnv } from '../firmware-contracts/index.ts'
import { type IngestConfig, ingestConfigFromEnv } from '../ingest/config.ts'

export const PlatformEnvSchema = z.object({
  LOG_LEVEL: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info'),
  /** Start a simulated fleet inside the platform process (demo, trials). */
  SIM_ENABLED: envBool.default(true),
  SIM_DEVICES_PER_KIND: envInt(1, 1000).default(3),
  SIM_INTERVAL_MS: envInt(1000, 3_600_000).default(5000),
  SIM_SEED: envInt(0, 2 ** 31 - 1).default(20261123),
  /** Nice value of every thread but the acknowledgement path's (Linux); 0 leaves priorities alone. */
  PLATFORM_BACKGROUND_NICE: envInt(0, 19).default(10),
  /** Young-generation semi-space of the broker thread, MiB (two of them); 0 leaves V8's default. */
  PLATFORM_BROKER_SEMI_SPACE_MB: envInt(0, 256).default(64),
})

export interface PlatformConfig {
  readonly logLevel: z.infer<typeof PlatformEnvSchema>['LOG_LEVEL']
  readonly backgroundNice: number
  readonly brokerSemiSpaceMb: number
  readonly broker: BrokerConfig
  readonly ingest: IngestConfig
  readonly dashboard: DashboardConfig
  readonly sim: {
    readonly enabled: boolean
    readonly perKind: number
    readonly intervalMs: number
    readonly seed: number
  }
}

/**
 * Settings of two components that must agree. The broker's guard closes the connection on a packet over
 * MQTT_MAX_PACKET_BYTES before ingest sees it, so a payload limit that such a packet could exceed would
 * promise installers a `too_large` rejection they never get: the device just reconnects and resends.
 */
function payloadLimitProblems(broker: BrokerConfig, ingest: IngestConfig): ConfigError['problems'] {
  const fits = broker.maxPacketBytes - TELEMETRY_PUBLISH_OVERHEAD_BYTES
  if (ingest.maxPayloadBytes <= fits) return []
  return [
    {
      variable: 'INGEST_MAX_PAYLOAD_BYTES',
      message:
        `expected at most ${fits}, so that an allowed payload with its topic and packet id ` +
        `(${TELEMETRY_PUBLISH_OVERHEAD_BYTES} bytes) fits in MQTT_MAX_PACKET_BYTES (${broker.maxPacketBytes}); ` +
        'lower it or raise MQTT_MAX_PACKET_BYTES',
      value: String(ingest.maxPayloadBytes),
    },
  ]
}

const HOST_LABEL = /^[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?$/

/** An IP address, or a name made of RFC 1123 labels whose last one is not all digits (so not a bad IP). */
function isListenHost(host: string): boolean {
  if (isIP(host) !== 0) return true
  const labels = host.replace(/\.$/, '').split('.')
  return host.length <= 253 && labels.every((l) => HOST_LABEL.test(l)) && !/^\d+$/.test(labels.at(-1) ?? '')
}

/**
 * A listen address that is no address reached the listeners: the broker's socket was already open when the
 * API's failed in getaddrinfo, with an error naming no variable.
 */
function hostProblems(broker: BrokerConfig | undefined, dashboard: DashboardConfig | undefined) {
  const hosts = [
    ['MQTT_HOST', broker?.host],
    ['HTTP_HOST', dashboard?.host],
  ] as const
  return hosts.flatMap(([variable, host]) =>
    host === undefined || isListenHost(host)
      ? []
      : [
          {
            variable,
            message: 'expected an IP address or a host name, e.g. 0.0.0.0, 127.0.0.1 or ::',
            value: host,
          },
        ],
  )
}

const WILDCARD_HOSTS = ['0.0.0.0', '::']

/**
 * Two listeners on one port: the broker's took it, and the next one failed with EADDRINUSE after a socket
 * was open, naming no variable. Port 0 is any free port, and two distinct addresses may share a port.
 */
function portClashProblems(broker: BrokerConfig | undefined, dashboard: DashboardConfig | undefined) {
  const listeners = [
    ['MQTT_PORT', broker?.host, broker?.port],
    ['MQTT_WS_PORT', broker?.host, broker?.wsPort],
    ['MQTT_TLS_PORT', broker?.host, broker?.tls?.port],
    ['HTTP_PORT', dashboard?.host, dashboard?.port],
  ] as const
  const problems: ConfigError['problems'][number][] = []
  listeners.forEach(([variable, host, port], i) => {
    if (host === undefined || port === undefined || port === 0) return
    const taken = listeners
      .slice(0, i)
      .find(
        ([, h, p]) =>
          p === port &&
          h !== undefined &&
          (h === host || WILDCARD_HOSTS.includes(h) || WILDCARD_HOSTS.includes(host)),
      )
    if (taken)
      problems.push({
        variable,
        message: `expected a port other than ${taken[0]}'s (${port}): two listeners cannot share it`,
        value: String(port),
      })
  })
  return problems
}

/**
 * Validates every component's configuration before anything opens a socket, and reports all bad
 * variables of all components at once.
 */
export function loadPlatformConfig(env: Readonly<Record<string, string | undefined>>): PlatformConfig {
  const problems: ConfigError['problems'][number][] = []
  const attempt = <T>(fn: () => T): T | undefined => {
    try {
      return fn()
    } catch (err) {
      if (err instanceof ConfigError) {
        problems.push(...err.problems)
        return undefined
      }
      throw err
    }
  }
  const platform = attempt(() => parseEnv('platform', PlatformEnvSchema, env))
  const broker = attempt(() => brokerConfigFromEnv(env))
  const ingest = attempt(() => ingestConfigFromEnv(env))
  const dashboard = attempt(() => dashboardConfigFromEnv(env))
  if (broker && ingest) problems.push(...payloadLimitProblems(broker, ingest))
  problems.push(...hostProblems(broker, dashboard), ...portClashProblems(broker, dashboard))
  if (problems.length > 0 || !platform || !broker || !ingest || !dashboard)
    throw new ConfigError('platform', problems)
  return {
    logLevel: platform.LOG_LEVEL,
    backgroundNice: platform.PLATFORM_BACKGROUND_NICE,
    brokerSemiSpaceMb: platform.PLATFORM_BROKER_SEMI_SPACE_MB,
    broker,
    ingest,
    dashboard,
    sim: {
      enabled: platform.SIM_ENABLED,
      perKind: platform.SIM_DEVICES_PER_KIND,
      intervalMs: platform.SIM_INTERVAL_MS,
      seed: platform.SIM_SEED,
    },
  }
}

/** Test and embedding helper: the laptop defaults, with overrides on top. */
export function platformConfig(env: Readonly<Record<string, string | undefined>> = {}): PlatformConfig {
  return loadPlatformConfig(env)
}
