import type { DeviceKind } from '../../firmware-contracts/index.ts'

/**
 * A reading as it is spooled and stored: validated, enriched with registry tags, stamped.
 * Identity in every store is (kind, device, ts): writing the same reading twice overwrites it.
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
