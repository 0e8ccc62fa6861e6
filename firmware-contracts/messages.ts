import { z } from 'zod'
import { type DeviceKind, isDeviceKind, KIND_SPECS, type MetricSpec } from './kinds.ts'
import { classifyZodError, decodeJsonObject, describeValue, payloadSizeRejection } from './payload.ts'
import type { Rejection } from './reasons.ts'
import { ContractVersionSchema, TimestampSchema } from './telemetry.ts'
import { DEFAULT_MAX_FUTURE_SKEW_MS, type ValidateOptions } from './validate.ts'

/**
 * Control messages (status, config, cmd, ack) are a few hundred bytes; a tighter limit than telemetry's
 * keeps a misbehaving device from parking large blobs in retained topics.
 */
export const DEFAULT_MAX_CONTROL_PAYLOAD_BYTES = 4 * 1024

// Every message carries the version the same way: absent means 1, so firmware that predates `v` validates.
const MessageVersionSchema = ContractVersionSchema.default(1)

// ---------------------------------------------------------------------------------------------------------
// status (up): birth and last will

/** Semantic versioning, optionally prefixed with "v"; pieces bounded so the regex stays linear. */
export const FIRMWARE_VERSION_PATTERN =
  /^v?\d{1,9}\.\d{1,9}\.\d{1,9}(?:-[0-9A-Za-z.-]{1,40})?(?:\+[0-9A-Za-z.-]{1,40})?$/
export const FirmwareVersionSchema = z
  .string()
  .max(100)
  .regex(FIRMWARE_VERSION_PATTERN, 'firmware: a semantic version such as "1.4.2" or "2.0.0-rc.1+esp32"')
  .meta({ description: 'Firmware version, MAJOR.MINOR.PATCH with optional -pre-release and +build' })

/**
 * Suggested `reason` tokens. Not enforced, so a firmware team can add its own without a platform release;
 * dashboards show unknown tokens as they are.
 */
export const STATUS_REASONS = {
  'power-on': 'Cold start after power was applied',
  watchdog: 'Restarted by the watchdog',
  'reboot-command': 'Restarted on a `reboot` command',
  'ota-update': 'Restarted into new firmware',
  reconnect: 'Network connection re-established without a restart',
  'low-battery': 'Going offline to save the battery',
  shutdown: 'Orderly shutdown',
  'connection-lost': 'Last will: the broker lost the connection',
} as const

export const STATUS_REASON_PATTERN = /^[a-z0-9][a-z0-9-]{0,63}$/
export const StatusReasonSchema = z
  .string()
  .regex(STATUS_REASON_PATTERN, 'reason: a lowercase token of a-z, 0-9 and "-", at most 64 characters')
  .meta({
    description: `Why the device came online or went offline, e.g. ${Object.keys(STATUS_REASONS).join(', ')}`,
  })

export const StatusSchema = z
  .strictObject({
    v: MessageVersionSchema,
    online: z.boolean().meta({ description: 'true in the birth message, false in the last will' }),
    firmware: FirmwareVersionSchema.optional(),
    ts: TimestampSchema.meta({
      description: 'When the status changed, ms since the Unix epoch; leave it out of the last will',
    }).optional(),
    reason: StatusReasonSchema.optional(),
  })
  .meta({
    title: 'status',
    description:
      'Birth message (online: true) published after every connect, and last will (online: false) registered at connect',
  })
export type Status = z.infer<typeof StatusSchema>

// ---------------------------------------------------------------------------------------------------------
// config (down)

/**
 * At least 10 s, because thousands of gauges reporting faster would outrun one broker node for no
 * hydrological gain; at most a day, because a device silent for longer cannot be told from a dead one.
 */
export const MIN_REPORT_INTERVAL_S = 10
export const MAX_REPORT_INTERVAL_S = 86_400

export const ReportIntervalSchema = z
  .number()
  .int()
  .min(MIN_REPORT_INTERVAL_S)
  .max(MAX_REPORT_INTERVAL_S)
  .meta({ unit: 's', description: 'Reporting interval in seconds' })

const waterLevel = KIND_SPECS['river-level'].metrics.waterLevel
const riverAlertLevel = (description: string) =>
  z.number().min(waterLevel.min).max(waterLevel.max).meta({ unit: 'cm', description })

/**
 * BNPB alert levels of one gauge, set at installation. Jakarta counts the other way (Siaga 4 is normal,
 * Siaga 1 the highest), so descriptions name both.
 */
export const RiverThresholdsSchema = z
  .strictObject({
    waspada: riverAlertLevel('Waspada (Jakarta: Siaga 3): water level above gauge zero'),
    siaga: riverAlertLevel('Siaga (Jakarta: Siaga 2): water level above gauge zero'),
    awas: riverAlertLevel('Awas (Jakarta: Siaga 1): water level above gauge zero'),
    riseRate: z
      .number()
      .gt(0)
      .max(1000)
      .meta({ unit: 'cm/h', description: 'Rate of rise that counts as an alert even below waspada' })
      .optional(),
  })
  .refine((t) => t.waspada < t.siaga && t.siaga < t.awas, {
    message: 'river alert levels must increase: waspada < siaga < awas',
  })
  .meta({ description: 'Alert levels of this gauge; they must increase: waspada < siaga < awas' })
export type RiverThresholds = z.infer<typeof RiverThresholdsSchema>

const rainIntensity = (description: string) => z.number().gt(0).max(500).meta({ unit: 'mm/h', description })

/** BMKG's hourly categories: hujan lebat from 10 mm/h, sangat lebat above 20 mm/h. */
export const RainThresholdsSchema = z
  .strictObject({
    heavy: rainIntensity('Hujan lebat (heavy rain) from this intensity; BMKG: 10 mm/h'),
    veryHeavy: rainIntensity('Hujan sangat lebat (very heavy rain) from this intensity; BMKG: 20 mm/h'),
  })
  .refine((t) => t.heavy < t.veryHeavy, { message: 'rain thresholds must increase: heavy < veryHeavy' })
  .meta({ description: 'Rain intensities that count as an alert; they must increase: heavy < veryHeavy' })
export type RainThresholds = z.infer<typeof RainThresholdsSchema>

const pollutantThreshold = (name: 'pm25' | 'pm10' | 'o3' | 'co' | 'no2' | 'so2' | 'hc') => {
  const spec: MetricSpec = KIND_SPECS['air-quality'].metrics[name]
  return z
    .number()
    .gt(spec.min)
    .max(spec.max)
    .meta({ unit: spec.unit, description: `${spec.description} that counts as an alert` })
    .optional()
}

export const AirQualityThresholdsSchema = z
  .strictObject({
    pm25: pollutantThreshold('pm25'),
    pm10: pollutantThreshold('pm10'),
    o3: pollutantThreshold('o3'),
    co: pollutantThreshold('co'),
    no2: pollutantThreshold('no2'),
    so2: pollutantThreshold('so2'),
    hc: pollutantThreshold('hc'),
  })
  .meta({ description: 'Concentrations that count as an alert; ISPU itself is computed by the platform' })
export type AirQualityThresholds = z.infer<typeof AirQualityThresholdsSchema>

const occupancy = (description: string) =>
  z.number().int().min(1).max(100_000).meta({ unit: 'people', description })

export const CrowdThresholdsSchema = z
  .strictObject({
    busy: occupancy('Occupancy from which the market counts as busy'),
    full: occupancy('Occupancy from which the market counts as full (entrance signage shows it)'),
  })
  .refine((t) => t.busy < t.full, { message: 'crowd thresholds must increase: busy < full' })
  .meta({ description: 'Occupancy levels; they must increase: busy < full' })
export type CrowdThresholds = z.infer<typeof CrowdThresholdsSchema>

/**
 * Metrics a device may correct with an offset: analog measurements only. Counts are not calibrated, and
 * battery and rssi report the device's own state.
 */
export function calibratedMetrics(kind: DeviceKind): string[] {
  const metrics: Record<string, MetricSpec> = KIND_SPECS[kind].metrics
  return Object.keys(metrics).filter((name) => {
    const spec = metrics[name]!
    return !spec.integer && name !== 'battery' && name !== 'rssi'
  })
}

function calibrationSchemaFor(kind: DeviceKind) {
  const metrics: Record<string, MetricSpec> = KIND_SPECS[kind].metrics
  const shape: Record<string, z.ZodOptional<z.ZodNumber>> = {}
  for (const name of calibratedMetrics(kind)) {
    const spec = metrics[name]!
    // An offset larger than the whole measuring range cannot be a calibration.
    const span = spec.max - spec.min
    shape[name] = z
      .number()
      .min(-span)
      .max(span)
      .meta({ unit: spec.unit, description: `Offset added to the raw ${name} before it is reported` })
      .optional()
  }
  return z.strictObject(shape).meta({ description: 'Calibration offsets per metric, in the metric unit' })
}

function configSchemaFor<K extends DeviceKind, T extends z.ZodType>(kind: K, thresholds: T) {
  // A kind without analog metrics has no `calibration` at all, so sending one is a `schema` error.
  const calibration =
    calibratedMetrics(kind).length > 0 ? { calibration: calibrationSchemaFor(kind).optional() } : {}
  return z
    .strictObject({
      v: MessageVersionSchema,
      interval: ReportIntervalSchema,
      alertInterval: ReportIntervalSchema.meta({
        unit: 's',
        description: 'Reporting interval while a threshold is exceeded; at most `interval`',
      }).optional(),
      thresholds: thresholds.optional(),
      ...calibration,
    })
    .refine((c) => c.alertInterval === undefined || c.alertInterval <= c.interval, {
      message: 'alertInterval must not be longer than interval',
      path: ['alertInterval'],
    })
    .meta({
      title: `${kind} config`,
      description: `Whole configuration of a ${kind} device; each message replaces the previous one`,
    })
}

export const RiverLevelConfigSchema = configSchemaFor('river-level', RiverThresholdsSchema)
export type RiverLevelConfig = z.infer<typeof RiverLevelConfigSchema>
export const RainGaugeConfigSchema = configSchemaFor('rain-gauge', RainThresholdsSchema)
export type RainGaugeConfig = z.infer<typeof RainGaugeConfigSchema>
export const AirQualityConfigSchema = configSchemaFor('air-quality', AirQualityThresholdsSchema)
export type AirQualityConfig = z.infer<typeof AirQualityConfigSchema>
export const CrowdCounterConfigSchema = configSchemaFor('crowd-counter', CrowdThresholdsSchema)
export type CrowdCounterConfig = z.infer<typeof CrowdCounterConfigSchema>

export const CONFIG_SCHEMAS = {
  'river-level': RiverLevelConfigSchema,
  'rain-gauge': RainGaugeConfigSchema,
  'air-quality': AirQualityConfigSchema,
  'crowd-counter': CrowdCounterConfigSchema,
} as const satisfies Record<DeviceKind, z.ZodType>
export type DeviceConfig = RiverLevelConfig | RainGaugeConfig | AirQualityConfig | CrowdCounterConfig

// ---------------------------------------------------------------------------------------------------------
// cmd (down) and cmd/ack (up)

export const COMMAND_ID_PATTERN = /^[A-Za-z0-9_-]{1,64}$/
export const CommandIdSchema = z
  .string()
  .regex(COMMAND_ID_PATTERN, 'id: 1-64 characters of A-Z, a-z, 0-9, "_" and "-"')
  .meta({ description: 'Command id chosen by the platform; the acknowledgement echoes it' })

export const COMMAND_NAMES = ['reboot', 'ping', 'set-interval', 'sync-time'] as const
export type CommandName = (typeof COMMAND_NAMES)[number]

const commandBase = {
  v: MessageVersionSchema,
  id: CommandIdSchema,
  ts: TimestampSchema.meta({
    description: 'When the platform issued the command, ms since the Unix epoch',
  }).optional(),
}
const noArgs = z.strictObject({}).meta({ description: 'No arguments; may be left out' }).optional()

export const CommandSchema = z
  .discriminatedUnion('name', [
    z
      .strictObject({ ...commandBase, name: z.literal('reboot'), args: noArgs })
      .meta({ title: 'reboot', description: 'Acknowledge, then restart' }),
    z
      .strictObject({ ...commandBase, name: z.literal('ping'), args: noArgs })
      .meta({ title: 'ping', description: 'Acknowledge at once; installers use it to test the down link' }),
    z
      .strictObject({
        ...commandBase,
        name: z.literal('set-interval'),
        args: z.strictObject({
          interval: ReportIntervalSchema,
          duration: z
            .number()
            .int()
            .min(60)
            .max(86_400)
            .meta({
              unit: 's',
              description:
                'Return to the configured interval after this long; without it, until the next config',
            })
            .optional(),
        }),
      })
      .meta({
        title: 'set-interval',
        description: 'Report at another interval, e.g. fast while commissioning',
      }),
    z
      .strictObject({
        ...commandBase,
        name: z.literal('sync-time'),
        args: z.strictObject({
          now: TimestampSchema.meta({
            description: 'Platform time when the command was sent, ms since the Unix epoch',
          }),
        }),
      })
      .meta({
        title: 'sync-time',
        description:
          'Set the real-time clock; sent when readings arrive stamped in the future or before 2020',
      }),
  ])
  .meta({
    title: 'cmd',
    description: 'A command to one device; the device answers on cmd/ack with the same id',
  })
export type Command = z.infer<typeof CommandSchema>

export const CmdAckSchema = z
  .strictObject({
    v: MessageVersionSchema,
    id: CommandIdSchema,
    ok: z
      .boolean()
      .meta({ description: 'true if the command was carried out (or, for reboot, is about to be)' }),
    error: z
      .string()
      .min(1)
      .max(200)
      .meta({ description: 'Why the command failed, e.g. "unknown-command"; only when ok is false' })
      .optional(),
    ts: TimestampSchema.meta({
      description: 'When the command was carried out, ms since the Unix epoch',
    }).optional(),
  })
  .refine((a) => a.ok === false || a.error === undefined, {
    message: 'error is only allowed when ok is false',
    path: ['error'],
  })
  .meta({ title: 'cmd/ack', description: 'Answer to a command, published once per command id' })
export type CmdAck = z.infer<typeof CmdAckSchema>

// ---------------------------------------------------------------------------------------------------------
// validators

/** Same contract as `validateTelemetry`: never throws, and every failure carries a stable reason code. */
export type MessageValidationResult<T> =
  | { readonly ok: true; readonly value: T }
  | { readonly ok: false; readonly rejection: Rejection }

function reject(code: Rejection['code'], message: string): { ok: false; rejection: Rejection } {
  return { ok: false, rejection: { code, message } }
}

function validateMessage<S extends z.ZodType>(
  schema: S,
  what: string,
  payload: unknown,
  opts: ValidateOptions,
): MessageValidationResult<z.output<S>> {
  const decoded = decodeJsonObject(payload, opts.maxPayloadBytes ?? DEFAULT_MAX_CONTROL_PAYLOAD_BYTES, what)
  if (!decoded.ok) return decoded
  const result = schema.safeParse(decoded.value)
  if (!result.success)
    return reject(classifyZodError(result.error, decoded.value), z.prettifyError(result.error))
  const ts = (result.data as { ts?: unknown }).ts
  const limit = opts.now + (opts.maxFutureSkewMs ?? DEFAULT_MAX_FUTURE_SKEW_MS)
  if (typeof ts === 'number' && ts > limit) {
    return reject('future_timestamp', `${what} is stamped ${ts - opts.now} ms in the future`)
  }
  return { ok: true, value: result.data }
}

/** Validates a birth or last-will message from `devices/<id>/status`. */
export function validateStatus(
  payload: Uint8Array | string,
  opts: ValidateOptions,
): MessageValidationResult<Status> {
  return validateMessage(StatusSchema, 'status', payload, opts)
}

/** Validates a command acknowledgement from `devices/<id>/cmd/ack`. */
export function validateCmdAck(
  payload: Uint8Array | string,
  opts: ValidateOptions,
): MessageValidationResult<CmdAck> {
  return validateMessage(CmdAckSchema, 'cmd/ack', payload, opts)
}

/** Checks a config before the platform publishes it, and lets firmware test suites check what they parse. */
export function validateConfig(
  kind: DeviceKind | string,
  payload: Uint8Array | string,
  opts: ValidateOptions,
): MessageValidationResult<DeviceConfig> {
  const tooLarge = payloadSizeRejection(payload, opts.maxPayloadBytes ?? DEFAULT_MAX_CONTROL_PAYLOAD_BYTES)
  if (tooLarge) return { ok: false, rejection: tooLarge }
  if (!isDeviceKind(kind)) return reject('unknown_kind', `no contract for device kind ${describeValue(kind)}`)
  return validateMessage(CONFIG_SCHEMAS[kind], 'config', payload, opts)
}

/** Checks a command before the platform publishes it on `devices/<id>/cmd`. */
export function validateCmd(
  payload: Uint8Array | string,
  opts: ValidateOptions,
): MessageValidationResult<Command> {
  return validateMessage(CommandSchema, 'cmd', payload, opts)
}
