import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { computeIspu } from '../dashboard-api/aggregates/ispu.ts'
import type { DeviceKind } from '../firmware-contracts/index.ts'
import type { Completeness, QueryResult } from '../ingest/query/index.ts'
import type { NewDevice } from '../ingest/registry.ts'
import type { StoredReading } from '../ingest/store/types.ts'
import { type Influxd, startInfluxd } from './helpers/influxd.ts'
import { startTestPlatform, TEST_API_TOKEN, type TestPlatform } from './helpers/platform.ts'

/**
 * Issue 7 acceptance: one generated data set (several devices and districts, several days, gaps, late
 * data, readings missing a field) stored in a real InfluxDB 1.6 and in the embedded store; the same
 * queries through the API of each platform give the same answers.
 */

const INTERVAL = 5 * 60_000
const DAYS = 3
// Not aligned to a day or an hour, so the first and last windows are partial in every zone.
const START = Date.UTC(2025, 1, 28, 13, 7, 0)
const END = START + DAYS * 86_400_000
/** Generous next to the ~0.1 s the queries take, short enough for the timeout test. */
const QUERY_TIMEOUT_MS = 4000
const TRICKY_DISTRICT = `Pasar 'Badung"; DROP MEASUREMENT "air-quality" -- /.*/ Ü🌊`

interface DeviceDef extends NewDevice {
  readonly id: string
  readonly kind: DeviceKind
  readonly district: string
  readonly regency: string
  /** Offset of its clock from the grid, ms. */
  readonly phase: number
}

const DEVICES: DeviceDef[] = [
  // aq-1 and aq-2 report at the same instants: district windows see ties (for `last`).
  aq('dps-aq-1', 'Denpasar Barat', 'Kota Denpasar', 0),
  aq('dps-aq-2', 'Denpasar Barat', 'Kota Denpasar', 0),
  aq('dps-aq-3', 'Denpasar Selatan', 'Kota Denpasar', 17_000),
  aq('bdg-aq-4', 'Kuta', 'Badung', 41_000),
  aq('bdg-aq-5', TRICKY_DISTRICT, 'Badung', 3000),
  {
    id: 'dps-river-1',
    kind: 'river-level',
    name: 'Tukad Badung',
    regency: 'Kota Denpasar',
    district: 'Denpasar Barat',
    latitude: -8.65,
    longitude: 115.21,
    reportingIntervalMs: INTERVAL,
    phase: 9000,
  },
  {
    id: 'dps-river-2',
    kind: 'river-level',
    name: 'Tukad Ayung',
    regency: 'Kota Denpasar',
    district: 'Denpasar Timur',
    latitude: -8.62,
    longitude: 115.25,
    reportingIntervalMs: INTERVAL,
    phase: 29_000,
  },
]

function aq(id: string, district: string, regency: string, phase: number): DeviceDef {
  return {
    id,
    kind: 'air-quality',
    name: `AQ ${id}`,
    regency,
    district,
    latitude: -8.7,
    longitude: 115.2,
    reportingIntervalMs: INTERVAL,
    phase,
  }
}

function mulberry32(seed: number): () => number {
  let a = seed
  return () => {
    a = (a + 0x6d2b79f5) | 0
    let t = Math.imul(a ^ (a >>> 15), 1 | a)
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
}

const round1 = (x: number) => Math.round(x * 10) / 10

/** The data set: deterministic, with an outage per device, sporadic losses, late backlogs and missing fields. */
function generate(): StoredReading[] {
  const out: StoredReading[] = []
  DEVICES.forEach((d, di) => {
    const rnd = mulberry32(1000 + di)
    const outageStart = START + (di + 1) * 7 * 3_600_000
    const outageEnd = outageStart + (2 + di) * 3_600_000
    let seq = 0
    for (let t = START + d.phase; t < END; t += INTERVAL) {
      seq++
      if (t >= outageStart && t < outageEnd) continue
      if (rnd() < 0.03) continue
      // After the outage the device sends its backlog late; other readings arrive a few seconds after.
      const late = t >= outageEnd && t < outageEnd + 3_600_000
      const receivedAt = late ? t + 5 * 3_600_000 : t + 1500
      const hour = ((t + 8 * 3_600_000) % 86_400_000) / 3_600_000
      const daily = Math.sin((hour / 24) * 2 * Math.PI)
      let fields: Record<string, number>
      if (d.kind === 'air-quality') {
        fields = {
          pm25: round1(30 + 20 * daily + 25 * rnd() + di * 4),
          pm10: round1(55 + 30 * daily + 30 * rnd()),
          o3: round1(60 + 40 * rnd()),
          co: round1(3000 + 2500 * rnd()),
          no2: round1(40 + 50 * rnd()),
          hc: round1(20 + 40 * rnd()),
          temperature: round1(27 + 4 * daily),
          // Every tenth reading has no SO2 (a sensor warming up).
          ...(seq % 10 === 0 ? {} : { so2: round1(20 + 60 * rnd()) }),
        }
      } else {
        fields = { waterLevel: round1(80 + 40 * daily + 30 * rnd()), battery: round1(3.6 + 0.4 * rnd()) }
      }
      out.push({
        kind: d.kind,
        device: d.id,
        district: d.district,
        regency: d.regency,
        ts: t,
        receivedAt,
        seq,
        fields,
      })
    }
  })
  return out
}

const DATA = generate()

async function get<T>(platform: TestPlatform, params: Record<string, string>) {
  const res = await fetch(`${platform.httpUrl}/api/v1/readings?${new URLSearchParams(params)}`, {
    headers: { authorization: `Bearer ${TEST_API_TOKEN}` },
  })
  const text = await res.text()
  return { status: res.status, body: JSON.parse(text) as T }
}

/** Equal up to floating-point noise in the numbers; every other value exactly. */
function expectSame(a: unknown, b: unknown, path = '$'): void {
  if (typeof a === 'number' && typeof b === 'number') {
    const tolerance = 1e-9 * Math.max(1, Math.abs(a), Math.abs(b))
    if (Math.abs(a - b) > tolerance) expect.fail(`${path}: ${a} != ${b}`)
    return
  }
  if (Array.isArray(a) && Array.isArray(b)) {
    if (a.length !== b.length) expect.fail(`${path}: length ${a.length} != ${b.length}`)
    for (let i = 0; i < a.length; i++) expectSame(a[i], b[i], `${path}[${i}]`)
    return
  }
  if (a !== null && b !== null && typeof a === 'object' && typeof b === 'object') {
    const ka = Object.keys(a).sort()
    const kb = Object.keys(b).sort()
    expect(ka, `${path} keys`).toEqual(kb)
    for (const k of ka)
      expectSame((a as Record<string, unknown>)[k], (b as Record<string, unknown>)[k], `${path}.${k}`)
    return
  }
  if (a !== b) expect.fail(`${path}: ${JSON.stringify(a)} != ${JSON.stringify(b)}`)
}

const iso = (t: number) => new Date(t).toISOString()

/** The queries both stores must answer alike. */
const QUERIES: Array<Record<string, string>> = [
  // Every aggregate, hourly, per device.
  {
    kind: 'air-quality',
    metrics: 'pm25,so2',
    window: '1h',
    aggregates: 'mean,min,max,sum,count,last,p95',
    from: iso(START),
    to: iso(END),
  },
  // Daily in WITA per district (ties between aq-1 and aq-2 for `last`).
  {
    kind: 'air-quality',
    metrics: 'pm25,pm10,so2',
    window: '1d',
    aggregates: 'mean,max,count,p95,last',
    groupBy: 'district',
    from: iso(START),
    to: iso(END),
  },
  // Daily in UTC and in WIT.
  {
    kind: 'river-level',
    metrics: 'waterLevel',
    window: '1d',
    tz: 'UTC',
    aggregates: 'mean,count',
    from: iso(START),
    to: iso(END),
  },
  {
    kind: 'river-level',
    metrics: 'waterLevel',
    window: '1d',
    tz: 'Asia/Jayapura',
    aggregates: 'min,p95',
    from: iso(START),
    to: iso(END),
  },
  // District and regency filters, 15-minute windows.
  {
    kind: 'river-level',
    district: 'Denpasar Barat',
    metrics: 'waterLevel,battery',
    window: '15m',
    aggregates: 'sum,count,min,mean',
    from: iso(START + 86_400_000),
    to: iso(START + 2 * 86_400_000),
  },
  {
    kind: 'air-quality',
    regency: 'Badung',
    metrics: 'co',
    window: '1h',
    aggregates: 'max',
    groupBy: 'district',
    from: iso(START),
    to: iso(END),
  },
  // A device list, 5-minute and 1-minute windows over shorter ranges.
  {
    devices: 'dps-aq-1,bdg-aq-4',
    metrics: 'no2,hc',
    window: '5m',
    aggregates: 'mean,last',
    from: iso(START),
    to: iso(START + 12 * 3_600_000),
  },
  {
    devices: 'dps-aq-3',
    metrics: 'pm25',
    window: '1m',
    aggregates: 'p95,count',
    from: iso(START),
    to: iso(START + 6 * 3_600_000),
  },
  // Raw readings, per device and per district (late data included), and the daily ISPU.
  {
    kind: 'air-quality',
    devices: 'dps-aq-2,bdg-aq-5',
    metrics: 'pm25,so2',
    window: 'raw',
    from: iso(START),
    to: iso(START + 20 * 3_600_000),
  },
  {
    kind: 'air-quality',
    district: 'Denpasar Barat',
    metrics: 'o3',
    window: 'raw',
    groupBy: 'district',
    from: iso(START),
    to: iso(START + 3 * 3_600_000),
  },
  { kind: 'air-quality', metrics: 'ispu,pm25', window: '1d', from: iso(START), to: iso(END) },
  {
    kind: 'air-quality',
    metrics: 'ispu',
    window: '1d',
    groupBy: 'district',
    tz: 'Asia/Jakarta',
    from: iso(START),
    to: iso(END),
  },
  // The district whose name is made of quotes, keywords, a regex and emoji, as a literal.
  {
    kind: 'air-quality',
    district: TRICKY_DISTRICT,
    metrics: 'pm25',
    window: '1h',
    aggregates: 'mean',
    from: iso(START),
    to: iso(END),
  },
]

describe('analyst queries: the same answers from InfluxDB and from the embedded store', () => {
  let influx: Influxd
  let onInflux: TestPlatform
  let embedded: TestPlatform

  beforeAll(async () => {
    influx = await startInfluxd()
    ;[onInflux, embedded] = await Promise.all([
      startTestPlatform({ influx, env: { QUERY_TIMEOUT_MS: String(QUERY_TIMEOUT_MS) } }),
      startTestPlatform(),
    ])
    for (const platform of [onInflux, embedded]) {
      for (const { phase: _, ...device } of DEVICES) await platform.registry.register(device, 'test')
      for (let i = 0; i < DATA.length; i += 2000) await platform.store.write(DATA.slice(i, i + 2000))
    }
  })

  afterAll(async () => {
    await Promise.all([onInflux?.close(), embedded?.close()])
    await influx?.stop()
  })

  it('stores really differ in kind (the comparison is between two engines)', () => {
    expect(onInflux.store.kind).toBe('influxdb')
    expect(embedded.store.kind).toBe('duckdb')
  })

  for (const [i, query] of QUERIES.entries()) {
    it(`query ${i}: ${JSON.stringify(query).slice(0, 140)}`, async () => {
      const [a, b] = await Promise.all([get<QueryResult>(onInflux, query), get<QueryResult>(embedded, query)])
      expect(a.status, JSON.stringify(a.body).slice(0, 300)).toBe(200)
      expect(b.status, JSON.stringify(b.body).slice(0, 300)).toBe(200)
      expect(a.body.rows).toBeGreaterThan(0)
      expectSame(a.body, b.body)
    })
  }

  it('daily windows in WITA start at 16:00 UTC, and their means are those of the local day', async () => {
    const query = {
      devices: 'dps-aq-1',
      metrics: 'pm25',
      window: '1d',
      aggregates: 'mean,count,p95',
      from: iso(START),
      to: iso(END),
    }
    for (const platform of [onInflux, embedded]) {
      const { status, body } = await get<QueryResult>(platform, query)
      expect(status).toBe(200)
      const series = body.series[0]!
      expect(series.time.length).toBe(DAYS + 1)
      for (const t of series.time) expect(new Date(t).getUTCHours()).toBe(16)
      // Independent of both stores: the local day's readings from the generated data.
      series.time.forEach((dayStart, i) => {
        const values = DATA.filter(
          (r) => r.device === 'dps-aq-1' && r.ts >= Math.max(dayStart, START) && r.ts < dayStart + 86_400_000,
        ).map((r) => r.fields.pm25!)
        const mean = values.reduce((s, v) => s + v, 0) / values.length
        const sorted = [...values].sort((x, y) => x - y)
        expect(series.values.pm25_count![i]).toBe(values.length)
        expect(series.values.pm25_mean![i]).toBeCloseTo(mean, 9)
        expect(series.values.pm25_p95![i]).toBe(sorted[Math.floor(values.length * 0.95 + 0.5) - 1])
      })
    }
    const utc = await get<QueryResult>(embedded, { ...query, tz: 'UTC' })
    for (const t of utc.body.series[0]!.time) expect(t % 86_400_000).toBe(0)
  })

  it('the daily ISPU is the highest sub-index of the daily means (P.14/2020)', async () => {
    const { body } = await get<QueryResult>(onInflux, {
      devices: 'dps-aq-3',
      metrics: 'ispu,pm25,pm10,so2,co,o3,no2,hc',
      window: '1d',
      from: iso(START),
      to: iso(END),
    })
    const s = body.series[0]!
    expect(s.time.length).toBeGreaterThan(0)
    s.time.forEach((_, i) => {
      const m = (p: string) => s.values[`${p}_mean`]![i] as number
      const expected = computeIspu({
        pm25: m('pm25'),
        pm10: m('pm10'),
        so2: m('so2'),
        co: m('co'),
        o3: m('o3'),
        no2: m('no2'),
        hc: m('hc'),
      })
      expect(s.values.ispu![i]).toBe(expected!.value)
      expect(s.values.ispuCategory![i]).toBe(expected!.category)
      expect(s.values.ispuCritical![i]).toBe(expected!.critical)
    })
  })

  it('completeness: share of expected readings, late readings and gaps agree and match the data set', async () => {
    for (const device of ['dps-aq-1', 'dps-river-2']) {
      const params = new URLSearchParams({ device, from: iso(START), to: iso(END) })
      const answers = await Promise.all(
        [onInflux, embedded].map(async (p) => {
          const res = await fetch(`${p.httpUrl}/api/v1/readings/completeness?${params}`, {
            headers: { authorization: `Bearer ${TEST_API_TOKEN}` },
          })
          expect(res.status).toBe(200)
          return (await res.json()) as Completeness
        }),
      )
      expectSame(answers[0], answers[1])
      const c = answers[0]!
      const stored = DATA.filter((r) => r.device === device)
      expect(c.expected).toBe(DAYS * 288)
      expect(c.arrived).toBe(stored.length)
      expect(c.share).toBeCloseTo(stored.length / (DAYS * 288), 12)
      expect(c.late).toBe(stored.filter((r) => r.receivedAt - r.ts > INTERVAL).length)
      // The outage is one of the gaps, with its length in readings.
      const di = DEVICES.findIndex((d) => d.id === device)
      const outageHours = 2 + di
      expect(c.gaps.some((g) => g.missing >= outageHours * 12 && g.missing <= outageHours * 12 + 3)).toBe(
        true,
      )
      expect(c.seqMissing).toBe(stored.at(-1)!.seq - stored[0]!.seq + 1 - stored.length)
    }
  })

  it('injection attempts in every parameter are rejected with bad_request or matched as literals', async () => {
    const nasty = [
      `'`,
      `"`,
      `x'; DROP MEASUREMENT "air-quality"; --`,
      `" OR 1=1 --`,
      `') OR ('1'='1`,
      `1; SELECT * FROM "air-quality"`,
      'SELECT * FROM readings_air_quality',
      `/.*/`,
      '.*',
      '^dps',
      '$1',
      '\\',
      `\\' OR 1=1`,
      'Denpasar Barat\u0000',
      'Denpasar Barat\n; DROP',
      'dps-aq-1 OR device=~/.*/',
      'Ünïcødé 🌊 ‮',
      "tz('UTC')",
    ]
    const base = { kind: 'air-quality', metrics: 'pm25', window: '1h', from: iso(START), to: iso(END) }
    const params = [
      'kind',
      'devices',
      'district',
      'regency',
      'metrics',
      'from',
      'to',
      'window',
      'aggregates',
      'groupBy',
      'tz',
      'format',
    ]
    for (const platform of [onInflux, embedded]) {
      for (const param of params) {
        for (const value of nasty) {
          const { status, body } = await get<QueryResult & { error?: { code: string } }>(platform, {
            ...base,
            [param]: value,
          })
          const what = `${platform.store.kind} ${param}=${JSON.stringify(value)}: ${status} ${JSON.stringify(body).slice(0, 200)}`
          if (status === 200) {
            // Only free-text names reach a store, and as literals they match no stored tag.
            expect(['district', 'regency'], what).toContain(param)
            expect(body.rows, what).toBe(0)
          } else {
            expect(status, what).toBe(400)
            expect(body.error?.code, what).toBe('bad_request')
          }
        }
      }
      // Nothing was dropped or changed: every reading is still there.
      const all = await get<QueryResult>(platform, {
        ...base,
        metrics: 'o3',
        aggregates: 'count',
        window: '1d',
      })
      const total = all.body.series.reduce(
        (s, x) => s + (x.values.o3_count as number[]).reduce((a, c) => a + c, 0),
        0,
      )
      expect(total).toBe(DATA.filter((r) => r.kind === 'air-quality').length)
    }
    // The same strings in a POST body.
    for (const platform of [onInflux, embedded]) {
      const res = await fetch(`${platform.httpUrl}/api/v1/readings`, {
        method: 'POST',
        headers: { authorization: `Bearer ${TEST_API_TOKEN}`, 'content-type': 'application/json' },
        body: JSON.stringify({ ...base, metrics: ['pm25'], district: nasty[2], regency: nasty[7] }),
      })
      expect(res.status).toBe(200)
      expect(((await res.json()) as QueryResult).rows).toBe(0)
    }
  })
  it('a store that does not answer in time gives query_timeout, and the next query works again', async () => {
    const query = { kind: 'air-quality', metrics: 'pm25', window: '1d', from: iso(START), to: iso(END) }
    await influx.pause()
    let paused: Awaited<ReturnType<typeof get<{ error: { code: string; message: string } }>>>
    try {
      paused = await get(onInflux, query)
    } finally {
      await influx.resume()
    }
    expect(paused.status).toBe(504)
    expect(paused.body.error.code).toBe('query_timeout')
    expect(paused.body.error.message).toContain(`${QUERY_TIMEOUT_MS} ms`)
    const again = await get<QueryResult>(onInflux, query)
    expect(again.status).toBe(200)
    expect(again.body.rows).toBeGreaterThan(0)
  })
})
