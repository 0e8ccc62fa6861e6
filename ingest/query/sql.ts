import type { AnalystAggregate, AnalystQuery } from '../store/types.ts'

/**
 * Analyst queries as DuckDB SQL for the embedded store. Identifiers (table, metric columns, tag columns)
 * come from the contract and are quoted; every value (device ids, districts, regencies, times, window
 * length, offset, row limit) is a bound parameter.
 */

export interface CompiledSql {
  readonly sql: string
  readonly params: readonly (string | bigint)[]
}

function quoteIdentifier(name: string): string {
  return `"${name.replace(/"/g, '""')}"`
}

export function sqlTable(kind: string): string {
  return quoteIdentifier(`readings_${kind.replace(/-/g, '_')}`)
}

/** Column of a query field: metrics keep their contract names; `receivedAt` is `received_at`. */
export function sqlColumn(field: string): string {
  return quoteIdentifier(field === 'receivedAt' ? 'received_at' : field)
}

function aggregateExpression(aggregate: AnalystAggregate, column: string): string {
  const present = `FILTER (WHERE ${column} IS NOT NULL)`
  switch (aggregate) {
    case 'mean':
      return `avg(${column})`
    case 'min':
      return `min(${column})`
    case 'max':
      return `max(${column})`
    case 'sum':
      return `sum(${column})`
    case 'count':
      return `count(${column})`
    case 'last':
      // InfluxQL's LAST takes the latest point and, between points of the same time (two devices of a
      // district), the greater value.
      return `arg_max(${column}, [CAST("ts" AS DOUBLE), CAST(${column} AS DOUBLE)]) ${present}`
    case 'p95':
      // InfluxQL's PERCENTILE(x, 95): nearest rank, the value at 1-based rank floor(n * 95 / 100 + 0.5).
      return (
        `list_sort(list(${column}) ${present})` +
        `[greatest(CAST(floor(count(${column}) * 95 / 100 + 0.5) AS BIGINT), 1)]`
      )
  }
}

export function analystSql(q: AnalystQuery): CompiledSql {
  const params: (string | bigint)[] = []
  const bind = (value: string | bigint): string => {
    params.push(value)
    return `$${params.length}`
  }
  const columns = q.fields.map(sqlColumn)
  const where = [`"ts" >= ${bind(BigInt(Math.trunc(q.from)))}`, `"ts" < ${bind(BigInt(Math.trunc(q.to)))}`]
  const devices = q.filter.devices
  if (devices !== undefined) where.push(`"device" IN (${devices.map((d) => bind(d)).join(', ')})`)
  if (q.filter.district !== undefined) where.push(`"district" = ${bind(q.filter.district)}`)
  if (q.filter.regency !== undefined) where.push(`"regency" = ${bind(q.filter.regency)}`)
  // InfluxDB has no point for a field a reading did not carry: rows without any asked-for field are none.
  where.push(`(${columns.map((c) => `${c} IS NOT NULL`).join(' OR ')})`)
  const table = sqlTable(q.kind)
  const group = quoteIdentifier(q.groupBy)

  if (q.windowMs === undefined) {
    const limit = bind(BigInt(q.maxRows + 1))
    return {
      sql:
        `SELECT ${group} AS g, "ts" AS t, "device", ${columns.map((c) => `CAST(${c} AS DOUBLE)`).join(', ')} ` +
        `FROM ${table} WHERE ${where.join(' AND ')} ORDER BY t, "device" LIMIT ${limit}`,
      params,
    }
  }
  const offset = bind(BigInt(q.tzOffsetMs))
  const width = bind(BigInt(q.windowMs))
  const window = `CAST(floor(CAST("ts" + ${offset} AS DOUBLE) / ${width}) AS BIGINT) * ${width} - ${offset}`
  const aggregates: string[] = []
  for (const column of columns) {
    for (const aggregate of q.aggregates) {
      aggregates.push(`CAST(${aggregateExpression(aggregate, column)} AS DOUBLE)`)
    }
  }
  const limit = bind(BigInt(q.maxRows + 1))
  return {
    sql:
      `SELECT ${group} AS g, ${window} AS t, ${aggregates.join(', ')} FROM ${table} ` +
      `WHERE ${where.join(' AND ')} GROUP BY g, t ORDER BY g, t LIMIT ${limit}`,
    params,
  }
}
