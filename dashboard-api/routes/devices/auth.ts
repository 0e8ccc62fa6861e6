import type { FastifyInstance, FastifyRequest } from 'fastify'
import { bearerToken, HttpError, tokenMatches } from '../../errors.ts'

/** `admin` is the holder of API_TOKEN; installers are named by their token. */
export const ADMIN_ACTOR = 'admin'

const actors = new WeakMap<FastifyRequest, string>()

/**
 * Whose a bearer token is: ADMIN_ACTOR for the platform's API token, an installer's name for an installer
 * token, undefined for anything else. Every route's token check goes through here.
 */
export function tokenOwner(
  authorization: string | undefined,
  apiToken: string | undefined,
  registry: { verifyInstallerToken(token: string | undefined): string | undefined },
): string | undefined {
  const given = bearerToken(authorization)
  if (apiToken !== undefined && tokenMatches(given, apiToken)) return ADMIN_ACTOR
  return registry.verifyInstallerToken(given)
}

/** A valid installer token on a route that needs the platform's API token. */
export function notAdmin(): HttpError {
  return new HttpError(403, 'forbidden', 'this endpoint needs the platform API token, not an installer token')
}

/**
 * Authenticates a registry request with the platform's API token or an installer token and remembers who
 * is asking, so every change is audited under a name.
 */
export function registryAuth(app: FastifyInstance) {
  return async (req: FastifyRequest): Promise<void> => {
    const actor = tokenOwner(req.headers.authorization, app.config.apiToken, app.deps.registry)
    if (actor === undefined) throw new HttpError(401, 'unauthorized')
    actors.set(req, actor)
  }
}

export function actorOf(req: FastifyRequest): string {
  const actor = actors.get(req)
  if (actor === undefined) throw new HttpError(401, 'unauthorized')
  return actor
}

export function requireAdmin(req: FastifyRequest): void {
  if (actorOf(req) !== ADMIN_ACTOR) throw notAdmin()
}
