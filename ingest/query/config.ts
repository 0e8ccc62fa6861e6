import { envInt } from '../../firmware-contracts/index.ts'

/** Limits of the analyst query API, as environment variables (part of the dashboard's schema). */
export const QueryEnvShape = {
  /** Values (rows × columns) one answer may hold; larger queries get `query_too_large`. */
  QUERY_MAX_POINTS: envInt(100, 10_000_000).default(100_000),
  /** A store that has not answered by then gets its query cancelled, and the client `query_timeout`. */
  QUERY_TIMEOUT_MS: envInt(100, 600_000).default(15_000),
}

export interface QueryConfig {
  readonly maxPoints: number
  readonly timeoutMs: number
}

export const QUERY_DEFAULTS: QueryConfig = { maxPoints: 100_000, timeoutMs: 15_000 }
