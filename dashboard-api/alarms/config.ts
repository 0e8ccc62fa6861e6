import { z } from 'zod'
import { envInt, envUrl } from '../../firmware-contracts/index.ts'

const HOUR = 3_600_000

/** Alarm rules, SLAs and outgoing webhooks, as environment variables (part of the dashboard's schema). */
export const AlarmEnvShape = {
  /** Rules are evaluated over the aggregator's views this often (never on the ingest path). */
  ALARM_EVAL_INTERVAL_MS: envInt(10, 600_000).default(1000),
  /** A condition must hold this long before an alarm is raised, and be gone this long before it clears. */
  ALARM_MIN_DURATION_MS: envInt(0, 86_400_000).default(60_000),
  /** Time to acknowledge before an unacknowledged alarm escalates, per priority. */
  ALARM_SLA_EMERGENCY_MS: envInt(1, 30 * 24 * HOUR).default(2 * HOUR),
  ALARM_SLA_HIGH_MS: envInt(1, 30 * 24 * HOUR).default(4 * HOUR),
  ALARM_SLA_WARNING_MS: envInt(1, 30 * 24 * HOUR).default(24 * HOUR),
  ALARM_SLA_TECHNICAL_MS: envInt(1, 30 * 24 * HOUR).default(24 * HOUR),
  /** Comma-separated http(s) URLs that receive every alarm transition as a signed JSON POST. */
  ALARM_WEBHOOK_URLS: z
    .string()
    .trim()
    .transform((v) =>
      v
        .split(',')
        .map((u) => u.trim())
        .filter(Boolean),
    )
    .pipe(z.array(envUrl(['http', 'https'])).max(10, 'expected at most 10 URLs'))
    // A receiver listed twice (or written two ways) would get each event twice under two delivery ids,
    // which it cannot tell for repeats: the SMS goes out twice.
    .transform((urls) => {
      const seen = new Set<string>()
      return urls.filter((u) => !seen.has(new URL(u).href) && seen.add(new URL(u).href))
    })
    .optional(),
  /** HMAC-SHA256 key of the `X-Kota-Signature` header (16+ characters); required with webhook URLs. */
  ALARM_WEBHOOK_SECRET: z.string().trim().min(16, 'expected a secret of at least 16 characters').optional(),
  ALARM_WEBHOOK_MAX_ATTEMPTS: envInt(1, 50).default(8),
  /** First retry delay; each further retry doubles it (with jitter), capped at 10 minutes. */
  ALARM_WEBHOOK_RETRY_MS: envInt(10, 600_000).default(5000),
  ALARM_WEBHOOK_TIMEOUT_MS: envInt(100, 120_000).default(10_000),
}

export const ALARM_PRIORITIES = ['emergency', 'high', 'warning', 'technical'] as const
export type AlarmPriority = (typeof ALARM_PRIORITIES)[number]

export interface AlarmsConfig {
  readonly evalIntervalMs: number
  readonly minDurationMs: number
  readonly slaMs: Readonly<Record<AlarmPriority, number>>
  readonly webhooks: {
    readonly urls: readonly string[]
    readonly secret: string | undefined
    readonly maxAttempts: number
    readonly retryMs: number
    readonly timeoutMs: number
  }
}

export const ALARMS_DEFAULTS: AlarmsConfig = {
  evalIntervalMs: 1000,
  minDurationMs: 60_000,
  slaMs: { emergency: 2 * HOUR, high: 4 * HOUR, warning: 24 * HOUR, technical: 24 * HOUR },
  webhooks: { urls: [], secret: undefined, maxAttempts: 8, retryMs: 5000, timeoutMs: 10_000 },
}

type AlarmEnv = z.output<z.ZodObject<typeof AlarmEnvShape>>

export function alarmsConfigFromEnv(e: AlarmEnv): AlarmsConfig {
  return {
    evalIntervalMs: e.ALARM_EVAL_INTERVAL_MS,
    minDurationMs: e.ALARM_MIN_DURATION_MS,
    slaMs: {
      emergency: e.ALARM_SLA_EMERGENCY_MS,
      high: e.ALARM_SLA_HIGH_MS,
      warning: e.ALARM_SLA_WARNING_MS,
      technical: e.ALARM_SLA_TECHNICAL_MS,
    },
    webhooks: {
      urls: e.ALARM_WEBHOOK_URLS ?? [],
      secret: e.ALARM_WEBHOOK_SECRET,
      maxAttempts: e.ALARM_WEBHOOK_MAX_ATTEMPTS,
      retryMs: e.ALARM_WEBHOOK_RETRY_MS,
      timeoutMs: e.ALARM_WEBHOOK_TIMEOUT_MS,
    },
  }
}
