import type { FastifyRequest } from 'fastify'

/**
 * Wall displays pass their token in the query string (`?token=`), where browsers and kiosks can keep it; the
 * request log must not. Every URL the API logs goes through this.
 */
export function redactUrl(url: string): string {
  const start = url.indexOf('?')
  if (start < 0) return url
  const hash = url.indexOf('#', start)
  const end = hash < 0 ? url.length : hash
  // By the key as the query parser decodes it: `?%74oken=` is read as the token, so it must be redacted
  // as one too.
  const pairs = url
    .slice(start + 1, end)
    .split('&')
    .map((pair) => {
      const eq = pair.indexOf('=')
      return eq >= 0 && isTokenKey(pair.slice(0, eq)) ? `${pair.slice(0, eq)}=[redacted]` : pair
    })
  return `${url.slice(0, start + 1)}${pairs.join('&')}${url.slice(end)}`
}

function isTokenKey(raw: string): boolean {
  let key = raw
  try {
    key = decodeURIComponent(raw.replaceAll('+', ' '))
  } catch {
    // Not decodable: the parser keeps such a key as it is, so compare it as it is.
  }
  return key.toLowerCase() === 'token'
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
