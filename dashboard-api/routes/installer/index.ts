import type { FastifyInstance } from 'fastify'
import { z } from 'zod'
import { InstallerNameSchema } from '../../../ingest/registry.ts'
import { HttpError } from '../../errors.ts'
import { installerAssets } from '../../web/build.ts'
import { registryAuth, requireAdmin } from '../devices/auth.ts'
import { registryError } from '../devices/index.ts'

function parse<T>(schema: z.ZodType<T>, value: unknown): T {
  const r = schema.safeParse(value)
  if (!r.success) throw new HttpError(400, 'bad_request', z.prettifyError(r.error))
  return r.data
}

/**
 * Installer tokens (created by the holder of API_TOKEN, one per installer, shown once) and the installer's
 * commissioning page. The page itself is public; it asks for a token and calls the REST API with it.
 */
/** The commissioning page and its script: it asks the installer for a token and sends it with each call. */
const PUBLIC_ROUTES: ReadonlySet<string> = new Set(['/installer', '/assets/installer.js'])

export default async function installerRoutes(app: FastifyInstance) {
  const { registry } = app.deps
  const auth = registryAuth(app)
  const page = await installerAssets()

  // Every route of this plugin but the page is the admin's. Decided by the route that matched, never by
  // `req.url`: the router decodes the path before matching, so `/api/v1/%69nstallers` reaches the
  // installers route while its raw URL starts with something else (an anonymous caller once minted an
  // installer token that way). A route added here later is closed until listed as public.
  app.addHook('onRequest', async (req) => {
    if (!PUBLIC_ROUTES.has(req.routeOptions.url ?? '')) {
      await auth(req)
      requireAdmin(req)
    }
  })

  app.get('/api/v1/installers', async () => ({ installers: registry.installers() }))

  app.post('/api/v1/installers', async (req, reply) => {
    const { name } = parse(z.strictObject({ name: InstallerNameSchema }), req.body)
    const created = await registry.createInstallerToken(name, 'admin').catch(registryError)
    reply.code(201)
    // Shown once; only its keyed hash is stored.
    return created
  })

  app.delete('/api/v1/installers/:name', async (req) => {
    const { name } = parse(z.strictObject({ name: InstallerNameSchema }), req.params)
    await registry.revokeInstallerToken(name, 'admin').catch(registryError)
    return { name, revoked: true }
  })

  app.get('/api/v1/audit', async (req) => {
    const { limit } = parse(
      z.strictObject({ limit: z.coerce.number().int().min(1).max(1000).default(100) }),
      req.query,
    )
    return { entries: await registry.auditLog({ limit }) }
  })

  app.get('/installer', async (_req, reply) => {
    reply.type('text/html; charset=utf-8').header('cache-control', 'no-cache')
    return page.html
  })
  app.get('/assets/installer.js', async (_req, reply) => {
    reply.type('text/javascript; charset=utf-8').header('cache-control', 'no-cache')
    return page.js
  })
}
