import type { FastifyInstance, FastifyRequest } from 'fastify'
import { z } from 'zod'
import { InstallerNameSchema } from '../../../ingest/registry.ts'
import { HttpError } from '../../errors.ts'
import { installerAssets } from '../../web/build.ts'
import { actorOf, registryAuth, requireAdmin } from '../devices/auth.ts'
import { registryError } from '../devices/index.ts'

function parse<T>(schema: z.ZodType<T>, value: unknown): T {
  const r = schema.safeParse(value)
  if (!r.success) throw new HttpError(400, 'bad_request', z.prettifyError(r.error))
  return r.data
}

/**
 * Installer tokens (created by the holder of API_TOKEN, one per installer, shown once) and the installer's
 * page. The page itself is public; it asks for a token and calls the REST API with it.
 */
/** The installer page and its script: it asks the installer for a token and sends it with each call. */
const PUBLIC_ROUTES: ReadonlySet<string> = new Set(['/installer', '/assets/installer.js'])
/** Routes an installer token may call too; every other route here is the admin's. */
const INSTALLER_ROUTES: ReadonlySet<string> = new Set(['/api/v1/installer/broker'])

const WILDCARD_HOSTS: ReadonlySet<string> = new Set(['0.0.0.0', '::', ''])
/** A host name or an IP address (IPv6 in brackets), as a Host header may carry it; anything else is ignored. */
const HOST_PATTERN = /^(?:\[[0-9a-fA-F:.]{2,45}\]|[A-Za-z0-9](?:[A-Za-z0-9.-]{0,252}))$/

/**
 * Where a device reaches the broker: the host (an IPv6 address without brackets) and the same host as a URL
 * takes it. A broker listening on every interface has no address of its own to give, so the host is the one
 * the installer's browser reached the dashboard at (the same machine).
 */
function brokerHost(bound: string, req: FastifyRequest): { host: string; urlHost: string } {
  let host = bound
  if (WILDCARD_HOSTS.has(bound)) host = HOST_PATTERN.test(req.hostname) ? req.hostname : '127.0.0.1'
  host = host.replace(/^\[(.*)\]$/, '$1')
  return { host, urlHost: host.includes(':') ? `[${host}]` : host }
}

export default async function installerRoutes(app: FastifyInstance) {
  const { registry } = app.deps
  const auth = registryAuth(app)
  const page = await installerAssets()

  // Every route of this plugin but the page and INSTALLER_ROUTES is the admin's. Decided by the route that matched, never by
  // `req.url`: the router decodes the path before matching, so `/api/v1/%69nstallers` reaches the
  // installers route while its raw URL starts with something else (an anonymous caller once minted an
  // installer token that way). A route added here later is closed until listed as public.
  app.addHook('onRequest', async (req) => {
    const route = req.routeOptions.url ?? ''
    if (PUBLIC_ROUTES.has(route)) return
    await auth(req)
    if (!INSTALLER_ROUTES.has(route)) requireAdmin(req)
  })

  // Who the token belongs to and where devices connect: what the installer page shows beside credentials.
  app.get('/api/v1/installer/broker', async (req) => {
    const listeners = app.deps.mqtt
    if (listeners === undefined)
      throw new HttpError(404, 'not_found', 'this dashboard was started without a broker')
    const { host, urlHost } = brokerHost(listeners.host, req)
    return {
      actor: actorOf(req),
      mqtt: { host, port: listeners.port, url: `mqtt://${urlHost}:${listeners.port}` },
      ...(listeners.tlsPort !== undefined && {
        mqttTls: { host, port: listeners.tlsPort, url: `mqtts://${urlHost}:${listeners.tlsPort}` },
      }),
      ...(listeners.wsPort !== undefined && {
        mqttWs: { host, port: listeners.wsPort, url: `ws://${urlHost}:${listeners.wsPort}/mqtt` },
      }),
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
