import { z } from 'zod'
import { ConfigError, envInt, envPort, parseEnv } from '../firmware-contracts/index.ts'
import { type QueryConfig, QueryEnvShape } from '../ingest/query/config.ts'
import { AlarmEnvShape, type AlarmsConfig, alarmsConfigFromEnv } from './alarms/config.ts'

const token = z.string().trim().min(16, 'expected a token of at least 16 characters')

export const DashboardEnvSchema = z.object({
  HTTP_HOST: z.string().trim().min(1).default('0.0.0.0'),
  HTTP_PORT: envPort.default(8080),
  /** Bearer token for the REST API (installers, analysts). Unset: one is created in DATA_DIR/api-token. */
  API_TOKEN: token.optional(),
  /** Read-only token wall displays pass as `?token=`. Unset: the live stream and wall page are open. */
  DISPLAY_TOKEN: token.optional(),
  LIVE_INTERVAL_MS: envInt(50, 60_000).default(500),
  LIVE_MAX_BUFFERED_BYTES: envInt(1024, 64 * 1024 ** 2).default(1024 ** 2),
  LIVE_SLOW_CLIENT_TIMEOUT_MS: envInt(1000, 600_000).default(30_000),
  LIVE_HEARTBEAT_MS: envInt(1000, 600_000).default(30_000),
  LIVE_MAX_CLIENTS: envInt(1, 100_000).default(500),
  /** Comma-separated origins allowed to open the live stream from a browser; unset allows any. */
  // Each an origin as a browser sends it (scheme, host, port): an entry like `wall.example` or one with a
  // path matched no browser, so every display was refused with nothing said at start.
  LIVE_ALLOWED_ORIGINS: z
    .string()
    .trim()
    .refine(
      (v) => v.split(',').every((o) => o.trim() === '' || isOrigin(o.trim())),
      'expected comma-separated origins such as https://wall.denpasar.go.id (scheme and host, an optional port, no path)',
    )
    .optional(),
  /** A river alert level is left only when the water falls this many cm below its threshold. */
  RIVER_HYSTERESIS_CM: envInt(0, 1000).default(5),
  ...QueryEnvShape,
  ...AlarmEnvShape,
})

export interface DashboardConfig {
  readonly host: string
  readonly port: number
  readonly apiToken: string | undefined
  readonly displayToken: string | undefined
  readonly allowedOrigins: readonly string[] | undefined
  readonly live: {
    readonly intervalMs: number
    readonly maxBufferedBytes: number
    readonly slowClientTimeoutMs: number
    readonly heartbeatMs: number
    /** Displays connected at once; more are refused (503) so that unread sockets cannot exhaust memory. */
    readonly maxClients?: number
  }
  readonly aggregates: {
    readonly riverHysteresisCm: number
  }
  /** Limits of the analyst query API (defaults when left out). */
  readonly query?: QueryConfig
  /** Alarm rules, SLAs and webhooks (defaults when left out). */
  readonly alarms?: AlarmsConfig
}

function isOrigin(value: string): boolean {
  try {
    const url = new URL(value)
    return (
      (url.protocol === 'http:' || url.protocol === 'https:') &&
      url.username === '' &&
      url.password === '' &&
      url.pathname === '/' &&
      url.search === '' &&
      url.hash === '' &&
      !/^[a-z]+:\/\/[^/]+\/./i.test(value)
    )
  } catch {
    return false
  }
}

export function dashboardConfigFromEnv(env: Readonly<Record<string, string | undefined>>): DashboardConfig {
  const e = parseEnv('dashboard-api', DashboardEnvSchema, env)
  if (e.ALARM_WEBHOOK_URLS?.length && e.ALARM_WEBHOOK_SECRET === undefined)
    throw new ConfigError('dashboard-api', [
      {
        variable: 'ALARM_WEBHOOK_SECRET',
        message: 'required when ALARM_WEBHOOK_URLS is set (it signs every POST)',
      },
    ])
  return {
    host: e.HTTP_HOST,
    port: e.HTTP_PORT,
    apiToken: e.API_TOKEN,
    displayToken: e.DISPLAY_TOKEN,
    allowedOrigins: e.LIVE_ALLOWED_ORIGINS?.split(',')
      .map((o) => o.trim())
      .filter(Boolean),
    live: {
      intervalMs: e.LIVE_INTERVAL_MS,
      maxBufferedBytes: e.LIVE_MAX_BUFFERED_BYTES,
      slowClientTimeoutMs: e.LIVE_SLOW_CLIENT_TIMEOUT_MS,
      heartbeatMs: e.LIVE_HEARTBEAT_MS,
      maxClients: e.LIVE_MAX_CLIENTS,
    },
    aggregates: { riverHysteresisCm: e.RIVER_HYSTERESIS_CM },
    query: { maxPoints: e.QUERY_MAX_POINTS, timeoutMs: e.QUERY_TIMEOUT_MS },
    alarms: alarmsConfigFromEnv(e),
  }
}
