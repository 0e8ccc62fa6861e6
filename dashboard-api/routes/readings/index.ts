import type { FastifyInstance, FastifyReply } from 'fastify'
import { z } from 'zod'
import {
  CompletenessQuerySchema,
  completeness,
  csvStream,
  type IntervalPeriod,
  parseTime,
  QUERY_DEFAULTS,
  QueryError,
  ReadingsQuerySchema,
  type RegisteredDevice,
  resolveQuery,
  runAnalystQuery,
  shapeResult,
  TIME_ZONES,
} from '../../../ingest/query/index.ts'
import type { Device } from '../../../ingest/registry.ts'
import { redactUrl } from '../../request-log.ts'

/** An audit entry's detail for a change of the reporting interval. */
const IntervalChangeSchema = z.object({
  reportingIntervalMs: z.object({ from: z.number().int().positive(), to: z.number().int().positive() }),
})

function parse<T>(schema: z.ZodType<T>, value: unknown): T {
  const r = schema.safeParse(value ?? {})
  if (!r.success) throw new QueryError(400, 'bad_request', z.prettifyError(r.error))
  return r.data
}

/**
 * The analyst query API: readings of many devices over a range, raw or in windows with aggregates, as
 * columnar JSON or streamed CSV, from whichever store the platform runs; and per-device completeness.
 */
export default async function readingsRoutes(app: FastifyInstance) {
  const { registry, store } = app.deps
  const limits = app.config.query ?? QUERY_DEFAULTS

  // Query errors carry their own stable codes; anything else goes on to the app's error handler.
  app.setErrorHandler((err, req, reply) => {
    if (err instanceof QueryError) {
      // The client learns only that the store is down; which store and why is for the operator.
      if (err.code === 'store_unavailable')
        req.log.warn({ err: err.cause, url: redactUrl(req.url) }, 'store unavailable')
      return reply.code(err.statusCode).send({ error: { code: err.code, message: err.message } })
    }
    throw err
  })

  const devices = (filter: Partial<RegisteredDevice>): RegisteredDevice[] => {
    if (filter.id !== undefined) {
      const device = registry.get(filter.id)
      return device === undefined ? [] : [device]
    }
    return registry.list({
      ...(filter.kind !== undefined && { kind: filter.kind }),
      ...(filter.district !== undefined && { district: filter.district }),
      ...(filter.regency !== undefined && { regency: filter.regency }),
    })
  }

  async function answer(input: unknown, reply: FastifyReply) {
    const request = parse(ReadingsQuerySchema, input)
    const resolved = resolveQuery(request, { now: Date.now(), limits, devices })
    const rows = await runAnalystQuery(store, resolved.store, limits.timeoutMs)
    const result = shapeResult(resolved, rows)
    if (request.format !== 'json') {
      return reply
        .header('content-type', 'text/csv; charset=utf-8')
        .header('content-disposition', `attachment; filename="readings-${result.kind}.csv"`)
        .send(csvStream(result, request.format))
    }
    return reply.send(result)
  }

  app.get('/api/v1/readings', { onRequest: app.requireApiToken }, (req, reply) => answer(req.query, reply))
  app.post('/api/v1/readings', { onRequest: app.requireApiToken }, (req, reply) => answer(req.body, reply))

  app.get('/api/v1/readings/completeness', { onRequest: app.requireApiToken }, async (req) => {
    const q = parse(CompletenessQuerySchema, req.query)
    const device = registry.get(q.device)
    if (device === undefined) throw new QueryError(404, 'not_found', `device ${q.device} is not registered`)
    const now = Date.now()
    const offset = TIME_ZONES['Asia/Makassar']
    const to = q.to === undefined ? now : parseTime(q.to, now, 'to', offset)
    const from = q.from === undefined ? to - 86_400_000 : parseTime(q.from, now, 'from', offset)
    if (from >= to) throw new QueryError(400, 'bad_request', '`from` must be before `to`')
    const maxRows = Math.floor(limits.maxPoints / 2)
    const rows = await runAnalystQuery(
      store,
      {
        kind: device.kind,
        filter: { devices: [device.id] },
        fields: ['seq', 'receivedAt'],
        from,
        to,
        tz: 'UTC',
        tzOffsetMs: 0,
        aggregates: [],
        groupBy: 'device',
        maxRows,
      },
      limits.timeoutMs,
    )
    if (rows.length > maxRows) {
      throw new QueryError(400, 'query_too_large', `more than ${maxRows} readings in the range: narrow it`)
    }
    return completeness(device.id, from, to, await intervalPeriods(device), rows, now)
  })

  /**
   * The device's reporting intervals since its registration, from the audit log's updates: a device
   * that reported every 5 minutes until an installer set 1 minute is expected to, until then.
   */
  async function intervalPeriods(device: Device): Promise<IntervalPeriod[]> {
    const entries = await registry.auditLog({ deviceId: device.id, limit: 10_000 })
    const changes: Array<{ at: number; from: number; to: number }> = []
    for (const entry of entries) {
      // Updates of an earlier registration under the same id are not this device's.
      if (entry.action !== 'update' || entry.at < device.createdAt) continue
      const detail = IntervalChangeSchema.safeParse(entry.detail)
      if (detail.success) changes.push({ at: entry.at, ...detail.data.reportingIntervalMs })
    }
    changes.sort((a, b) => a.at - b.at)
    const periods: IntervalPeriod[] = [
      { since: device.createdAt, intervalMs: changes[0]?.from ?? device.reportingIntervalMs },
    ]
    for (const change of changes) periods.push({ since: change.at, intervalMs: change.to })
    return periods
  }
}
