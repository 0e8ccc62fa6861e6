import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto'
import { EventEmitter } from 'node:events'
import { type DuckDBConnection, DuckDBInstance } from '@duckdb/node-api'
import { z } from 'zod'
import { CURRENT_ISPU_TABLE, ISPU_TABLES } from '../dashboard-api/aggregates/ispu.ts'
import { riverThresholds } from '../dashboard-api/aggregates/river-status.ts'
import { RULE_DEFAULTS, type RuleSettingKey } from '../dashboard-api/alarms/rules.ts'
import {
  DEVICE_KINDS,
  DeviceIdSchema,
  type DeviceKind,
  DeviceKindSchema,
} from '../firmware-contracts/index.ts'
import { appendRows } from './duckdb-append.ts'
import { tagValueProblem } from './store/schema.ts'

export const DEVICE_STATUSES = ['provisioned', 'active', 'revoked', 'decommissioned'] as const
export const DeviceStatusSchema = z.enum(DEVICE_STATUSES)
export type DeviceStatus = z.infer<typeof DeviceStatusSchema>

/**
 * District and regency become tags of every reading the device sends. A name no store can tag a reading
 * with (a control character, a lone surrogate, a backslash before a separator or at the end) is refused
 * here, on every way into the registry (the REST API, the simulated fleet, tools): once registered, each
 * of the device's readings was refused by the store and set aside.
 */
const PlaceNameSchema = z
  .string()
  .trim()
  .min(1)
  .max(80)
  .superRefine((value, ctx) => {
    // An empty name is min(1)'s to report.
    const problem = value === '' ? undefined : tagValueProblem(value)
    if (problem !== undefined)
      ctx.addIssue({ code: 'custom', message: `a name that ${problem}`, input: value })
  })

type Thresholds = Readonly<Record<string, number>>

/** A threshold the platform cannot use, and why: `key` is the `thresholds` key to fix. */
export interface ThresholdProblem {
  readonly key: string
  readonly message: string
}

const RIVER_LEVEL_KEYS = ['waspada', 'siaga', 'awas'] as const
/** The highest ISPU: the scale ends there, so an alarm level above it is never reached. */
const ISPU_MAX = Math.max(...ISPU_TABLES[CURRENT_ISPU_TABLE].indexPoints)

/** Which kinds read each `thresholds` key (the aggregator's and the alarm rules'; README, Alarms). */
const THRESHOLD_KINDS = new Map<string, readonly DeviceKind[]>([
  ...RIVER_LEVEL_KEYS.map((k) => [k, ['river-level']] as const),
  ['riseCmPerHour', ['river-level']],
  ['riseBandCmPerHour', ['river-level']],
  ['ispuAlarm', ['air-quality']],
  ['ispuBand', ['air-quality']],
  ['capacity', ['crowd-counter']],
  ['occupancyAlarmRatio', ['crowd-counter']],
  ['occupancyBandRatio', ['crowd-counter']],
  ['batteryLow', DEVICE_KINDS],
  ['batteryBand', DEVICE_KINDS],
  ['completenessMin', DEVICE_KINDS],
  ['completenessBand', DEVICE_KINDS],
])

/** The `thresholds` keys a kind's aggregates and alarm rules read. */
export function thresholdKeys(kind: DeviceKind): string[] {
  return [...THRESHOLD_KINDS].filter(([, kinds]) => kinds.includes(kind)).map(([key]) => key)
}

/**
 * Why a device's `thresholds` cannot be used, key by key (empty: all usable). The aggregator and the
 * alarm rules (`dashboard-api/aggregates/`, `dashboard-api/alarms/rules.ts`) pass over a value they cannot
 * use without a word: river levels that are incomplete or fall left the gauge without a river status and
 * without river and rise alarms, a capacity of 0 left a market without occupancy, a key of another kind or
 * misspelt was never read. So they are refused here, where the installer can still correct them.
 */
export function thresholdProblems(kind: DeviceKind, t: Thresholds | undefined): ThresholdProblem[] {
  if (t === undefined) return []
  const problems: ThresholdProblem[] = []
  const has = (key: string) => Object.hasOwn(t, key)
  const value = (key: RuleSettingKey) => (has(key) ? t[key]! : RULE_DEFAULTS[key])
  const refuse = (key: string, message: string) => {
    if (!problems.some((p) => p.key === key)) problems.push({ key, message: `${key} ${message}` })
  }
  for (const key of Object.keys(t)) {
    if (!THRESHOLD_KINDS.get(key)?.includes(kind))
      refuse(key, `is not a threshold of a ${kind} device; it takes ${thresholdKeys(kind).join(', ')}`)
  }
  /** A value that must be above `min` (or at least `min`, when `inclusive`). */
  const floor = (key: string, min: number, inclusive: boolean, why: string) => {
    if (has(key) && (inclusive ? !(t[key]! >= min) : !(t[key]! > min))) refuse(key, `${t[key]}: ${why}`)
  }
  /** A value that must be below `max` (or at most `max`, when `inclusive`). */
  const ceiling = (key: string, max: number, inclusive: boolean, why: string) => {
    if (has(key) && (inclusive ? !(t[key]! <= max) : !(t[key]! < max))) refuse(key, `${t[key]}: ${why}`)
  }
  /** A band whose clear bound the value never crosses: the alarm, once raised, would never clear. */
  const band = (at: RuleSettingKey, by: RuleSettingKey, clears: boolean, why: string) => {
    if ((has(at) || has(by)) && !clears && !problems.some((p) => p.key === at || p.key === by))
      refuse(has(by) ? by : at, why)
  }

  if (kind === 'river-level') {
    const levels = RIVER_LEVEL_KEYS.filter(has)
    if (levels.length > 0 && levels.length < RIVER_LEVEL_KEYS.length) {
      for (const key of RIVER_LEVEL_KEYS.filter((k) => !has(k)))
        refuse(
          key,
          'is missing: a river gauge takes its alert levels waspada, siaga and awas all three or none',
        )
    } else if (levels.length > 0 && riverThresholds(t) === undefined) {
      if (!(t.siaga! >= t.waspada!))
        refuse('siaga', `${t.siaga} is below waspada ${t.waspada}: the levels rise, waspada ≤ siaga ≤ awas`)
      else refuse('awas', `${t.awas} is below siaga ${t.siaga}: the levels rise, waspada ≤ siaga ≤ awas`)
    }
    if (levels.length === 0) {
      for (const key of ['riseCmPerHour', 'riseBandCmPerHour'].filter(has))
        refuse(
          key,
          'has no effect without the alert levels waspada, siaga and awas: the gauge has no rise alarm',
        )
    }
    floor(
      'riseCmPerHour',
      0,
      false,
      'must be above 0 cm/h: the alarm would be raised while the water stands still',
    )
    floor('riseBandCmPerHour', 0, true, 'must be 0 or more')
    band(
      'riseCmPerHour',
      'riseBandCmPerHour',
      value('riseBandCmPerHour') < value('riseCmPerHour'),
      `leaves the rise alarm open while the water stands still: riseBandCmPerHour (${value('riseBandCmPerHour')}) must be below riseCmPerHour (${value('riseCmPerHour')})`,
    )
  }
  if (kind === 'air-quality') {
    floor('ispuAlarm', 0, false, 'must be above 0: the alarm would be raised in clean air')
    ceiling('ispuAlarm', ISPU_MAX, true, `must be at most ${ISPU_MAX}, where the ISPU scale ends`)
    floor('ispuBand', 0, true, 'must be 0 or more')
    band(
      'ispuAlarm',
      'ispuBand',
      value('ispuBand') < value('ispuAlarm'),
      `would keep the ISPU alarm open forever: ispuBand (${value('ispuBand')}) must be below ispuAlarm (${value('ispuAlarm')})`,
    )
  }
  if (kind === 'crowd-counter') {
    floor(
      'capacity',
      0,
      false,
      'must be above 0 (people inside at a normal peak): without it the market has no occupancy',
    )
    if (!has('capacity')) {
      for (const key of ['occupancyAlarmRatio', 'occupancyBandRatio'].filter(has))
        refuse(key, 'has no effect without capacity: the market has no occupancy and no occupancy alarm')
    }
    floor('occupancyAlarmRatio', 0, false, 'must be above 0: the alarm would be raised in an empty market')
    floor('occupancyBandRatio', 0, true, 'must be 0 or more')
    band(
      'occupancyAlarmRatio',
      'occupancyBandRatio',
      value('occupancyBandRatio') < value('occupancyAlarmRatio'),
      `would keep the occupancy alarm open forever: occupancyBandRatio (${value('occupancyBandRatio')}) must be below occupancyAlarmRatio (${value('occupancyAlarmRatio')})`,
    )
  }
  // Battery is a percentage, completeness a share of the expected readings.
  floor('batteryLow', 0, true, 'must be 0 or more (%)')
  ceiling('batteryLow', 100, false, 'must be below 100 (%): the alarm would be raised on a full battery')
  floor('batteryBand', 0, true, 'must be 0 or more')
  band(
    'batteryLow',
    'batteryBand',
    value('batteryLow') + value('batteryBand') < 100,
    `would keep the battery alarm open forever: batteryLow + batteryBand (${value('batteryLow')} + ${value('batteryBand')}) must be below 100 %`,
  )
  floor('completenessMin', 0, false, 'must be above 0: the alarm could never be raised')
  ceiling(
    'completenessMin',
    1,
    true,
    'must be at most 1 (a share): the alarm would be raised on complete data',
  )
  floor('completenessBand', 0, true, 'must be 0 or more')
  band(
    'completenessMin',
    'completenessBand',
    value('completenessMin') + value('completenessBand') <= 1,
    `would keep the completeness alarm open forever: completenessMin + completenessBand (${value('completenessMin')} + ${value('completenessBand')}) must be at most 1`,
  )
  return problems
}

function thresholdIssues(kind: DeviceKind, t: Thresholds | undefined) {
  return thresholdProblems(kind, t).map((p) => ({
    code: 'custom' as const,
    path: ['thresholds', p.key],
    message: p.message,
  }))
}

export const NewDeviceSchema = z
  .strictObject({
    // `internal-` names belong to the broker's internal platform clients.
    id: DeviceIdSchema.refine((id) => !id.startsWith('internal-'), 'the prefix internal- is reserved'),
    kind: DeviceKindSchema,
    name: z.string().trim().min(1).max(120),
    regency: PlaceNameSchema,
    district: PlaceNameSchema,
    latitude: z.number().min(-90).max(90),
    longitude: z.number().min(-180).max(180),
    reportingIntervalMs: z.number().int().min(1000).max(86_400_000).default(60_000),
    /** Per-device thresholds set at installation, e.g. a river gauge's `waspada`/`siaga`/`awas` in cm. */
    thresholds: z.record(z.string().max(40), z.number()).optional(),
    notes: z.string().max(2000).optional(),
    /** Added to a river gauge's water level (cm) to correct its zero; other kinds have none in contract v1. */
    calibrationOffset: z.number().min(-100_000).max(100_000).default(0),
  })
  .superRefine((d, ctx) => {
    for (const issue of thresholdIssues(d.kind, d.thresholds)) ctx.addIssue(issue)
  })
export type NewDevice = z.input<typeof NewDeviceSchema>

/** What an installer may change after registration; id and kind are fixed (re-register instead). */
export const DeviceUpdateSchema = z
  .strictObject({
    name: z.string().trim().min(1).max(120),
    regency: PlaceNameSchema,
    district: PlaceNameSchema,
    latitude: z.number().min(-90).max(90),
    longitude: z.number().min(-180).max(180),
    reportingIntervalMs: z.number().int().min(1000).max(86_400_000),
    thresholds: z.record(z.string().max(40), z.number()).nullable(),
    notes: z.string().max(2000).nullable(),
    calibrationOffset: z.number().min(-100_000).max(100_000),
  })
  .partial()
  .refine((v) => Object.keys(v).length > 0, 'expected at least one field to change')
export type DeviceUpdate = z.input<typeof DeviceUpdateSchema>

export const DeviceFilterSchema = z.strictObject({
  kind: DeviceKindSchema.optional(),
  status: DeviceStatusSchema.optional(),
  regency: z.string().trim().min(1).max(80).optional(),
  district: z.string().trim().min(1).max(80).optional(),
  /** Case-insensitive substring of id or name. */
  q: z.string().trim().min(1).max(120).optional(),
})
export type DeviceFilter = z.infer<typeof DeviceFilterSchema>

export const InstallerNameSchema = z
  .string()
  .regex(/^[a-z0-9][a-z0-9._-]{1,62}$/, 'expected 2-63 characters: lowercase letters, digits, . _ -')
  .refine((v) => v !== 'admin' && v !== 'broker', 'reserved name')

/** A change the registry made, for listeners such as the broker (which disconnects revoked devices). */
export interface RegistryChange {
  readonly device: Device
  readonly action: 'register' | 'update' | 'rotate-secret' | 'status'
}

export interface AuditEntry {
  readonly at: number
  readonly actor: string
  readonly action: string
  readonly deviceId: string | null
  readonly detail: unknown
}

export interface Device extends z.output<typeof NewDeviceSchema> {
  readonly status: DeviceStatus
  readonly createdAt: number
  readonly updatedAt: number
  readonly createdBy: string
  readonly updatedBy: string
}

interface StatusRequest {
  readonly id: string
  readonly status: DeviceStatus
  readonly actor: string
  /** Why, in the operator's words (revoke, decommission): kept in the audit entry. */
  readonly reason: string | undefined
  resolve(device: Device): void
  reject(err: unknown): void
}

export class RegistryError extends Error {
  override readonly name = 'RegistryError'
  constructor(
    readonly code:
      | 'device_exists'
      | 'device_not_found'
      | 'device_revoked'
      | 'invalid_transition'
      | 'installer_exists'
      | 'installer_not_found',
    message: string,
  ) {
    super(message)
  }
}

/** Decommissioned is final; a revoked device comes back only by decommissioning and re-registering. */
const ALLOWED_TRANSITIONS: Record<DeviceStatus, readonly DeviceStatus[]> = {
  provisioned: ['active', 'revoked', 'decommissioned'],
  active: ['revoked', 'decommissioned'],
  revoked: ['decommissioned'],
  decommissioned: [],
}

interface Entry {
  device: Device
  secretHash: Buffer
}

/** The bound parameters of a device's descriptive columns, the same for INSERT and UPDATE. */
function describedBy(device: Device) {
  return {
    name: device.name,
    regency: device.regency,
    district: device.district,
    lat: device.latitude,
    lon: device.longitude,
    interval: device.reportingIntervalMs,
    thresholds: device.thresholds ? JSON.stringify(device.thresholds) : null,
    notes: device.notes ?? null,
    calibration: device.calibrationOffset,
  }
}

/** The registry's keyed hash of a device secret (also used by the broker thread's replica). */
export function hashSecret(key: Buffer, secret: Uint8Array | string): Buffer {
  return createHmac('sha256', key).update(secret).digest()
}

/** The device if `secret` is its secret and it may connect; revoked and decommissioned devices never verify. */
export function verifySecret(
  key: Buffer,
  entry: { readonly device: Device; readonly secretHash: Buffer } | undefined,
  secret: Uint8Array | string | undefined,
): Device | undefined {
  if (entry === undefined || secret === undefined) return undefined
  if (!timingSafeEqual(hashSecret(key, secret), entry.secretHash)) return undefined
  return entry.device.status === 'provisioned' || entry.device.status === 'active' ? entry.device : undefined
}

/** A device with its secret's hash, as the broker thread's replica of the registry holds it. */
export interface ReplicaEntry {
  readonly device: Device
  /** base64 */
  readonly secretHash: string
}

/** Secrets are 128-bit random tokens, so a keyed fast hash is as strong as a slow KDF and keeps reconnect storms cheap. */
const SECRET_BYTES = 18

/**
 * The device registry. Reads are synchronous from memory (the broker authenticates on every CONNECT);
 * writes go to the database first, then to the cache. Keep this interface narrow: a shared database
 * replaces it when the platform runs on several machines.
 */
export class DeviceRegistry extends EventEmitter<{ changed: [change: RegistryChange] }> {
  private readonly cache = new Map<string, Entry>()
  /** HMAC of an installer token (base64) -> installer name, for tokens not revoked. */
  private readonly installerTokens = new Map<string, string>()
  private chain: Promise<unknown> = Promise.resolve()
  /** Status changes waiting for the next batch (see setStatus). */
  private statusQueue: StatusRequest[] = []

  private constructor(
    private readonly instance: DuckDBInstance,
    private readonly db: DuckDBConnection,
    private readonly key: Buffer,
  ) {
    super()
  }

  /** Opens (and creates if needed) the registry database. `key` is the server-side HMAC key for secrets. */
  static async open(options: { path: string; key: Buffer }): Promise<DeviceRegistry> {
    if (options.key.length < 16) throw new Error('registry key must be at least 16 bytes')
    const instance = await DuckDBInstance.create(options.path)
    const db = await instance.connect()
    await db.run(`CREATE TABLE IF NOT EXISTS devices (
      id VARCHAR PRIMARY KEY, kind VARCHAR NOT NULL, name VARCHAR NOT NULL, regency VARCHAR NOT NULL,
      district VARCHAR NOT NULL, latitude DOUBLE NOT NULL, longitude DOUBLE NOT NULL,
      reporting_interval_ms BIGINT NOT NULL, thresholds VARCHAR, notes VARCHAR, status VARCHAR NOT NULL,
      secret_hash VARCHAR NOT NULL, created_at BIGINT NOT NULL, updated_at BIGINT NOT NULL,
      created_by VARCHAR NOT NULL, updated_by VARCHAR NOT NULL)`)
    await db.run(`CREATE TABLE IF NOT EXISTS audit_log (
      occurred_at BIGINT NOT NULL, actor VARCHAR NOT NULL, action VARCHAR NOT NULL, device_id VARCHAR, detail VARCHAR)`)
    // Databases created by the first slice lack the calibration column.
    await db.run('ALTER TABLE devices ADD COLUMN IF NOT EXISTS calibration_offset DOUBLE DEFAULT 0')
    await db.run(`CREATE TABLE IF NOT EXISTS installer_tokens (
      name VARCHAR PRIMARY KEY, token_hash VARCHAR NOT NULL, created_at BIGINT NOT NULL, created_by VARCHAR NOT NULL,
      revoked_at BIGINT)`)
    // Per connection and never on disk: the rows of one batched status UPDATE (see setStatus).
    await db.run(
      'CREATE TEMP TABLE device_status (id VARCHAR, status VARCHAR, updated_at BIGINT, updated_by VARCHAR)',
    )
    const registry = new DeviceRegistry(instance, db, options.key)
    const rows = (await db.runAndReadAll('SELECT * FROM devices')).getRowObjectsJS()
    for (const row of rows) {
      const device: Device = {
        id: String(row.id),
        kind: DeviceKindSchema.parse(row.kind),
        name: String(row.name),
        regency: String(row.regency),
        district: String(row.district),
        latitude: Number(row.latitude),
        longitude: Number(row.longitude),
        reportingIntervalMs: Number(row.reporting_interval_ms),
        thresholds: row.thresholds
          ? (JSON.parse(String(row.thresholds)) as Record<string, number>)
          : undefined,
        notes: row.notes == null ? undefined : String(row.notes),
        calibrationOffset: Number(row.calibration_offset ?? 0),
        status: DeviceStatusSchema.parse(row.status),
        createdAt: Number(row.created_at),
        updatedAt: Number(row.updated_at),
        createdBy: String(row.created_by),
        updatedBy: String(row.updated_by),
      }
      registry.cache.set(device.id, { device, secretHash: Buffer.from(String(row.secret_hash), 'base64') })
    }
    const tokens = (
      await db.runAndReadAll('SELECT name, token_hash FROM installer_tokens WHERE revoked_at IS NULL')
    ).getRowObjectsJS()
    for (const t of tokens) registry.installerTokens.set(String(t.token_hash), String(t.name))
    return registry
  }

  get(id: string): Device | undefined {
    return this.cache.get(id)?.device
  }

  list(filter: DeviceFilter = {}): Device[] {
    const q = filter.q?.toLowerCase()
    const out: Device[] = []
    for (const { device: d } of this.cache.values()) {
      if (filter.kind !== undefined && d.kind !== filter.kind) continue
      if (filter.status !== undefined && d.status !== filter.status) continue
      if (filter.regency !== undefined && d.regency.toLowerCase() !== filter.regency.toLowerCase()) continue
      if (filter.district !== undefined && d.district.toLowerCase() !== filter.district.toLowerCase())
        continue
      if (q !== undefined && !d.id.includes(q) && !d.name.toLowerCase().includes(q)) continue
      out.push(d)
    }
    return out
  }

  get size(): number {
    return this.cache.size
  }

  /** Every device with its secret hash: the starting point of a replica (see `RegistryReplica`). */
  replicaEntries(): ReplicaEntry[] {
    return [...this.cache.values()].map((e) => ({
      device: e.device,
      secretHash: e.secretHash.toString('base64'),
    }))
  }

  /** A device's entry for a replica after a change, or undefined if it is unknown. */
  replicaEntry(id: string): ReplicaEntry | undefined {
    const e = this.cache.get(id)
    return e && { device: e.device, secretHash: e.secretHash.toString('base64') }
  }

  /** Constant-time check of a device's secret. Revoked and decommissioned devices never verify. */
  verify(id: string, secret: Uint8Array | string | undefined): Device | undefined {
    return verifySecret(this.key, this.cache.get(id), secret)
  }

  /** Registers a device and returns its secret: the only time the secret is ever shown. */
  register(input: NewDevice, actor: string): Promise<{ device: Device; secret: string }> {
    const data = NewDeviceSchema.parse(input)
    return this.serial(async () => {
      // A decommissioned id may be registered anew (a revoked device comes back that way, with a new
      // secret): its row is replaced, its audit history stays.
      const previous = this.cache.get(data.id)?.device
      if (previous !== undefined && previous.status !== 'decommissioned')
        throw new RegistryError('device_exists', `device ${data.id} is already registered`)
      const now = Date.now()
      const device: Device = {
        ...data,
        status: 'provisioned',
        createdAt: now,
        updatedAt: now,
        createdBy: actor,
        updatedBy: actor,
      }
      const secret = randomBytes(SECRET_BYTES).toString('base64url')
      const secretHash = this.hash(secret)
      await this.transaction(async () => {
        if (previous !== undefined) await this.db.run('DELETE FROM devices WHERE id = $id', { id: device.id })
        await this.db.run(
          `INSERT INTO devices (id, kind, name, regency, district, latitude, longitude, reporting_interval_ms,
          thresholds, notes, status, secret_hash, created_at, updated_at, created_by, updated_by, calibration_offset)
          VALUES ($id, $kind, $name, $regency, $district, $lat, $lon, $interval, $thresholds,
          $notes, $status, $hash, $now, $now, $actor, $actor, $calibration)`,
          {
            id: device.id,
            kind: device.kind,
            ...describedBy(device),
            status: device.status,
            hash: secretHash.toString('base64'),
            now,
            actor,
          },
        )
        await this.audit(
          actor,
          'register',
          device.id,
          previous === undefined ? { kind: device.kind } : { kind: device.kind, replaces: 'decommissioned' },
        )
      })
      this.cache.set(device.id, { device, secretHash })
      this.emit('changed', { device, action: 'register' })
      return { device, secret }
    })
  }

  /** Issues a new secret; the old one stops working at once. */
  rotateSecret(id: string, actor: string): Promise<{ device: Device; secret: string }> {
    return this.serial(async () => {
      const entry = this.cache.get(id)
      if (entry === undefined) throw new RegistryError('device_not_found', `device ${id} is not registered`)
      if (entry.device.status === 'revoked' || entry.device.status === 'decommissioned') {
        throw new RegistryError('device_revoked', `device ${id} is ${entry.device.status}`)
      }
      const secret = randomBytes(SECRET_BYTES).toString('base64url')
      const secretHash = this.hash(secret)
      const now = Date.now()
      await this.transaction(async () => {
        await this.db.run(
          'UPDATE devices SET secret_hash = $hash, updated_at = $now, updated_by = $actor WHERE id = $id',
          {
            hash: secretHash.toString('base64'),
            now,
            actor,
            id,
          },
        )
        await this.audit(actor, 'rotate-secret', id, {})
      })
      const device = { ...entry.device, updatedAt: now, updatedBy: actor }
      this.cache.set(id, { device, secretHash })
      // Listeners end sessions opened with the old secret.
      this.emit('changed', { device, action: 'rotate-secret' })
      return { device, secret }
    })
  }

  /**
   * Changes a device's status (audited). Requests that arrive while the registry is busy are stored together
   * in one transaction: the first connection of a whole fleet (a new market's people counters switched on,
   * or this platform's benchmark) activates thousands of devices at once, and two autocommits with an fsync
   * each per device cost several ms of CPU apiece. Each request still gets its own answer and error.
   */
  setStatus(id: string, status: DeviceStatus, actor: string, reason?: string): Promise<Device> {
    return new Promise((resolve, reject) => {
      this.statusQueue.push({ id, status, actor, reason, resolve, reject })
      if (this.statusQueue.length === 1) void this.serial(() => this.flushStatus())
    })
  }

  private async flushStatus(): Promise<void> {
    const batch = this.statusQueue.splice(0)
    const now = Date.now()
    /** Each device's state as the requests so far leave it (a device may be asked twice). */
    const next = new Map<string, Device>()
    const changes: Array<{ device: Device; from: DeviceStatus; actor: string; reason: string | undefined }> =
      []
    const answers: Array<{ request: StatusRequest; device: Device }> = []
    for (const request of batch) {
      const { id, status, actor, reason } = request
      const current = next.get(id) ?? this.cache.get(id)?.device
      if (current === undefined) {
        request.reject(new RegistryError('device_not_found', `device ${id} is not registered`))
        continue
      }
      if (current.status === status) {
        answers.push({ request, device: current })
        continue
      }
      if (!ALLOWED_TRANSITIONS[current.status].includes(status)) {
        request.reject(
          new RegistryError(
            'invalid_transition',
            `device ${id} is ${current.status} and cannot become ${status}`,
          ),
        )
        continue
      }
      const device = { ...current, status, updatedAt: now, updatedBy: actor }
      next.set(id, device)
      changes.push({ device, from: current.status, actor, reason })
      answers.push({ request, device })
    }
    if (changes.length > 0) {
      try {
        await this.db.run('BEGIN TRANSACTION')
        // Final rows go through a scratch table: one joined UPDATE instead of one statement per device.
        await appendRows(
          this.db,
          'device_status',
          next.values(),
          (a, d) => {
            a.appendVarchar(d.id)
            a.appendVarchar(d.status)
            a.appendBigInt(BigInt(d.updatedAt))
            a.appendVarchar(d.updatedBy)
          },
          { temp: true },
        )
        await this.db.run(`UPDATE devices SET status = s.status, updated_at = s.updated_at, updated_by = s.updated_by
          FROM temp.device_status s WHERE devices.id = s.id`)
        await this.db.run('DELETE FROM temp.device_status')
        await appendRows(this.db, 'audit_log', changes, (a, { device, from, actor, reason }) => {
          a.appendBigInt(BigInt(now))
          a.appendVarchar(actor)
          a.appendVarchar(`status:${device.status}`)
          a.appendVarchar(device.id)
          a.appendVarchar(JSON.stringify(reason === undefined ? { from } : { from, reason }))
        })
        await this.db.run('COMMIT')
      } catch (err) {
        await this.db.run('ROLLBACK').catch(() => undefined)
        for (const { request } of answers) request.reject(err)
        return
      }
      for (const { device } of changes) {
        const entry = this.cache.get(device.id)!
        this.cache.set(device.id, { device, secretHash: entry.secretHash })
        this.emit('changed', { device, action: 'status' })
      }
    }
    for (const { request, device } of answers) request.resolve(device)
  }

  /** Changes installation details; every changed field is audited with its old and new value. */
  update(id: string, patch: DeviceUpdate, actor: string): Promise<Device> {
    const data = DeviceUpdateSchema.parse(patch)
    return this.serial(async () => {
      const entry = this.cache.get(id)
      if (entry === undefined) throw new RegistryError('device_not_found', `device ${id} is not registered`)
      if (entry.device.status === 'decommissioned')
        throw new RegistryError('invalid_transition', `device ${id} is decommissioned`)
      // Which thresholds a device can use depends on its kind, which the patch does not carry.
      const issues = thresholdIssues(entry.device.kind, data.thresholds ?? undefined)
      if (issues.length > 0) throw new z.ZodError(issues)
      const before = entry.device
      const next: Device = {
        ...before,
        ...(data.name !== undefined && { name: data.name }),
        ...(data.regency !== undefined && { regency: data.regency }),
        ...(data.district !== undefined && { district: data.district }),
        ...(data.latitude !== undefined && { latitude: data.latitude }),
        ...(data.longitude !== undefined && { longitude: data.longitude }),
        ...(data.reportingIntervalMs !== undefined && { reportingIntervalMs: data.reportingIntervalMs }),
        ...(data.calibrationOffset !== undefined && { calibrationOffset: data.calibrationOffset }),
        ...(data.thresholds !== undefined && { thresholds: data.thresholds ?? undefined }),
        ...(data.notes !== undefined && { notes: data.notes ?? undefined }),
      }
      const changes: Record<string, { from: unknown; to: unknown }> = {}
      for (const key of Object.keys(data) as Array<keyof typeof data>) {
        const from = before[key] ?? null
        const to = next[key] ?? null
        if (JSON.stringify(from) !== JSON.stringify(to)) changes[key] = { from, to }
      }
      if (Object.keys(changes).length === 0) return before
      const now = Date.now()
      const device: Device = { ...next, updatedAt: now, updatedBy: actor }
      await this.transaction(async () => {
        await this.db.run(
          `UPDATE devices SET name = $name, regency = $regency, district = $district, latitude = $lat,
          longitude = $lon, reporting_interval_ms = $interval, thresholds = $thresholds, notes = $notes,
          calibration_offset = $calibration, updated_at = $now, updated_by = $actor WHERE id = $id`,
          {
            id,
            ...describedBy(device),
            now,
            actor,
          },
        )
        await this.audit(actor, 'update', id, changes)
      })
      this.cache.set(id, { device, secretHash: entry.secretHash })
      this.emit('changed', { device, action: 'update' })
      return device
    })
  }

  /** Creates a named installer token and returns it: the only time it is shown. */
  createInstallerToken(name: string, actor: string): Promise<{ name: string; token: string }> {
    const parsed = InstallerNameSchema.parse(name)
    return this.serial(async () => {
      const existing = (
        await this.db.runAndReadAll('SELECT revoked_at FROM installer_tokens WHERE name = $name', {
          name: parsed,
        })
      ).getRowObjectsJS()
      if (existing.length > 0 && existing[0]?.revoked_at == null)
        throw new RegistryError('installer_exists', `installer ${parsed} already has a token`)
      const token = `inst_${randomBytes(24).toString('base64url')}`
      const tokenHash = this.hash(token).toString('base64')
      await this.transaction(async () => {
        await this.db.run('DELETE FROM installer_tokens WHERE name = $name', { name: parsed })
        await this.db.run('INSERT INTO installer_tokens VALUES ($name, $hash, $now, $actor, NULL)', {
          name: parsed,
          hash: tokenHash,
          now: Date.now(),
          actor,
        })
        await this.audit(actor, 'installer:create', null, { installer: parsed })
      })
      this.installerTokens.set(tokenHash, parsed)
      return { name: parsed, token }
    })
  }

  revokeInstallerToken(name: string, actor: string): Promise<void> {
    return this.serial(async () => {
      const hash = [...this.installerTokens].find(([, n]) => n === name)?.[0]
      if (hash === undefined)
        throw new RegistryError('installer_not_found', `installer ${name} has no active token`)
      await this.transaction(async () => {
        await this.db.run('UPDATE installer_tokens SET revoked_at = $now WHERE name = $name', {
          now: Date.now(),
          name,
        })
        await this.audit(actor, 'installer:revoke', null, { installer: name })
      })
      this.installerTokens.delete(hash)
    })
  }

  installers(): string[] {
    return [...this.installerTokens.values()].sort()
  }

  /**
   * The installer a token belongs to, or undefined. The lookup is by keyed hash, so timing reveals nothing
   * about the token itself.
   */
  verifyInstallerToken(token: string | undefined): string | undefined {
    if (token === undefined || token.length > 200) return undefined
    return this.installerTokens.get(this.hash(token).toString('base64'))
  }

  async auditLog(options: number | { limit?: number; deviceId?: string } = {}): Promise<AuditEntry[]> {
    const { limit = 100, deviceId } = typeof options === 'number' ? { limit: options } : options
    const rows = await this.serial(async () =>
      (
        await this.db.runAndReadAll(
          `SELECT * FROM audit_log ${deviceId === undefined ? '' : 'WHERE device_id = $device'}
            ORDER BY occurred_at DESC LIMIT $limit`,
          deviceId === undefined ? { limit } : { limit, device: deviceId },
        )
      ).getRowObjectsJS(),
    )
    return rows.map((r) => ({
      at: Number(r.occurred_at),
      actor: String(r.actor),
      action: String(r.action),
      deviceId: r.device_id == null ? null : String(r.device_id),
      detail: r.detail ? JSON.parse(String(r.detail)) : null,
    }))
  }

  async close(): Promise<void> {
    await this.chain.catch(() => undefined)
    this.db.closeSync()
    this.instance.closeSync()
  }

  private hash(secret: Uint8Array | string): Buffer {
    return hashSecret(this.key, secret)
  }

  /**
   * A change and its audit entry commit together or not at all. Apart, an audit insert that failed (a full
   * disk) left a rotated secret on disk while the cache, and so the broker, still took the old one, and a
   * registered row that every retry then refused as a duplicate key. The cache changes only after this.
   */
  private async transaction(fn: () => Promise<void>): Promise<void> {
    await this.db.run('BEGIN TRANSACTION')
    try {
      await fn()
      await this.db.run('COMMIT')
    } catch (err) {
      await this.db.run('ROLLBACK').catch(() => undefined)
      throw err
    }
  }

  private audit(actor: string, action: string, deviceId: string | null, detail: unknown) {
    return this.db.run('INSERT INTO audit_log VALUES ($at, $actor, $action, $device, $detail)', {
      at: Date.now(),
      actor,
      action,
      device: deviceId,
      detail: JSON.stringify(detail),
    })
  }

  /** One DuckDB connection: run writes one after another. */
  private serial<T>(fn: () => Promise<T>): Promise<T> {
    const next = this.chain.then(fn, fn)
    this.chain = next.catch(() => undefined)
    return next
  }
}
