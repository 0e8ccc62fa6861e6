import { metricColumns } from './schema.ts'
import type { StoredReading } from './types.ts'

/** Commas and spaces end a measurement name; quotes and backslashes are kept literally by both 1.x and 2.x. */
export function escapeMeasurement(name: string): string {
  return name.replace(/[, ]/g, '\\$&')
}

/**
 * Tag keys and values end at a comma, space or `=`. Callers reject values this cannot carry
 * (see `readingProblem`): line breaks and backslashes right before these characters.
 */
export function escapeTag(value: string): string {
  return value.replace(/[, =]/g, '\\$&')
}

/** A device's tags repeat on every reading: escape them once per series, not once per line (bounded). */
const prefixes = new Map<string, string>()
const MAX_CACHED_SERIES = 100_000

function seriesPrefix(reading: StoredReading): string {
  const key = `${reading.kind}\n${reading.device}\n${reading.district}\n${reading.regency}`
  let prefix = prefixes.get(key)
  if (prefix === undefined) {
    prefix =
      `${escapeMeasurement(reading.kind)},device=${escapeTag(reading.device)},district=${escapeTag(reading.district)}` +
      `,kind=${escapeTag(reading.kind)},regency=${escapeTag(reading.regency)} `
    if (prefixes.size >= MAX_CACHED_SERIES) prefixes.clear()
    prefixes.set(key, prefix)
  }
  return prefix
}

/**
 * One line of line protocol, ms precision. Tags are written in key order, as InfluxDB recommends for
 * its indexing; integer metrics of the contract carry `i` so a field keeps one type for its lifetime.
 * The reading must have passed `readingProblem`.
 */
export function toLineProtocol(reading: StoredReading): string {
  let line = seriesPrefix(reading)
  for (const column of metricColumns(reading.kind)) {
    const value = reading.fields[column.name]
    if (value === undefined) continue
    // Without the `i` suffix InfluxDB reads any number, 80 included, as a float.
    line += `${escapeTag(column.name)}=${column.integer ? `${value}i` : String(value)},`
  }
  return `${line}seq=${reading.seq}i,receivedAt=${reading.receivedAt}i ${reading.ts}`
}
