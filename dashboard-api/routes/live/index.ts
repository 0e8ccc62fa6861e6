import type { FastifyInstance } from 'fastify'
import { HttpError, tokenMatches } from '../../errors.ts'
import { LIVE_PATH } from '../../protocol.ts'

export default async function liveRoutes(app: FastifyInstance) {
  const { displayToken, allowedOrigins } = app.config
  app.route({
    method: 'GET',
    url: LIVE_PATH,
    // Checked before the upgrade: a refused display gets a plain HTTP error, no socket.
    preValidation: async (req) => {
      const origin = req.headers.origin
      if (origin !== undefined && allowedOrigins !== undefined && !allowedOrigins.includes(origin)) {
        throw new HttpError(403, 'forbidden', 'origin not allowed')
      }
      if (displayToken !== undefined) {
        const given = (req.query as Record<string, unknown>).token
        if (typeof given !== 'string' || !tokenMatches(given, displayToken))
          throw new HttpError(401, 'unauthorized')
      }
    },
    // A GET without an upgrade: with `websocket: true` alone the plugin answered an empty 404.
    handler: async (_req, reply) => {
      reply.header('upgrade', 'websocket')
      throw new HttpError(426, 'bad_request', 'this is a WebSocket endpoint: connect with Upgrade: websocket')
    },
    wsHandler: (socket) => app.hub.add(socket),
  })
  // Operators and benchmarks: how many displays, how far behind the slowest one is, how many were cut off.
  app.get('/api/v1/live/stats', { onRequest: app.requireApiToken }, async () => ({
    ...app.hub.stats(),
    devices: app.deps.live.deviceCount,
    alarms: app.deps.live.alarms().length,
  }))
}
