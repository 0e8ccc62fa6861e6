import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto'
import { type DuckDBConnection, DuckDBInstance } from '@duckdb/node-api'
import { z } from 'zod'
import { DeviceIdSchema, DeviceKindSchema } from '../firmware-contracts/index.ts'

export const DEVICE_STATUSES = ['provisioned', 'active', 'revoked', 'decommissioned'] as const
export const DeviceStatusSchema = z.enum(DEVICE_STATUSES)
export type DeviceStatus = z.infer<typeof DeviceStatusSchema>

export const NewDeviceSchema = z.strictObject({
  id: DeviceIdSchema,
  kind: DeviceKindSchema,
  name: z.string().trim().min(1).max(120),
  regency: z.string().trim().min(1).max(80),
  district: z.string().trim().min(1).max(80),
  latitude: z.number().min(-90).max(90),
  longitude: z.number().min(-180).max(180),
  reportingIntervalMs: z.number().int().min(1000).max(86_400_000).default(60_000),
  /** Per-device thresholds set at installation, e.g. a river gauge's `waspada`/`siaga`/`awas` in cm. */
  thresholds: z.record(z.string().max(40), z.number()).optional(),
  notes: z.string().max(2000).optional(),
})
export type NewDevice = z.input<typeof NewDeviceSchema>

export interface Device extends z.output<typeof NewDeviceSchema> {
  readonly status: DeviceStatus
  readonly createdAt: number
  readonly updatedAt: number
  readonly createdBy: string
  readonly updatedBy: string
}

export class RegistryError extends Error {
  override readonly name = 'RegistryError'
  constructor(
    readonly code: 'device_exists' | 'device_not_found' | 'device_revoked',
    message: string,
  ) {
    super(message)
  }
}

interface Entry {
  device: Device
  secretHash: Buffer
}

/** Secrets are 128-bit random tokens, so a keyed fast hash is as strong as a slow KDF and keeps reconnect storms cheap. */
const SECRET_BYTES = 18

/**
 * The device registry. Reads are synchronous from memory (the broker authenticates on every CONNECT);
 * writes go to the database first, then to the cache. Keep this interface narrow: a shared database
 * replaces it when the platform runs on several machines.
 */
export class DeviceRegistry {
  private readonly cache = new Map<string, Entry>()
  private chain: Promise<unknown> = Promise.resolve()

  private constructor(
    private readonly instance: DuckDBInstance,
    private readonly db: DuckDBConnection,
    private readonly key: Buffer,
  ) {}

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
        status: DeviceStatusSchema.parse(row.status),
        createdAt: Number(row.created_at),
        updatedAt: Number(row.updated_at),
        createdBy: String(row.created_by),
        updatedBy: String(row.updated_by),
      }
      registry.cache.set(device.id, { device, secretHash: Buffer.from(String(row.secret_hash), 'base64') })
    }
    return registry
  }

  get(id: string): Device | undefined {
    return this.cache.get(id)?.device
  }

  list(): Device[] {
    return [...this.cache.values()].map((e) => e.device)
  }

  get size(): number {
    return this.cache.size
  }

  /** Constant-time check of a device's secret. Revoked and decommissioned devices never verify. */
  verify(id: string, secret: Uint8Array | string | undefined): Device | undefined {
    const entry = this.cache.get(id)
    if (entry === undefined || secret === undefined) return undefined
    const ok = timingSafeEqual(this.hash(secret), entry.secretHash)
    if (!ok) return undefined
    return entry.device.status === 'provisioned' || entry.device.status === 'active'
      ? entry.device
      : undefined
  }

  /** Registers a device and returns its secret: the only time the secret is ever shown. */
  register(input: NewDevice, actor: string): Promise<{ device: Device; secret: string }> {
    const data = NewDeviceSchema.parse(input)
    return this.serial(async () => {
      if (this.cache.has(data.id))
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
      await this.db.run(
        `INSERT INTO devices VALUES ($id, $kind, $name, $regency, $district, $lat, $lon, $interval, $thresholds,
          $notes, $status, $hash, $now, $now, $actor, $actor)`,
        {
          id: device.id,
          kind: device.kind,
          name: device.name,
          regency: device.regency,
          district: device.district,
          lat: device.latitude,
          lon: device.longitude,
          interval: device.reportingIntervalMs,
          thresholds: device.thresholds ? JSON.stringify(device.thresholds) : null,
          notes: device.notes ?? null,
          status: device.status,
          hash: secretHash.toString('base64'),
          now,
          actor,
        },
      )
      await this.audit(actor, 'register', device.id, { kind: device.kind })
      this.cache.set(device.id, { device, secretHash })
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
      const device = { ...entry.device, updatedAt: now, updatedBy: actor }
      this.cache.set(id, { device, secretHash })
      return { device, secret }
    })
  }

  setStatus(id: string, status: DeviceStatus, actor: string): Promise<Device> {
    return this.serial(async () => {
      const entry = this.cache.get(id)
      if (entry === undefined) throw new RegistryError('device_not_found', `device ${id} is not registered`)
      if (entry.device.status === status) return entry.device
      const now = Date.now()
      await this.db.run(
        'UPDATE devices SET status = $status, updated_at = $now, updated_by = $actor WHERE id = $id',
        {
          status,
          now,
          actor,
          id,
        },
      )
      await this.audit(actor, `status:${status}`, id, { from: entry.device.status })
      const device = { ...entry.device, status, updatedAt: now, updatedBy: actor }
      this.cache.set(id, { device, secretHash: entry.secretHash })
      return device
    })
  }

  async auditLog(
    limit = 100,
  ): Promise<Array<{ at: number; actor: string; action: string; deviceId: string | null; detail: unknown }>> {
    const rows = await this.serial(async () =>
      (
        await this.db.runAndReadAll('SELECT * FROM audit_log ORDER BY occurred_at DESC LIMIT $limit', {
          limit,
        })
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
    return createHmac('sha256', this.key).update(secret).digest()
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
