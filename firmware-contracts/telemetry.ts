import { z } from 'zod'
import { DEVICE_KINDS, type DeviceKind, KIND_SPECS, type MetricSpec } from './kinds.ts'

/**
 * Contract versions this platform accepts. A payload without `v` is version 1 (the first firmware), so
 * firmware built before `v` existed keeps validating. A breaking change adds a version here and keeps the
 * older ones accepted for as long as such firmware is in the field.
 */
export const CONTRACT_VERSIONS = [1] as const
export const CURRENT_CONTRACT_VERSION = 1

export const MAX_BATCH_READINGS = 1000

/** Milliseconds since the Unix epoch; from 2020 on, so a gauge with an unset RTC (1970) is caught. */
export const TimestampSchema = z
  .number()
  .int()
  .min(Date.UTC(2020, 0, 1))
  .max(Date.UTC(2100, 0, 1))
  .meta({ description: 'Observation time, milliseconds since the Unix epoch (UTC)' })

export const SeqSchema = z
  .number()
  .int()
  .min(0)
  .max(Number.MAX_SAFE_INTEGER)
  .meta({ description: 'Per-device reading counter, +1 per reading; restarts at 0 after a firmware reset' })

export const ContractVersionSchema = z
  .literal(CONTRACT_VERSIONS)
  .meta({ description: 'Contract version (default 1)' })

function metricSchema(spec: MetricSpec) {
  const base = spec.integer ? z.number().int() : z.number()
  return base.min(spec.min).max(spec.max).meta({ unit: spec.unit, description: spec.description })
}

function telemetrySchemaFor(kind: DeviceKind) {
  const spec = KIND_SPECS[kind]
  const shape: Record<string, z.ZodOptional<z.ZodNumber>> = {}
  for (const [name, m] of Object.entries(spec.metrics)) shape[name] = metricSchema(m).optional()
  const hasMetric = (r: Record<string, unknown>) => spec.requireOneOf.some((name) => r[name] !== undefined)
  const needMetric = { message: `a ${kind} reading needs at least one of: ${spec.requireOneOf.join(', ')}` }
  const fields = { ts: TimestampSchema.optional(), seq: SeqSchema, ...shape }
  const reading = z
    .strictObject(fields)
    .refine(hasMetric, needMetric)
    .meta({ title: `${kind} reading`, description: spec.description })
  // One reading, or a backlog batch from a device that was offline; both carry the version.
  const single = z
    .strictObject({ v: ContractVersionSchema.optional(), ...fields })
    .refine(hasMetric, needMetric)
    .meta({ title: `${kind} telemetry (one reading)`, description: spec.description })
  const batch = z
    .strictObject({
      v: ContractVersionSchema.optional(),
      readings: z.array(reading).min(1).max(MAX_BATCH_READINGS),
    })
    .meta({
      title: `${kind} telemetry (batch)`,
      description: 'Backlog of readings sent after an offline period',
    })
  return { reading, single, batch }
}

export const TELEMETRY_SCHEMAS = Object.fromEntries(DEVICE_KINDS.map((k) => [k, telemetrySchemaFor(k)])) as {
  [K in DeviceKind]: ReturnType<typeof telemetrySchemaFor>
}

export const RiverLevelReadingSchema = TELEMETRY_SCHEMAS['river-level'].reading
export type RiverLevelReading = z.infer<typeof RiverLevelReadingSchema>
export const RainGaugeReadingSchema = TELEMETRY_SCHEMAS['rain-gauge'].reading
export type RainGaugeReading = z.infer<typeof RainGaugeReadingSchema>
export const AirQualityReadingSchema = TELEMETRY_SCHEMAS['air-quality'].reading
export type AirQualityReading = z.infer<typeof AirQualityReadingSchema>
export const CrowdCounterReadingSchema = TELEMETRY_SCHEMAS['crowd-counter'].reading
export type CrowdCounterReading = z.infer<typeof CrowdCounterReadingSchema>

/** A validated reading in the platform's uniform shape: every metric is a number field. */
export interface Reading {
  /** Observation time from the device, if it sent one. */
  readonly ts: number | undefined
  readonly seq: number
  readonly fields: Readonly<Record<string, number>>
}
