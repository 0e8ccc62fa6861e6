import { z } from 'zod'
import { ISPU_POLLUTANTS } from '../../dashboard-api/aggregates/ispu.ts'
import {
  DeviceIdSchema,
  type DeviceKind,
  DeviceKindSchema,
  metricNames,
} from '../../firmware-contracts/index.ts'
import { tagValueProblem } from '../store/schema.ts'
import { ANALYST_AGGREGATES, type AnalystAggregate, type AnalystQuery } from '../store/types.ts'
import { QueryError } from './errors.ts'

/** Window names analysts use, in ms; `raw` returns the readings themselves. */
export const WINDOWS = {
  raw: undefined,
  '1m': 60_000,
  '5m': 300_000,
  '15m': 900_000,
  '1h': 3_600_000,
  '1d': 86_400_000,
} as const
export type WindowName = keyof typeof WINDOWS

/**
 * Zones a query may name, with their UTC offsets. Indonesia has no daylight saving time, so a fixed
 * offset is exact and both stores put a window's start at the same instant; nothing outside this list
 * ever reaches InfluxQL's tz().
 */
export const TIME_ZONES = {
  'Asia/Makassar': 8 * 3_600_000,
  'Asia/Jakarta': 7 * 3_600_000,
  'Asia/Pontianak': 7 * 3_600_000,
  'Asia/Jayapura': 9 * 3_600_000,
  UTC: 0,
} as const
export type TimeZoneName = keyof typeof TIME_ZONES
export const DEFAULT_TIME_ZONE: TimeZoneName = 'Asia/Makassar'

/** The derived daily ISPU of air-quality stations (P.14/2020), computed from daily means of the pollutants. */
export const ISPU_METRIC = 'ispu'
/** Columns the ISPU adds to an answer: its value, band and critical pollutant. */
export const ISPU_COLUMNS = [ISPU_METRIC, 'ispuCategory', 'ispuCritical'] as const

/**
 * Answer formats. `csv-id` is CSV as Excel and LibreOffice read it in the Indonesian locale, whose list
 * separator is `;` and whose decimal separator is the comma: there a comma-separated file opens in one
 * column, and 61.1375 is read as 611375.
 */
export const READINGS_FORMATS = ['json', 'csv', 'csv-id'] as const
export type ReadingsFormat = (typeof READINGS_FORMATS)[number]

const MAX_DEVICES = 200
const MAX_METRICS = 20

/** `a,b,c` in a query string, an array in a JSON body. */
function list<T extends z.ZodType>(item: T, max: number) {
  return z.preprocess(
    (value) =>
      typeof value === 'string'
        ? value
            .split(',')
            .map((s) => s.trim())
            .filter((s) => s.length > 0)
        : value,
    z.array(item).min(1).max(max),
  )
}

/** A district or regency name: compared with stored tags as a literal, never as a pattern. */
const TagValueSchema = z
  .string()
  .trim()
  .min(1)
  .max(80)
  .superRefine((value, ctx) => {
    const problem = tagValueProblem(value)
    if (problem !== undefined) ctx.addIssue({ code: 'custom', message: `no stored name ${problem}` })
  })

const TimeValueSchema = z
  .union([z.string().trim().min(1).max(40), z.number().int()])
  .describe('epoch ms, an ISO 8601 date or date-time, `now`, or relative to now: -30m, -12h, -7d, -2w')

const METRIC_NAME = /^[A-Za-z0-9]{1,40}$/

/** One query, as a GET query string or a POST JSON body carries it. */
export const ReadingsQuerySchema = z
  .strictObject({
    kind: DeviceKindSchema.optional().describe('device kind; may be left out when `devices` is given'),
    devices: list(DeviceIdSchema, MAX_DEVICES).optional().describe('device ids (comma-separated in a GET)'),
    district: TagValueSchema.optional().describe('only devices of this district (exact name)'),
    regency: TagValueSchema.optional().describe('only devices of this regency (exact name)'),
    metrics: list(z.string().regex(METRIC_NAME, 'expected a metric name'), MAX_METRICS).describe(
      'contract metrics of the kind (comma-separated in a GET); `ispu` for the daily ISPU of air-quality stations',
    ),
    from: TimeValueSchema.optional().describe('start, inclusive (default: 24 h before `to`)'),
    to: TimeValueSchema.optional().describe('end, exclusive (default: now)'),
    window: z.enum(Object.keys(WINDOWS) as [WindowName, ...WindowName[]]).default('1h'),
    aggregates: list(z.enum(ANALYST_AGGREGATES), ANALYST_AGGREGATES.length)
      .default(['mean'])
      .describe('per metric and window (ignored for raw); p95 is nearest-rank'),
    groupBy: z.enum(['device', 'district']).default('device'),
    tz: z
      .enum(Object.keys(TIME_ZONES) as [TimeZoneName, ...TimeZoneName[]])
      .default(DEFAULT_TIME_ZONE)
      .describe('time zone of daily windows: a day starts at local midnight'),
    format: z
      .enum(READINGS_FORMATS)
      .default('json')
      .describe(
        'columnar `json`; `csv` (comma-separated, decimal point); `csv-id` for spreadsheets in the Indonesian ' +
          'locale (id-ID): `;` between columns and a decimal comma',
      ),
  })
  .refine((q) => q.kind !== undefined || q.devices !== undefined, {
    message: 'give `kind`, or `devices` to take the kind from the registry',
    path: ['kind'],
  })
export type ReadingsQueryInput = z.input<typeof ReadingsQuerySchema>
export type ReadingsQuery = z.output<typeof ReadingsQuerySchema>

export const CompletenessQuerySchema = z.strictObject({
  device: DeviceIdSchema.describe('device id'),
  from: TimeValueSchema.optional().describe('start, inclusive (default: 24 h before `to`)'),
  to: TimeValueSchema.optional().describe('end, exclusive (default: now)'),
})
export type CompletenessQuery = z.output<typeof CompletenessQuerySchema>

const RELATIVE = /^-(\d{1,6})(s|m|h|d|w)$/
const UNIT_MS = { s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000, w: 604_800_000 } as const
const ISO = /^\d{4}-\d{2}-\d{2}(T\d{2}:\d{2}(:\d{2}(\.\d{1,3})?)?(Z|[+-]\d{2}:?\d{2})?)?$/
/** InfluxDB's time range; outside it neither store holds a reading. */
const TIME_LIMIT_MS = 9_223_372_036_854

/** Date.parse rolls 2025-02-30 over to 2025-03-02 and 2025-04-31 to May 1: a typo, not a date. */
function isCalendarDate(value: string): boolean {
  const [year, month, day] = value.slice(0, 10).split('-').map(Number) as [number, number, number]
  const date = new Date(Date.UTC(year, month - 1, day))
  return date.getUTCMonth() === month - 1 && date.getUTCDate() === day
}

/** A time as analysts type it, in ms; a date without a zone is local midnight in `tz`. */
export function parseTime(value: string | number, now: number, name: string, tzOffsetMs: number): number {
  let t: number | undefined
  if (typeof value === 'number') t = value
  else if (value === 'now') t = now
  else if (RELATIVE.test(value)) {
    const [, amount, unit] = RELATIVE.exec(value)!
    t = now - Number(amount) * UNIT_MS[unit as keyof typeof UNIT_MS]
  } else if (/^-?\d{1,16}$/.test(value)) t = Number(value)
  else if (ISO.test(value) && isCalendarDate(value)) {
    const zoned = /T.*(Z|[+-]\d{2}:?\d{2})$/.test(value)
    const parsed = Date.parse(value.includes('T') ? value : `${value}T00:00:00`)
    // Date.parse reads a zone-less date-time as the server's local time; the query's zone is meant.
    const utc = zoned ? parsed : Date.parse(`${value.includes('T') ? value : `${value}T00:00:00`}Z`)
    if (Number.isFinite(utc)) t = zoned ? utc : utc - tzOffsetMs
  }
  if (t === undefined || !Number.isSafeInteger(t) || Math.abs(t) > TIME_LIMIT_MS) {
    throw new QueryError(
      400,
      'bad_request',
      `${name}: expected epoch ms, an ISO 8601 time, now, or a relative time like -7d`,
    )
  }
  return t
}

/** What the API needs to know about a registered device. */
export interface RegisteredDevice {
  readonly id: string
  readonly kind: DeviceKind
  readonly district: string
  readonly regency: string
  readonly reportingIntervalMs: number
}

export interface QueryLimits {
  /** Values (rows × columns) one answer may hold. */
  readonly maxPoints: number
}

/** A validated query, ready for a store, with what shaping its answer needs. */
export interface ResolvedQuery {
  readonly request: ReadingsQuery
  readonly store: AnalystQuery
  /** Metrics as asked (`ispu` included), each once. */
  readonly metrics: readonly string[]
  /** Aggregates as asked, each once (the store may compute more for the ISPU). */
  readonly aggregates: readonly AnalystAggregate[]
  readonly window: WindowName
  /** Most values the answer may hold. */
  readonly maxPoints: number
}

export function windowColumns(fields: readonly string[], aggregates: readonly AnalystAggregate[]): string[] {
  return fields.flatMap((f) => aggregates.map((a) => `${f}_${a}`))
}

/**
 * Checks a parsed query against the contract, the registry and the limits, and turns it into the
 * store-neutral query. Throws QueryError (400) with a message naming the parameter.
 */
export function resolveQuery(
  request: ReadingsQuery,
  options: {
    now: number
    limits: QueryLimits
    devices: (filter: Partial<RegisteredDevice>) => RegisteredDevice[]
  },
): ResolvedQuery {
  const { now, limits } = options
  const tzOffsetMs = TIME_ZONES[request.tz]
  const to = request.to === undefined ? now : parseTime(request.to, now, 'to', tzOffsetMs)
  const from = request.from === undefined ? to - 86_400_000 : parseTime(request.from, now, 'from', tzOffsetMs)
  if (from >= to) throw new QueryError(400, 'bad_request', '`from` must be before `to`')

  let kind = request.kind
  if (request.devices !== undefined) {
    for (const id of request.devices) {
      const device = options.devices({ id })[0]
      if (device === undefined) throw new QueryError(400, 'bad_request', `devices: ${id} is not registered`)
      if (kind === undefined) kind = device.kind
      if (device.kind !== kind) {
        throw new QueryError(400, 'bad_request', `devices: ${id} is a ${device.kind}, not a ${kind}`)
      }
    }
  }
  if (kind === undefined) throw new QueryError(400, 'bad_request', 'kind: required')

  const known = metricNames(kind)
  const metrics = [...new Set(request.metrics)]
  const wantsIspu = metrics.includes(ISPU_METRIC)
  for (const metric of metrics) {
    if (metric === ISPU_METRIC && kind === 'air-quality') continue
    if (!known.includes(metric)) {
      throw new QueryError(
        400,
        'bad_request',
        `metrics: ${kind} has no metric ${metric} (it has ${known.join(', ')}${kind === 'air-quality' ? `, ${ISPU_METRIC}` : ''})`,
      )
    }
  }
  if (wantsIspu && request.window !== '1d') {
    throw new QueryError(400, 'bad_request', 'metrics: ispu is a daily index; use window=1d')
  }

  const windowMs = WINDOWS[request.window]
  const askedAggregates: AnalystAggregate[] = [...new Set(request.aggregates)]
  const aggregates = [...askedAggregates]
  const asked = metrics.filter((m) => m !== ISPU_METRIC)
  const fields = [...asked]
  if (wantsIspu) {
    for (const p of ISPU_POLLUTANTS) if (!fields.includes(p)) fields.push(p)
    if (!aggregates.includes('mean')) aggregates.push('mean')
  }
  const storeAggregates = windowMs === undefined ? [] : aggregates
  // Values per row of the answer: the pollutant means behind the ISPU are read, not answered.
  const columns =
    windowMs === undefined
      ? fields.length
      : asked.length * askedAggregates.length + (wantsIspu ? ISPU_COLUMNS.length : 0)
  const maxRows = Math.max(1, Math.floor(limits.maxPoints / columns))

  // Windowed answers cannot be cut off by a LIMIT in InfluxQL (it counts per series), so their size is
  // bounded before they run: groups (from the registry) × windows.
  if (windowMs !== undefined) {
    const matching = options.devices({
      kind,
      ...(request.district !== undefined && { district: request.district }),
      ...(request.regency !== undefined && { regency: request.regency }),
    })
    const selected =
      request.devices === undefined ? matching : matching.filter((d) => request.devices!.includes(d.id))
    const groups =
      request.groupBy === 'device' ? selected.length : new Set(selected.map((d) => d.district)).size
    // Windows start at local multiples of their length: count those [from, to) touches, so that an
    // answer of exactly the limit is not refused (an aligned range has no extra partial window).
    const windowOf = (t: number) => Math.floor((t + tzOffsetMs) / windowMs)
    const windows = windowOf(to - 1) - windowOf(from) + 1
    const points = Math.max(1, groups) * windows * columns
    if (points > limits.maxPoints) {
      throw new QueryError(
        400,
        'query_too_large',
        `the answer could hold ${points} values (${Math.max(1, groups)} groups × ${windows} windows × ${columns} columns); ` +
          `at most ${limits.maxPoints}: narrow the range, the devices or the metrics, or use a longer window`,
      )
    }
  }

  return {
    request,
    metrics,
    aggregates: askedAggregates,
    window: request.window,
    maxPoints: limits.maxPoints,
    store: {
      kind,
      filter: {
        ...(request.devices !== undefined && { devices: [...new Set(request.devices)] }),
        ...(request.district !== undefined && { district: request.district }),
        ...(request.regency !== undefined && { regency: request.regency }),
      },
      fields,
      from,
      to,
      ...(windowMs !== undefined && { windowMs }),
      tz: request.tz,
      tzOffsetMs,
      aggregates: storeAggregates,
      groupBy: request.groupBy,
      maxRows,
    },
  }
}
