import type { DeviceKind } from '../../firmware-contracts/index.ts'

/**
 * A reading as it is spooled and stored: validated, enriched with registry tags, stamped.
 * Identity in every store is (kind, device, ts): writing the same reading twice overwrites it. So does a
 * different reading of the device with the same `ts` (another `seq`): the later one's seq, receivedAt and
 * metrics win, metrics it leaves out keep the earlier values (InfluxDB's merge of a re-written point).
 */
export interface StoredReading {
  /** Measurement (InfluxDB) / table (embedded store). */
  readonly kind: DeviceKind
  readonly device: string
  readonly district: string
  readonly regency: string
  /** Observation time in ms since epoch: the device's `ts`, or the server receive time when it sent none. */
  readonly ts: number
  /** Server receive time in ms, kept so that late data can be told apart. */
  readonly receivedAt: number
  readonly seq: number
  /** Contract metrics of the kind (battery and rssi included), all numbers. */
  readonly fields: Readonly<Record<string, number>>
}

export interface DeviceRangeQuery {
  readonly kind: DeviceKind
  readonly device: string
  /** Inclusive bounds, ms since epoch. */
  readonly from: number
  readonly to: number
  /** At most this many rows, oldest first. */
  readonly limit: number
}

export type ReadingRow = StoredReading

/** Aggregates of the analyst query API; `p95` is nearest-rank (InfluxQL PERCENTILE), see README.md, Analyst API. */
export const ANALYST_AGGREGATES = ['mean', 'min', 'max', 'sum', 'count', 'last', 'p95'] as const
export type AnalystAggregate = (typeof ANALYST_AGGREGATES)[number]

/**
 * An analyst query in the form both stores run (built and checked by `ingest/query/`): every name comes
 * from a closed list or the registry's id grammar, every string is passed on as a literal.
 */
export interface AnalystQuery {
  readonly kind: DeviceKind
  /** Tag filters, all of which must match; stored tags are compared exactly. */
  readonly filter: {
    readonly devices?: readonly string[]
    readonly district?: string
    readonly regency?: string
  }
  /** Contract metrics of the kind, or `seq` / `receivedAt`. */
  readonly fields: readonly string[]
  /** Observation time range in ms, `from` inclusive, `to` exclusive. */
  readonly from: number
  readonly to: number
  /** Window length in ms; undefined for raw readings. */
  readonly windowMs?: number
  /** IANA zone of a fixed UTC offset (`tzOffsetMs`): windows start at local multiples of `windowMs`. */
  readonly tz: string
  readonly tzOffsetMs: number
  /** Per field, in this order (windowed queries only). */
  readonly aggregates: readonly AnalystAggregate[]
  readonly groupBy: 'device' | 'district'
  /** A store returns at most this many rows plus one, so the caller can tell that there were more. */
  readonly maxRows: number
}

/** One row of an analyst query. */
export interface AnalystRow {
  /** The device id or the district, as `groupBy` says. */
  readonly group: string
  /** Raw: the observation time; windowed: the window's start. ms since epoch. */
  readonly time: number
  /** Raw rows only. */
  readonly device?: string
  /** Raw: one per field; windowed: one per field and aggregate, field-major. */
  readonly values: readonly (number | null)[]
}

export interface AnalystQueryOptions {
  /** The store gives up (and stops the query where it can) after this long. */
  readonly timeoutMs: number
}

/** The store did not answer an analyst query within its time limit. */
export class QueryTimeoutError extends Error {
  override readonly name = 'QueryTimeoutError'
}

/**
 * An analyst query failed because the store could not be reached (refused or reset connection, a 5xx,
 * a store that is closed or cannot be opened), not because of the query: asking again later can succeed.
 */
export class StoreUnavailableError extends Error {
  override readonly name = 'StoreUnavailableError'
}

export type StoreKind = 'influxdb' | 'duckdb'

/**
 * A time-series store. Implementations: InfluxDB 1.x/2.x (`influx.ts`) and the embedded DuckDB store
 * (`duckdb.ts`). The same queries must give the same answers on both.
 */
export interface TimeSeriesStore {
  readonly kind: StoreKind
  /** One line for logs and the start-up banner, without secrets (e.g. "InfluxDB 1.x at http://..., database city"). */
  readonly description: string
  /** Creates databases/tables as needed; throws if the store cannot be reached. */
  init(): Promise<void>
  /**
   * Writes a batch. Resolves only when the store has durably accepted every reading; rejects with
   * `StoreWriteError` otherwise. Re-writing a reading already stored is harmless (same identity).
   */
  write(readings: readonly StoredReading[]): Promise<void>
  /** Readings of one device in a time range, oldest first. */
  queryDevice(query: DeviceRangeQuery): Promise<ReadingRow[]>
  /**
   * Rows of an analyst query, ordered by group, time (and device): windows without any value are left
   * out; at most `maxRows + 1` rows. Rejects with QueryTimeoutError after `timeoutMs`, with
   * StoreUnavailableError when the store cannot be reached.
   */
  analystQuery(query: AnalystQuery, options: AnalystQueryOptions): Promise<AnalystRow[]>
  close(): Promise<void>
}

/**
 * Why a write failed, and whether trying the same batch again can succeed. A non-retryable error on a
 * batch means at least one reading was refused (HTTP 4xx, constraint): the writer splits the batch to
 * find it and sets it aside, so one bad line never blocks the rest.
 */
export class StoreWriteError extends Error {
  override readonly name = 'StoreWriteError'
  constructor(
    message: string,
    readonly retryable: boolean,
    readonly statusCode?: number,
    options?: { cause?: unknown },
  ) {
    super(message, options)
  }
}
