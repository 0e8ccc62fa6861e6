import { isIPv4 } from 'node:net'
import { resolve } from 'node:path'
import { z } from 'zod'
import { envInt, envUrl, parseEnv } from '../firmware-contracts/index.ts'

// Blank is not a name: a database, organisation or token of spaces only was taken as given.
const NON_EMPTY = 'expected a value that is not blank'

export const IngestEnvSchema = z
  .object({
    DATA_DIR: z.string().trim().min(1, NON_EMPTY).default('./data'),
    /** Set to use InfluxDB; unset, readings go to the embedded DuckDB store under DATA_DIR. */
    INFLUX_URL: envUrl(['http', 'https']).optional(),
    /** `v2` for InfluxDB 2.x/3.x (token, org, bucket); `v1` for 1.x (database, optional user/password). */
    INFLUX_API: z.enum(['v1', 'v2'], 'expected v1 or v2').optional(),
    INFLUX_TOKEN: z.string().trim().min(1, NON_EMPTY).optional(),
    INFLUX_ORG: z.string().trim().min(1, NON_EMPTY).optional(),
    INFLUX_BUCKET: z.string().trim().min(1, NON_EMPTY).optional(),
    INFLUX_DATABASE: z.string().trim().min(1, NON_EMPTY).default('city'),
    INFLUX_RETENTION_POLICY: z.string().trim().min(1, NON_EMPTY).optional(),
    INFLUX_USERNAME: z.string().trim().min(1, NON_EMPTY).optional(),
    INFLUX_PASSWORD: z.string().min(1).optional(),
    INFLUX_TIMEOUT_MS: envInt(1000, 600_000).default(10_000),
    INFLUX_CONTENT_ENCODING: z
      .enum(['auto', 'gzip', 'identity'], 'expected auto, gzip or identity')
      .default('auto'),
    SPOOL_MAX_MEMORY_READINGS: envInt(1000, 50_000_000).default(200_000),
    SPOOL_MAX_BYTES: envInt(1_000_000, Number.MAX_SAFE_INTEGER).default(4 * 1024 ** 3),
    SPOOL_SEGMENT_BYTES: envInt(65_536, 1024 ** 3).default(64 * 1024 ** 2),
    // InfluxDB spends much of its CPU per request: fewer, larger batches cost it less. Building one blocks the
    // platform thread (~1.5 µs a reading), not the broker thread, so acknowledgements do not wait for it.
    WRITER_BATCH_SIZE: envInt(1, 100_000).default(5000),
    WRITER_MAX_WAIT_MS: envInt(0, 10_000).default(500),
    INGEST_MAX_FUTURE_SKEW_MS: envInt(0, 86_400_000).default(300_000),
    INGEST_MAX_PAYLOAD_BYTES: envInt(256, 16 * 1024 ** 2).default(65_536),
    /** HMAC key for device secrets (hex, 32+ characters). Unset: a key is created in DATA_DIR/registry.key. */
    REGISTRY_KEY: z
      .string()
      .regex(/^[0-9a-fA-F]{32,}$/, 'expected at least 32 hexadecimal characters')
      .optional(),
  })
  .superRefine((env, ctx) => {
    if (env.INFLUX_URL === undefined) return
    const api = env.INFLUX_API ?? (env.INFLUX_TOKEN ? 'v2' : 'v1')
    if (api === 'v2') {
      for (const key of ['INFLUX_TOKEN', 'INFLUX_ORG', 'INFLUX_BUCKET'] as const) {
        if (!env[key])
          ctx.addIssue({ code: 'custom', path: [key], message: 'required for InfluxDB 2.x (INFLUX_API=v2)' })
      }
    }
  })

export type InfluxConfig =
  | {
      readonly apiVersion: 'v2'
      readonly url: string
      readonly token: string
      readonly org: string
      readonly bucket: string
      readonly timeoutMs: number
      readonly contentEncoding: 'gzip' | 'identity'
    }
  | {
      readonly apiVersion: 'v1'
      readonly url: string
      readonly database: string
      readonly retentionPolicy?: string
      readonly username?: string
      readonly password?: string
      readonly timeoutMs: number
      readonly contentEncoding: 'gzip' | 'identity'
    }

export interface IngestConfig {
  readonly dataDir: string
  readonly influx: InfluxConfig | undefined
  readonly spool: { maxMemoryReadings: number; maxBytes: number; segmentBytes: number }
  readonly writer: { batchSize: number; maxBatchWaitMs: number }
  readonly maxFutureSkewMs: number
  readonly maxPayloadBytes: number
  readonly registryKeyHex: string | undefined
}

/**
 * `auto`: gzip, unless InfluxDB listens on this host's loopback. Compression saves network bandwidth, which
 * loopback has plenty of, and costs CPU on both sides: 3–4% of a core for the sender at 10,000 readings/s,
 * with nothing measurable saved by InfluxDB 1.6 (docs/performance-log.md).
 */
function influxContentEncoding(setting: 'auto' | 'gzip' | 'identity', url: string): 'gzip' | 'identity' {
  if (setting !== 'auto') return setting
  const host = new URL(url).hostname
  const loopback = host === 'localhost' || host === '[::1]' || (isIPv4(host) && host.startsWith('127.'))
  return loopback ? 'identity' : 'gzip'
}

export function ingestConfigFromEnv(env: Readonly<Record<string, string | undefined>>): IngestConfig {
  const e = parseEnv('ingest', IngestEnvSchema, env)
  let influx: InfluxConfig | undefined
  if (e.INFLUX_URL !== undefined) {
    const api = e.INFLUX_API ?? (e.INFLUX_TOKEN ? 'v2' : 'v1')
    const contentEncoding = influxContentEncoding(e.INFLUX_CONTENT_ENCODING, e.INFLUX_URL)
    influx =
      api === 'v2'
        ? {
            apiVersion: 'v2',
            url: e.INFLUX_URL,
            token: e.INFLUX_TOKEN!,
            org: e.INFLUX_ORG!,
            bucket: e.INFLUX_BUCKET!,
            timeoutMs: e.INFLUX_TIMEOUT_MS,
            contentEncoding,
          }
        : {
            apiVersion: 'v1',
            url: e.INFLUX_URL,
            database: e.INFLUX_DATABASE,
            retentionPolicy: e.INFLUX_RETENTION_POLICY,
            username: e.INFLUX_USERNAME,
            password: e.INFLUX_PASSWORD,
            timeoutMs: e.INFLUX_TIMEOUT_MS,
            contentEncoding,
          }
  }
  return {
    dataDir: resolve(e.DATA_DIR),
    influx,
    spool: {
      maxMemoryReadings: e.SPOOL_MAX_MEMORY_READINGS,
      maxBytes: e.SPOOL_MAX_BYTES,
      segmentBytes: e.SPOOL_SEGMENT_BYTES,
    },
    writer: { batchSize: e.WRITER_BATCH_SIZE, maxBatchWaitMs: e.WRITER_MAX_WAIT_MS },
    maxFutureSkewMs: e.INGEST_MAX_FUTURE_SKEW_MS,
    maxPayloadBytes: e.INGEST_MAX_PAYLOAD_BYTES,
    registryKeyHex: e.REGISTRY_KEY,
  }
}
