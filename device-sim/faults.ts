import { z } from 'zod'
import {
  CURRENT_CONTRACT_VERSION,
  DEFAULT_MAX_PAYLOAD_BYTES,
  type DeviceKind,
  KIND_SPECS,
  MAX_BATCH_READINGS,
  type MetricSpec,
} from '../firmware-contracts/index.ts'
import type { SimReading } from './signals.ts'

/*
 * Faults that field devices really show, as pure payload builders (tested against the contract) plus the
 * configuration the simulator rolls them with. Every fault is off unless its rate is set.
 */

export const FAULT_NAMES = [
  'disconnect',
  'offline',
  'duplicate',
  'clockSkew',
  'malformedJson',
  'schemaViolation',
  'outOfRange',
  'oversized',
  'flood',
] as const
export type FaultName = (typeof FAULT_NAMES)[number]

/** Faults that replace one reading's payload; the order is the order they are rolled in. */
export const PAYLOAD_FAULTS = [
  'malformedJson',
  'schemaViolation',
  'outOfRange',
  'oversized',
  'clockSkew',
  'duplicate',
] as const satisfies readonly FaultName[]
export type PayloadFault = (typeof PAYLOAD_FAULTS)[number]

const probability = z.number().min(0).max(1).default(0)

export const FaultsSchema = z.object({
  /** Drop the TCP connection without DISCONNECT (the broker publishes the last will); mqtt.js reconnects. */
  disconnect: z.object({ ratePerMin: z.number().min(0).max(60).default(0) }).prefault({}),
  /** Lose the network for a while, keep measuring, then send the backlog as batches. */
  offline: z
    .object({ rate: probability, durationMs: z.number().int().min(100).max(86_400_000).default(120_000) })
    .prefault({}),
  /** Send the same reading twice (a lost PUBACK makes real firmware do this). */
  duplicate: z.object({ rate: probability }).prefault({}),
  /** Stamp a reading off by `skewMs`; positive is the future (beyond 5 min the platform rejects it). */
  clockSkew: z
    .object({
      rate: probability,
      skewMs: z
        .number()
        .int()
        .min(-10 * 365 * 86_400_000)
        .max(10 * 365 * 86_400_000)
        .default(600_000),
    })
    .prefault({}),
  malformedJson: z.object({ rate: probability }).prefault({}),
  schemaViolation: z.object({ rate: probability }).prefault({}),
  outOfRange: z.object({ rate: probability }).prefault({}),
  /** A firmware debug dump: one payload larger than `bytes` (well above the platform's 64 KiB limit). */
  oversized: z
    .object({
      rate: probability,
      bytes: z
        .number()
        .int()
        .min(1024)
        .max(16 * 1024 * 1024)
        .default(256 * 1024),
    })
    .prefault({}),
  /** One device at a time publishes as fast as its in-flight window allows, for `durationMs`. */
  flood: z
    .object({
      rate: probability,
      durationMs: z.number().int().min(100).max(600_000).default(5000),
      maxMessages: z.number().int().min(1).max(1_000_000).default(20_000),
      maxInflight: z.number().int().min(1).max(10_000).default(100),
    })
    .prefault({}),
})
export type Faults = z.infer<typeof FaultsSchema>
export type FaultsInput = z.input<typeof FaultsSchema>

/** Which faults are on, for log lines and the CLI banner. */
export function enabledFaults(faults: Faults): FaultName[] {
  return FAULT_NAMES.filter((name) => {
    const f = faults[name]
    return 'ratePerMin' in f ? f.ratePerMin > 0 : f.rate > 0
  })
}

// ------------------------------------------------------------------------------------------ encoding

function readingObject(reading: SimReading): Record<string, number> {
  return { ts: reading.ts, seq: reading.seq, ...reading.metrics }
}

/** One reading as the firmware sends it. */
export function encodeReading(reading: SimReading): string {
  return JSON.stringify({ v: CURRENT_CONTRACT_VERSION, ...readingObject(reading) })
}

/** A backlog batch: `{"v":1,"readings":[...]}`. */
export function encodeBatch(readings: readonly SimReading[]): string {
  return JSON.stringify({ v: CURRENT_CONTRACT_VERSION, readings: readings.map(readingObject) })
}

/** Room for the batch wrapper and rounding, so a chunk never crosses the size limit. */
const BATCH_OVERHEAD_BYTES = 64

/**
 * Splits a backlog into batches the platform accepts: at most MAX_BATCH_READINGS readings and at most
 * `maxBytes` each (a day offline at 1-minute intervals is 1,440 readings, ~200 KB for air quality).
 */
export function chunkBacklog(
  readings: readonly SimReading[],
  maxBytes = DEFAULT_MAX_PAYLOAD_BYTES,
): Array<{ payload: string; readings: SimReading[] }> {
  const chunks: Array<{ payload: string; readings: SimReading[] }> = []
  let current: SimReading[] = []
  let bytes = BATCH_OVERHEAD_BYTES
  const flush = () => {
    if (current.length > 0) chunks.push({ payload: encodeBatch(current), readings: current })
    current = []
    bytes = BATCH_OVERHEAD_BYTES
  }
  for (const reading of readings) {
    const size = Buffer.byteLength(JSON.stringify(readingObject(reading))) + 1
    if (current.length > 0 && (current.length >= MAX_BATCH_READINGS || bytes + size > maxBytes)) flush()
    current.push(reading)
    bytes += size
  }
  flush()
  return chunks
}

// ------------------------------------------------------------------------------------ fault payloads

/**
 * Broken JSON of the kinds field firmware produces: a buffer cut short, a NaN from a failed sensor read,
 * a trailing comma from a hand-rolled serialiser, single quotes, a byte that is not UTF-8.
 * Always rejected as `invalid_json`.
 */
export function malformedJsonPayload(reading: SimReading, u: number): Buffer {
  const json = encodeReading(reading)
  const variant = Math.floor(u * 5)
  switch (variant) {
    case 0: {
      // Any strict prefix of a JSON object is incomplete.
      const cut = Math.max(
        1,
        Math.min(json.length - 1, Math.floor(json.length * (0.3 + 0.6 * ((u * 5) % 1)))),
      )
      return Buffer.from(json.slice(0, cut))
    }
    case 1:
      return Buffer.from(json.replace(/:(-?[\d.e+-]+)(?=[,}])/, ':NaN'))
    case 2:
      return Buffer.from(`${json.slice(0, -1)},}`)
    case 3:
      return Buffer.from(json.replaceAll('"', "'"))
    default:
      return Buffer.concat([
        Buffer.from(json.slice(0, -1)),
        Buffer.from([0x2c, 0x22, 0xff, 0xfe, 0x22, 0x3a, 0x31, 0x7d]),
      ])
  }
}

/** Misspellings a firmware team could plausibly ship, per metric. */
const MISSPELLINGS: Readonly<Record<string, string>> = {
  waterLevel: 'waterlevel',
  flow: 'flowRate',
  rainfall: 'rainFall',
  pm25: 'pm2_5',
  pm10: 'pm_10',
  o3: 'O3',
  co: 'CO',
  no2: 'NO2',
  so2: 'SO2',
  hc: 'HC',
  temperature: 'temp',
  relativeHumidity: 'humidity',
  peopleIn: 'peopleIN',
  peopleOut: 'people_out',
  occupancy: 'occupancy_count',
  battery: 'batt',
  rssi: 'RSSI',
}

/**
 * Valid JSON that breaks the kind's contract: a misspelled field, `seq` sent as a string, a number sent as
 * a string, or a field claiming the device's kind (kind comes from the registry, never the payload).
 * Always rejected as `schema`.
 */
export function schemaViolationPayload(kind: DeviceKind, reading: SimReading, u: number): string {
  const body: Record<string, unknown> = { v: CURRENT_CONTRACT_VERSION, ...readingObject(reading) }
  const metrics = Object.keys(reading.metrics)
  const variant = Math.floor(u * 4)
  if (variant === 0 || metrics.length === 0) {
    const name = metrics[Math.floor(((u * 4) % 1) * metrics.length)] ?? KIND_SPECS[kind].requireOneOf[0]!
    const value = body[name] ?? 1
    delete body[name]
    body[MISSPELLINGS[name] ?? `${name}_`] = value
  } else if (variant === 1) {
    body.seq = String(reading.seq)
  } else if (variant === 2) {
    const name = metrics[0]!
    body[name] = String(body[name])
  } else {
    body.kind = kind
  }
  return JSON.stringify(body)
}

/**
 * A value outside the sensor's plausible range, as a stuck or miswired sensor reports: beyond the maximum,
 * below the minimum (whole numbers for counts). Always rejected as `out_of_range`.
 */
export function outOfRangePayload(kind: DeviceKind, reading: SimReading, u: number): string {
  const specs: Record<string, MetricSpec> = KIND_SPECS[kind].metrics
  const names = Object.keys(reading.metrics).filter((n) => specs[n] !== undefined)
  const name = names[Math.floor(u * names.length)] ?? KIND_SPECS[kind].requireOneOf[0]!
  const spec = specs[name]!
  const span = spec.max - spec.min
  const high = (u * 7) % 1 < 0.5
  const offset = Math.max(1, Math.round(span * (0.1 + ((u * 13) % 1))))
  const value = high ? spec.max + offset : spec.min - offset
  return JSON.stringify({ v: CURRENT_CONTRACT_VERSION, ...readingObject(reading), [name]: value })
}

/** The reading stamped `skewMs` off: beyond 5 minutes ahead it is `future_timestamp`, behind it is late data. */
export function clockSkewPayload(reading: SimReading, skewMs: number): string {
  return encodeReading({ ...reading, ts: reading.ts + skewMs })
}

/** A reading with a debug dump appended, strictly larger than `bytes`: rejected as `too_large`. */
export function oversizedPayload(reading: SimReading, bytes: number): Buffer {
  const head = encodeReading(reading).slice(0, -1)
  const fixed = Buffer.byteLength(head) + ',"debug":""}'.length
  const padding = Math.max(0, bytes + 1 - fixed)
  return Buffer.from(`${head},"debug":"${'A'.repeat(padding)}"}`)
}
