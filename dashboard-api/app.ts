import { maxHeaderSize } from 'node:http'
import type { Socket } from 'node:net'
import websocket from '@fastify/websocket'
import Fastify, {
  type FastifyBaseLogger,
  type FastifyError,
  type FastifyInstance,
  type FastifyReply,
  type FastifyRequest,
} from 'fastify'
import type { Logger } from 'pino'
import type { BrokerAddresses } from '../broker/broker.ts'
import type { PlatformBus } from '../ingest/events.ts'
import type { PlatformMetrics } from '../ingest/metrics.ts'
import type { DeviceRegistry } from '../ingest/registry.ts'
import type { RejectionLog } from '../ingest/rejections.ts'
import type { TimeSeriesStore } from '../ingest/store/types.ts'
import type { AlarmEngine } from './alarms/engine.ts'
import type { DashboardConfig } from './config.ts'
import { HttpError } from './errors.ts'
import type { LiveState } from './live-state.ts'
import { LiveHub } from './live-stream.ts'
import { redactUrl, serializeRequest } from './request-log.ts'
import alarmsRoutes from './routes/alarms/index.ts'
import { ADMIN_ACTOR, notAdmin, tokenOwner } from './routes/devices/auth.ts'
import devicesRoutes from './routes/devices/index.ts'
import docsRoutes from './routes/docs/index.ts'
import healthRoutes from './routes/health/index.ts'
import installerRoutes from './routes/installer/index.ts'
import liveRoutes from './routes/live/index.ts'
import readingsRoutes from './routes/readings/index.ts'
import rejectionsRoutes from './routes/rejections/index.ts'
import wallRoutes from './routes/wall/index.ts'

export interface DashboardDeps {
  readonly registry: DeviceRegistry
  readonly store: TimeSeriesStore
  readonly live: LiveState
  readonly rejections: RejectionLog
  readonly metrics: PlatformMetrics
  readonly bus: PlatformBus
  /** Ingest health for /health: readings waiting in the spool and the writer's last error. */
  readonly ingestStatus: () => {
    pending: number
    spoolNearLimit?: boolean
    backPressure?: boolean
    lastError?: { message: string; at: number; retryable: boolean }
  }
  readonly log: Logger
  /** Rule-based alarms with acknowledgement; without it, /api/v1/alarms is not served. */
  readonly alarms?: AlarmEngine
  /**
   * The broker's listeners as bound, so the installer page can show a device where to connect with the
   * credentials it was just given. The platform passes them; an app built without a broker has none.
   */
  readonly mqtt?: BrokerAddresses
}

declare module 'fastify' {
  interface FastifyInstance {
    config: DashboardConfig
    deps: DashboardDeps
    hub: LiveHub
    requireApiToken: (req: FastifyRequest, reply: FastifyReply) => Promise<void>
  }
}

function frameworkError(err: FastifyError, reply: FastifyReply): void {
  const status = err.statusCode ?? 500
  if (status >= 500) {
    reply.log.error({ err }, 'request failed')
    reply.code(500).send({ error: { code: 'internal', message: 'internal error' } })
    return
  }
  const message =
    err.code === 'FST_ERR_MAX_PARAM_LENGTH'
      ? 'a path parameter is longer than 200 characters'
      : 'the path is not valid percent-encoded UTF-8'
  reply.code(status).send({ error: { code: 'bad_request', message } })
}

const CLIENT_ERRORS = {
  HPE_HEADER_OVERFLOW: {
    status: 431,
    reason: 'Request Header Fields Too Large',
    message: `the request line and headers exceed ${maxHeaderSize} bytes: send long lists in a POST body`,
  },
  ERR_HTTP_REQUEST_TIMEOUT: {
    status: 408,
    reason: 'Request Timeout',
    message: 'the request did not arrive in time',
  },
} as const

/**
 * Requests Node's HTTP parser refuses before Fastify sees them (a URL and headers past maxHeaderSize, a
 * malformed header, a bad Content-Length or chunk size) got Fastify's default body
 * (`{"error":"Bad Request","message":"Client Error","statusCode":400}`), not the standard one.
 */
function clientError(this: FastifyInstance, err: Error & { code?: string }, socket: Socket): void {
  if (err.code === 'ECONNRESET' || socket.destroyed) return
  const known = CLIENT_ERRORS[err.code as keyof typeof CLIENT_ERRORS]
  const { status, reason, message } = known ?? {
    status: 400,
    reason: 'Bad Request',
    message: 'the request is not well-formed HTTP/1.1',
  }
  this.log.debug({ code: err.code, reason: err.message }, 'malformed request refused')
  const body = JSON.stringify({ error: { code: 'bad_request', message } })
  if (socket.writable) {
    socket.write(
      `HTTP/1.1 ${status} ${reason}\r\nContent-Type: application/json; charset=utf-8\r\n` +
        `Content-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`,
    )
  }
  socket.destroy(err)
}

/** The whole dashboard API as one Fastify instance, not yet listening (tests use `inject()`). */
export async function buildApp(config: DashboardConfig, deps: DashboardDeps): Promise<FastifyInstance> {
  const app = Fastify({
    loggerInstance: deps.log.child({}, { serializers: { req: serializeRequest } }) as FastifyBaseLogger,
    bodyLimit: 64 * 1024,
    // Query strings are parsed flat: no nested objects from `a[b]=c` tricks.
    routerOptions: { maxParamLength: 200 },
    // A path that does not decode (`/api/v1/devices/%E0%A4%A`) or a parameter past maxParamLength is
    // refused by the router before any route or error handler runs; Fastify's own answer to those has a
    // body of another shape (`{"error":"Bad Request","code":"FST_ERR_BAD_URL",…}`).
    frameworkErrors: (err, _req, reply) => frameworkError(err, reply as FastifyReply),
    clientErrorHandler: clientError,
  })
  const hub = new LiveHub(deps.live, config.live, deps.log)
  app.decorate('config', config)
  app.decorate('deps', deps)
  app.decorate('hub', hub)
  app.decorate('requireApiToken', async (req: FastifyRequest) => {
    const owner = tokenOwner(req.headers.authorization, config.apiToken, deps.registry)
    if (owner === ADMIN_ACTOR) return
    // A valid installer token is a known caller without the right, as on the installer routes: 403, not
    // a 401 that says the token itself is wrong.
    throw owner === undefined ? new HttpError(401, 'unauthorized') : notAdmin()
  })

  app.setErrorHandler((err: Error & { statusCode?: number; code?: string }, req, reply) => {
    if (err instanceof HttpError) {
      return reply.code(err.statusCode).send({ error: { code: err.code, message: err.message } })
    }
    const status = err.statusCode ?? 500
    if (status < 500) {
      const code =
        err.code === 'FST_ERR_CTP_INVALID_JSON_BODY' || err instanceof SyntaxError
          ? 'invalid_json'
          : status === 413
            ? 'payload_too_large'
            : status === 404
              ? 'not_found'
              : 'bad_request'
      return reply.code(status).send({ error: { code, message: err.message } })
    }
    // Details of a 5xx stay in the log; the client learns only that it was our fault.
    req.log.error({ err, url: redactUrl(req.url) }, 'request failed')
    return reply.code(500).send({ error: { code: 'internal', message: 'internal error' } })
  })
  app.setNotFoundHandler((req, reply) => {
    reply
      .code(404)
      .send({ error: { code: 'not_found', message: `no route ${req.method} ${req.url.split('?')[0]}` } })
  })

  await app.register(websocket, { options: { maxPayload: 4096 } })
  await app.register(healthRoutes)
  await app.register(devicesRoutes)
  await app.register(installerRoutes)
  await app.register(rejectionsRoutes)
  await app.register(liveRoutes)
  await app.register(wallRoutes)
  await app.register(readingsRoutes)
  await app.register(docsRoutes)
  if (deps.alarms) await app.register(alarmsRoutes, { engine: deps.alarms })

  app.addHook('onReady', async () => hub.start())
  app.addHook('preClose', async () => hub.stop())
  return app
}
