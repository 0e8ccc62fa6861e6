import { Readable } from 'node:stream'
import { computeIspu, ISPU_POLLUTANTS, type IspuPollutant } from '../../dashboard-api/aggregates/ispu.ts'
import type { AnalystRow } from '../store/types.ts'
import { QueryError } from './errors.ts'
import { ISPU_COLUMNS, ISPU_METRIC, type ResolvedQuery, TIME_ZONES, windowColumns } from './schema.ts'

export type Cell = number | string | null

/** One group's rows as columns: `time` and, per output column, its values in the same order. */
export interface ResultSeries {
  readonly key: string
  readonly time: number[]
  /** Raw readings grouped by district: which device each row came from. */
  readonly device?: string[]
  readonly values: Record<string, Cell[]>
}

export interface QueryResult {
  readonly kind: string
  readonly from: number
  readonly to: number
  readonly window: string
  readonly tz: string
  readonly groupBy: 'device' | 'district'
  readonly aggregates: readonly string[]
  readonly columns: readonly string[]
  readonly rows: number
  readonly series: ResultSeries[]
}

/**
 * Rows as both stores agree to give them: windows where nothing was measured are left out (InfluxDB's
 * fill(none) leaves some in when another field had a point), a count over no points is 0, and the order
 * is group, time, device.
 */
export function normalizeRows(q: ResolvedQuery, rows: readonly AnalystRow[]): AnalystRow[] {
  const s = q.store
  const counts = new Set<number>()
  if (s.windowMs !== undefined) {
    s.fields.forEach((_, fi) => {
      s.aggregates.forEach((a, ai) => {
        if (a === 'count') counts.add(fi * s.aggregates.length + ai)
      })
    })
  }
  const out: AnalystRow[] = []
  for (const row of rows) {
    const values = row.values.map((v, i) => (counts.has(i) && v === null ? 0 : v))
    if (!values.some((v, i) => v !== null && !(counts.has(i) && v === 0))) continue
    out.push({ ...row, values })
  }
  out.sort(
    (a, b) =>
      (a.group < b.group ? -1 : a.group > b.group ? 1 : 0) ||
      a.time - b.time ||
      ((a.device ?? '') < (b.device ?? '') ? -1 : (a.device ?? '') > (b.device ?? '') ? 1 : 0),
  )
  return out
}

/** Shapes a store's rows into the API's columnar answer; throws `query_too_large` past the limit. */
export function shapeResult(q: ResolvedQuery, storeRows: readonly AnalystRow[]): QueryResult {
  const s = q.store
  if (storeRows.length > s.maxRows) {
    throw new QueryError(
      400,
      'query_too_large',
      `more than ${s.maxRows} rows match (at most ${q.maxPoints} values per answer): ` +
        'narrow the range, the devices or the metrics, or use a window',
    )
  }
  const rows = normalizeRows(q, storeRows)
  const wantsIspu = q.metrics.includes(ISPU_METRIC)
  const asked = q.metrics.filter((m) => m !== ISPU_METRIC)
  const raw = s.windowMs === undefined
  const columns = raw ? [...asked] : windowColumns(asked, q.aggregates)
  if (wantsIspu) columns.push(...ISPU_COLUMNS)
  const storeColumns = raw ? [...s.fields] : windowColumns(s.fields, s.aggregates)
  const index = new Map(storeColumns.map((c, i) => [c, i]))
  const withDevice = raw && s.groupBy === 'district'

  let points = 0
  const series: ResultSeries[] = []
  let current: ResultSeries | undefined
  for (const row of rows) {
    if (current === undefined || current.key !== row.group) {
      current = {
        key: row.group,
        time: [],
        ...(withDevice ? { device: [] } : {}),
        values: Object.fromEntries(columns.map((c) => [c, []])),
      }
      series.push(current)
    }
    current.time.push(row.time)
    current.device?.push(row.device ?? '')
    for (const c of columns) {
      const i = index.get(c)
      if (i !== undefined) current.values[c]!.push(row.values[i] ?? null)
    }
    if (wantsIspu) {
      const concentrations: Partial<Record<IspuPollutant, number>> = {}
      for (const p of ISPU_POLLUTANTS) {
        const v = row.values[index.get(`${p}_mean`)!]
        if (v !== null && v !== undefined) concentrations[p] = v
      }
      const ispu = computeIspu(concentrations)
      current.values[ISPU_METRIC]!.push(ispu?.value ?? null)
      current.values.ispuCategory!.push(ispu?.category ?? null)
      current.values.ispuCritical!.push(ispu?.critical ?? null)
    }
    points += columns.length
  }
  if (points > q.maxPoints) {
    throw new QueryError(400, 'query_too_large', `the answer holds ${points} values; at most ${q.maxPoints}`)
  }
  return {
    kind: s.kind,
    from: s.from,
    to: s.to,
    window: q.window,
    tz: s.tz,
    groupBy: s.groupBy,
    aggregates: raw ? [] : q.aggregates,
    columns,
    rows: rows.length,
    series,
  }
}

/** ISO 8601 in the query's zone, e.g. 2025-03-01T00:00:00.000+08:00. */
export function localTime(t: number, tz: keyof typeof TIME_ZONES): string {
  const offset = TIME_ZONES[tz]
  const iso = new Date(t + offset).toISOString().slice(0, -1)
  if (offset === 0) return `${iso}Z`
  const h = Math.floor(Math.abs(offset) / 3_600_000)
  const m = Math.floor((Math.abs(offset) % 3_600_000) / 60_000)
  return `${iso}${offset < 0 ? '-' : '+'}${String(h).padStart(2, '0')}:${String(m).padStart(2, '0')}`
}

/**
 * CSV dialects. `csv-id` is for spreadsheets in the Indonesian locale (id-ID): `;` between columns, as
 * Excel there expects, and a decimal comma, no thousands separator. Both quote per RFC 4180.
 */
export const CSV_DIALECTS = {
  csv: { separator: ',', decimal: '.', quote: /[",\r\n]/ },
  // A comma is quoted too: a reader told to split on both `,` and `;` still keeps the cell whole.
  'csv-id': { separator: ';', decimal: ',', quote: /[";,\r\n]/ },
} as const
export type CsvDialect = keyof typeof CSV_DIALECTS
type Dialect = (typeof CSV_DIALECTS)[CsvDialect]

/**
 * Significant digits of a number in CSV. A mean or sum carries float noise (62.137499999999996 for
 * 62.1375), and the two stores, which sum in different orders, differ in its last bits (79.21631944444444
 * and 79.21631944444445 for a day's mean). 12 digits stay far above any sensor's precision and above the
 * 1e-9 the stores are held to, and drop that noise, so that both give the same CSV (but for a value within
 * the noise of a rounding boundary). Integers (times, counts, seq) are given whole. JSON stays exact.
 */
const CSV_DIGITS = 12

function csvNumber(value: number, dialect: Dialect): string {
  const text = Number.isInteger(value) ? String(value) : String(Number(value.toPrecision(CSV_DIGITS)))
  return dialect.decimal === '.' ? text : text.replace('.', dialect.decimal)
}

/** RFC 4180 field; cells starting like a formula are prefixed so spreadsheets show them as text. */
function csvField(value: Cell | undefined, dialect: Dialect): string {
  if (value === null || value === undefined) return ''
  if (typeof value === 'number') return csvNumber(value, dialect)
  const text = /^[=+\-@\t\r]/.test(value) ? `'${value}` : value
  return dialect.quote.test(text) ? `"${text.replace(/"/g, '""')}"` : text
}

/** The answer as CSV, produced row by row as the response is read. */
export function csvStream(result: QueryResult, dialectName: CsvDialect = 'csv'): Readable {
  const dialect = CSV_DIALECTS[dialectName]
  const field = (value: Cell | undefined) => csvField(value, dialect)
  const tz = result.tz as keyof typeof TIME_ZONES
  const withDevice = result.window === 'raw' && result.groupBy === 'district'
  function* lines(): Generator<string> {
    const header = [result.groupBy, ...(withDevice ? ['device'] : []), 'time', 'time_ms', ...result.columns]
    // A UTF-8 byte order mark: without it Excel reads the file in the machine's code page and shows
    // "Pasar Kreneng â€” pintu utama"; LibreOffice, pandas and R's readers skip it.
    yield `\uFEFF${header.map(field).join(dialect.separator)}\r\n`
    let chunk = ''
    for (const s of result.series) {
      for (let i = 0; i < s.time.length; i++) {
        const t = s.time[i]!
        const cells: Cell[] = [s.key, ...(withDevice ? [s.device![i]!] : []), localTime(t, tz), t]
        for (const c of result.columns) cells.push(s.values[c]![i] ?? null)
        chunk += `${cells.map(field).join(dialect.separator)}\r\n`
        if (chunk.length >= 64 * 1024) {
          yield chunk
          chunk = ''
        }
      }
    }
    if (chunk.length > 0) yield chunk
  }
  return Readable.from(lines(), { objectMode: false })
}

export interface Gap {
  /** Time of the last reading before the gap (or the range's start). */
  readonly from: number
  /** Time of the first reading after the gap (or the range's end). */
  readonly to: number
  /** Readings the reporting interval expected in between. */
  readonly missing: number
}

export interface Completeness {
  readonly device: string
  readonly from: number
  readonly to: number
  /** The device's reporting interval now. */
  readonly reportingIntervalMs: number
  /**
   * Readings expected in [from, to): from the device's registration and up to now, each stretch at the
   * reporting interval the device had then.
   */
  readonly expected: number
  /** Readings stored in the range (distinct observation times). */
  readonly arrived: number
  /** arrived / expected, at most 1; null when the range is shorter than one interval. */
  readonly share: number | null
  /** Readings skipped by seq between consecutive readings (a device restart resets seq; not counted). */
  readonly seqMissing: number
  /** Readings received more than one interval after their observation time (backlog sent later). */
  readonly late: number
  /** Silences longer than 1.5 intervals, oldest first (at most 1000). */
  readonly gaps: Gap[]
  readonly gapsTruncated: boolean
}

/** A reporting interval a device had from `since` on: its registration, then each change. */
export interface IntervalPeriod {
  readonly since: number
  readonly intervalMs: number
}

const MAX_GAPS = 1000

/**
 * Completeness of one device from its raw `seq` and `receivedAt` rows in [from, to). `periods` (oldest
 * first, at least one) say from when the device was registered and at which interval it was to report;
 * nothing is expected before its registration or after `now`.
 */
export function completeness(
  device: string,
  from: number,
  to: number,
  periods: readonly IntervalPeriod[],
  rows: readonly AnalystRow[],
  now: number = to,
): Completeness {
  const readings = rows
    .map((r) => ({ time: r.time, seq: r.values[0] ?? null, receivedAt: r.values[1] ?? null }))
    .sort((a, b) => a.time - b.time)
  // Readings older than the registration (an earlier registration of the id, imported history) show the
  // device was reporting before it: then the whole range is expected, at the first interval.
  const registered =
    readings.length > 0 && readings[0]!.time < periods[0]!.since
      ? Number.NEGATIVE_INFINITY
      : periods[0]!.since
  const start = Math.max(from, registered)
  const end = Math.max(start, Math.min(to, now))
  /** Readings the intervals expect in [a, b), as a fraction. */
  const expectedIn = (a: number, b: number): number => {
    let n = 0
    periods.forEach((p, i) => {
      const lo = Math.max(a, i === 0 ? registered : p.since)
      const hi = Math.min(b, periods[i + 1]?.since ?? Number.POSITIVE_INFINITY)
      if (hi > lo) n += (hi - lo) / p.intervalMs
    })
    return n
  }
  const intervalAt = (t: number): number => {
    let interval = periods[0]!.intervalMs
    for (const p of periods) if (p.since <= t) interval = p.intervalMs
    return interval
  }
  // A hair above the float sum, so that whole intervals split across periods count in full.
  const expected = Math.floor(expectedIn(start, end) + 1e-9)
  const gaps: Gap[] = []
  let gapCount = 0
  const addGap = (gap: Gap) => {
    if (gap.missing < 1) return
    gapCount++
    if (gaps.length < MAX_GAPS) gaps.push(gap)
  }
  // A silence is longer than 1.5 of the intervals the device had during it.
  const silent = 1.5
  let seqMissing = 0
  let late = 0
  if (readings.length === 0) addGap({ from: start, to: end, missing: expected })
  else if (expectedIn(start, readings[0]!.time) > silent) {
    addGap({ from: start, to: readings[0]!.time, missing: Math.round(expectedIn(start, readings[0]!.time)) })
  }
  for (let i = 0; i < readings.length; i++) {
    const r = readings[i]!
    if (r.receivedAt !== null && r.receivedAt - r.time > intervalAt(r.time)) late++
    const next = readings[i + 1]
    if (next === undefined) {
      const tail = expectedIn(Math.max(r.time, registered), end)
      if (tail > silent) addGap({ from: r.time, to: end, missing: Math.round(tail) - 1 })
      continue
    }
    const span = expectedIn(Math.max(r.time, registered), next.time)
    if (span > silent) addGap({ from: r.time, to: next.time, missing: Math.round(span) - 1 })
    if (r.seq !== null && next.seq !== null && next.seq > r.seq) seqMissing += next.seq - r.seq - 1
  }
  return {
    device,
    from,
    to,
    reportingIntervalMs: periods.at(-1)!.intervalMs,
    expected,
    arrived: readings.length,
    share: expected > 0 ? Math.min(1, readings.length / expected) : null,
    seqMissing,
    late,
    gaps,
    gapsTruncated: gapCount > gaps.length,
  }
}
