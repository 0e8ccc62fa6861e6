import { mkdirSync } from 'node:fs'
import { dirname, resolve } from 'node:path'
import {
  type DuckDBAppender,
  type DuckDBConnection,
  DuckDBInstance,
  type DuckDBValue,
} from '@duckdb/node-api'
import { z } from 'zod'
import { DEVICE_KINDS, type DeviceKind } from '../../firmware-contracts/index.ts'
import { analystSql } from '../query/sql.ts'
import { type MetricColumn, metricColumns, normalizeRangeQuery, readingProblem } from './schema.ts'
import {
  type AnalystQuery,
  type AnalystQueryOptions,
  type AnalystRow,
  type DeviceRangeQuery,
  QueryTimeoutError,
  type ReadingRow,
  type StoredReading,
  StoreUnavailableError,
  StoreWriteError,
  type TimeSeriesStore,
} from './types.ts'

export const DuckDbStoreOptionsSchema = z.object({
  /** Database file, created with its directory if missing; ':memory:' for a store that lives in RAM. */
  path: z.string().min(1),
})
export type DuckDbStoreOptions = z.input<typeof DuckDbStoreOptionsSchema>

function quoteIdentifier(name: string): string {
  return `"${name.replace(/"/g, '""')}"`
}

export function tableName(kind: DeviceKind): string {
  return `readings_${kind.replace(/-/g, '_')}`
}

function stagingName(kind: DeviceKind): string {
  return `staging_${kind.replace(/-/g, '_')}`
}

/** Columns every table has, before the metrics; `ts` and `received_at` are ms since epoch. */
const FIXED_COLUMNS = [
  { name: 'ts', type: 'BIGINT NOT NULL' },
  { name: 'device', type: 'VARCHAR NOT NULL' },
  { name: 'district', type: 'VARCHAR NOT NULL' },
  { name: 'regency', type: 'VARCHAR NOT NULL' },
  { name: 'kind', type: 'VARCHAR NOT NULL' },
  { name: 'seq', type: 'BIGINT NOT NULL' },
  { name: 'received_at', type: 'BIGINT NOT NULL' },
] as const

function metricType(metric: MetricColumn): string {
  return metric.integer ? 'BIGINT' : 'DOUBLE'
}

interface KindSql {
  readonly createTable: string
  readonly addColumns: readonly string[]
  readonly createStaging: string
  readonly upsert: string
  readonly clearStaging: string
  readonly select: string
}

function kindSql(kind: DeviceKind): KindSql {
  const table = quoteIdentifier(tableName(kind))
  const staging = `temp.main.${quoteIdentifier(stagingName(kind))}`
  const metrics = metricColumns(kind)
  const fixed = FIXED_COLUMNS.map((c) => `${quoteIdentifier(c.name)} ${c.type}`)
  const metricDefs = metrics.map((m) => `${quoteIdentifier(m.name)} ${metricType(m)}`)
  const allColumns = [...FIXED_COLUMNS.map((c) => c.name), ...metrics.map((m) => m.name)].map(quoteIdentifier)
  // InfluxDB merges the fields of a re-written point into the stored one (a field left out keeps its
  // value); the same update here keeps both stores' answers equal. One difference remains: its tags are
  // part of a point's identity, so a reading re-sent after its device's district or regency changed is a
  // second point there (under the old and the new tags), and one row with the new tags here.
  const updates = [
    ...['district', 'regency', 'kind', 'seq', 'received_at'].map(
      (c) => `${quoteIdentifier(c)} = EXCLUDED.${quoteIdentifier(c)}`,
    ),
    ...metrics.map((m) => {
      const c = quoteIdentifier(m.name)
      return `${c} = COALESCE(EXCLUDED.${c}, ${table}.${c})`
    }),
  ]
  return {
    createTable: `CREATE TABLE IF NOT EXISTS ${table} (${[...fixed, ...metricDefs].join(', ')}, PRIMARY KEY ("device", "ts"))`,
    // A later contract version may add metrics to a kind whose table already exists.
    addColumns: metrics.map(
      (m) => `ALTER TABLE ${table} ADD COLUMN IF NOT EXISTS ${quoteIdentifier(m.name)} ${metricType(m)}`,
    ),
    createStaging: `CREATE OR REPLACE TEMP TABLE ${quoteIdentifier(stagingName(kind))} (${[...fixed, ...metricDefs].join(', ')})`,
    upsert:
      `INSERT INTO ${table} (${allColumns.join(', ')}) SELECT ${allColumns.join(', ')} FROM ${staging} ` +
      `ON CONFLICT ("device", "ts") DO UPDATE SET ${updates.join(', ')}`,
    clearStaging: `DELETE FROM ${staging}`,
    select:
      `SELECT ${allColumns.join(', ')} FROM ${table} ` +
      'WHERE "device" = $1 AND "ts" >= $2 AND "ts" <= $3 ORDER BY "ts" ASC LIMIT $4',
  }
}

const SQL = Object.fromEntries(DEVICE_KINDS.map((kind) => [kind, kindSql(kind)])) as Record<
  DeviceKind,
  KindSql
>

/** Runs tasks one after another: a DuckDB connection runs one statement (and one transaction) at a time. */
class SerialQueue {
  private tail: Promise<unknown> = Promise.resolve()

  run<T>(task: () => Promise<T>): Promise<T> {
    const result = this.tail.then(task, task)
    this.tail = result.catch(() => undefined)
    return result
  }
}

/**
 * Readings of one batch grouped by kind, with repeats of an identity merged the way InfluxDB applies
 * them in order (later fields win, earlier ones not repeated stay): one INSERT may touch a key once.
 */
function groupByKind(readings: readonly StoredReading[]): Map<DeviceKind, StoredReading[]> {
  const byKind = new Map<DeviceKind, Map<string, StoredReading>>()
  for (const reading of readings) {
    let byIdentity = byKind.get(reading.kind)
    if (byIdentity === undefined) {
      byIdentity = new Map()
      byKind.set(reading.kind, byIdentity)
    }
    const key = `${reading.ts}\u0000${reading.device}`
    const earlier = byIdentity.get(key)
    byIdentity.set(
      key,
      earlier === undefined ? reading : { ...reading, fields: { ...earlier.fields, ...reading.fields } },
    )
  }
  return new Map([...byKind].map(([kind, byIdentity]) => [kind, [...byIdentity.values()]]))
}

function appendReading(
  appender: DuckDBAppender,
  reading: StoredReading,
  metrics: readonly MetricColumn[],
): void {
  appender.appendBigInt(BigInt(reading.ts))
  appender.appendVarchar(reading.device)
  appender.appendVarchar(reading.district)
  appender.appendVarchar(reading.regency)
  appender.appendVarchar(reading.kind)
  appender.appendBigInt(BigInt(reading.seq))
  appender.appendBigInt(BigInt(reading.receivedAt))
  for (const metric of metrics) {
    const value = reading.fields[metric.name]
    if (value === undefined) appender.appendNull()
    else if (metric.integer) appender.appendBigInt(BigInt(value))
    else appender.appendDouble(value)
  }
  appender.endRow()
}

/** Errors caused by the data itself; anything else (I/O, memory, a closed file) may pass on a retry. */
const DATA_ERROR = /^(Constraint|Conversion|Invalid Input) Error/

function toStoreWriteError(error: unknown, description: string): StoreWriteError {
  if (error instanceof StoreWriteError) return error
  const message = error instanceof Error ? error.message : String(error)
  return new StoreWriteError(`${description}: ${message}`, !DATA_ERROR.test(message), undefined, {
    cause: error,
  })
}

function asNumber(value: DuckDBValue): number {
  return typeof value === 'bigint' ? Number(value) : (value as number)
}

/**
 * Files opened by stores of this process. DuckDB's file lock is a POSIX lock, which keeps other processes
 * out but not a second instance in the same process, and two instances writing one file corrupt it.
 */
const openFiles = new Set<string>()

interface Opened {
  readonly instance: DuckDBInstance
  readonly writer: DuckDBConnection
  readonly reader: DuckDBConnection
}

export function createDuckDbStore(options: DuckDbStoreOptions): TimeSeriesStore {
  const { path } = DuckDbStoreOptionsSchema.parse(options)
  const description =
    path === ':memory:' ? 'embedded DuckDB store in memory' : `embedded DuckDB store at ${path}`
  // Writes and reads get a connection each, so a dashboard query never waits behind a write transaction.
  const writes = new SerialQueue()
  const reads = new SerialQueue()
  let opening: Promise<Opened> | undefined
  let closed = false

  const file = path === ':memory:' ? undefined : resolve(path)

  async function open(): Promise<Opened> {
    if (file !== undefined) {
      if (openFiles.has(file)) throw new Error(`${description}: the file is already open in this process`)
      // Claimed before the first await, so that two stores opening at once cannot both pass the check.
      openFiles.add(file)
    }
    let instance: DuckDBInstance
    try {
      if (file !== undefined) mkdirSync(dirname(file), { recursive: true })
      instance = await DuckDBInstance.create(path)
    } catch (error) {
      if (file !== undefined) openFiles.delete(file)
      throw error
    }
    const connections: DuckDBConnection[] = []
    try {
      const writer = await instance.connect()
      connections.push(writer)
      const reader = await instance.connect()
      connections.push(reader)
      for (const kind of DEVICE_KINDS) {
        const sql = SQL[kind]
        await writer.run(sql.createTable)
        for (const statement of sql.addColumns) await writer.run(statement)
        // Temp tables belong to the connection that creates them: the writer stages its batches here.
        await writer.run(sql.createStaging)
      }
      return { instance, writer, reader }
    } catch (error) {
      for (const connection of connections) connection.closeSync()
      instance.closeSync()
      if (file !== undefined) openFiles.delete(file)
      throw error
    }
  }

  function ready(): Promise<Opened> {
    if (closed) return Promise.reject(new Error(`${description}: store is closed`))
    if (opening === undefined) {
      const attempt = open()
      opening = attempt
      // A failed open (file locked by another process, say) may be retried by a later call.
      attempt.catch(() => {
        if (opening === attempt) opening = undefined
      })
    }
    return opening
  }

  /** For queries: a store closed or not openable (its file locked by another process, say) is an outage. */
  function readyToRead(): Promise<Opened> {
    return ready().catch((error: unknown) => {
      throw new StoreUnavailableError(`${description}: ${error instanceof Error ? error.message : error}`, {
        cause: error,
      })
    })
  }

  async function writeBatch(writer: DuckDBConnection, readings: readonly StoredReading[]): Promise<void> {
    await writer.run('BEGIN TRANSACTION')
    try {
      for (const [kind, batch] of groupByKind(readings)) {
        const metrics = metricColumns(kind)
        const appender = await writer.createAppender(stagingName(kind), 'main', 'temp')
        try {
          for (const reading of batch) appendReading(appender, reading, metrics)
          appender.flushSync()
        } finally {
          appender.closeSync()
        }
        await writer.run(SQL[kind].upsert)
        await writer.run(SQL[kind].clearStaging)
      }
      await writer.run('COMMIT')
    } catch (error) {
      // Also empties the staging tables: their rows belong to the same transaction.
      await writer.run('ROLLBACK').catch(() => undefined)
      throw error
    }
  }

  return {
    kind: 'duckdb',
    description,

    async init() {
      await ready()
    },

    async write(readings: readonly StoredReading[]) {
      if (closed) throw new StoreWriteError(`${description}: store is closed`, true)
      for (let i = 0; i < readings.length; i++) {
        const reading = readings[i]!
        const problem = readingProblem(reading)
        if (problem !== undefined) {
          throw new StoreWriteError(`reading ${i} of ${reading.device} refused: ${problem}`, false)
        }
      }
      if (readings.length === 0) return
      let db: Opened
      try {
        db = await ready()
      } catch (error) {
        throw toStoreWriteError(error, description)
      }
      await writes.run(async () => {
        try {
          await writeBatch(db.writer, readings)
        } catch (error) {
          throw toStoreWriteError(error, description)
        }
      })
    },

    async queryDevice(query: DeviceRangeQuery): Promise<ReadingRow[]> {
      const q = normalizeRangeQuery(query)
      if (q === undefined) return []
      const db = await readyToRead()
      const metrics = metricColumns(q.kind)
      const result = await reads.run(() =>
        db.reader.runAndReadAll(SQL[q.kind].select, [
          q.device,
          BigInt(q.from),
          BigInt(q.to),
          BigInt(q.limit),
        ]),
      )
      return result.getRows().map((row) => {
        const fields: Record<string, number> = {}
        metrics.forEach((metric, i) => {
          const value = row[FIXED_COLUMNS.length + i]
          if (value !== null && value !== undefined) fields[metric.name] = asNumber(value)
        })
        return {
          kind: q.kind,
          device: row[1] as string,
          district: row[2] as string,
          regency: row[3] as string,
          ts: asNumber(row[0]!),
          receivedAt: asNumber(row[6]!),
          seq: asNumber(row[5]!),
          fields,
        }
      })
    },

    async analystQuery(query: AnalystQuery, options: AnalystQueryOptions): Promise<AnalystRow[]> {
      const db = await readyToRead()
      const { sql, params } = analystSql(query)
      const deadline = Date.now() + options.timeoutMs
      const timeout = () => new QueryTimeoutError(`${description}: no answer within ${options.timeoutMs} ms`)
      const result = await reads.run(async () => {
        // Time spent waiting behind other reads counts too: the analyst waits for both.
        const remaining = deadline - Date.now()
        if (remaining <= 0) throw timeout()
        let timedOut = false
        const timer = setTimeout(() => {
          timedOut = true
          db.reader.interrupt()
        }, remaining)
        try {
          return await db.reader.runAndReadAll(sql, [...params])
        } catch (error) {
          if (timedOut) throw timeout()
          throw error
        } finally {
          clearTimeout(timer)
        }
      })
      const raw = query.windowMs === undefined
      const first = raw ? 3 : 2
      return result.getRows().map((row) => {
        const values: (number | null)[] = []
        for (let i = first; i < row.length; i++) {
          const value = row[i]
          values.push(value === null || value === undefined ? null : asNumber(value))
        }
        const out: AnalystRow = {
          group: String(row[0]),
          time: asNumber(row[1]!),
          values,
          ...(raw ? { device: String(row[2]) } : {}),
        }
        return out
      })
    },

    async close() {
      if (closed) return
      closed = true
      const pendingOpen = opening
      if (pendingOpen === undefined) return
      const db = await pendingOpen.catch(() => undefined)
      if (db === undefined) return
      // Let queued writes and reads finish before the connections go.
      await Promise.all([writes.run(async () => undefined), reads.run(async () => undefined)])
      db.writer.closeSync()
      db.reader.closeSync()
      // Releases the file lock, so that another process (or a new store) can open the file.
      db.instance.closeSync()
      if (file !== undefined) openFiles.delete(file)
    },
  }
}
