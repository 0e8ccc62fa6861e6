import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest'
import type { DeviceKind } from '../firmware-contracts/index.ts'
import type { Completeness, QueryResult } from '../ingest/query/index.ts'
import type { NewDevice } from '../ingest/registry.ts'
import type { StoredReading } from '../ingest/store/types.ts'
import { type Influxd, startInfluxd } from './helpers/influxd.ts'
import { startTestPlatform, TEST_API_TOKEN, type TestPlatform } from './helpers/platform.ts'

/**
 * Edge cases of the analyst API an analyst runs into, on InfluxDB 1.6 and on the embedded store: window
 * boundaries in the Indonesian zones, ties for `last`, nearest-rank `p95` on few values, the answer size
 * limit at exactly QUERY_MAX_POINTS, CSV opened in a spreadsheet, and completeness of devices registered
 * mid-range, whose interval changed, whose seq restarted or whose readings came twice. Expected answers
 * are computed here from the data, not taken from either store.
 */

const MINUTE = 60_000
const HOUR = 3_600_000
const DAY = 86_400_000
/** 2025-03-11 00:00 WITA. */
const T0 = Date.UTC(2025, 2, 10, 16, 0, 0)
const MAX_POINTS = 400
const QUERY_TIMEOUT_MS = 3000
const OFFSETS: Record<string, number> = {
  'Asia/Makassar': 8 * HOUR,
  'Asia/Jakarta': 7 * HOUR,
  'Asia/Pontianak': 7 * HOUR,
  'Asia/Jayapura': 9 * HOUR,
  UTC: 0,
}

const FORMULA_DISTRICT = '=HYPERLINK("http://evil.example","klik")'
const MINUS_DISTRICT = '-2+3'
const AT_DISTRICT = '@SUM(1+1)'
const UTF8_DISTRICT = 'Pasar Kreneng — pintu utama'

function device(id: string, kind: DeviceKind, district: string, intervalMs = MINUTE): NewDevice {
  return {
    id,
    kind,
    name: `Edge ${id}`,
    regency: 'Kota Denpasar',
    district,
    latitude: -8.65,
    longitude: 115.22,
    reportingIntervalMs: intervalMs,
  }
}

const DEVICES: NewDevice[] = [
  device('e-aq-1', 'air-quality', 'Kreneng'),
  device('e-aq-2', 'air-quality', 'Kreneng'),
  device('e-aq-3', 'air-quality', FORMULA_DISTRICT),
  device('e-aq-4', 'air-quality', MINUS_DISTRICT),
  device('e-aq-5', 'air-quality', AT_DISTRICT),
  device('e-aq-6', 'air-quality', UTF8_DISTRICT),
  // Another kind in the same district.
  device('e-river-1', 'river-level', 'Kreneng'),
  ...[1, 2, 19, 20, 21].map((n) => device(`e-p-${n}`, 'river-level', 'P95')),
  device('e-hourly', 'river-level', 'Hourly', HOUR),
  device('e-seq', 'river-level', 'Completeness'),
]

const districtOf = new Map(DEVICES.map((d) => [d.id, d.district]))
const kindOf = new Map(DEVICES.map((d) => [d.id, d.kind]))

function reading(id: string, ts: number, seq: number, fields: Record<string, number>): StoredReading {
  return {
    kind: kindOf.get(id) ?? 'river-level',
    device: id,
    district: districtOf.get(id) ?? 'Completeness',
    regency: 'Kota Denpasar',
    ts,
    receivedAt: ts + 1200,
    seq,
    fields,
  }
}

function generate(): StoredReading[] {
  const out: StoredReading[] = []
  const aq = (id: string, ts: number, seq: number, pm25: number, temperature = 27) =>
    out.push(reading(id, ts, seq, { pm25, temperature }))
  // The very first and very last millisecond of a WITA day, and the first of the next one; e-aq-1 and
  // e-aq-2 tie at the last millisecond (`last` of the district takes the greater value).
  aq('e-aq-1', T0, 1, 10, -3.5)
  aq('e-aq-1', T0 + DAY - 1, 2, 30)
  aq('e-aq-1', T0 + DAY, 3, 50)
  aq('e-aq-2', T0, 1, 20)
  aq('e-aq-2', T0 + DAY - 1, 2, 40)
  aq('e-aq-2', T0 + HOUR - 1, 3, 5)
  aq('e-aq-3', T0 + 3 * HOUR, 1, 12, -3.5)
  aq('e-aq-4', T0 + 3 * HOUR, 1, 13, -0.25)
  aq('e-aq-5', T0 + 3 * HOUR, 1, 14, 26)
  aq('e-aq-6', T0 + 3 * HOUR, 1, 15, 28.5)
  out.push(reading('e-river-1', T0 + 2 * HOUR, 1, { waterLevel: 120.5 }))
  // p95 on 1, 2, 19, 20 and 21 distinct values in one hour, in shuffled order.
  for (const n of [1, 2, 19, 20, 21]) {
    for (let k = 0; k < n; k++) {
      const value = (((k * 11) % n) + 1) * 1.5
      out.push(reading(`e-p-${n}`, T0 + 2 * HOUR + k * MINUTE, k + 1, { waterLevel: value }))
    }
  }
  // One reading in each of 100 hours, not at the hour.
  for (let h = 0; h < 100; h++)
    out.push(reading('e-hourly', T0 + h * HOUR + 17 * MINUTE, h + 1, { waterLevel: h }))
  // A minute's device: one reading lost (i = 10), a firmware reset to seq 0 at i = 30.
  for (let i = 0; i < 60; i++) {
    if (i === 10) continue
    out.push(reading('e-seq', T0 + i * MINUTE, i < 30 ? 1000 + i : i - 30, { waterLevel: 50 }))
  }
  return out
}

const DATA = generate()

type Aggregate = 'mean' | 'min' | 'max' | 'sum' | 'count' | 'last' | 'p95'
interface Query {
  kind?: string
  devices?: string
  district?: string
  metrics: string
  window: string
  aggregates: string
  groupBy?: 'device' | 'district'
  tz?: string
  from: number
  to: number
}

/** The answer the API should give, from the data: windows at local multiples, empty ones left out. */
function reference(q: Query) {
  const width = { '1m': MINUTE, '5m': 5 * MINUTE, '15m': 15 * MINUTE, '1h': HOUR, '1d': DAY }[q.window]!
  const offset = OFFSETS[q.tz ?? 'Asia/Makassar']!
  const metrics = q.metrics.split(',')
  const aggregates = q.aggregates.split(',') as Aggregate[]
  const devices = q.devices?.split(',')
  const groups = new Map<string, Map<number, StoredReading[]>>()
  for (const r of DATA) {
    if (q.kind !== undefined && r.kind !== q.kind) continue
    if (devices !== undefined && !devices.includes(r.device)) continue
    if (q.district !== undefined && r.district !== q.district) continue
    if (r.ts < q.from || r.ts >= q.to) continue
    const key = q.groupBy === 'district' ? r.district : r.device
    const start = Math.floor((r.ts + offset) / width) * width - offset
    const windows = groups.get(key) ?? new Map<number, StoredReading[]>()
    groups.set(key, windows)
    windows.set(start, [...(windows.get(start) ?? []), r])
  }
  const series = [...groups.keys()].sort().map((key) => {
    const windows = [...groups.get(key)!.entries()].sort((a, b) => a[0] - b[0])
    const values: Record<string, number[]> = {}
    for (const m of metrics) {
      for (const a of aggregates) {
        values[`${m}_${a}`] = windows.map(([, rs]) => {
          const points = rs.filter((r) => r.fields[m] !== undefined)
          const xs = points.map((r) => r.fields[m]!)
          const sorted = [...xs].sort((x, y) => x - y)
          switch (a) {
            case 'mean':
              return xs.reduce((s, x) => s + x, 0) / xs.length
            case 'min':
              return sorted[0]!
            case 'max':
              return sorted.at(-1)!
            case 'sum':
              return xs.reduce((s, x) => s + x, 0)
            case 'count':
              return xs.length
            case 'p95':
              return sorted[Math.max(1, Math.floor(xs.length * 0.95 + 0.5)) - 1]!
            case 'last': {
              const latest = Math.max(...points.map((r) => r.ts))
              return Math.max(...points.filter((r) => r.ts === latest).map((r) => r.fields[m]!))
            }
          }
          throw new Error(`no reference for ${a}`)
        })
      }
    }
    return { key, time: windows.map(([t]) => t), values }
  })
  return { rows: series.reduce((n, s) => n + s.time.length, 0), series }
}

function params(q: Query): Record<string, string> {
  const out: Record<string, string> = {}
  for (const [k, v] of Object.entries(q)) if (v !== undefined) out[k] = String(v)
  return out
}

async function get(platform: TestPlatform, path: string, query: Record<string, string>) {
  const res = await fetch(`${platform.httpUrl}${path}?${new URLSearchParams(query)}`, {
    headers: { authorization: `Bearer ${TEST_API_TOKEN}` },
  })
  return {
    status: res.status,
    type: res.headers.get('content-type') ?? '',
    bytes: Buffer.from(await res.arrayBuffer()),
  }
}

async function getJson<T>(platform: TestPlatform, path: string, query: Record<string, string>) {
  const res = await get(platform, path, query)
  return { status: res.status, body: JSON.parse(res.bytes.toString('utf8')) as T }
}

function expectClose(actual: unknown, expected: unknown, path: string): void {
  if (typeof expected === 'number') {
    expect(typeof actual, path).toBe('number')
    expect(Math.abs((actual as number) - expected), `${path}: ${actual} != ${expected}`).toBeLessThan(1e-9)
    return
  }
  if (Array.isArray(expected)) {
    expect(Array.isArray(actual), path).toBe(true)
    expect((actual as unknown[]).length, `${path} length`).toBe(expected.length)
    for (const [i, e] of expected.entries()) expectClose((actual as unknown[])[i], e, `${path}[${i}]`)
    return
  }
  if (expected !== null && typeof expected === 'object') {
    for (const [k, v] of Object.entries(expected))
      expectClose((actual as Record<string, unknown>)[k], v, `${path}.${k}`)
    return
  }
  expect(actual, path).toBe(expected)
}

const AGGREGATES = 'mean,min,max,sum,count,last,p95'

const QUERIES: Array<[string, Query]> = [
  [
    'a WITA day from 16:00 UTC, readings at its first and last millisecond, to exclusive',
    {
      kind: 'air-quality',
      metrics: 'pm25',
      window: '1d',
      aggregates: AGGREGATES,
      groupBy: 'district',
      from: T0,
      to: T0 + DAY,
    },
  ],
  [
    'the first millisecond of the next day when to includes it',
    {
      kind: 'air-quality',
      metrics: 'pm25',
      window: '1d',
      aggregates: AGGREGATES,
      groupBy: 'district',
      from: T0,
      to: T0 + DAY + 1,
    },
  ],
  [
    'per device',
    {
      kind: 'air-quality',
      metrics: 'pm25,temperature',
      window: '1d',
      aggregates: AGGREGATES,
      from: T0 - DAY,
      to: T0 + 2 * DAY,
    },
  ],
  ...['Asia/Jakarta', 'Asia/Pontianak', 'Asia/Jayapura', 'UTC'].map((tz): [string, Query] => [
    `daily windows in ${tz}`,
    {
      devices: 'e-aq-1,e-aq-2',
      metrics: 'pm25',
      window: '1d',
      aggregates: 'count,last,sum',
      groupBy: 'district',
      tz,
      from: T0 - DAY,
      to: T0 + 2 * DAY,
    },
  ]),
  [
    'from and to not aligned to windows',
    {
      kind: 'air-quality',
      metrics: 'pm25',
      window: '1d',
      aggregates: 'count,min,max',
      from: T0 + 5 * HOUR,
      to: T0 + DAY + 3 * HOUR,
    },
  ],
  [
    'hourly windows, the reading at the last millisecond of the first hour',
    { devices: 'e-aq-2', metrics: 'pm25', window: '1h', aggregates: 'count,last', from: T0, to: T0 + DAY },
  ],
  [
    'p95 nearest rank with 1, 2, 19, 20 and 21 values',
    {
      kind: 'river-level',
      district: 'P95',
      metrics: 'waterLevel',
      window: '1h',
      aggregates: 'p95,count,max,last',
      from: T0,
      to: T0 + 6 * HOUR,
    },
  ],
  [
    'a district with devices of another kind',
    {
      kind: 'river-level',
      district: 'Kreneng',
      metrics: 'waterLevel',
      window: '1d',
      aggregates: 'count,mean',
      groupBy: 'district',
      from: T0,
      to: T0 + DAY,
    },
  ],
  [
    'count and sum leave out windows without readings',
    {
      devices: 'e-hourly',
      metrics: 'waterLevel',
      window: '15m',
      aggregates: 'count,sum',
      from: T0,
      to: T0 + 3 * HOUR,
    },
  ],
]

describe('analyst API edge cases, on InfluxDB and on the embedded store', () => {
  let influx: Influxd
  let onInflux: TestPlatform
  let embedded: TestPlatform
  const platforms = () => [onInflux, embedded]

  /** Registers a device as if at `at` (its registration and audit times come from the clock). */
  async function registerAt(platform: TestPlatform, d: NewDevice, at: number) {
    vi.useFakeTimers({ toFake: ['Date'], now: at })
    try {
      await platform.registry.register(d, 'test')
    } finally {
      vi.useRealTimers()
    }
  }
  async function updateAt(
    platform: TestPlatform,
    id: string,
    patch: { reportingIntervalMs: number },
    at: number,
  ) {
    vi.useFakeTimers({ toFake: ['Date'], now: at })
    try {
      await platform.registry.update(id, patch, 'test')
    } finally {
      vi.useRealTimers()
    }
  }

  beforeAll(async () => {
    influx = await startInfluxd()
    const env = { QUERY_MAX_POINTS: String(MAX_POINTS), QUERY_TIMEOUT_MS: String(QUERY_TIMEOUT_MS) }
    ;[onInflux, embedded] = await Promise.all([
      startTestPlatform({ influx, env }),
      startTestPlatform({ env }),
    ])
    for (const platform of platforms()) {
      for (const d of DEVICES) await registerAt(platform, d, T0 - 7 * DAY)
      await platform.store.write(DATA)
    }
  })

  afterAll(async () => {
    await Promise.all([onInflux?.close(), embedded?.close()])
    await influx?.stop()
  })

  for (const [name, query] of QUERIES) {
    it(`${name}: both stores give the answer computed from the data`, async () => {
      const expected = reference(query)
      expect(expected.rows).toBeGreaterThan(0)
      for (const platform of platforms()) {
        const { status, body } = await getJson<QueryResult>(platform, '/api/v1/readings', params(query))
        expect(status, `${platform.store.kind}: ${JSON.stringify(body).slice(0, 300)}`).toBe(200)
        expectClose(body.rows, expected.rows, `${platform.store.kind} rows`)
        expectClose(body.series, expected.series, `${platform.store.kind} series`)
      }
    })
  }

  it('answers a query of exactly QUERY_MAX_POINTS values, and refuses one more window before running', async () => {
    // 100 windows × 4 aggregates: exactly MAX_POINTS values.
    const base = {
      devices: 'e-hourly',
      metrics: 'waterLevel',
      window: '1h',
      aggregates: 'mean,min,max,count',
    }
    for (const platform of platforms()) {
      // 100 hours, aligned and not: 100 windows.
      for (const [from, to] of [
        [T0, T0 + 100 * HOUR],
        [T0 + 15 * MINUTE, T0 + 100 * HOUR],
        [T0 + 10 * MINUTE, T0 + 99 * HOUR + 20 * MINUTE],
      ] as const) {
        const { status, body } = await getJson<QueryResult>(platform, '/api/v1/readings', {
          ...base,
          from: String(from),
          to: String(to),
        })
        expect(status, `${platform.store.kind} ${from}..${to}: ${JSON.stringify(body).slice(0, 300)}`).toBe(
          200,
        )
        expect(body.rows).toBe(100)
      }
    }
    // One millisecond more reaches a 101st window: refused from the registry, even with the store stopped.
    await influx.pause()
    try {
      const { status, body } = await getJson<{ error: { code: string } }>(onInflux, '/api/v1/readings', {
        ...base,
        from: String(T0),
        to: String(T0 + 100 * HOUR + 1),
      })
      expect(status).toBe(400)
      expect(body.error.code).toBe('query_too_large')
      // Very long ranges too.
      const long = await getJson<{ error: { code: string } }>(onInflux, '/api/v1/readings', {
        ...base,
        from: '1971-01-01',
        to: '2200-01-01',
      })
      expect(long.status).toBe(400)
      expect(long.body.error.code).toBe('query_too_large')
    } finally {
      await influx.resume()
    }
  })

  it('an aggregate or metric named twice gives its column once, in JSON and CSV', async () => {
    const query = {
      devices: 'e-aq-1',
      metrics: 'pm25,pm25',
      window: '1d',
      aggregates: 'max,count,max',
      from: String(T0),
      to: String(T0 + 2 * DAY),
    }
    for (const platform of platforms()) {
      const { status, body } = await getJson<QueryResult>(platform, '/api/v1/readings', query)
      expect(status).toBe(200)
      expect(body.columns).toEqual(['pm25_max', 'pm25_count'])
      expect(body.aggregates).toEqual(['max', 'count'])
      expect(body.series[0]!.values).toEqual({ pm25_max: [30, 50], pm25_count: [2, 1] })
      const csv = await get(platform, '/api/v1/readings', { ...query, format: 'csv' })
      const lines = csv.bytes
        .toString('utf8')
        .replace(/^\uFEFF/, '')
        .trimEnd()
        .split('\r\n')
      expect(lines).toEqual([
        'device,time,time_ms,pm25_max,pm25_count',
        `e-aq-1,2025-03-11T00:00:00.000+08:00,${T0},30,2`,
        `e-aq-1,2025-03-12T00:00:00.000+08:00,${T0 + DAY},50,1`,
      ])
    }
  })

  it('the daily ISPU is limited by the columns it answers, not the pollutant means it is made of', async () => {
    // 102 days × 3 ISPU columns = 306 values, within 400; the 7 pollutant means behind it are not answered.
    const { status, body } = await getJson<QueryResult>(onInflux, '/api/v1/readings', {
      devices: 'e-aq-1',
      metrics: 'ispu',
      window: '1d',
      from: String(T0 - 100 * DAY),
      to: String(T0 + 2 * DAY),
    })
    expect(status, JSON.stringify(body).slice(0, 300)).toBe(200)
    expect(body.columns).toEqual(['ispu', 'ispuCategory', 'ispuCritical'])
    expect(body.series[0]!.time).toEqual([T0, T0 + DAY])
  })

  it('refuses a day the calendar does not have instead of rolling it over to the next month', async () => {
    for (const from of ['2025-02-30', '2025-02-29T08:00', '2025-04-31T00:00:00Z', '2024-02-30T00:00+08:00']) {
      const { status, body } = await getJson<{ error: { code: string; message: string } }>(
        embedded,
        '/api/v1/readings',
        { devices: 'e-hourly', metrics: 'waterLevel', window: '1d', from, to: '2025-06-01' },
      )
      expect(status, from).toBe(400)
      expect(body.error.code).toBe('bad_request')
      expect(body.error.message).toMatch(/^from:/)
    }
    // A leap day is a day, and a date without a zone is WITA midnight.
    const leap = await getJson<QueryResult>(embedded, '/api/v1/readings', {
      devices: 'e-aq-1',
      metrics: 'pm25',
      window: '1d',
      aggregates: 'count',
      from: '2024-02-29',
      to: '2025-03-11',
    })
    expect(leap.status).toBe(200)
    expect(leap.body.from).toBe(Date.UTC(2024, 1, 28, 16))
    expect(leap.body.to).toBe(T0)
  })

  describe('CSV in a spreadsheet', () => {
    const query = {
      kind: 'air-quality',
      metrics: 'temperature',
      window: '1d',
      aggregates: 'min',
      groupBy: 'district',
      from: String(T0),
      to: String(T0 + DAY),
      format: 'csv',
    }

    it('starts with a UTF-8 BOM, so that Excel reads non-ASCII names right; both stores give the same bytes', async () => {
      const [a, b] = await Promise.all(platforms().map((p) => get(p, '/api/v1/readings', query)))
      expect(a!.status).toBe(200)
      expect(a!.type).toBe('text/csv; charset=utf-8')
      expect([...a!.bytes.subarray(0, 3)]).toEqual([0xef, 0xbb, 0xbf])
      expect(a!.bytes.toString('utf8')).toContain(`\r\n${UTF8_DISTRICT},`)
      expect(b!.bytes.equals(a!.bytes)).toBe(true)
    })

    it('neutralises cells that start like a formula, keeps negative numbers numbers, and quotes per RFC 4180', async () => {
      const res = await get(embedded, '/api/v1/readings', query)
      const lines = res.bytes
        .toString('utf8')
        .replace(/^\uFEFF/, '')
        .trimEnd()
        .split('\r\n')
      expect(lines[0]).toBe('district,time,time_ms,temperature_min')
      const day = `2025-03-11T00:00:00.000+08:00,${T0}`
      expect(lines.slice(1).sort()).toEqual(
        [
          `"'=HYPERLINK(""http://evil.example"",""klik"")",${day},-3.5`,
          `'-2+3,${day},-0.25`,
          `'@SUM(1+1),${day},26`,
          `Kreneng,${day},-3.5`,
          `${UTF8_DISTRICT},${day},28.5`,
        ].sort(),
      )
    })

    it('raw CSV by district names the device of each row', async () => {
      const res = await get(embedded, '/api/v1/readings', {
        ...query,
        window: 'raw',
        district: MINUS_DISTRICT,
      })
      const lines = res.bytes
        .toString('utf8')
        .replace(/^\uFEFF/, '')
        .trimEnd()
        .split('\r\n')
      expect(lines).toEqual([
        'district,device,time,time_ms,temperature',
        `'-2+3,e-aq-4,2025-03-11T03:00:00.000+08:00,${T0 + 3 * HOUR},-0.25`,
      ])
    })
  })

  describe('completeness', () => {
    async function completeness(platform: TestPlatform, device: string, from: number, to: number) {
      const { status, body } = await getJson<Completeness>(platform, '/api/v1/readings/completeness', {
        device,
        from: String(from),
        to: String(to),
      })
      expect(status, JSON.stringify(body)).toBe(200)
      return body
    }

    it('seq restarts are not counted as missing, a lost reading is, and duplicates count once', async () => {
      for (const platform of platforms()) {
        // The same readings again (a device resending its backlog).
        await platform.store.write(DATA.filter((r) => r.device === 'e-seq' && r.ts < T0 + 25 * MINUTE))
        const c = await completeness(platform, 'e-seq', T0, T0 + HOUR)
        expect(c).toMatchObject({ expected: 60, arrived: 59, seqMissing: 1, late: 0 })
        expect(c.gaps).toEqual([{ from: T0 + 9 * MINUTE, to: T0 + 11 * MINUTE, missing: 1 }])
      }
    })

    it('a device registered mid-range is expected to report only from its registration', async () => {
      const registered = T0 + 10 * DAY + 2 * HOUR
      const readings = Array.from({ length: 120 }, (_, i) => ({
        ...reading('e-mid', registered + i * MINUTE + 5000, i + 1, { waterLevel: 80 }),
        district: 'Completeness',
      }))
      for (const platform of platforms()) {
        await registerAt(platform, device('e-mid', 'river-level', 'Completeness'), registered)
        await platform.store.write(readings)
        const c = await completeness(platform, 'e-mid', T0 + 10 * DAY, registered + 2 * HOUR)
        expect(c).toMatchObject({ expected: 120, arrived: 120, share: 1, seqMissing: 0, gaps: [] })
      }
    })

    it('nothing is expected after now: a range ending tonight counts up to now', async () => {
      const now = Date.now()
      const since = now - 2 * HOUR
      const readings = Array.from({ length: 120 }, (_, i) => ({
        ...reading('e-now', since + i * MINUTE, i + 1, { waterLevel: 80 }),
        district: 'Completeness',
      }))
      for (const platform of platforms()) {
        await registerAt(platform, device('e-now', 'river-level', 'Completeness'), since)
        await platform.store.write(readings)
        const asked = Date.now()
        const c = await completeness(platform, 'e-now', since, now + 2 * HOUR)
        const answered = Date.now()
        // The server's now lies between the two; the two hours still to come are not expected.
        expect(c.expected).toBeGreaterThanOrEqual(Math.floor((asked - since) / MINUTE))
        expect(c.expected).toBeLessThanOrEqual(Math.floor((answered - since) / MINUTE))
        expect(c).toMatchObject({ arrived: 120, to: now + 2 * HOUR })
        for (const gap of c.gaps) expect(gap.to).toBeLessThanOrEqual(answered)
      }
    })

    it('a changed reporting interval is expected from the time of the change', async () => {
      const start = T0 + 20 * DAY
      const changed = start + HOUR
      // Every 5 minutes for an hour, then (after the update) every minute for an hour.
      const times = [
        ...Array.from({ length: 12 }, (_, i) => start + i * 5 * MINUTE),
        ...Array.from({ length: 60 }, (_, i) => changed + i * MINUTE),
      ]
      const readings = times.map((t, i) => ({
        ...reading('e-int', t + 3000, i + 1, { waterLevel: 80 }),
        district: 'Completeness',
      }))
      for (const platform of platforms()) {
        await registerAt(platform, device('e-int', 'river-level', 'Completeness', 5 * MINUTE), start - DAY)
        await updateAt(platform, 'e-int', { reportingIntervalMs: MINUTE }, changed)
        await platform.store.write(readings)
        const c = await completeness(platform, 'e-int', start, start + 2 * HOUR)
        expect(c).toMatchObject({ expected: 72, arrived: 72, share: 1, seqMissing: 0, late: 0, gaps: [] })
        expect(c.reportingIntervalMs).toBe(MINUTE)
        // A silence is measured against the interval of its time: 20 minutes at 5 minutes is 4 missing.
        const partial = await completeness(platform, 'e-int', start - 20 * MINUTE, start + 2 * HOUR)
        expect(partial.expected).toBe(76)
        expect(partial.gaps).toEqual([{ from: start - 20 * MINUTE, to: start + 3000, missing: 4 }])
      }
    })
  })
})
