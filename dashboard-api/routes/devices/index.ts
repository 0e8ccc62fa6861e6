import type { FastifyInstance } from 'fastify'
import { z } from 'zod'
import { DeviceIdSchema } from '../../../firmware-contracts/index.ts'
import { NewDeviceSchema, RegistryError } from '../../../ingest/registry.ts'
import { StoreWriteError } from '../../../ingest/store/types.ts'
import { HttpError } from '../../errors.ts'
import { timeParam } from '../../time-range.ts'

const ParamsSchema = z.strictObject({ id: DeviceIdSchema })
const MAX_READINGS = 10_000

function parse<T>(schema: z.ZodType<T>, value: unknown): T {
  const r = schema.safeParse(value)
  if (!r.success) throw new HttpError(400, 'bad_request', z.prettifyError(r.error))
  return r.data
}

function registryError(err: unknown): never {
  if (err instanceof RegistryError) {
    throw new HttpError(
      err.code === 'device_not_found' ? 404 : 409,
      err.code === 'device_not_found' ? 'not_found' : 'conflict',
      err.message,
    )
  }
  throw err
}

/** Installer-facing registry endpoints. Every change is audited with the token's role as the actor. */
export default async function devicesRoutes(app: FastifyInstance) {
  const { registry, store, live, rejections } = app.deps
  const actor = 'api'

  app.addHook('onRequest', async (req, reply) => {
    if (req.url.startsWith('/api/v1/devices')) await app.requireApiToken(req, reply)
  })

  app.get('/api/v1/devices', async () => ({ devices: registry.list() }))

  app.post('/api/v1/devices', async (req, reply) => {
    const input = parse(NewDeviceSchema, req.body)
    const { device, secret } = await registry.register(input, actor).catch(registryError)
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

  app.post('/api/v1/devices/:id/rotate', async (req) => {
    const { id } = parse(ParamsSchema, req.params)
    const { device, secret } = await registry.rotateSecret(id, actor).catch(registryError)
    return { device, secret }
  })

  app.get('/api/v1/devices/:id/commissioning', async (req) => {
    const { id } = parse(ParamsSchema, req.params)
    const device = deviceOr404(id)
    const view = live.view(id)
    return {
      device,
      online: view?.online ?? false,
      lastSeen: view?.lastSeen ?? null,
      latestReading: view?.latest ?? null,
      rejections: rejections.forDevice(id),
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
      const readings = await store.queryDevice({ kind: device.kind, device: id, from, to, limit: q.limit })
      return { device: id, kind: device.kind, from, to, count: readings.length, readings }
    } catch (err) {
      if (
        err instanceof StoreWriteError ||
        (err instanceof Error && /ECONNREFUSED|fetch failed|timeout/i.test(err.message))
      ) {
        throw new HttpError(503, 'store_unavailable')
      }
      throw err
    }
  })
}
