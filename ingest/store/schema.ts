import {
  DEVICE_KINDS,
  type DeviceKind,
  isDeviceKind,
  KIND_SPECS,
  type MetricSpec,
} from '../../firmware-contracts/index.ts'
import { perDeviceTags } from './per-device.ts'
import type { DeviceRangeQuery, StoredReading } from './types.ts'

export interface MetricColumn {
  readonly name: string
  readonly integer: boolean
}

const METRIC_COLUMNS = {} as Record<DeviceKind, readonly MetricColumn[]>
for (const kind of DEVICE_KINDS) {
  const metrics: Readonly<Record<string, MetricSpec>> = KIND_SPECS[kind].metrics
  METRIC_COLUMNS[kind] = Object.entries(metrics).map(([name, spec]) => ({
    name,
    integer: spec.integer === true,
  }))
}

/** Contract metrics of a kind in contract order, with their storage type. */
export function metricColumns(kind: DeviceKind): readonly MetricColumn[] {
  return METRIC_COLUMNS[kind]
}

/**
 * Time range every store accepts, in ms. InfluxDB keeps nanoseconds in an int64, so its range (about
 * 1677-09-21 to 2262-04-11) bounds the embedded store too: a reading one store takes, both take.
 */
export const STORE_TIME_RANGE_MS = { min: -9_223_372_036_854, max: 9_223_372_036_854 } as const

const TAG_KEYS = ['device', 'district', 'regency'] as const

function hasControlCharacter(value: string): boolean {
  for (let i = 0; i < value.length; i++) {
    const code = value.charCodeAt(i)
    if (code < 0x20 || code === 0x7f) return true
  }
  return false
}

const LONE_SURROGATE = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/

/**
 * Why a tag value cannot be stored so that InfluxDB 1.x and 2.x give back the same string and InfluxQL
 * can ask for it, if it cannot. Line protocol cannot carry line breaks, 1.x drops some control characters,
 * InfluxQL strings end at NUL and CR, and the two line-protocol versions disagree on a backslash before
 * another backslash, a separator or the end of the value (1.x keeps it, 2.x unescapes it).
 */
export function tagValueProblem(value: string): string | undefined {
  if (value.length === 0) return 'is empty'
  if (hasControlCharacter(value)) return 'contains a control character'
  if (LONE_SURROGATE.test(value)) return 'is not well-formed Unicode'
  if (/\\(?:[\\, =]|$)/.test(value))
    return 'has a backslash before another backslash, a comma, a space, = or the end'
  return undefined
}

/** Tags repeat on every reading of a device: check each device's tags once ('' = fine). */
const tagVerdict = perDeviceTags((reading) => {
  for (const key of TAG_KEYS) {
    const value = reading[key]
    const problem = tagValueProblem(value)
    if (problem !== undefined) return `${key} ${JSON.stringify(value).slice(0, 80)} ${problem}`
  }
  return ''
})

function tagsProblem(reading: StoredReading): string | undefined {
  const { device, district, regency } = reading as { device: unknown; district: unknown; regency: unknown }
  if (typeof device !== 'string' || typeof district !== 'string' || typeof regency !== 'string') {
    for (const key of TAG_KEYS) if (typeof reading[key] !== 'string') return `${key} is not a string`
  }
  const verdict = tagVerdict(reading)
  return verdict === '' ? undefined : verdict
}

/**
 * Why a store must refuse this reading, or undefined when it is storable. Both stores run the same check
 * so that a reading refused by one is refused by the other: the refusal is the writer's cue to set it aside.
 */
export function readingProblem(reading: StoredReading): string | undefined {
  if (!isDeviceKind(reading.kind))
    return `unknown device kind ${JSON.stringify(String(reading.kind)).slice(0, 80)}`
  const tags = tagsProblem(reading)
  if (tags !== undefined) return tags
  for (const key of ['ts', 'receivedAt'] as const) {
    const value = reading[key]
    if (!Number.isSafeInteger(value) || value < STORE_TIME_RANGE_MS.min || value > STORE_TIME_RANGE_MS.max) {
      return `${key} ${value} is not an integer ms time InfluxDB can store`
    }
  }
  if (!Number.isSafeInteger(reading.seq)) return `seq ${reading.seq} is not an integer`
  const columns = metricColumns(reading.kind)
  for (const name in reading.fields) {
    const column = columns.find((c) => c.name === name)
    const value = reading.fields[name]
    if (column === undefined) return `${reading.kind} has no metric ${JSON.stringify(name).slice(0, 80)}`
    if (typeof value !== 'number' || !Number.isFinite(value)) return `${name} ${value} is not a finite number`
    if (column.integer && !Number.isSafeInteger(value)) return `${name} ${value} is not an integer`
  }
  return undefined
}

export interface NormalizedRangeQuery {
  readonly kind: DeviceKind
  readonly device: string
  readonly from: number
  readonly to: number
  readonly limit: number
}

/**
 * Validates a range query and brings it into the form both stores run, or returns undefined when no row
 * can match (empty range, limit below 1). Throws RangeError for input no store can answer.
 */
export function normalizeRangeQuery(query: DeviceRangeQuery): NormalizedRangeQuery | undefined {
  if (!isDeviceKind(query.kind)) {
    throw new RangeError(`unknown device kind ${JSON.stringify(String(query.kind)).slice(0, 80)}`)
  }
  if (typeof query.device !== 'string') throw new RangeError('device must be a string')
  for (const key of ['from', 'to', 'limit'] as const) {
    if (typeof query[key] !== 'number' || Number.isNaN(query[key]))
      throw new RangeError(`${key} must be a number`)
  }
  // Stored times are whole ms within the range, so rounding inward and clamping changes no answer.
  const from = Math.max(Math.ceil(query.from), STORE_TIME_RANGE_MS.min)
  const to = Math.min(Math.floor(query.to), STORE_TIME_RANGE_MS.max)
  const limit = Math.min(Math.floor(query.limit), Number.MAX_SAFE_INTEGER)
  // A device id no store would take cannot match a stored reading; InfluxQL could not even spell some.
  if (from > to || limit < 1 || tagValueProblem(query.device) !== undefined) return undefined
  return { kind: query.kind, device: query.device, from, to, limit }
}
