import { type InfluxQLSeries, quoteIdentifier, quoteString } from '../store/influxql.ts'
import type { AnalystAggregate, AnalystQuery, AnalystRow } from '../store/types.ts'

/**
 * Analyst queries as InfluxQL. Every identifier is one of the contract's metric names, a tag key or an
 * alias we make (`c0`, `c1`, …), quoted anyway; every string (device ids, districts, regencies) is a
 * quoted string literal, compared with `=` (never a regex); numbers are integers we computed; the time
 * zone comes from a closed list.
 */

function aggregateExpression(aggregate: AnalystAggregate, field: string): string {
  const f = quoteIdentifier(field)
  switch (aggregate) {
    case 'mean':
      return `MEAN(${f})`
    case 'min':
      return `MIN(${f})`
    case 'max':
      return `MAX(${f})`
    case 'sum':
      return `SUM(${f})`
    case 'count':
      return `COUNT(${f})`
    case 'last':
      return `LAST(${f})`
    case 'p95':
      // Nearest rank: the value at 1-based rank floor(n * 95 / 100 + 0.5) of the sorted values.
      return `PERCENTILE(${f}, 95)`
  }
}

function whereClause(q: AnalystQuery): string {
  const parts = [`time >= ${Math.trunc(q.from)}ms`, `time < ${Math.trunc(q.to)}ms`]
  const devices = q.filter.devices
  if (devices !== undefined) {
    parts.push(`(${devices.map((d) => `"device" = ${quoteString(d)}`).join(' OR ')})`)
  }
  if (q.filter.district !== undefined) parts.push(`"district" = ${quoteString(q.filter.district)}`)
  if (q.filter.regency !== undefined) parts.push(`"regency" = ${quoteString(q.filter.regency)}`)
  return parts.join(' AND ')
}

function source(q: AnalystQuery, retentionPolicy?: string): string {
  return retentionPolicy === undefined
    ? quoteIdentifier(q.kind)
    : `${quoteIdentifier(retentionPolicy)}.${quoteIdentifier(q.kind)}`
}

/** Whole minutes or hours as InfluxQL durations; windows come from a closed list of such lengths. */
function duration(ms: number): string {
  if (ms % 3_600_000 === 0) return `${ms / 3_600_000}h`
  if (ms % 60_000 === 0) return `${ms / 60_000}m`
  return `${ms}ms`
}

export function analystStatement(q: AnalystQuery, retentionPolicy?: string): string {
  const from = source(q, retentionPolicy)
  const where = whereClause(q)
  if (q.windowMs === undefined) {
    // Without GROUP BY the series of all devices come back merged in time order, and LIMIT counts rows.
    const columns = [...q.fields.map(quoteIdentifier), '"device"', '"district"'].join(', ')
    return `SELECT ${columns} FROM ${from} WHERE ${where} ORDER BY time ASC LIMIT ${q.maxRows + 1}`
  }
  const columns: string[] = []
  let i = 0
  for (const field of q.fields) {
    for (const aggregate of q.aggregates)
      columns.push(`${aggregateExpression(aggregate, field)} AS "c${i++}"`)
  }
  // tz() moves window starts to local midnight for daily windows; the allowed zones are whole-hour
  // offsets, so shorter windows start at the same instants with or without it.
  return (
    `SELECT ${columns.join(', ')} FROM ${from} WHERE ${where} ` +
    `GROUP BY time(${duration(q.windowMs)}), ${quoteIdentifier(q.groupBy)} fill(none) tz(${quoteString(q.tz)})`
  )
}

function numberOrNull(value: unknown): number | null {
  return typeof value === 'number' && Number.isFinite(value) ? value : null
}

/** Rows of `analystStatement`'s answer, in no particular order (the caller sorts). */
export function analystRows(q: AnalystQuery, series: readonly InfluxQLSeries[]): AnalystRow[] {
  const rows: AnalystRow[] = []
  for (const s of series) {
    const index = new Map(s.columns.map((name, i) => [name, i]))
    const at = (row: readonly unknown[], name: string): unknown => {
      const i = index.get(name)
      return i === undefined ? undefined : row[i]
    }
    for (const row of s.values ?? []) {
      const time = at(row, 'time')
      if (typeof time !== 'number') continue
      if (q.windowMs === undefined) {
        const device = at(row, 'device')
        const district = at(row, 'district')
        if (typeof device !== 'string') continue
        const group = q.groupBy === 'device' ? device : typeof district === 'string' ? district : ''
        rows.push({ group, time, device, values: q.fields.map((f) => numberOrNull(at(row, f))) })
      } else {
        const group = s.tags?.[q.groupBy] ?? ''
        const values: (number | null)[] = []
        for (let i = 0; i < q.fields.length * q.aggregates.length; i++)
          values.push(numberOrNull(at(row, `c${i}`)))
        rows.push({ group, time, values })
      }
    }
  }
  return rows
}
