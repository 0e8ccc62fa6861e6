import type { Duplex } from 'node:stream'
import type { FastifyInstance } from 'fastify'
import { HttpError, tokenMatches } from '../../errors.ts'
import { LIVE_PATH } from '../../protocol.ts'

/**
 * An origin as browsers serialise it (lower-case scheme and host, no default port, no path), so that
 * `https://Wall.Denpasar.go.id/` in LIVE_ALLOWED_ORIGINS allows the page that `https://wall.denpasar.go.id`
 * serves; compared as written, such an entry refused every display. `null` and other non-URLs stay as
 * they are.
 */
function canonicalOrigin(origin: string): string {
  try {
    const o = new URL(origin.trim()).origin
    return o === 'null' ? origin.trim() : o
  } catch {
    return origin.trim()
  }
}

export default async function liveRoutes(app: FastifyInstance) {
  const { displayToken } = app.config
  // Each display that stops reading may hold LIVE_MAX_BUFFERED_BYTES and a frame in this process, beside
  // the broker and ingest: without a cap, enough of them (anyone, when DISPLAY_TOKEN is unset) would take
  // the whole platform's memory. Not per address: displays behind one proxy share one.
  const maxClients = app.config.live.maxClients ?? 500
  const allowedOrigins = app.config.allowedOrigins?.map(canonicalOrigin)
  // The handshake's own refusals (no or a malformed Sec-WebSocket-Key, an unknown version, a bad extension
  // offer) were `ws`'s plain text as text/html; they get the standard error body too.
  app.websocketServer.on('wsClientError', (err: Error, socket: Duplex) => {
    const body = JSON.stringify({
      error: { code: 'bad_request', message: `WebSocket handshake: ${err.message}` },
    })
    const versions = /Sec-WebSocket-Version/.test(err.message) ? 'Sec-WebSocket-Version: 13, 8\r\n' : ''
    socket.once('finish', () => socket.destroy())
    socket.end(
      `HTTP/1.1 400 Bad Request\r\nConnection: close\r\nContent-Type: application/json; charset=utf-8\r\n` +
        `Content-Length: ${Buffer.byteLength(body)}\r\n${versions}\r\n${body}`,
    )
  })
  app.route({
    method: 'GET',
    url: LIVE_PATH,
    // Checked before the upgrade: a refused display gets a plain HTTP error, no socket.
    preValidation: async (req, reply) => {
      const origin = req.headers.origin
      if (
        origin !== undefined &&
        allowedOrigins !== undefined &&
        !allowedOrigins.includes(canonicalOrigin(origin))
      ) {
        throw new HttpError(403, 'forbidden', 'origin not allowed')
      }
      if (displayToken !== undefined) {
        const given = (req.query as Record<string, unknown>).token
        if (typeof given !== 'string' || !tokenMatches(given, displayToken))
          throw new HttpError(401, 'unauthorized')
      }
      if (app.hub.clientCount >= maxClients) {
        reply.header('retry-after', '30')
        throw new HttpError(503, 'too_many_displays')
      }
    },
    // A GET without an upgrade: with `websocket: true` alone the plugin answered an empty 404.
    handler: async (_req, reply) => {
      reply.header('upgrade', 'websocket')
      throw new HttpError(426, 'bad_request', 'this is a WebSocket endpoint: connect with Upgrade: websocket')
    },
    wsHandler: (socket) => {
      // Handshakes that passed the check together may still overshoot it: they are turned away here.
      if (app.hub.clientCount >= maxClients) return socket.close(1013, 'too many displays')
      app.hub.add(socket)
    },
  })
  // Operators and benchmarks: how many displays, how far behind the slowest one is, how many were cut off.
  app.get('/api/v1/live/stats', { onRequest: app.requireApiToken }, async () => ({
    ...app.hub.stats(),
    devices: app.deps.live.deviceCount,
    alarms: app.deps.live.alarms().length,
  }))
}
