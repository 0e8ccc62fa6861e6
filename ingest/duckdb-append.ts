import type { DuckDBAppender, DuckDBConnection } from '@duckdb/node-api'

/**
 * Appends rows to a table through DuckDB's appender, inside the connection's open transaction when there
 * is one (a rollback drops them too). `write` appends one row's values in the table's column order. Far
 * cheaper than one INSERT per row: the registry and the alarm store use it for changes that come in
 * thousands at once.
 */
export async function appendRows<T>(
  db: DuckDBConnection,
  table: string,
  rows: Iterable<T>,
  write: (a: DuckDBAppender, row: T) => void,
  options: { temp?: boolean } = {},
): Promise<void> {
  const a = await db.createAppender(table, options.temp ? 'main' : null, options.temp ? 'temp' : null)
  try {
    for (const row of rows) {
      write(a, row)
      a.endRow()
    }
    a.flushSync()
    a.closeSync()
  } catch (err) {
    // Closing flushes: drop the rows that failed so the close does not fail again with them.
    try {
      a.clear()
      a.closeSync()
    } catch {}
    throw err
  }
}
