import type { FastifyInstance } from 'fastify'

export default async function healthRoutes(app: FastifyInstance) {
  app.get('/api/v1/health', async () => {
    const { store, ingestStatus, registry } = app.deps
    const ingest = ingestStatus()
    return {
      status: ingest.lastError?.retryable || ingest.spoolNearLimit || ingest.backPressure ? 'degraded' : 'ok',
      store: { kind: store.kind, description: store.description },
      ingest,
      devices: registry.size,
      liveClients: app.hub.clientCount,
    }
  })

  app.get('/metrics', async (_req, reply) => {
    const { metrics } = app.deps
    reply.type(metrics.registry.contentType)
    return metrics.exposition()
  })
}
