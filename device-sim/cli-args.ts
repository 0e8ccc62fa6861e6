import { parseArgs } from 'node:util'
import { z } from 'zod'
import { DEVICE_KINDS, DeviceIdSchema, DeviceKindSchema } from '../firmware-contracts/index.ts'
import { FAULT_NAMES, type FaultName, type FaultsInput } from './faults.ts'
import { DEFAULT_REPORTING_INTERVAL_MS, type SimDeviceWithSecret } from './fleet.ts'
import { regencyByCode } from './places.ts'

/*
 * Argument parsing for `npm run sim`, kept apart from cli.ts so that it is pure: argv in, a command or an
 * error message out. Only cli.ts touches process.argv, stdout and the exit code.
 */

export const USAGE = `Usage: npm run sim -- [options]

Simulated field devices for the city sensor platform: river gauges, rain gauges, air-quality stations and
market crowd counters in Kota Denpasar, Jembrana, Bangli and Lombok Tengah, publishing over MQTT.

The platform issues device secrets, so devices come from a JSON file:
  1. npm run sim -- --print-fleet --per-kind 2 > fleet.json      (ids, kinds, places; no secrets)
  2. register them with the platform (npm run device), which returns each secret once
  3. npm run sim -- --devices devices.json                       ([{"id","kind","secret",...}, ...])
or let the simulator register its fleet itself through the REST API (rotating the secrets of devices that
are already registered):
     API_TOKEN=... npm run sim -- --api http://127.0.0.1:8080 --per-kind 3

Devices
  --devices <file>         JSON array of {id, kind, secret, ...}, or {"devices": [...]}
  --per-kind <n>           at most n devices of each kind from the file; with --print-fleet the fleet size (2)
  --kinds <list>           comma-separated kinds to use (default: all): ${DEVICE_KINDS.join(', ')}
  --print-fleet            print the deterministic fleet definition for registration, then exit
  --api <url>              register the fleet (--per-kind, --kinds, --seed) through the platform's REST API,
                           or rotate the secrets of devices already registered; instead of --devices
  --api-token <token>      bearer token of the REST API (default: the API_TOKEN environment variable)
  --api-wait <ms>          keep retrying while the API is not reachable yet for this long (default 30000)

Simulation
  --url <url>              broker URL (default mqtt://127.0.0.1:1883)
  --interval <ms>          override every device's reporting interval
  --seed <n>               seed for signals, jitter and faults (default 1)
  --qos <0|1>              telemetry QoS (default 1)
  --time-scale <x>         signal time runs x times faster than the clock; ts stays wall time (default 1)
  --sim-start <iso-time>   signal time at start, e.g. 2025-01-15T05:00:00+08:00 (default: now)
  --duration <ms>          stop after this long (default: run until Ctrl-C); required with --load
  --stats-every <ms>       print a stats line this often, 0 for never (default 10000)

Faults (all off by default; a rate is a probability per publish, disconnect is per device per minute)
  --fault <name=rate>      repeatable; names: ${FAULT_NAMES.join(', ')}
  --offline-ms <ms>        how long an offline spell lasts (default 120000)
  --clock-skew-ms <ms>     clock error, positive = future (default 600000); behind: --clock-skew-ms=-3600000
  --oversized-bytes <n>    size of an oversized payload (default 262144)
  --flood-ms <ms>          how long a flood lasts (default 5000)

Load mode (raw sockets, fixed total rate; for benchmarks)
  --load                   publish --rate messages/s over all devices for --duration ms, then report
  --rate <n>               total messages per second
  --payload-kind <kind>    payload contract: device (each device's kind, default) or one of the kinds
  --max-inflight <n>       unacknowledged messages per device (default 64)
  --json                   print the load report as JSON

  --verbose                log connections, faults and errors as they happen
  -h, --help               this help
`

export class CliUsageError extends Error {
  override readonly name = 'CliUsageError'
}

const positiveInt = (flag: string) =>
  z.coerce
    .number({ error: `${flag} must be a number` })
    .int(`${flag} must be a whole number`)
    .positive(`${flag} must be positive`)
const nonNegativeInt = (flag: string) =>
  z.coerce
    .number({ error: `${flag} must be a number` })
    .int(`${flag} must be a whole number`)
    .min(0, `${flag} must be >= 0`)

const FAULT_ALIASES: Readonly<Record<string, FaultName>> = Object.fromEntries(
  FAULT_NAMES.flatMap((name) => [
    [name.toLowerCase(), name],
    [name.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`), name],
  ]),
)

function parseFaultRates(values: readonly string[]): Partial<Record<FaultName, number>> {
  const rates: Partial<Record<FaultName, number>> = {}
  for (const value of values) {
    const match = /^([A-Za-z-]+)=(.+)$/.exec(value)
    if (match === null)
      throw new CliUsageError(`--fault expects name=rate, e.g. duplicate=0.05; got "${value}"`)
    const name = FAULT_ALIASES[match[1]!.toLowerCase()]
    if (name === undefined) {
      throw new CliUsageError(`unknown fault "${match[1]}"; known faults: ${FAULT_NAMES.join(', ')}`)
    }
    const rate = Number(match[2])
    const max = name === 'disconnect' ? 60 : 1
    if (!Number.isFinite(rate) || rate < 0 || rate > max) {
      throw new CliUsageError(
        name === 'disconnect'
          ? `--fault disconnect=<rate> is per minute, 0 to 60; got "${match[2]}"`
          : `--fault ${name}=<rate> is a probability per publish, 0 to 1; got "${match[2]}"`,
      )
    }
    rates[name] = rate
  }
  return rates
}

export interface CommonSimArgs {
  readonly url: string
  readonly seed: number
  readonly qos: 0 | 1
  readonly verbose: boolean
}

export type CliCommand =
  | { readonly mode: 'help' }
  | {
      readonly mode: 'print-fleet'
      readonly perKind: number
      readonly seed: number
      readonly kinds: DeviceKindList
    }
  | (CommonSimArgs & {
      readonly mode: 'simulate'
      /** Where the devices come from: a file with secrets, or the platform's REST API. */
      readonly devicesFile: string | undefined
      readonly api: { readonly url: string; readonly token: string; readonly waitMs: number } | undefined
      readonly perKind: number | undefined
      readonly kinds: DeviceKindList
      readonly intervalMs: number | undefined
      readonly timeScale: number
      readonly signalStart: number | undefined
      readonly durationMs: number | undefined
      readonly statsEveryMs: number
      readonly faults: FaultsInput
    })
  | (CommonSimArgs & {
      readonly mode: 'load'
      readonly devicesFile: string
      readonly perKind: number | undefined
      readonly kinds: DeviceKindList
      readonly ratePerSec: number
      readonly durationMs: number
      readonly payloadKind: (typeof DEVICE_KINDS)[number] | 'device'
      readonly maxInflight: number
      readonly json: boolean
    })

type DeviceKindList = Array<(typeof DEVICE_KINDS)[number]>

const OPTIONS = {
  devices: { type: 'string' },
  'per-kind': { type: 'string' },
  kinds: { type: 'string' },
  'print-fleet': { type: 'boolean' },
  api: { type: 'string' },
  'api-token': { type: 'string' },
  'api-wait': { type: 'string' },
  url: { type: 'string' },
  interval: { type: 'string' },
  seed: { type: 'string' },
  qos: { type: 'string' },
  'time-scale': { type: 'string' },
  'sim-start': { type: 'string' },
  duration: { type: 'string' },
  'stats-every': { type: 'string' },
  fault: { type: 'string', multiple: true },
  'offline-ms': { type: 'string' },
  'clock-skew-ms': { type: 'string' },
  'oversized-bytes': { type: 'string' },
  'flood-ms': { type: 'string' },
  load: { type: 'boolean' },
  rate: { type: 'string' },
  'payload-kind': { type: 'string' },
  'max-inflight': { type: 'string' },
  json: { type: 'boolean' },
  verbose: { type: 'boolean' },
  help: { type: 'boolean', short: 'h' },
} as const

function check<T>(schema: z.ZodType<T>, value: unknown): T {
  const result = schema.safeParse(value)
  if (!result.success) throw new CliUsageError(result.error.issues[0]?.message ?? 'invalid value')
  return result.data
}

function optional<T>(schema: z.ZodType<T>, value: string | undefined): T | undefined {
  return value === undefined ? undefined : check(schema, value)
}

function parseKinds(value: string | undefined): DeviceKindList {
  if (value === undefined) return [...DEVICE_KINDS]
  const kinds = value
    .split(',')
    .map((k) => k.trim())
    .filter((k) => k !== '')
  for (const kind of kinds) {
    if (!(DEVICE_KINDS as readonly string[]).includes(kind)) {
      throw new CliUsageError(`unknown kind "${kind}" in --kinds; known kinds: ${DEVICE_KINDS.join(', ')}`)
    }
  }
  if (kinds.length === 0) throw new CliUsageError('--kinds needs at least one kind')
  return kinds as DeviceKindList
}

function parseApi(
  url: string,
  flagToken: string | undefined,
  env: Readonly<Record<string, string | undefined>>,
): { url: string; token: string } {
  let parsed: URL
  try {
    parsed = new URL(url)
  } catch {
    throw new CliUsageError(`--api must be an http(s) URL such as http://127.0.0.1:8080; got "${url}"`)
  }
  if (parsed.protocol !== 'http:' && parsed.protocol !== 'https:') {
    throw new CliUsageError(`--api must be an http(s) URL such as http://127.0.0.1:8080; got "${url}"`)
  }
  const token = flagToken ?? env.API_TOKEN
  if (token === undefined || token.trim() === '') {
    throw new CliUsageError('--api needs the REST API token: set API_TOKEN or pass --api-token <token>')
  }
  if (/\s/.test(token)) throw new CliUsageError('the API token must not contain spaces or line breaks')
  return { url: parsed.href.replace(/\/+$/, ''), token }
}

/**
 * Parses `npm run sim` arguments. Throws CliUsageError with a message meant for the user. `env` supplies
 * API_TOKEN for `--api` (cli.ts passes process.env; tests pass their own).
 */
export function parseCliArgs(
  argv: readonly string[],
  env: Readonly<Record<string, string | undefined>> = {},
): CliCommand {
  let parsed: ReturnType<typeof parseArgs<{ options: typeof OPTIONS; strict: true; allowPositionals: false }>>
  try {
    parsed = parseArgs({ args: [...argv], options: OPTIONS, strict: true, allowPositionals: false })
  } catch (err) {
    throw new CliUsageError(err instanceof Error ? err.message : String(err))
  }
  const v = parsed.values
  if (v.help) return { mode: 'help' }

  const seed =
    optional(
      z.coerce.number({ error: '--seed must be a number' }).int('--seed must be a whole number'),
      v.seed,
    ) ?? 1
  const kinds = parseKinds(v.kinds)
  const perKind = optional(nonNegativeInt('--per-kind'), v['per-kind'])
  if (v['print-fleet']) return { mode: 'print-fleet', perKind: perKind ?? 2, seed, kinds }

  if (v.api !== undefined && v.devices !== undefined) {
    throw new CliUsageError('use either --devices <file> or --api <url>, not both')
  }
  if ((v['api-token'] !== undefined || v['api-wait'] !== undefined) && v.api === undefined) {
    throw new CliUsageError('--api-token and --api-wait are only used with --api <url>')
  }
  if (v.devices === undefined && v.api === undefined) {
    throw new CliUsageError(
      '--devices <file> or --api <url> is required: the platform issues device secrets (see --help)',
    )
  }
  const url = v.url ?? 'mqtt://127.0.0.1:1883'
  if (!/^(mqtts?|wss?):\/\/[^\s/]+/.test(url))
    throw new CliUsageError(`--url must look like mqtt://host:port; got "${url}"`)
  const qosValue = v.qos ?? '1'
  if (qosValue !== '0' && qosValue !== '1') throw new CliUsageError(`--qos must be 0 or 1; got "${qosValue}"`)
  const qos = qosValue === '1' ? 1 : 0
  const durationMs = optional(positiveInt('--duration'), v.duration)
  const common = { url, seed, qos, verbose: v.verbose === true } as const

  if (v.load) {
    if (v.devices === undefined) throw new CliUsageError('--load needs --devices <file>')
    if (v.rate === undefined) throw new CliUsageError('--load needs --rate <messages per second>')
    if (durationMs === undefined) throw new CliUsageError('--load needs --duration <ms>')
    const payloadKind = v['payload-kind'] ?? 'device'
    if (payloadKind !== 'device' && !(DEVICE_KINDS as readonly string[]).includes(payloadKind)) {
      throw new CliUsageError(
        `--payload-kind must be device or one of ${DEVICE_KINDS.join(', ')}; got "${payloadKind}"`,
      )
    }
    return {
      mode: 'load',
      ...common,
      devicesFile: v.devices,
      perKind,
      kinds,
      ratePerSec: check(
        z.coerce.number({ error: '--rate must be a number' }).positive('--rate must be positive'),
        v.rate,
      ),
      durationMs,
      payloadKind: payloadKind as (typeof DEVICE_KINDS)[number] | 'device',
      maxInflight: optional(positiveInt('--max-inflight'), v['max-inflight']) ?? 64,
      json: v.json === true,
    }
  }

  let signalStart: number | undefined
  if (v['sim-start'] !== undefined) {
    signalStart = Date.parse(v['sim-start'])
    if (Number.isNaN(signalStart)) {
      throw new CliUsageError(
        `--sim-start must be an ISO time such as 2025-01-15T05:00:00+08:00; got "${v['sim-start']}"`,
      )
    }
  }
  const rates = parseFaultRates(v.fault ?? [])
  const faults: FaultsInput = {
    disconnect: { ratePerMin: rates.disconnect ?? 0 },
    offline: { rate: rates.offline ?? 0, durationMs: optional(positiveInt('--offline-ms'), v['offline-ms']) },
    duplicate: { rate: rates.duplicate ?? 0 },
    clockSkew: {
      rate: rates.clockSkew ?? 0,
      skewMs: optional(
        z.coerce.number({ error: '--clock-skew-ms must be a number' }).int(),
        v['clock-skew-ms'],
      ),
    },
    malformedJson: { rate: rates.malformedJson ?? 0 },
    schemaViolation: { rate: rates.schemaViolation ?? 0 },
    outOfRange: { rate: rates.outOfRange ?? 0 },
    oversized: {
      rate: rates.oversized ?? 0,
      bytes: optional(positiveInt('--oversized-bytes'), v['oversized-bytes']),
    },
    flood: { rate: rates.flood ?? 0, durationMs: optional(positiveInt('--flood-ms'), v['flood-ms']) },
  }
  return {
    mode: 'simulate',
    ...common,
    devicesFile: v.devices,
    api:
      v.api === undefined
        ? undefined
        : {
            ...parseApi(v.api, v['api-token'], env),
            waitMs: optional(nonNegativeInt('--api-wait'), v['api-wait']) ?? 30_000,
          },
    // Registering through the API defines the fleet, so it needs a size; a file's size is the file's.
    perKind: v.api === undefined ? perKind : (perKind ?? 2),
    kinds,
    intervalMs: optional(positiveInt('--interval'), v.interval),
    timeScale:
      optional(
        z.coerce.number({ error: '--time-scale must be a number' }).positive('--time-scale must be positive'),
        v['time-scale'],
      ) ?? 1,
    signalStart,
    durationMs,
    statsEveryMs: optional(nonNegativeInt('--stats-every'), v['stats-every']) ?? 10_000,
    faults,
  }
}

/**
 * An entry of the devices file. Only id, kind and secret are required: the rest of a registry record is
 * used when present (thresholds drive the river signal), and filled in plausibly when not.
 */
const DevicesFileEntrySchema = z.object({
  id: DeviceIdSchema,
  kind: DeviceKindSchema,
  secret: z.string().min(1).max(512),
  name: z.string().min(1).max(120).optional(),
  regency: z.string().min(1).max(80).optional(),
  district: z.string().min(1).max(80).optional(),
  latitude: z.number().min(-90).max(90).optional(),
  longitude: z.number().min(-180).max(180).optional(),
  reportingIntervalMs: z.number().int().min(1000).max(86_400_000).optional(),
  thresholds: z.record(z.string(), z.number()).optional(),
})
const DevicesFileSchema = z.union([
  z.array(DevicesFileEntrySchema).min(1),
  z.object({ devices: z.array(DevicesFileEntrySchema).min(1) }).transform((f) => f.devices),
])

/** Parses the devices file's text. Throws CliUsageError naming the first problem and where it is. */
export function parseDevicesFile(text: string, source: string): SimDeviceWithSecret[] {
  let json: unknown
  try {
    json = JSON.parse(text)
  } catch (err) {
    throw new CliUsageError(`${source} is not JSON: ${err instanceof Error ? err.message : String(err)}`)
  }
  const result = DevicesFileSchema.safeParse(json)
  if (!result.success) {
    const issue = result.error.issues[0]
    const where = issue?.path.length ? ` at ${issue.path.join('.')}` : ''
    throw new CliUsageError(
      `${source}: expected [{"id","kind","secret",...}, ...]${where}: ${issue?.message ?? 'invalid'}`.replace(
        /\n/g,
        ' ',
      ),
    )
  }
  const seen = new Set<string>()
  return result.data.map((entry) => {
    if (seen.has(entry.id)) throw new CliUsageError(`${source}: device ${entry.id} is listed twice`)
    seen.add(entry.id)
    const regency = entry.regency ?? regencyByCode(entry.id.split('-')[0] ?? '') ?? 'Kota Denpasar'
    const device: SimDeviceWithSecret = {
      id: entry.id,
      kind: entry.kind,
      secret: entry.secret,
      name: entry.name ?? entry.id,
      regency,
      district: entry.district ?? regency,
      latitude: entry.latitude ?? 0,
      longitude: entry.longitude ?? 0,
      reportingIntervalMs: entry.reportingIntervalMs ?? DEFAULT_REPORTING_INTERVAL_MS[entry.kind],
    }
    if (entry.thresholds !== undefined) device.thresholds = entry.thresholds
    return device
  })
}

/** Keeps the chosen kinds and at most `perKind` devices of each, in file order. */
export function selectDevices<T extends { kind: string }>(
  devices: readonly T[],
  kinds: readonly string[],
  perKind: number | undefined,
): T[] {
  const counts = new Map<string, number>()
  return devices.filter((d) => {
    if (!kinds.includes(d.kind)) return false
    const n = counts.get(d.kind) ?? 0
    if (perKind !== undefined && n >= perKind) return false
    counts.set(d.kind, n + 1)
    return true
  })
}
