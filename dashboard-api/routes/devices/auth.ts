import type { FastifyInstance, FastifyRequest } from 'fastify'
import { bearerToken, HttpError, tokenMatches } from '../../errors.ts'

/** `admin` is the holder of API_TOKEN; installers are named by their token. */
export const ADMIN_ACTOR = 'admin'

const actors = new WeakMap<FastifyRequest, string>()

/**
 * Authenticates a registry request with the platform's API token or an installer token and remembers who
 * is asking, so every change is audited under a name.
 */
export function registryAuth(app: FastifyInstance) {
  return async (req: FastifyRequest): Promise<void> => {
    const given = bearerToken(req.headers.authorization)
    if (app.config.apiToken !== undefined && tokenMatches(given, app.config.apiToken)) {
      actors.set(req, ADMIN_ACTOR)
      return
    }
    const installer = app.deps.registry.verifyInstallerToken(given)
    if (installer === undefined) throw new HttpError(401, 'unauthorized')
    actors.set(req, installer)
  }
}

export function actorOf(req: FastifyRequest): string {
  const actor = actors.get(req)
  if (actor === undefined) throw new HttpError(401, 'unauthorized')
  return actor
}

export function requireAdmin(req: FastifyRequest): void {
  if (actorOf(req) !== ADMIN_ACTOR)
    throw new HttpError(
      403,
      'forbidden',
      'this endpoint needs the platform API token, not an installer token',
    )
}
