import http from 'node:http'
import https from 'node:https'
import {
  AbortError,
  type CommunicationObserver,
  HttpError,
  InfluxDB,
  RequestTimedOutError,
  type SendOptions,
  type Transport,
  type WriteApi,
  type WriteOptions,
} from '@influxdata/influxdb-client'
import { z } from 'zod'
import { analystRows, analystStatement } from '../query/influxql.ts'
import { deviceRangeStatement, quoteIdentifier, readingRows, seriesOf } from './influxql.ts'
import { toLineProtocol } from './line-protocol.ts'
import { normalizeRangeQuery, readingProblem } from './schema.ts'
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

export const INFLUX_STORE_DEFAULTS = {
  /** Per HTTP request, writes and queries alike. */
  timeoutMs: 10_000,
  /** Retries by the client after the first failed attempt of a batch; the spool retries beyond that. */
  maxRetries: 3,
  /**
   * `gzip`: bodies larger than `gzipThreshold` bytes are sent compressed. `identity`: never compressed,
   * for an InfluxDB on the same host, where compression costs CPU on both sides and saves nothing.
   */
  contentEncoding: 'gzip',
  /** Bodies larger than this many bytes are sent gzipped. */
  gzipThreshold: 1000,
  /** Lines per HTTP request; a larger write() is sent as several requests. */
  batchSize: 5000,
  minRetryDelayMs: 500,
  maxRetryDelayMs: 10_000,
  /** After this long a write() gives up retrying and rejects (retryable). */
  maxRetryTimeMs: 60_000,
} as const

const d = INFLUX_STORE_DEFAULTS

const CommonOptions = {
  url: z.url({ protocol: /^https?$/ }),
  timeoutMs: z.number().int().positive().default(d.timeoutMs),
  maxRetries: z.number().int().min(0).default(d.maxRetries),
  contentEncoding: z.enum(['gzip', 'identity']).default(d.contentEncoding),
  gzipThreshold: z.number().int().min(0).default(d.gzipThreshold),
  batchSize: z.number().int().positive().default(d.batchSize),
  minRetryDelayMs: z.number().int().positive().default(d.minRetryDelayMs),
  maxRetryDelayMs: z.number().int().positive().default(d.maxRetryDelayMs),
  maxRetryTimeMs: z.number().int().positive().default(d.maxRetryTimeMs),
}

export const InfluxStoreOptionsSchema = z.discriminatedUnion('apiVersion', [
  z
    .object({
      apiVersion: z.literal('v1'),
      database: z.string().min(1),
      retentionPolicy: z.string().min(1).optional(),
      username: z.string().min(1).optional(),
      password: z.string().optional(),
      ...CommonOptions,
    })
    .refine((o) => o.password === undefined || o.username !== undefined, {
      message: 'password given without username',
      path: ['username'],
    }),
  z.object({
    apiVersion: z.literal('v2'),
    token: z.string().min(1),
    org: z.string().min(1),
    bucket: z.string().min(1),
    ...CommonOptions,
  }),
])

/** Options as configured (defaults optional). */
export type InfluxStoreOptions = z.input<typeof InfluxStoreOptionsSchema>
/** Options with defaults applied. */
export type ResolvedInfluxStoreOptions = z.output<typeof InfluxStoreOptionsSchema>

/**
 * The write path of the 1.x API for the client's `/api/v2/write?org=..&bucket=..&precision=..`; other
 * paths are returned unchanged. Database and retention policy come from the store's configuration.
 */
export function v1WritePath(path: string, database: string, retentionPolicy?: string): string {
  const match = /^\/api\/v2\/write(?:\?(.*))?$/.exec(path)
  if (match === null) return path
  const original = new URLSearchParams(match[1] ?? '')
  const params = new URLSearchParams({ db: database })
  if (retentionPolicy !== undefined) params.set('rp', retentionPolicy)
  params.set('precision', original.get('precision') ?? 'ms')
  const consistency = original.get('consistency')
  if (consistency !== null) params.set('consistency', consistency)
  return `/write?${params}`
}

/**
 * Wraps the client's node transport: rewrites the write path for the 1.x API when asked to, and bounds
 * every request by a deadline. The node transport's own `timeout` is a socket idle timeout that reports
 * an error but leaves the request open; the deadline's abort also closes the socket.
 */
class StoreTransport implements Transport {
  readonly chunkCombiner: Transport['chunkCombiner']

  constructor(
    private readonly inner: Transport,
    private readonly timeoutMs: number,
    private readonly rewritePath: (path: string) => string,
  ) {
    this.chunkCombiner = inner.chunkCombiner
  }

  private withDeadline(options: SendOptions): SendOptions {
    const deadline = AbortSignal.timeout(this.timeoutMs)
    return { ...options, signal: options.signal ? AbortSignal.any([options.signal, deadline]) : deadline }
  }

  send(
    path: string,
    body: string,
    options: SendOptions,
    callbacks?: Partial<CommunicationObserver<Uint8Array>>,
  ) {
    this.inner.send(this.rewritePath(path), body, this.withDeadline(options), callbacks)
  }

  request(
    path: string,
    body: unknown,
    options: SendOptions,
    responseStarted?: Parameters<Transport['request']>[3],
  ) {
    return this.inner.request(this.rewritePath(path), body, this.withDeadline(options), responseStarted)
  }

  iterate(path: string, body: unknown, options: SendOptions) {
    return this.inner.iterate(this.rewritePath(path), body, this.withDeadline(options))
  }
}

/** 4xx answers that are about the server's configuration or load, not about the lines sent. */
const RETRYABLE_CLIENT_ERRORS = new Set([401, 403, 404, 408, 429])

function httpErrorDetail(error: HttpError): string {
  const json = error.json as { error?: unknown; message?: unknown } | undefined
  const detail = json?.error ?? json?.message ?? error.body ?? error.message
  return String(detail).slice(0, 500)
}

function networkErrorDetail(error: Error): string {
  const code = (error as { code?: unknown }).code
  return typeof code === 'string' ? `${code} ${error.message}` : error.message
}

function isTimeout(error: unknown): boolean {
  return error instanceof RequestTimedOutError || error instanceof AbortError
}

/** The client's own test for "retry this batch", so the store knows when the client has given up. */
function clientRetries(error: Error): boolean {
  return !(error instanceof HttpError) || error.statusCode >= 429
}

/** InfluxDB Enterprise reports a full hinted-handoff queue as an error although it accepted the data. */
function isHintedHandoff(error: Error): boolean {
  return (
    error instanceof HttpError &&
    typeof error.json?.error === 'string' &&
    error.json.error.includes('hinted handoff queue not empty')
  )
}

interface PendingWrite {
  abort(error: StoreWriteError): void
}

/**
 * The readings of a write with repeats of one point (measurement, tags, time) merged into the first
 * one's place, as InfluxDB applies them in order: later fields win, earlier ones not repeated stay.
 * A write larger than one request goes out as concurrent requests, which InfluxDB applies in any order
 * (so can a retried one): a repeat in a later request could land before the reading it follows.
 */
function mergeRepeats(readings: readonly StoredReading[]): readonly StoredReading[] {
  const places = new Map<string, number>()
  const merged: StoredReading[] = []
  for (const reading of readings) {
    // NUL cannot occur in a stored tag value (readingProblem), so the key is unambiguous.
    const key = `${reading.ts}\u0000${reading.kind}\u0000${reading.device}\u0000${reading.district}\u0000${reading.regency}`
    const place = places.get(key)
    if (place === undefined) {
      places.set(key, merged.length)
      merged.push(reading)
    } else {
      const earlier = merged[place]!
      merged[place] = { ...reading, fields: { ...earlier.fields, ...reading.fields } }
    }
  }
  return merged
}

export function createInfluxStore(options: InfluxStoreOptions): TimeSeriesStore {
  const o = InfluxStoreOptionsSchema.parse(options)
  const baseUrl = o.url.replace(/\/+$/, '')
  const shownUrl = (() => {
    const u = new URL(baseUrl)
    u.username = ''
    u.password = ''
    return u.toString().replace(/\/$/, '')
  })()
  const description =
    o.apiVersion === 'v1'
      ? `InfluxDB 1.x at ${shownUrl}, database ${o.database}` +
        (o.retentionPolicy === undefined ? '' : `, retention policy ${o.retentionPolicy}`)
      : `InfluxDB 2.x at ${shownUrl}, org ${o.org}, bucket ${o.bucket}`

  const agent = baseUrl.startsWith('https:')
    ? new https.Agent({ keepAlive: true })
    : new http.Agent({ keepAlive: true })
  const headers: Record<string, string> = {}
  if (o.apiVersion === 'v1' && o.username !== undefined) {
    // Basic auth rather than u/p query parameters, which would put the password in URLs and access logs.
    headers.authorization = `Basic ${Buffer.from(`${o.username}:${o.password ?? ''}`).toString('base64')}`
  }
  const nodeTransport = new InfluxDB({
    url: baseUrl,
    token: o.apiVersion === 'v2' ? o.token : undefined,
    timeout: o.timeoutMs,
    headers,
    transportOptions: { agent },
  }).transport
  const transport = new StoreTransport(
    nodeTransport,
    o.timeoutMs,
    o.apiVersion === 'v1' ? (path) => v1WritePath(path, o.database, o.retentionPolicy) : (path) => path,
  )
  const client = new InfluxDB({ url: baseUrl, transport })
  // The 1.x API ignores org and bucket (the transport supplies db and rp); the 2.x v1-compatible query
  // API maps db to a bucket.
  const org = o.apiVersion === 'v1' ? '' : o.org
  const bucket = o.apiVersion === 'v1' ? o.database : o.bucket
  const queryDb = bucket

  const writeOptions: Partial<WriteOptions> = {
    batchSize: o.batchSize,
    // Nothing is sent on a timer: each write() flushes its own lines and waits for the answer.
    flushInterval: 0,
    // The client compresses only when a threshold is set.
    gzipThreshold: o.contentEncoding === 'gzip' ? o.gzipThreshold : undefined,
    maxRetries: o.maxRetries,
    maxRetryTime: o.maxRetryTimeMs,
    minRetryDelay: o.minRetryDelayMs,
    maxRetryDelay: o.maxRetryDelayMs,
    retryJitter: Math.min(200, o.minRetryDelayMs),
    exponentialBase: 2,
    randomRetry: true,
  }

  const pending = new Set<PendingWrite>()
  let closed = false

  function toStoreWriteError(error: Error): StoreWriteError {
    const cause = { cause: error }
    if (error instanceof HttpError) {
      const status = error.statusCode
      const retryable = status < 400 || status >= 500 || RETRYABLE_CLIENT_ERRORS.has(status)
      return new StoreWriteError(
        `${description} answered ${status}: ${httpErrorDetail(error)}`,
        retryable,
        status,
        cause,
      )
    }
    if (isTimeout(error)) {
      return new StoreWriteError(
        `${description} did not answer within ${o.timeoutMs} ms`,
        true,
        undefined,
        cause,
      )
    }
    return new StoreWriteError(
      `${description} is unreachable: ${networkErrorDetail(error)}`,
      true,
      undefined,
      cause,
    )
  }

  /**
   * Sends the lines of one write() through a WriteApi of its own, so that its retries, failures and
   * retry buffer never touch another call's lines. The client reports every batch through its hooks
   * (its flush() promises cover only part of the batches and reject before retries end).
   */
  function sendLines(lines: string[]): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      let confirmed = 0
      let settled = false
      let lastError: Error | undefined
      let writeApi: WriteApi | undefined
      const call: PendingWrite = { abort: (error) => settle(error) }
      const settle = (error?: StoreWriteError): void => {
        if (settled) return
        settled = true
        pending.delete(call)
        // Stops retries still scheduled for other batches of a failed call.
        writeApi?.dispose()
        if (error === undefined) resolve()
        else reject(error)
      }
      writeApi = client.getWriteApi(org, bucket, 'ms', {
        ...writeOptions,
        // Each line enters the retry buffer at most once at a time, so it can never overflow.
        maxBufferLines: lines.length,
        writeSuccess: (written) => {
          if (settled) return
          confirmed += written.length
          if (confirmed >= lines.length) settle()
        },
        writeFailed: (error, _failed, attempt, expires) => {
          // A rejected promise ends the batch without the client's retry or its console logging.
          if (settled) return Promise.reject(error)
          if (isHintedHandoff(error)) return undefined
          const expired = expires <= Date.now()
          if (!expired) lastError = error
          if (!expired && attempt <= o.maxRetries && clientRetries(error)) return undefined
          settle(toStoreWriteError(lastError ?? error))
          return Promise.reject(error)
        },
        writeRetrySkipped: (entry) => {
          settle(new StoreWriteError(`the client's retry buffer dropped ${entry.lines.length} lines`, true))
        },
      })
      pending.add(call)
      writeApi.writeRecords(lines)
      writeApi.flush().catch(() => {
        // The hooks above report the outcome of every batch, this one included.
      })
    })
  }

  async function request(
    path: string,
    method: 'GET' | 'POST',
    body = '',
    signal?: AbortSignal,
  ): Promise<unknown> {
    const headers: Record<string, string> = { accept: 'application/json' }
    if (method === 'POST') headers['content-type'] = 'application/x-www-form-urlencoded'
    return transport.request(path, body, { method, headers, ...(signal ? { signal } : {}) })
  }

  async function influxQL(
    statement: string,
    method: 'GET' | 'POST',
    db?: string,
    signal?: AbortSignal,
  ): Promise<unknown> {
    const params = new URLSearchParams({ epoch: 'ms' })
    if (db !== undefined) params.set('db', db)
    if (method === 'GET') {
      params.set('q', statement)
      return request(`/query?${params}`, 'GET', '', signal)
    }
    return request(`/query?${params}`, 'POST', new URLSearchParams({ q: statement }).toString(), signal)
  }

  function describeFailure(error: unknown): string {
    if (error instanceof HttpError) return `${error.statusCode} ${httpErrorDetail(error)}`
    if (isTimeout(error)) return `no answer within ${o.timeoutMs} ms`
    return error instanceof Error ? networkErrorDetail(error) : String(error)
  }

  /**
   * A failed query as the API should see it: a 4xx is InfluxDB refusing the statement or our credentials,
   * which asking again will not mend; anything else (refused or reset connection, a 5xx) is an outage.
   */
  function queryFailure(error: unknown): Error {
    const message = `${description}: query failed: ${describeFailure(error)}`
    if (error instanceof HttpError && error.statusCode < 500) return new Error(message, { cause: error })
    return new StoreUnavailableError(message, { cause: error })
  }

  return {
    kind: 'influxdb',
    description,

    async init() {
      try {
        await request('/ping', 'GET')
      } catch (error) {
        // /ping needs no credentials: whatever its failure, the server is not there (yet) to write to.
        throw new StoreUnavailableError(`${description}: /ping failed: ${describeFailure(error)}`, {
          cause: error,
        })
      }
      if (o.apiVersion === 'v2') return
      try {
        // Idempotent in 1.x: creating an existing database succeeds.
        seriesOf(await influxQL(`CREATE DATABASE ${quoteIdentifier(o.database)}`, 'POST'))
        if (o.retentionPolicy !== undefined) {
          const policies = seriesOf(
            await influxQL(`SHOW RETENTION POLICIES ON ${quoteIdentifier(o.database)}`, 'GET'),
          )
          const names = policies.flatMap((s) => (s.values ?? []).map((row) => row[s.columns.indexOf('name')]))
          if (!names.includes(o.retentionPolicy)) {
            throw new Error(
              `retention policy ${o.retentionPolicy} does not exist (found: ${names.join(', ')})`,
            )
          }
        }
      } catch (error) {
        throw new Error(`${description}: could not prepare the database: ${describeFailure(error)}`, {
          cause: error,
        })
      }
    },

    async write(readings: readonly StoredReading[]) {
      if (closed) throw new StoreWriteError(`${description}: store is closed`, true)
      if (readings.length === 0) return
      for (let i = 0; i < readings.length; i++) {
        const reading = readings[i]!
        const problem = readingProblem(reading)
        if (problem !== undefined) {
          throw new StoreWriteError(`reading ${i} of ${reading.device} refused: ${problem}`, false)
        }
      }
      // One request applies its lines in order; only a write of several needs its repeats merged.
      const points = readings.length > o.batchSize ? mergeRepeats(readings) : readings
      const lines = new Array<string>(points.length)
      for (let i = 0; i < points.length; i++) lines[i] = toLineProtocol(points[i]!)
      await sendLines(lines)
    },

    async queryDevice(query: DeviceRangeQuery): Promise<ReadingRow[]> {
      const q = normalizeRangeQuery(query)
      if (q === undefined) return []
      const statement = deviceRangeStatement(q, o.apiVersion === 'v1' ? o.retentionPolicy : undefined)
      try {
        return readingRows(q, seriesOf(await influxQL(statement, 'GET', queryDb)))
      } catch (error) {
        throw queryFailure(error)
      }
    },

    async analystQuery(query: AnalystQuery, options: AnalystQueryOptions): Promise<AnalystRow[]> {
      const statement = analystStatement(query, o.apiVersion === 'v1' ? o.retentionPolicy : undefined)
      // A long device list does not fit a URL; InfluxDB runs a SELECT sent by POST just the same.
      const method = statement.length > 4000 ? 'POST' : 'GET'
      let body: unknown
      try {
        // Aborting closes the connection, and InfluxDB stops a query whose client has gone.
        body = await influxQL(statement, method, queryDb, AbortSignal.timeout(options.timeoutMs))
      } catch (error) {
        if (isTimeout(error)) {
          throw new QueryTimeoutError(`${description}: no answer within ${options.timeoutMs} ms`, {
            cause: error,
          })
        }
        throw queryFailure(error)
      }
      return analystRows(query, seriesOf(body))
    },

    async close() {
      closed = true
      for (const call of [...pending]) {
        call.abort(new StoreWriteError(`${description}: store closed before the write was confirmed`, true))
      }
      agent.destroy()
    },
  }
}
