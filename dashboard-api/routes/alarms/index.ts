import type { FastifyInstance, FastifyRequest } from 'fastify'
import { z } from 'zod'
import { DeviceIdSchema, DeviceKindSchema } from '../../../firmware-contracts/index.ts'
import { ALARM_PRIORITIES } from '../../alarms/config.ts'
import { AlarmActionError, type AlarmEngine, publicAlarm } from '../../alarms/engine.ts'
import { ALARM_TYPES } from '../../alarms/rules.ts'
import { ALARM_STATES } from '../../alarms/store.ts'
import { redactUrl, redactUrls } from '../../alarms/webhooks.ts'
import { HttpError } from '../../errors.ts'
import { timeParam } from '../../time-range.ts'
import { actorOf, registryAuth } from '../devices/auth.ts'

const ListQuerySchema = z.strictObject({
  /** Comma list of states; `open` is every state but closed. */
  state: z
    .string()
    .trim()
    .transform((v) => v.split(',').map((s) => s.trim()))
    .pipe(z.array(z.enum([...ALARM_STATES, 'open'])).min(1))
    .optional(),
  type: z.enum(ALARM_TYPES).optional(),
  priority: z.enum(ALARM_PRIORITIES).optional(),
  kind: DeviceKindSchema.optional(),
  device: DeviceIdSchema.optional(),
  regency: z.string().trim().min(1).max(80).optional(),
  district: z.string().trim().min(1).max(80).optional(),
  from: z.string().trim().min(1).max(40).optional(),
  to: z.string().trim().min(1).max(40).optional(),
  limit: z.coerce.number().int().min(1).max(1000).default(100),
})

const ParamsSchema = z.strictObject({
  id: z.string().regex(/^alm-[a-z0-9]{1,16}-[0-9a-f]{8}$/, 'expected an alarm id'),
})

/** A missing or blank comment is its own error: acknowledging without saying what was done is refused. */
const CommentBodySchema = z.strictObject({ comment: z.string().max(2000).optional() }).optional()

function parse<T>(schema: z.ZodType<T>, value: unknown): T {
  const r = schema.safeParse(value)
  if (!r.success) throw new HttpError(400, 'bad_request', z.prettifyError(r.error))
  return r.data
}

function commentOf(req: FastifyRequest): string {
  const body = parse(CommentBodySchema, req.body)
  const comment = body?.comment?.trim()
  if (!comment) throw new HttpError(400, 'comment_required', 'a non-empty "comment" is required')
  return comment
}

function actionError(err: unknown): never {
  if (err instanceof AlarmActionError)
    throw new HttpError(err.code === 'not_found' ? 404 : 409, err.code, err.message)
  throw err
}

/**
 * Operators' alarm endpoints: list and filter, one alarm with its audit trail and webhook deliveries,
 * acknowledge / comment / clear / close with a mandatory comment. Authenticated like the registry (the API
 * token acts as `admin`, an installer token under its name) so every action is audited under a name.
 */
export default async function alarmsRoutes(app: FastifyInstance, opts: { engine: AlarmEngine }) {
  const { engine } = opts
  const auth = registryAuth(app)
  // Every route here needs a token. Not decided by `req.url`: the router decodes the path before matching,
  // so `/api/v1/%61larms` reached these routes past a check on the raw URL's prefix.
  app.addHook('onRequest', auth)

  app.get('/api/v1/alarms', async (req) => {
    const q = parse(ListQuerySchema, req.query)
    const now = Date.now()
    const states = q.state?.includes('open') ? ALARM_STATES.filter((s) => s !== 'closed') : q.state
    // Parsed as fields, so that a bad time is named (`→ at from`) like every other parameter.
    const { from, to } = parse(z.object({ from: timeParam(now).optional(), to: timeParam(now).optional() }), {
      from: q.from,
      to: q.to,
    })
    // As in a device's readings and the analyst API: an empty range is a mistake, not an empty answer.
    if (from !== undefined && to !== undefined && from >= to)
      throw new HttpError(400, 'bad_request', '`from` must be before `to`')
    const alarms = await engine.store.list({
      ...(states && { state: states as (typeof ALARM_STATES)[number][] }),
      ...(q.type && { type: q.type }),
      ...(q.priority && { priority: q.priority }),
      // In the query, before its LIMIT: filtered afterwards, `?kind=…&limit=10` once gave the newest ten
      // alarms of any kind less those of other kinds, often none.
      ...(q.kind && { kind: q.kind }),
      ...(q.device && { deviceId: q.device }),
      ...(q.regency && { regency: q.regency }),
      ...(q.district && { district: q.district }),
      ...(from !== undefined && { from }),
      ...(to !== undefined && { to }),
      limit: q.limit,
    })
    // Open alarms carry live values from memory; closed ones come from the database.
    const live = new Map(engine.openAlarms().map((a) => [a.id, a]))
    const out = alarms.map((a) => live.get(a.id) ?? a).map(publicAlarm)
    return { count: out.length, alarms: out }
  })

  app.get('/api/v1/alarms/:id', async (req) => {
    const { id } = parse(ParamsSchema, req.params)
    const stored = await engine.store.get(id)
    if (stored === undefined) throw new HttpError(404, 'not_found', `no alarm ${id}`)
    const alarm = engine.openAlarms().find((a) => a.id === id) ?? stored
    const [transitions, deliveries] = await Promise.all([
      engine.store.transitions(id),
      engine.store.deliveries(id),
    ])
    return {
      alarm: publicAlarm(alarm),
      transitions,
      // The signed body is the receiver's business; the operator sees where, what and how it went. Not the
      // URL's password or query (a gateway's API key): installers read this too.
      // Errors stored before URLs were redacted may hold one in full.
      deliveries: deliveries.map(({ body: _body, url, ...d }) => ({
        ...d,
        url: redactUrl(url),
        lastError: d.lastError === null ? null : redactUrls(d.lastError),
      })),
    }
  })

  const ACTIONS = {
    acknowledge: 'acknowledged',
    comments: 'commented',
    clear: 'cleared',
    close: 'closed',
  } as const
  for (const [path, action] of Object.entries(ACTIONS)) {
    app.post(`/api/v1/alarms/:id/${path}`, async (req, reply) => {
      const { id } = parse(ParamsSchema, req.params)
      const comment = commentOf(req)
      const { alarm, transition } = await engine.act(id, action, actorOf(req), comment).catch(actionError)
      if (action === 'commented') reply.code(201)
      return { alarm: publicAlarm(alarm), transition }
    })
  }
}
