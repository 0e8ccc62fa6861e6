import { DEVICE_KINDS } from '../../firmware-contracts/index.ts'
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

/** A device's tags repeat on every reading: escape them once per device, not once per line (bounded). */
interface SeriesPrefix {
  readonly kind: string
  readonly district: string
  readonly regency: string
  readonly prefix: string
}
const prefixes = new Map<string, SeriesPrefix>()
const MAX_CACHED_SERIES = 100_000

function seriesPrefix(reading: StoredReading): string {
  const cached = prefixes.get(reading.device)
  // A device re-registered with other tags gets a new prefix; comparing three short strings is cheaper
  // than building and hashing a composite key for every line.
  if (
    cached !== undefined &&
    cached.kind === reading.kind &&
    cached.district === reading.district &&
    cached.regency === reading.regency
  ) {
    return cached.prefix
  }
  const prefix =
    `${escapeMeasurement(reading.kind)},device=${escapeTag(reading.device)},district=${escapeTag(reading.district)}` +
    `,kind=${escapeTag(reading.kind)},regency=${escapeTag(reading.regency)} `
  if (prefixes.size >= MAX_CACHED_SERIES) prefixes.clear()
  prefixes.set(reading.device, {
    kind: reading.kind,
    district: reading.district,
    regency: reading.regency,
    prefix,
  })
  return prefix
}

/** Per kind, each metric's escaped `key=` and whether it is written as an integer. */
const FIELD_KEYS = new Map(
  DEVICE_KINDS.map((kind) => [
    kind,
    metricColumns(kind).map((c) => ({ name: c.name, key: `${escapeTag(c.name)}=`, integer: c.integer })),
  ]),
)

/**
 * One line of line protocol, ms precision. Tags are written in key order, as InfluxDB recommends for
 * its indexing; integer metrics of the contract carry `i` so a field keeps one type for its lifetime.
 * The reading must have passed `readingProblem`.
 */
export function toLineProtocol(reading: StoredReading): string {
  let line = seriesPrefix(reading)
  const fields = reading.fields
  for (const column of FIELD_KEYS.get(reading.kind)!) {
    const value = fields[column.name]
    if (value === undefined) continue
    // Without the `i` suffix InfluxDB reads any number, 80 included, as a float.
    line += column.integer ? `${column.key}${value}i,` : `${column.key}${value},`
  }
  return `${line}seq=${reading.seq}i,receivedAt=${reading.receivedAt}i ${reading.ts}`
}
