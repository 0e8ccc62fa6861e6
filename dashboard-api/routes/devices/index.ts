import type { FastifyInstance } from 'fastify'
import { z } from 'zod'
import { DeviceIdSchema } from '../../../firmware-contracts/index.ts'
import {
  DeviceFilterSchema,
  DeviceUpdateSchema,
  NewDeviceSchema,
  RegistryError,
} from '../../../ingest/registry.ts'
import { StoreUnavailableError } from '../../../ingest/store/types.ts'
import { HttpError } from '../../errors.ts'
import { timeParam } from '../../time-range.ts'
import { actorOf, registryAuth } from './auth.ts'
import { CommissioningTracker } from './commissioning.ts'

const ParamsSchema = z.strictObject({ id: DeviceIdSchema })
const ReasonBodySchema = z.strictObject({ reason: z.string().trim().min(1).max(500).optional() }).optional()
const MAX_READINGS = 10_000

function parse<T>(schema: z.ZodType<T>, value: unknown): T {
  const r = schema.safeParse(value)
  if (!r.success) throw new HttpError(400, 'bad_request', z.prettifyError(r.error))
  return r.data
}

export function registryError(err: unknown): never {
  // A check the registry makes only once it knows the device (thresholds against its kind, on update).
  if (err instanceof z.ZodError) throw new HttpError(400, 'bad_request', z.prettifyError(err))
  if (err instanceof RegistryError) {
    if (err.code === 'device_not_found' || err.code === 'installer_not_found')
      throw new HttpError(404, 'not_found', err.message)
    // The registry's own code: `device_exists` tells an installer more than `conflict`.
    throw new HttpError(409, err.code, err.message)
  }
  throw err
}

/**
 * Installer-facing registry endpoints, protected by the API token or an installer token. Every change is
 * audited under the caller's name; revocation and rotation end the device's live MQTT session at once (the
 * broker listens to the registry's changes).
 */
export default async function devicesRoutes(app: FastifyInstance) {
  const { registry, store, live, rejections, bus } = app.deps
  const commissioning = new CommissioningTracker(bus)
  app.addHook('onClose', async () => commissioning.close())
  const auth = registryAuth(app)

  // Every route here needs a token. Not decided by `req.url`: the router decodes the path before matching,
  // so `/api/v1/%64evices` reached these routes past a check on the raw URL's prefix.
  app.addHook('onRequest', auth)

  app.get('/api/v1/devices', async (req) => {
    const filter = parse(DeviceFilterSchema, req.query)
    const devices = registry.list(filter)
    return { count: devices.length, devices }
  })

  app.post('/api/v1/devices', async (req, reply) => {
    const input = parse(NewDeviceSchema, req.body)
    const { device, secret } = await registry.register(input, actorOf(req)).catch(registryError)
    reply.code(201)
    // The secret is returned this once and never stored in clear.
    return { device, secret, mqtt: { clientId: device.id, username: device.id, password: secret } }
  })

  const deviceOr404 = (id: string) => {
    const device = registry.get(id)
    if (device === undefined) throw new HttpError(404, 'not_found', `device ${id} is not registered`)
    return device
  }

  app.get('/api/v1/devices/:id', async (req) => {
    const { id } = parse(ParamsSchema, req.params)
    return { device: deviceOr404(id) }
  })

  app.patch('/api/v1/devices/:id', async (req) => {
    const { id } = parse(ParamsSchema, req.params)
    const patch = parse(DeviceUpdateSchema, req.body)
    return { device: await registry.update(id, patch, actorOf(req)).catch(registryError) }
  })

  app.post('/api/v1/devices/:id/rotate', async (req) => {
    const { id } = parse(ParamsSchema, req.params)
    const { device, secret } = await registry.rotateSecret(id, actorOf(req)).catch(registryError)
    return { device, secret, mqtt: { clientId: device.id, username: device.id, password: secret } }
  })

  app.post('/api/v1/devices/:id/revoke', async (req) => {
    const { id } = parse(ParamsSchema, req.params)
    const reason = parse(ReasonBodySchema, req.body)?.reason
    return { device: await registry.setStatus(id, 'revoked', actorOf(req), reason).catch(registryError) }
  })

  app.post('/api/v1/devices/:id/decommission', async (req) => {
    const { id } = parse(ParamsSchema, req.params)
    const reason = parse(ReasonBodySchema, req.body)?.reason
    const device = await registry.setStatus(id, 'decommissioned', actorOf(req), reason).catch(registryError)
    commissioning.forget(id)
    return { device }
  })

  app.get('/api/v1/devices/:id/audit', async (req) => {
    const { id } = parse(ParamsSchema, req.params)
    const { limit } = parse(
      z.strictObject({ limit: z.coerce.number().int().min(1).max(1000).default(100) }),
      req.query,
    )
    deviceOr404(id)
    return { device: id, entries: await registry.auditLog({ limit, deviceId: id }) }
  })

  app.get('/api/v1/devices/:id/commissioning', async (req) => {
    const { id } = parse(ParamsSchema, req.params)
    const device = deviceOr404(id)
    const state = commissioning.get(id)
    const view = live.view(id)
    const rejected = rejections.forDevice(id)
    return {
      now: Date.now(),
      device,
      connection: {
        online: state?.online ?? view?.online ?? false,
        everConnected: state?.firstConnectedAt != null || device.status === 'active',
        firstConnectedAt: state?.firstConnectedAt ?? null,
        lastConnectedAt: state?.lastConnectedAt ?? null,
        lastDisconnectedAt: state?.lastDisconnectedAt ?? null,
        lastStatusSource: state?.lastStatusSource ?? null,
        lastSeen: view?.lastSeen ?? null,
      },
      firstReading: state?.firstReading ?? null,
      latestReading: state?.latestReading ?? null,
      readingsSinceStart: state?.readings ?? 0,
      // Oldest first (the log keeps the latest 20); payloads are truncated by the rejection log.
      rejections: rejected,
    }
  })

  app.get('/api/v1/devices/:id/readings', async (req) => {
    const { id } = parse(ParamsSchema, req.params)
    const device = deviceOr404(id)
    const now = Date.now()
    const q = parse(
      z.strictObject({
        from: timeParam(now).optional(),
        to: timeParam(now).optional(),
        limit: z.coerce.number().int().min(1).max(MAX_READINGS).default(1000),
      }),
      req.query,
    )
    const to = q.to ?? now
    const from = q.from ?? to - 3_600_000
    if (from > to) throw new HttpError(400, 'bad_request', '`from` must not be after `to`')
    try {
      // Oldest first, so a range with more readings than `limit` left its newest out with nothing to say
      // so: one more is asked for, and `next` is where the following page starts (a device's readings
      // have distinct times, its point identity in the store).
      const rows = await store.queryDevice({ kind: device.kind, device: id, from, to, limit: q.limit + 1 })
      const truncated = rows.length > q.limit
      const readings = truncated ? rows.slice(0, q.limit) : rows
      return {
        device: id,
        kind: device.kind,
        from,
        to,
        count: readings.length,
        truncated,
        ...(truncated ? { next: readings[readings.length - 1]!.ts + 1 } : {}),
        readings,
      }
    } catch (err) {
      if (err instanceof StoreUnavailableError) {
        req.log.warn({ err: err.cause, deviceId: id }, 'store unavailable')
        throw new HttpError(503, 'store_unavailable')
      }
      throw err
    }
  })
}
