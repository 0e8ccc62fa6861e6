import type { FastifyInstance } from 'fastify'
import { openApiDocument } from './openapi.ts'

function escapeHtml(text: string): string {
  return text.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`)
}

type Json = Record<string, unknown>

/** A plain page listing each operation and its parameters, from the OpenAPI document (no scripts, no CDN). */
export function docsPage(doc: Json): string {
  const info = doc.info as { title: string; description: string }
  const sections: string[] = []
  for (const [path, item] of Object.entries(doc.paths as Record<string, Record<string, Json>>)) {
    for (const [method, op] of Object.entries(item)) {
      const params = (op.parameters as Json[] | undefined) ?? []
      const rows = params
        .map((p) => {
          const schema = p.schema as Json
          const type = Array.isArray(schema.enum)
            ? (schema.enum as unknown[]).join(' | ')
            : schema.type === 'array'
              ? `list of ${((schema.items as Json).enum as unknown[] | undefined)?.join(' | ') ?? (schema.items as Json).type}`
              : String(schema.type ?? 'string or integer')
          const dflt = schema.default === undefined ? '' : JSON.stringify(schema.default)
          return `<tr><td><code>${escapeHtml(String(p.name))}</code>${p.required ? ' *' : ''}</td><td>${escapeHtml(type)}</td><td>${escapeHtml(dflt)}</td><td>${escapeHtml(String(p.description ?? ''))}</td></tr>`
        })
        .join('\n')
      const table = params.length
        ? `<table><thead><tr><th>parameter</th><th>type</th><th>default</th><th>meaning</th></tr></thead><tbody>${rows}</tbody></table>`
        : '<p>Body: the same fields as the GET parameters, as JSON (lists as arrays).</p>'
      const codes = Object.entries(op.responses as Record<string, Json>)
        .map(([code, r]) => `<li><code>${code}</code> ${escapeHtml(String(r.description))}</li>`)
        .join('')
      sections.push(
        `<section><h2><code>${method.toUpperCase()} ${escapeHtml(path)}</code></h2><p>${escapeHtml(String(op.summary))}</p>${table}<ul>${codes}</ul></section>`,
      )
    }
  }
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>${escapeHtml(info.title)}</title>
<style>body{font:15px/1.45 system-ui,sans-serif;max-width:60rem;margin:2rem auto;padding:0 1rem;color:#1b1b1b}
table{border-collapse:collapse;width:100%}td,th{border:1px solid #ccc;padding:.3rem .5rem;text-align:left;vertical-align:top}
code{font-family:ui-monospace,monospace}</style></head>
<body><h1>${escapeHtml(info.title)}</h1><p>${escapeHtml(info.description)}</p>
<p>Every request needs <code>Authorization: Bearer &lt;API token&gt;</code>. Machine-readable: <a href="/api/v1/openapi.json">/api/v1/openapi.json</a>.</p>
<p>Example: <code>GET /api/v1/readings?kind=air-quality&amp;district=Denpasar%20Barat&amp;metrics=pm25,ispu&amp;window=1d&amp;from=-30d&amp;format=csv</code> (<code>format=csv-id</code>: semicolons and decimal commas, for Excel or LibreOffice in the Indonesian locale)</p>
${sections.join('\n')}
</body></html>
`
}

/** The analyst API's OpenAPI document and docs page; open, as they hold no data. */
export default async function docsRoutes(app: FastifyInstance) {
  const doc = openApiDocument()
  const page = docsPage(doc)
  app.get('/api/v1/openapi.json', async () => doc)
  app.get('/api/v1/docs', async (_req, reply) => reply.type('text/html; charset=utf-8').send(page))
}
