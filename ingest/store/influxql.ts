import { z } from 'zod'
import { metricColumns, type NormalizedRangeQuery } from './schema.ts'
import type { ReadingRow } from './types.ts'

/**
 * InfluxQL strings and quoted identifiers share one escape grammar: only `\\`, `\n` and the quote
 * itself are escapes, a raw line break ends the statement with an error, so all three are escaped.
 */
function escapeQuoted(value: string, quote: '"' | "'"): string {
  let out = ''
  for (const ch of value) {
    if (ch === '\\') out += '\\\\'
    else if (ch === quote) out += `\\${quote}`
    else if (ch === '\n') out += '\\n'
    else out += ch
  }
  return out
}

export function quoteIdentifier(name: string): string {
  return `"${escapeQuoted(name, '"')}"`
}

export function quoteString(value: string): string {
  return `'${escapeQuoted(value, "'")}'`
}

/**
 * A device's readings in a range, oldest first. Without GROUP BY, tags come back as columns and LIMIT
 * counts rows across every series of the device (a device whose district changed has two series).
 */
export function deviceRangeStatement(query: NormalizedRangeQuery, retentionPolicy?: string): string {
  const source =
    retentionPolicy === undefined
      ? quoteIdentifier(query.kind)
      : `${quoteIdentifier(retentionPolicy)}.${quoteIdentifier(query.kind)}`
  return (
    `SELECT * FROM ${source} WHERE "device" = ${quoteString(query.device)} ` +
    `AND time >= ${query.from}ms AND time <= ${query.to}ms ORDER BY time ASC LIMIT ${query.limit}`
  )
}

const SeriesSchema = z.object({
  name: z.string().optional(),
  tags: z.record(z.string(), z.string()).optional(),
  columns: z.array(z.string()),
  values: z.array(z.array(z.unknown())).optional(),
})
export type InfluxQLSeries = z.infer<typeof SeriesSchema>

const ResponseSchema = z.object({
  error: z.string().optional(),
  results: z
    .array(
      z.object({
        statement_id: z.number().optional(),
        error: z.string().optional(),
        series: z.array(SeriesSchema).optional(),
      }),
    )
    .optional(),
})

/** The series of a one-statement response; a statement error (sent with HTTP 200) becomes a thrown Error. */
export function seriesOf(body: unknown): InfluxQLSeries[] {
  const parsed = ResponseSchema.safeParse(body)
  if (!parsed.success) throw new Error(`unexpected InfluxQL response: ${JSON.stringify(body).slice(0, 200)}`)
  if (parsed.data.error !== undefined) throw new Error(`InfluxQL error: ${parsed.data.error}`)
  const series: InfluxQLSeries[] = []
  for (const result of parsed.data.results ?? []) {
    if (result.error !== undefined) throw new Error(`InfluxQL error: ${result.error}`)
    series.push(...(result.series ?? []))
  }
  return series
}

/**
 * Rows of `deviceRangeStatement` as readings. Points without `seq` or `receivedAt` were not written by
 * this store (every line it writes has both) and are not readings, so they are left out.
 */
export function readingRows(query: NormalizedRangeQuery, series: readonly InfluxQLSeries[]): ReadingRow[] {
  const metrics = metricColumns(query.kind)
  const rows: ReadingRow[] = []
  for (const s of series) {
    const index = new Map(s.columns.map((name, i) => [name, i]))
    const column = (row: readonly unknown[], name: string): unknown => {
      const i = index.get(name)
      return i === undefined ? undefined : row[i]
    }
    const tag = (row: readonly unknown[], name: string): string | undefined => {
      const value = column(row, name) ?? s.tags?.[name]
      return typeof value === 'string' ? value : undefined
    }
    for (const row of s.values ?? []) {
      const ts = column(row, 'time')
      const seq = column(row, 'seq')
      const receivedAt = column(row, 'receivedAt')
      if (typeof ts !== 'number' || typeof seq !== 'number' || typeof receivedAt !== 'number') continue
      const fields: Record<string, number> = {}
      for (const metric of metrics) {
        const value = column(row, metric.name)
        if (typeof value === 'number') fields[metric.name] = value
      }
      rows.push({
        kind: query.kind,
        device: tag(row, 'device') ?? query.device,
        district: tag(row, 'district') ?? '',
        regency: tag(row, 'regency') ?? '',
        ts,
        receivedAt,
        seq,
        fields,
      })
    }
  }
  // One series is already in order; several (a GROUP BY upstream, a proxy merging shards) are not.
  if (series.length > 1) rows.sort((a, b) => a.ts - b.ts)
  return rows.slice(0, query.limit)
}
