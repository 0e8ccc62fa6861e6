import { DEVICE_KINDS } from '../../firmware-contracts/index.ts'
import { perDeviceTags } from './per-device.ts'
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

/** A device's tags repeat on every reading: escape them once per device, not once per line. */
const seriesPrefix = perDeviceTags(
  (reading) =>
    `${escapeMeasurement(reading.kind)},device=${escapeTag(reading.device)},district=${escapeTag(reading.district)}` +
    `,kind=${escapeTag(reading.kind)},regency=${escapeTag(reading.regency)} `,
)

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
