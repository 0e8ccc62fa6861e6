import type { FastifyRequest } from 'fastify'

/**
 * Wall displays pass their token in the query string (`?token=`), where browsers and kiosks can keep it; the
 * request log must not. Every URL the API logs goes through this.
 */
export function redactUrl(url: string): string {
  return url.replace(/([?&]token=)[^&#]*/gi, '$1[redacted]')
}

/** Fastify's own request serializer, with the URL redacted. */
export function serializeRequest(req: FastifyRequest) {
  return {
    method: req.method,
    url: redactUrl(req.url),
    host: req.host,
    remoteAddress: req.ip,
    remotePort: req.socket?.remotePort,
  }
}
