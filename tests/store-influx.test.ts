import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http'
import type { AddressInfo } from 'node:net'
import { gunzipSync } from 'node:zlib'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { ingestConfigFromEnv } from '../ingest/config.ts'
import { createInfluxStore, InfluxStoreOptionsSchema, v1WritePath } from '../ingest/store/influx.ts'
import {
  type StoredReading,
  StoreUnavailableError,
  StoreWriteError,
  type TimeSeriesStore,
} from '../ingest/store/types.ts'
import { type Influxd, startInfluxd } from './helpers/influxd.ts'

const T0 = Date.UTC(2025, 5, 1, 6, 0, 0)
let devices = 0
function newDevice(prefix = 'gauge'): string {
  return `${prefix}-${++devices}`
}

function river(
  device: string,
  i: number,
  fields: Record<string, number> = { waterLevel: 150.5 + i },
): StoredReading {
  return {
    kind: 'river-level',
    device,
    district: 'Jembrana',
    regency: 'Kabupaten Jembrana',
    ts: T0 + i * 1000,
    receivedAt: T0 + i * 1000 + 250,
    seq: i,
    fields,
  }
}

function everything(store: TimeSeriesStore, device: string, kind: StoredReading['kind'] = 'river-level') {
  return store.queryDevice({ kind, device, from: 0, to: T0 * 2, limit: 100_000 })
}

async function refusal(promise: Promise<unknown>): Promise<StoreWriteError> {
  const error = await promise.then(
    () => undefined,
    (e: unknown) => e,
  )
  expect(error).toBeInstanceOf(StoreWriteError)
  return error as StoreWriteError
}

interface SeenRequest {
  readonly method: string
  readonly url: string
  readonly headers: IncomingMessage['headers']
  readonly body: string
}

/** An HTTP server that records requests and answers as told: for status codes influxd cannot be made to send. */
async function startHttpServer(answer: (req: SeenRequest, res: ServerResponse) => void) {
  const seen: SeenRequest[] = []
  const server: Server = createServer((req, res) => {
    const chunks: Buffer[] = []
    req.on('data', (c: Buffer) => chunks.push(c))
    req.on('end', () => {
      const raw = Buffer.concat(chunks)
      const body = req.headers['content-encoding'] === 'gzip' ? gunzipSync(raw).toString() : raw.toString()
      const request = { method: req.method ?? '', url: req.url ?? '', headers: req.headers, body }
      seen.push(request)
      answer(request, res)
    })
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`
  return {
    url,
    seen,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections()
        server.close(() => resolve())
      }),
  }
}

async function closedPortUrl(): Promise<string> {
  const server = createServer()
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const port = (server.address() as AddressInfo).port
  await new Promise<void>((resolve) => server.close(() => resolve()))
  return `http://127.0.0.1:${port}`
}

describe('InfluxDB store against a real influxd 1.6', () => {
  let server: Influxd
  let store: TimeSeriesStore
  const database = 'city'
  const open: TimeSeriesStore[] = []

  function influxStore(extra: Partial<Parameters<typeof createInfluxStore>[0]> = {}): TimeSeriesStore {
    const s = createInfluxStore({
      url: server.url,
      apiVersion: 'v1',
      database,
      maxRetries: 0,
      ...extra,
    } as Parameters<typeof createInfluxStore>[0])
    open.push(s)
    return s
  }

  beforeAll(async () => {
    server = await startInfluxd()
    store = influxStore()
    await store.init()
  })

  afterAll(async () => {
    for (const s of open) await s.close()
    await server?.stop()
  })

  it('creates its database in init(), and init() may run again', async () => {
    const other = influxStore({ database: 'fresh_db' })
    await other.init()
    await other.init()
    const res = await server.query('SHOW DATABASES')
    expect(res.text).toContain('"fresh_db"')
  })

  it('writes through the v1 /write path into the configured retention policy', async () => {
    expect(
      (await server.query(`CREATE RETENTION POLICY "forever" ON "${database}" DURATION INF REPLICATION 1`))
        .status,
    ).toBe(200)
    const inPolicy = influxStore({ retentionPolicy: 'forever' })
    await inPolicy.init()
    const r = river(newDevice(), 1, { waterLevel: 150.5 })
    await inPolicy.write([r])

    const where = `WHERE "device" = '${r.device}'`
    const policy = await server.query(
      `SELECT "waterLevel" FROM "${database}"."forever"."river-level" ${where}`,
    )
    const autogen = await server.query(
      `SELECT "waterLevel" FROM "${database}"."autogen"."river-level" ${where}`,
    )
    expect(policy.text).toContain('150.5')
    expect(autogen.text).not.toContain('150.5')
    expect(await everything(inPolicy, r.device)).toEqual([r])
    expect(await everything(store, r.device)).toEqual([])
  })

  it('rewrites only the client write path, keeping precision and consistency', () => {
    expect(v1WritePath('/api/v2/write?org=&bucket=city&precision=ms', 'city')).toBe(
      '/write?db=city&precision=ms',
    )
    expect(v1WritePath('/api/v2/write?org=o&bucket=b&precision=ms&consistency=all', 'my db', 'rp 1')).toBe(
      '/write?db=my+db&rp=rp+1&precision=ms&consistency=all',
    )
    expect(v1WritePath('/query?db=city&q=SELECT', 'city')).toBe('/query?db=city&q=SELECT')
    expect(v1WritePath('/api/v2/writes', 'city')).toBe('/api/v2/writes')
  })

  it('fails init() with the reason when the retention policy does not exist', async () => {
    await expect(influxStore({ retentionPolicy: 'nope' }).init()).rejects.toThrow(
      /retention policy nope does not exist/,
    )
  })

  it('writes contract integer metrics, seq and receivedAt as integer fields and the rest as floats', async () => {
    const device = newDevice('market')
    await store.write([
      {
        kind: 'crowd-counter',
        device,
        district: 'Bangli',
        regency: 'Kabupaten Bangli',
        ts: T0,
        receivedAt: T0 + 10,
        seq: 1,
        fields: { peopleIn: 4, occupancy: 40, battery: 77 },
      },
    ])
    const res = await server.query('SHOW FIELD KEYS FROM "crowd-counter"', database)
    const series = (res.json as { results: { series: { values: [string, string][] }[] }[] }).results[0]!
      .series[0]!
    expect(Object.fromEntries(series.values)).toEqual({
      peopleIn: 'integer',
      occupancy: 'integer',
      battery: 'float',
      seq: 'integer',
      receivedAt: 'integer',
    })
    const tags = await server.query('SHOW TAG KEYS FROM "crowd-counter"', database)
    for (const key of ['device', 'district', 'regency', 'kind']) expect(tags.text).toContain(`"${key}"`)
  })

  it('refuses a field type conflict with 400, not retryable, while a concurrent valid batch is stored', async () => {
    // Field types are fixed per shard: this old week holds nothing else, so the seed sets waterLevel's type.
    const old = Date.UTC(2001, 0, 3)
    const device = newDevice('conflict')
    const seeded = await server.write(database, `river-level,device=${device} waterLevel=5i ${old}`)
    expect(seeded.status).toBe(204)

    const conflicting = { ...river(device, 0), ts: old + 1000, receivedAt: old + 2000 }
    const valid = river(newDevice('valid'), 3)
    const [refused, stored] = await Promise.allSettled([store.write([conflicting]), store.write([valid])])

    expect(stored.status).toBe('fulfilled')
    expect(refused.status).toBe('rejected')
    const error = (refused as PromiseRejectedResult).reason
    expect(error).toBeInstanceOf(StoreWriteError)
    expect(error).toMatchObject({ retryable: false, statusCode: 400 })
    expect((error as Error).message).toMatch(/field type conflict/)
    expect(await everything(store, valid.device)).toEqual([valid])
    // The refusal did not poison the store: the next write goes through.
    const after = river(newDevice('after'), 4)
    await store.write([after])
    expect(await everything(store, after.device)).toEqual([after])
  })

  it('splits a large write into batches, gzips them and resolves once all are confirmed', async () => {
    const big = influxStore({ batchSize: 5000, gzipThreshold: 1000 })
    const device = newDevice('backlog')
    const readings = Array.from({ length: 12_345 }, (_, i) => river(device, i, { waterLevel: i / 8 }))
    await big.write(readings)
    const res = await server.query(
      `SELECT count("seq") FROM "river-level" WHERE "device" = '${device}'`,
      database,
    )
    expect(res.text).toContain('12345')
  })

  it('rejects with a retryable StoreWriteError without status when the connection is refused', async () => {
    const url = await closedPortUrl()
    const dead = createInfluxStore({ url, apiVersion: 'v1', database, maxRetries: 2, minRetryDelayMs: 20 })
    open.push(dead)
    const error = await refusal(dead.write([river(newDevice(), 1)]))
    expect(error.retryable).toBe(true)
    expect(error.statusCode).toBeUndefined()
    expect(error.message).toMatch(/ECONNREFUSED/)
    await expect(dead.init()).rejects.toThrow(/ping failed/)
    // Typed, so that the platform starts and spools instead of failing (an InfluxDB not up yet).
    await expect(dead.init()).rejects.toBeInstanceOf(StoreUnavailableError)
  })

  it('rejects with a retryable timeout when influxd does not answer, and works again once it does', async () => {
    const slow = influxStore({ timeoutMs: 300 })
    const r = river(newDevice('frozen'), 1)
    await server.pause()
    try {
      const error = await refusal(slow.write([r]))
      expect(error.retryable).toBe(true)
      expect(error.statusCode).toBeUndefined()
      expect(error.message).toMatch(/did not answer within 300 ms/)
    } finally {
      await server.resume()
    }
    await slow.write([r])
    expect(await everything(slow, r.device)).toEqual([r])
  })

  it('keeps retrying through an outage and resolves once influxd is back', async () => {
    const patient = influxStore({ maxRetries: 20, minRetryDelayMs: 100, maxRetryDelayMs: 300 })
    const r = river(newDevice('outage'), 1)
    await server.halt()
    let settled = false
    const pending = patient.write([r]).finally(() => {
      settled = true
    })
    await new Promise((resolve) => setTimeout(resolve, 700))
    expect(settled).toBe(false)
    await server.start()
    await pending
    expect(await everything(patient, r.device)).toEqual([r])
  })

  it('keeps data written before influxd was killed', async () => {
    const r = river(newDevice('crash'), 1)
    await store.write([r])
    server.kill()
    await server.start()
    expect(await everything(store, r.device)).toEqual([r])
  })

  it('names server and database in its description, never credentials', () => {
    const s = createInfluxStore({
      url: 'http://admin:hunter2@127.0.0.1:8086/',
      apiVersion: 'v1',
      database: 'city',
      username: 'writer',
      password: 's3cret',
    })
    expect(s.description).toBe('InfluxDB 1.x at http://127.0.0.1:8086, database city')
    const v2 = createInfluxStore({
      url: 'https://influx.example',
      apiVersion: 'v2',
      token: 'tok-123',
      org: 'bali',
      bucket: 'sensors',
    })
    expect(v2.description).toBe('InfluxDB 2.x at https://influx.example, org bali, bucket sensors')
    expect(() =>
      InfluxStoreOptionsSchema.parse({ url: 'http://x', apiVersion: 'v1', database: 'c', password: 'p' }),
    ).toThrow()
    expect(() =>
      InfluxStoreOptionsSchema.parse({ url: 'ftp://x', apiVersion: 'v1', database: 'c' }),
    ).toThrow()
    expect(
      InfluxStoreOptionsSchema.parse({
        url: 'http://x',
        apiVersion: 'v2',
        token: 't',
        org: 'o',
        bucket: 'b',
      }),
    ).toMatchObject({
      timeoutMs: 10_000,
      maxRetries: 3,
      gzipThreshold: 1000,
    })
  })
})

describe('InfluxDB store with authentication (real influxd 1.6)', () => {
  let server: Influxd
  const auth = { username: 'admin', password: 'p@ss word\'"' }

  beforeAll(async () => {
    server = await startInfluxd({ auth })
  })

  afterAll(async () => {
    await server?.stop()
  })

  it('sends the configured credentials on writes and queries', async () => {
    const store = createInfluxStore({
      url: server.url,
      apiVersion: 'v1',
      database: 'secure',
      ...auth,
      maxRetries: 0,
    })
    try {
      await store.init()
      const r = river(newDevice('auth'), 1)
      await store.write([r])
      expect(await everything(store, r.device)).toEqual([r])
    } finally {
      await store.close()
    }
  })

  it('reports refused credentials as retryable 401 errors, not as refused lines', async () => {
    const wrong = createInfluxStore({
      url: server.url,
      apiVersion: 'v1',
      database: 'secure',
      username: 'admin',
      password: 'wrong',
      maxRetries: 0,
    })
    const anonymous = createInfluxStore({
      url: server.url,
      apiVersion: 'v1',
      database: 'secure',
      maxRetries: 0,
    })
    try {
      await expect(wrong.init()).rejects.toThrow(/401/)
      for (const s of [wrong, anonymous]) {
        const error = await refusal(s.write([river(newDevice(), 1)]))
        expect(error).toMatchObject({ retryable: true, statusCode: 401 })
      }
    } finally {
      await wrong.close()
      await anonymous.close()
    }
  })
})

describe('InfluxDB store over HTTP answers influxd cannot be made to give', () => {
  it('gzips bodies above the threshold, and never with content encoding identity', async () => {
    const http = await startHttpServer((_req, res) => {
      res.writeHead(204).end()
    })
    const readings = Array.from({ length: 50 }, (_, i) => river('gz-1', i))
    const sent: Record<string, { encoding: string | undefined; body: string }> = {}
    try {
      for (const contentEncoding of ['gzip', 'identity'] as const) {
        const store = createInfluxStore({
          url: http.url,
          apiVersion: 'v1',
          database: 'city',
          contentEncoding,
        })
        try {
          await store.write(readings)
        } finally {
          await store.close()
        }
        const write = http.seen.at(-1)!
        sent[contentEncoding] = { encoding: write.headers['content-encoding'] as string, body: write.body }
      }
    } finally {
      await http.close()
    }
    expect(sent.gzip?.body.length).toBeGreaterThan(1000)
    expect(sent.gzip?.encoding).toBe('gzip')
    expect(sent.identity?.encoding).toBeUndefined()
    expect(sent.identity?.body).toBe(sent.gzip?.body)
  })

  it('compresses by default only for an InfluxDB on another host; an explicit setting always wins', () => {
    const encoding = (url: string, setting?: string) =>
      ingestConfigFromEnv({ INFLUX_URL: url, ...(setting && { INFLUX_CONTENT_ENCODING: setting }) }).influx
        ?.contentEncoding
    const byDefault = {
      'http://127.0.0.1:8086': 'identity',
      'http://127.8.0.1:8086': 'identity',
      'http://localhost:8086': 'identity',
      'http://[::1]:8086': 'identity',
      'http://influxdb:8086': 'gzip',
      'https://10.0.0.7:8086': 'gzip',
      'http://128.0.0.1': 'gzip',
      'http://127.example.org': 'gzip',
    }
    for (const [url, expected] of Object.entries(byDefault)) expect(encoding(url), url).toBe(expected)
    expect(encoding('http://127.0.0.1:8086', 'gzip')).toBe('gzip')
    expect(encoding('http://influxdb:8086', 'identity')).toBe('identity')
    expect(encoding('http://influxdb:8086', 'auto')).toBe('gzip')
  })

  it('refuses blank names and tokens, naming the variable', () => {
    const url = 'http://127.0.0.1:8086'
    for (const env of [
      { INFLUX_URL: url, INFLUX_DATABASE: '   ' },
      { INFLUX_URL: url, INFLUX_RETENTION_POLICY: ' ' },
      { INFLUX_URL: url, INFLUX_API: 'v2', INFLUX_TOKEN: ' ', INFLUX_ORG: 'kota', INFLUX_BUCKET: 'sensors' },
      {
        INFLUX_URL: url,
        INFLUX_API: 'v2',
        INFLUX_TOKEN: 'tok-123',
        INFLUX_ORG: '  ',
        INFLUX_BUCKET: 'sensors',
      },
      { DATA_DIR: '  ' },
    ]) {
      const variable = Object.entries(env).find(([, v]) => v.trim() === '')![0]
      expect(() => ingestConfigFromEnv(env), variable).toThrow(
        new RegExp(`${variable}: expected a value that is not blank`),
      )
    }
  })

  it('uses the 2.x API with a token: /api/v2/write with org and bucket, /query with db=bucket', async () => {
    const http = await startHttpServer((req, res) => {
      if (req.url.startsWith('/query')) {
        res.writeHead(200, { 'content-type': 'application/json' })
        res.end(JSON.stringify({ results: [{ statement_id: 0 }] }))
      } else {
        res.writeHead(204).end()
      }
    })
    const store = createInfluxStore({
      url: http.url,
      apiVersion: 'v2',
      token: 'tok-123',
      org: 'bali',
      bucket: 'sensors',
    })
    try {
      await store.init()
      const r = river("d'1", 1)
      await store.write([r])
      expect(await everything(store, r.device)).toEqual([])

      const [ping, write, query] = http.seen
      expect(ping).toMatchObject({ method: 'GET', url: '/ping' })
      expect(write?.method).toBe('POST')
      expect(write?.url).toBe('/api/v2/write?org=bali&bucket=sensors&precision=ms')
      expect(write?.headers.authorization).toBe('Token tok-123')
      expect(write?.body).toBe(
        `river-level,device=d'1,district=Jembrana,kind=river-level,regency=Kabupaten\\ Jembrana ` +
          `waterLevel=151.5,seq=1i,receivedAt=${r.receivedAt}i ${r.ts}`,
      )
      const params = new URL(query!.url, http.url).searchParams
      expect(query?.headers.authorization).toBe('Token tok-123')
      expect(params.get('db')).toBe('sensors')
      expect(params.get('epoch')).toBe('ms')
      expect(params.get('q')).toBe(
        `SELECT * FROM "river-level" WHERE "device" = 'd\\'1' AND time >= 0ms AND time <= ${T0 * 2}ms ORDER BY time ASC LIMIT 100000`,
      )
    } finally {
      await store.close()
      await http.close()
    }
  })

  it.each([
    { status: 400, retryable: false, attempts: 1 },
    { status: 413, retryable: false, attempts: 1 },
    { status: 404, retryable: true, attempts: 1 },
    { status: 429, retryable: true, attempts: 3 },
    { status: 500, retryable: true, attempts: 3 },
    { status: 503, retryable: true, attempts: 3 },
  ])(
    'maps HTTP $status to retryable=$retryable after $attempts attempt(s)',
    async ({ status, retryable, attempts }) => {
      const http = await startHttpServer((_req, res) => {
        res.writeHead(status, { 'content-type': 'application/json' })
        res.end(JSON.stringify({ error: `status ${status}` }))
      })
      const store = createInfluxStore({
        url: http.url,
        apiVersion: 'v1',
        database: 'city',
        maxRetries: 2,
        minRetryDelayMs: 10,
        maxRetryDelayMs: 20,
      })
      try {
        const error = await refusal(store.write([river(newDevice(), 1)]))
        expect(error).toMatchObject({ retryable, statusCode: status })
        expect(error.message).toContain(`status ${status}`)
        expect(http.seen).toHaveLength(attempts)
        expect(http.seen.every((r) => r.url === '/write?db=city&precision=ms')).toBe(true)
      } finally {
        await store.close()
        await http.close()
      }
    },
  )

  it('does not let one call’s failed batch affect another call’s lines', async () => {
    // Lines of device "bad" are refused; any other batch is accepted.
    const http = await startHttpServer((req, res) => {
      if (req.body.includes('device=bad'))
        res.writeHead(400, { 'content-type': 'application/json' }).end('{"error":"no"}')
      else res.writeHead(204).end()
    })
    const store = createInfluxStore({
      url: http.url,
      apiVersion: 'v1',
      database: 'city',
      maxRetries: 2,
      minRetryDelayMs: 10,
    })
    try {
      const results = await Promise.allSettled([
        store.write([river('bad', 1)]),
        store.write([river('good', 1)]),
        store.write([river('good', 2), river('good', 3)]),
      ])
      expect(results.map((r) => r.status)).toEqual(['rejected', 'fulfilled', 'fulfilled'])
      expect(http.seen).toHaveLength(3)
    } finally {
      await store.close()
      await http.close()
    }
  })

  it('settles a multi-batch write only on the answers to all its batches, earlier ones included', async () => {
    // The first batch is answered last: a store that trusted the client's flush() (which covers only
    // the final batch) would resolve before it.
    let answered = 0
    const http = await startHttpServer((req, res) => {
      const refuse = req.body.includes('device=slow-bad')
      setTimeout(
        () => {
          answered++
          if (refuse) res.writeHead(400, { 'content-type': 'application/json' }).end('{"error":"refused"}')
          else res.writeHead(204).end()
        },
        req.body.includes('device=slow') ? 150 : 0,
      )
    })
    const store = createInfluxStore({
      url: http.url,
      apiVersion: 'v1',
      database: 'city',
      batchSize: 2,
      maxRetries: 0,
    })
    try {
      const ok = [
        river('slow-ok', 1),
        river('slow-ok', 2),
        river('fast', 3),
        river('fast', 4),
        river('fast', 5),
      ]
      await store.write(ok)
      expect(http.seen).toHaveLength(3)
      expect(answered).toBe(3)

      const bad = [
        river('slow-bad', 1),
        river('slow-bad', 2),
        river('fast', 6),
        river('fast', 7),
        river('fast', 8),
      ]
      const error = await refusal(store.write(bad))
      expect(error).toMatchObject({ retryable: false, statusCode: 400 })
    } finally {
      await store.close()
      await http.close()
    }
  })

  it('retries every failed batch of a write and drops no line on the way', { timeout: 15_000 }, async () => {
    // Each batch fails once, so all of them sit in the client's retry buffer at the same time.
    const failedOnce = new Set<string>()
    const stored: string[] = []
    const http = await startHttpServer((req, res) => {
      if (!failedOnce.has(req.body)) {
        failedOnce.add(req.body)
        res.writeHead(503).end()
        return
      }
      stored.push(...req.body.split('\n'))
      res.writeHead(204).end()
    })
    const store = createInfluxStore({
      url: http.url,
      apiVersion: 'v1',
      database: 'city',
      batchSize: 2,
      maxRetries: 3,
      minRetryDelayMs: 20,
      maxRetryDelayMs: 50,
    })
    try {
      const readings = Array.from({ length: 8 }, (_, i) => river('retried', i))
      await store.write(readings)
      expect(failedOnce.size).toBe(4)
      expect(stored.map((line) => line.split(' ').at(-1)).sort()).toEqual(
        readings.map((r) => String(r.ts)).sort(),
      )
    } finally {
      await store.close()
      await http.close()
    }
  })

  it('rejects writes still waiting for a retry when the store is closed', async () => {
    const http = await startHttpServer((_req, res) => res.writeHead(503).end())
    const store = createInfluxStore({
      url: http.url,
      apiVersion: 'v1',
      database: 'city',
      maxRetries: 5,
      minRetryDelayMs: 10_000,
    })
    try {
      const pending = refusal(store.write([river(newDevice(), 1)]))
      await new Promise((resolve) => setTimeout(resolve, 200))
      await store.close()
      expect((await pending).retryable).toBe(true)
      expect(http.seen).toHaveLength(1)
    } finally {
      await http.close()
    }
  })
})
