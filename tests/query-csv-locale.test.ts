import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import type { QueryResult } from '../ingest/query/index.ts'
import type { NewDevice } from '../ingest/registry.ts'
import type { StoredReading } from '../ingest/store/types.ts'
import { type Influxd, startInfluxd } from './helpers/influxd.ts'
import { startTestPlatform, TEST_API_TOKEN, type TestPlatform } from './helpers/platform.ts'

/**
 * CSV for spreadsheets in the Indonesian locale (`format=csv-id`: `;` between columns, decimal commas)
 * next to the default CSV: parsed back as such a spreadsheet and as a comma-separated reader would, both
 * give the numbers of the JSON answer, and text cells keep their quoting and formula neutralisation.
 * Numbers in both CSV flavours are given to 12 significant digits (float noise of means dropped, JSON
 * exact), and both stores give the same bytes.
 */

const MINUTE = 60_000
const HOUR = 3_600_000
const DAY = 86_400_000
/** 2025-03-11 00:00 WITA. */
const T0 = Date.UTC(2025, 2, 10, 16, 0, 0)

const SEMICOLON_DISTRICT = 'Kuta; Utara'
const COMMA_DISTRICT = 'Kuta, Selatan'
const FORMULA_DISTRICT = '=SUM(1;2)'
const QUOTE_DISTRICT = 'Pasar "Kreneng" — pintu utama'

function device(id: string, district: string): NewDevice {
  return {
    id,
    kind: 'river-level',
    name: `Gauge ${id}`,
    regency: 'Badung',
    district,
    latitude: -8.7,
    longitude: 115.17,
    reportingIntervalMs: 5 * MINUTE,
  }
}

const DEVICES = [
  device('loc-1', SEMICOLON_DISTRICT),
  device('loc-2', COMMA_DISTRICT),
  device('loc-3', FORMULA_DISTRICT),
  device('loc-4', QUOTE_DISTRICT),
]

function reading(id: string, ts: number, seq: number, waterLevel: number): StoredReading {
  const d = DEVICES.find((x) => x.id === id)!
  return {
    kind: 'river-level',
    device: id,
    district: d.district,
    regency: d.regency,
    ts,
    receivedAt: ts + 900,
    seq,
    fields: { waterLevel, battery: 3.9 },
  }
}

function generate(): StoredReading[] {
  const out: StoredReading[] = []
  // loc-1, first hour: 0.1 and 0.2, whose float mean is 0.15000000000000002.
  out.push(reading('loc-1', T0, 1, 0.1), reading('loc-1', T0 + 5 * MINUTE, 2, 0.2))
  // loc-2, first hour: negative levels (below the gauge's zero), and one above a thousand.
  out.push(reading('loc-2', T0, 1, -3.25), reading('loc-2', T0 + 5 * MINUTE, 2, -0.5))
  out.push(reading('loc-2', T0 + 10 * MINUTE, 3, 1234.5))
  // loc-3, first hour: a level that a spreadsheet in id-ID would misread as 611375 with a decimal point.
  out.push(reading('loc-3', T0, 1, 61.1375))
  out.push(reading('loc-4', T0, 1, 2.5))
  // A day of 5-minute readings with one decimal each, from a fixed pseudo-random sequence: means and sums
  // of many of them carry float noise, which either store may round differently in its last bit.
  let state = 7
  const rnd = () => {
    state = (state * 48271) % 2147483647
    return state / 2147483647
  }
  for (const d of DEVICES) {
    for (let i = 0; i < 288; i++) {
      const level = Math.round((60 + 40 * rnd() - (d.id === 'loc-2' ? 90 : 0)) * 10) / 10
      out.push(reading(d.id, T0 + DAY + i * 5 * MINUTE + 7000, i + 1, level))
    }
  }
  return out
}

const DATA = generate()

/** RFC 4180 records with the given separator; quoted fields are marked so that tests can tell. */
function parseCsv(text: string, separator: string): Array<Array<{ value: string; quoted: boolean }>> {
  expect(text.startsWith('\uFEFF')).toBe(true)
  const body = text.slice(1)
  const records: Array<Array<{ value: string; quoted: boolean }>> = []
  let record: Array<{ value: string; quoted: boolean }> = []
  let i = 0
  while (i < body.length) {
    let value = ''
    let quoted = false
    if (body[i] === '"') {
      quoted = true
      i++
      for (;;) {
        const end = body.indexOf('"', i)
        expect(end, 'unterminated quoted field').toBeGreaterThanOrEqual(0)
        value += body.slice(i, end)
        i = end + 1
        if (body[i] === '"') {
          value += '"'
          i++
        } else break
      }
    } else {
      while (i < body.length && body[i] !== separator && body[i] !== '\r') value += body[i++]
    }
    record.push({ value, quoted })
    if (body[i] === separator) i++
    else {
      expect(body.slice(i, i + 2), 'records end with CRLF').toBe('\r\n')
      i += 2
      records.push(record)
      record = []
    }
  }
  return records
}

/** A number cell as a spreadsheet in the flavour's locale reads it; anything else is text. */
function numberCell(value: string, format: 'csv' | 'csv-id'): number | undefined {
  const pattern = format === 'csv' ? /^-?\d+(\.\d+)?(e[+-]\d+)?$/ : /^-?\d+(,\d+)?(e[+-]\d+)?$/
  if (!pattern.test(value)) return undefined
  return Number(format === 'csv' ? value : value.replace(',', '.'))
}

async function fetchText(platform: TestPlatform, params: Record<string, unknown>, method = 'GET') {
  const query = method === 'GET' ? `?${new URLSearchParams(params as Record<string, string>)}` : ''
  const res = await fetch(`${platform.httpUrl}/api/v1/readings${query}`, {
    method,
    headers: {
      authorization: `Bearer ${TEST_API_TOKEN}`,
      ...(method === 'POST' ? { 'content-type': 'application/json' } : {}),
    },
    ...(method === 'POST' ? { body: JSON.stringify(params) } : {}),
  })
  // Decoded by hand: Response.text() would drop the byte order mark.
  const text = Buffer.from(await res.arrayBuffer()).toString('utf8')
  return { status: res.status, type: res.headers.get('content-type') ?? '', text }
}

describe('CSV for spreadsheets in the Indonesian locale', () => {
  let influx: Influxd
  let onInflux: TestPlatform
  let embedded: TestPlatform
  const platforms = () => [onInflux, embedded]

  const hourly = {
    kind: 'river-level',
    metrics: 'waterLevel',
    window: '1h',
    aggregates: 'mean,min,sum,count',
    groupBy: 'district',
    from: String(T0),
    to: String(T0 + HOUR),
  }
  const daily = { ...hourly, window: '1d', from: String(T0 + DAY), to: String(T0 + 2 * DAY) }

  beforeAll(async () => {
    influx = await startInfluxd()
    ;[onInflux, embedded] = await Promise.all([startTestPlatform({ influx }), startTestPlatform()])
    for (const platform of platforms()) {
      for (const d of DEVICES) await platform.registry.register(d, 'test')
      await platform.store.write(DATA)
    }
  })

  afterAll(async () => {
    await Promise.all([onInflux?.close(), embedded?.close()])
    await influx?.stop()
  })

  it('separates columns with ; and writes decimal commas, quoting text cells that hold ; , or quotes', async () => {
    const res = await fetchText(embedded, { ...hourly, format: 'csv-id' })
    expect(res.status).toBe(200)
    expect(res.type).toBe('text/csv; charset=utf-8')
    expect(res.text.startsWith('\uFEFF')).toBe(true)
    const lines = res.text.slice(1).trimEnd().split('\r\n')
    const day = `2025-03-11T00:00:00.000+08:00;${T0}`
    expect(lines).toEqual([
      'district;time;time_ms;waterLevel_mean;waterLevel_min;waterLevel_sum;waterLevel_count',
      `"'=SUM(1;2)";${day};61,1375;61,1375;61,1375;1`,
      `"Kuta, Selatan";${day};410,25;-3,25;1230,75;3`,
      `"Kuta; Utara";${day};0,15;0,1;0,3;2`,
      `"Pasar ""Kreneng"" — pintu utama";${day};2,5;2,5;2,5;1`,
    ])
  })

  it('the default CSV is as before, except that numbers drop float noise past 12 significant digits', async () => {
    const res = await fetchText(embedded, { ...hourly, format: 'csv' })
    const json = JSON.parse((await fetchText(embedded, hourly)).text) as QueryResult
    // JSON stays exact: the float mean of 0.1 and 0.2.
    const utara = json.series.find((s) => s.key === SEMICOLON_DISTRICT)!
    expect(utara.values.waterLevel_mean).toEqual([(0.1 + 0.2) / 2])
    expect(String((0.1 + 0.2) / 2)).toBe('0.15000000000000002')
    const day = `2025-03-11T00:00:00.000+08:00,${T0}`
    expect(res.text.slice(1).trimEnd().split('\r\n')).toEqual([
      'district,time,time_ms,waterLevel_mean,waterLevel_min,waterLevel_sum,waterLevel_count',
      `'=SUM(1;2),${day},61.1375,61.1375,61.1375,1`,
      `"Kuta, Selatan",${day},410.25,-3.25,1230.75,3`,
      `Kuta; Utara,${day},0.15,0.1,0.3,2`,
      `"Pasar ""Kreneng"" — pintu utama",${day},2.5,2.5,2.5,1`,
    ])
  })

  it('both flavours, parsed back, give the same cells: the numbers of the JSON answer to 12 digits', async () => {
    for (const query of [hourly, daily, { ...daily, window: 'raw', aggregates: 'mean' }]) {
      const json = JSON.parse((await fetchText(embedded, query)).text) as QueryResult
      const parsed = await Promise.all(
        (['csv', 'csv-id'] as const).map(async (format) => {
          const res = await fetchText(embedded, { ...query, format })
          expect(res.status).toBe(200)
          return parseCsv(res.text, format === 'csv' ? ',' : ';').map((record) =>
            record.map((cell) => {
              const number = numberCell(cell.value, format)
              // Numbers are never quoted (a quoted cell may stay text); text holding the separator is.
              if (number !== undefined) expect(cell.quoted).toBe(false)
              if (cell.value.includes(format === 'csv' ? ',' : ';')) expect(cell.quoted).toBe(true)
              return number ?? cell.value
            }),
          )
        }),
      )
      const [csv, csvId] = parsed as [unknown[][], unknown[][]]
      expect(csvId).toEqual(csv)
      const withDevice = query.window === 'raw'
      expect(csv[0]).toEqual([
        'district',
        ...(withDevice ? ['device'] : []),
        'time',
        'time_ms',
        ...json.columns,
      ])
      const expected: unknown[][] = []
      for (const s of json.series) {
        const district = /^[=+\-@]/.test(s.key) ? `'${s.key}` : s.key
        s.time.forEach((t, i) => {
          const values = json.columns.map((c) => {
            const v = s.values[c]![i]
            return typeof v === 'number' ? Number(v.toPrecision(12)) : (v ?? '')
          })
          expected.push([district, ...(withDevice ? [s.device![i]] : []), expect.any(String), t, ...values])
        })
      }
      expect(csv.slice(1)).toEqual(expected)
      // Negative levels stay numbers (no formula prefix, no quotes) in both flavours.
      expect(csv.slice(1).some((row) => row.some((v) => typeof v === 'number' && v < 0))).toBe(true)
    }
  })

  it('the POST form takes the same format and gives the same bytes', async () => {
    const get = await fetchText(embedded, { ...daily, format: 'csv-id' })
    const post = await fetchText(
      embedded,
      { ...daily, metrics: ['waterLevel'], aggregates: ['mean', 'min', 'sum', 'count'], format: 'csv-id' },
      'POST',
    )
    expect(post.status).toBe(200)
    expect(post.type).toBe('text/csv; charset=utf-8')
    expect(post.text).toBe(get.text)
  })

  it('both stores give the same bytes in both flavours, float noise of their sums and means included', async () => {
    for (const query of [hourly, daily, { ...daily, window: '1h' }, { ...daily, groupBy: 'device' }]) {
      for (const format of ['csv', 'csv-id']) {
        const [a, b] = await Promise.all(platforms().map((p) => fetchText(p, { ...query, format })))
        expect(a!.status).toBe(200)
        expect(a!.text.split('\r\n').length).toBeGreaterThan(2)
        expect(b!.text, `${format} ${JSON.stringify(query)}`).toBe(a!.text)
      }
    }
  })

  it('refuses a format it does not know, naming the parameter', async () => {
    const res = await fetchText(embedded, { ...hourly, format: 'csv-ID' })
    expect(res.status).toBe(400)
    const body = JSON.parse(res.text) as { error: { code: string; message: string } }
    expect(body.error.code).toBe('bad_request')
    expect(body.error.message).toMatch(/format/)
  })

  it('the OpenAPI document lists csv-id for the GET parameter and the POST body', async () => {
    const res = await fetch(`${embedded.httpUrl}/api/v1/openapi.json`)
    const doc = (await res.json()) as {
      paths: Record<string, { get: { parameters: Array<{ name: string; schema: { enum?: string[] } }> } }>
      components: { schemas: { ReadingsQuery: { properties: Record<string, { enum?: string[] }> } } }
    }
    const parameter = doc.paths['/api/v1/readings']!.get.parameters.find((p) => p.name === 'format')!
    expect(parameter.schema.enum).toEqual(['json', 'csv', 'csv-id'])
    expect(doc.components.schemas.ReadingsQuery.properties.format!.enum).toEqual(['json', 'csv', 'csv-id'])
  })
})
