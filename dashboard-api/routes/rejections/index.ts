import type { FastifyInstance } from 'fastify'
import { z } from 'zod'
import { HttpError } from '../../errors.ts'

const QuerySchema = z.strictObject({ limit: z.coerce.number().int().min(1).max(1000).default(100) })

export default async function rejectionsRoutes(app: FastifyInstance) {
  app.get('/api/v1/rejections', { onRequest: app.requireApiToken }, async (req) => {
    const q = QuerySchema.safeParse(req.query)
    if (!q.success) throw new HttpError(400, 'bad_request', z.prettifyError(q.error))
    const { rejections } = app.deps
    return { counts: rejections.countsByReason(), latest: rejections.latest(q.data.limit) }
  })
}
