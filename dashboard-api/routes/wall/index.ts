import type { FastifyInstance } from 'fastify'
import { wallAssets } from '../../web/build.ts'

export default async function wallRoutes(app: FastifyInstance) {
  const assets = await wallAssets()
  const page = async (_req: unknown, reply: { type: (t: string) => unknown }) => {
    reply.type('text/html; charset=utf-8')
    return assets.html
  }
  app.get('/', page)
  app.get('/wall', page)
  app.get('/assets/wall.js', async (_req, reply) => {
    reply.type('text/javascript; charset=utf-8').header('cache-control', 'no-cache')
    return assets.js
  })
  app.get('/assets/wall.css', async (_req, reply) => {
    reply.type('text/css; charset=utf-8').header('cache-control', 'no-cache')
    return assets.css
  })
}
