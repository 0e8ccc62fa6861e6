import { Ajv2020 } from 'ajv/dist/2020.js'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import type { QueryResult } from '../ingest/query/index.ts'
import { ReadingsQuerySchema } from '../ingest/query/index.ts'
import type { StoredReading } from '../ingest/store/types.ts'
import { startTestPlatform, TEST_API_TOKEN, type TestPlatform } from './helpers/platform.ts'

/** The analyst API's limits, errors, CSV, POST form and OpenAPI document, on the embedded store. */

const START = Date.UTC(2025, 5, 1, 0, 0, 0)
const MINUTE = 60_000
const MAX_POINTS = 2000

const DEVICES = ['gia-river-1', 'gia-river-2', 'gia-river-3'].map((id, i) => ({
  id,
  kind: 'river-level' as const,
  name: `Gauge ${i}`,
  regency: 'Gianyar',
  district: i < 2 ? 'Ubud' : 'Sukawati',
  latitude: -8.5,
  longitude: 115.26,
  reportingIntervalMs: MINUTE,
}))

function readings(): StoredReading[] {
  const out: StoredReading[] = []
  for (const d of DEVICES) {
    for (let i = 0; i < 6 * 60; i++) {
      out.push({
        kind: 'river-level',
        device: d.id,
        district: d.district,
        regency: d.regency,
        ts: START + i * MINUTE,
        receivedAt: START + i * MINUTE + 500,
        seq: i + 1,
        fields: { waterLevel: 100 + (i % 17), battery: 3.9 },
      })
    }
  }
  return out
}

describe('analyst API on the embedded store', () => {
  let platform: TestPlatform
  const range = { from: new Date(START).toISOString(), to: new Date(START + 6 * 3_600_000).toISOString() }

  async function call(
    method: 'GET' | 'POST',
    path: string,
    params: Record<string, unknown>,
    token = TEST_API_TOKEN,
  ) {
    const query = method === 'GET' ? `?${new URLSearchParams(params as Record<string, string>)}` : ''
    const res = await fetch(`${platform.httpUrl}${path}${query}`, {
      method,
      headers: {
        authorization: `Bearer ${token}`,
        ...(method === 'POST' ? { 'content-type': 'application/json' } : {}),
      },
      ...(method === 'POST' ? { body: JSON.stringify(params) } : {}),
    })
    return { status: res.status, type: res.headers.get('content-type') ?? '', text: await res.text() }
  }

  beforeAll(async () => {
    platform = await startTestPlatform({ env: { QUERY_MAX_POINTS: String(MAX_POINTS) } })
    for (const d of DEVICES) await platform.registry.register(d, 'test')
    await platform.store.write(readings())
  })
  afterAll(async () => platform?.close())

  it('needs the API token', async () => {
    const res = await call(
      'GET',
      '/api/v1/readings',
      { kind: 'river-level', metrics: 'waterLevel' },
      'wrong-token-0123456789',
    )
    expect(res.status).toBe(401)
    expect(JSON.parse(res.text).error.code).toBe('unauthorized')
  })

  it('answers a GET and the same query as a POST body alike', async () => {
    const get = await call('GET', '/api/v1/readings', {
      kind: 'river-level',
      metrics: 'waterLevel',
      aggregates: 'mean,max',
      window: '1h',
      ...range,
    })
    const post = await call('POST', '/api/v1/readings', {
      kind: 'river-level',
      metrics: ['waterLevel'],
      aggregates: ['mean', 'max'],
      window: '1h',
      ...range,
    })
    expect(get.status).toBe(200)
    expect(post.status).toBe(200)
    const body = JSON.parse(get.text) as QueryResult
    expect(JSON.parse(post.text)).toEqual(body)
    expect(body.series.map((s) => s.key)).toEqual(['gia-river-1', 'gia-river-2', 'gia-river-3'])
    expect(body.series[0]!.time).toHaveLength(6)
    expect(body.columns).toEqual(['waterLevel_mean', 'waterLevel_max'])
    expect(body.series[0]!.values.waterLevel_max).toEqual([116, 116, 116, 116, 116, 116])
  })

  it('streams CSV with a header, local times and one line per row', async () => {
    const res = await call('GET', '/api/v1/readings', {
      kind: 'river-level',
      metrics: 'waterLevel',
      window: '15m',
      groupBy: 'district',
      aggregates: 'count,mean',
      format: 'csv',
      ...range,
    })
    expect(res.status).toBe(200)
    expect(res.type).toMatch(/^text\/csv/)
    const lines = res.text.trimEnd().split('\r\n')
    expect(lines[0]).toBe('district,time,time_ms,waterLevel_count,waterLevel_mean')
    expect(lines).toHaveLength(1 + 2 * 24)
    // 2025-06-01T00:00Z is 08:00 WITA; Ubud has two gauges of 15 readings each per window.
    expect(lines[1]).toMatch(/^Sukawati,2025-06-01T08:00:00\.000\+08:00,1748736000000,15,/)
    expect(lines.find((l) => l.startsWith('Ubud,'))).toMatch(
      /^Ubud,2025-06-01T08:00:00\.000\+08:00,1748736000000,30,/,
    )
  })

  it('refuses answers above QUERY_MAX_POINTS with query_too_large, before and after running', async () => {
    // 3 gauges × 361 one-minute windows × 2 columns: refused from the registry before the store runs it.
    const windowed = await call('GET', '/api/v1/readings', {
      kind: 'river-level',
      metrics: 'waterLevel,battery',
      window: '1m',
      ...range,
    })
    expect(windowed.status).toBe(400)
    expect(JSON.parse(windowed.text).error.code).toBe('query_too_large')
    // Raw readings: 1080 rows × 2 fields, found out by the store's row limit.
    const raw = await call('GET', '/api/v1/readings', {
      kind: 'river-level',
      metrics: 'waterLevel,battery',
      window: 'raw',
      ...range,
    })
    expect(raw.status).toBe(400)
    expect(JSON.parse(raw.text).error.code).toBe('query_too_large')
    // One field fits: 1080 values.
    const fits = await call('GET', '/api/v1/readings', {
      kind: 'river-level',
      metrics: 'waterLevel',
      window: 'raw',
      ...range,
    })
    expect(fits.status).toBe(200)
    expect((JSON.parse(fits.text) as QueryResult).rows).toBe(1080)
  })

  it('gives malformed queries a 400 bad_request naming the problem', async () => {
    const cases: Array<[Record<string, unknown>, RegExp]> = [
      [{ kind: 'river-level' }, /metrics/],
      [{ kind: 'river-level', metrics: 'pm25' }, /river-level has no metric pm25/],
      [{ kind: 'river-level', metrics: 'waterLevel', window: '2h' }, /window/],
      [{ kind: 'river-level', metrics: 'waterLevel', tz: 'Europe/Berlin' }, /tz/],
      [{ kind: 'river-level', metrics: 'waterLevel', from: '-1d', to: '-2d' }, /before/],
      [{ kind: 'river-level', metrics: 'waterLevel', from: 'yesterday' }, /from/],
      [{ kind: 'air-quality', metrics: 'ispu', window: '1h' }, /window=1d/],
      [{ devices: 'gia-river-1,nope-1', metrics: 'waterLevel' }, /nope-1 is not registered/],
      [{ metrics: 'waterLevel' }, /kind/],
      [{ kind: 'river-level', metrics: 'waterLevel', extra: '1' }, /extra/],
    ]
    for (const [params, message] of cases) {
      const res = await call('GET', '/api/v1/readings', params)
      expect(res.status, JSON.stringify(params)).toBe(400)
      const error = JSON.parse(res.text).error
      expect(error.code).toBe('bad_request')
      expect(error.message).toMatch(message)
    }
    const json = await fetch(`${platform.httpUrl}/api/v1/readings`, {
      method: 'POST',
      headers: { authorization: `Bearer ${TEST_API_TOKEN}`, 'content-type': 'application/json' },
      body: '{"kind":',
    })
    expect(json.status).toBe(400)
    expect(((await json.json()) as { error: { code: string } }).error.code).toBe('invalid_json')
  })

  it('reports completeness of a device, and 404 for an unknown one', async () => {
    const ok = await call('GET', '/api/v1/readings/completeness', { device: 'gia-river-2', ...range })
    expect(ok.status).toBe(200)
    expect(JSON.parse(ok.text)).toMatchObject({ expected: 360, arrived: 360, share: 1, gaps: [], late: 0 })
    const missing = await call('GET', '/api/v1/readings/completeness', { device: 'gia-river-9', ...range })
    expect(missing.status).toBe(404)
    expect(JSON.parse(missing.text).error.code).toBe('not_found')
  })

  it('serves an OpenAPI document generated from the route schemas, and a docs page', async () => {
    const res = await fetch(`${platform.httpUrl}/api/v1/openapi.json`)
    expect(res.status).toBe(200)
    const doc = (await res.json()) as {
      openapi: string
      paths: Record<string, Record<string, { parameters?: Array<{ name: string }> }>>
      components: { schemas: Record<string, object> }
    }
    expect(doc.openapi).toBe('3.1.0')
    const names = doc.paths['/api/v1/readings']!.get!.parameters!.map((p) => p.name)
    expect(names.sort()).toEqual(Object.keys(ReadingsQuerySchema.shape).sort())
    expect(Object.keys(doc.paths)).toEqual(['/api/v1/readings', '/api/v1/readings/completeness'])

    // The document describes what the API answers: a real answer validates against it.
    const ajv = new Ajv2020({ strict: false })
    const validate = ajv.compile(doc.components.schemas.QueryResult!)
    const answer = await call('GET', '/api/v1/readings', {
      kind: 'river-level',
      metrics: 'waterLevel',
      ...range,
    })
    expect(validate(JSON.parse(answer.text)), JSON.stringify(validate.errors)).toBe(true)
    const validateQuery = ajv.compile(doc.components.schemas.ReadingsQuery!)
    expect(validateQuery({ kind: 'river-level', metrics: ['waterLevel'], window: '1d' })).toBe(true)
    expect(validateQuery({ kind: 'river-level', metrics: ['waterLevel'], window: '2d' })).toBe(false)

    const page = await fetch(`${platform.httpUrl}/api/v1/docs`)
    expect(page.status).toBe(200)
    expect(page.headers.get('content-type')).toMatch(/^text\/html/)
    const html = await page.text()
    for (const name of names) expect(html).toContain(`<code>${name}</code>`)
    expect(html).toContain('GET /api/v1/readings/completeness')
    expect(html).not.toMatch(/<script|https?:\/\/(?!.*localhost)/)
  })
})
