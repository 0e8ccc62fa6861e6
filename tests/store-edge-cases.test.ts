import { mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { DuckDBInstance } from '@duckdb/node-api'
import pino from 'pino'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import type { DeviceKind } from '../firmware-contracts/index.ts'
import { PlatformBus } from '../ingest/events.ts'
import { createMetrics } from '../ingest/metrics.ts'
import { Spool } from '../ingest/spool.ts'
import { createDuckDbStore, tableName } from '../ingest/store/duckdb.ts'
import { createInfluxStore } from '../ingest/store/influx.ts'
import { metricColumns } from '../ingest/store/schema.ts'
import {
  type AnalystAggregate,
  type AnalystQuery,
  type ReadingRow,
  type StoredReading,
  StoreWriteError,
  type TimeSeriesStore,
} from '../ingest/store/types.ts'
import { StoreWriter } from '../ingest/writer.ts'
import { type Influxd, startInfluxd } from './helpers/influxd.ts'

/**
 * The stores' promises at their edges (DESIGN.md: replays are harmless, late data never replaces the
 * latest, the same query answers from both stores): every test writes the same readings to a real
 * InfluxDB 1.6 and to the embedded store and asks both the same questions.
 */

const T0 = Date.UTC(2026, 2, 14, 2, 0, 0)
const MINUTE = 60_000
const DAY = 86_400_000
/** Start of T0's UTC day: the label of a one-day window holding every reading of these tests. */
const DAY0 = Math.floor(T0 / DAY) * DAY
let devices = 0
function newDevice(prefix = 'edge'): string {
  return `${prefix}-${++devices}`
}

function river(device: string, i: number, fields: Record<string, number> = { waterLevel: 100 + i }) {
  return {
    kind: 'river-level',
    device,
    district: 'Denpasar Barat',
    regency: 'Kota Denpasar',
    ts: T0 + i * MINUTE,
    receivedAt: T0 + i * MINUTE + 700,
    seq: i,
    fields,
  } satisfies StoredReading
}

interface Named {
  readonly name: string
  readonly store: TimeSeriesStore
}

let influx: Influxd
let dir: string
let stores: Named[]

beforeAll(async () => {
  influx = await startInfluxd()
  dir = mkdtempSync(join(tmpdir(), 'store-edge-'))
  const influxStore = createInfluxStore({
    url: influx.url,
    apiVersion: 'v1',
    database: 'edge',
    maxRetries: 0,
  })
  const duckStore = createDuckDbStore({ path: join(dir, 'edge.duckdb') })
  await influxStore.init()
  await duckStore.init()
  stores = [
    { name: 'influxdb', store: influxStore },
    { name: 'duckdb', store: duckStore },
  ]
})

afterAll(async () => {
  for (const s of stores ?? []) await s.store.close()
  await influx?.stop()
  if (dir !== undefined) rmSync(dir, { recursive: true, force: true })
})

/** Writes each batch, in order, to both stores. */
async function writeBoth(...batches: StoredReading[][]): Promise<void> {
  for (const { store } of stores) for (const batch of batches) await store.write(batch)
}

/** A device's readings from each store, by store name. */
async function rowsOf(kind: DeviceKind, device: string, from = T0 - 30 * DAY, to = T0 + 30 * DAY) {
  const out: Record<string, ReadingRow[]> = {}
  for (const { name, store } of stores) {
    out[name] = await store.queryDevice({ kind, device, from, to, limit: 100_000 })
  }
  return out
}

function analyst(
  kind: DeviceKind,
  filter: AnalystQuery['filter'],
  fields: string[],
  extra: Partial<AnalystQuery> = {},
): AnalystQuery {
  return {
    kind,
    filter,
    fields,
    from: T0 - 30 * DAY,
    to: T0 + 30 * DAY,
    tz: 'UTC',
    tzOffsetMs: 0,
    aggregates: [],
    groupBy: 'device',
    maxRows: 10_000,
    ...extra,
  }
}

async function analystOf(query: AnalystQuery) {
  const out: Record<string, unknown> = {}
  for (const { name, store } of stores) out[name] = await store.analystQuery(query, { timeoutMs: 10_000 })
  return out
}

/** Both stores give `expected`. */
function same<T>(answers: Record<string, T>, expected: T): void {
  expect(answers).toEqual({ influxdb: expected, duckdb: expected })
}

describe('store edge cases, InfluxDB 1.6 and the embedded store side by side', () => {
  it('a replayed backlog (the spool replayed after a crash, batched differently) leaves one point per reading', async () => {
    const ids = [newDevice('replay'), newDevice('replay')]
    const batch: StoredReading[] = []
    for (let i = 0; i < 120; i++) {
      const device = ids[i % 2]!
      batch.push(
        i % 3 === 0
          ? {
              ...river(device, i),
              kind: 'rain-gauge',
              fields: { rainfall: i / 4, battery: 50 },
            }
          : river(device, i),
      )
    }
    // First time in two batches; the replay starts before the checkpoint and cuts the batches elsewhere.
    await writeBoth(batch.slice(0, 70), batch.slice(70), batch.slice(40, 101), batch.slice(101), batch)
    for (const kind of ['river-level', 'rain-gauge'] as const) {
      for (const device of ids) {
        const expected = batch.filter((r) => r.kind === kind && r.device === device)
        same(await rowsOf(kind, device), expected)
      }
    }
    const count = analyst('river-level', { devices: ids }, ['seq'], {
      windowMs: DAY,
      aggregates: ['count'],
      from: DAY0,
      to: DAY0 + DAY,
    })
    same(await analystOf(count), [
      { group: ids[0]!, time: DAY0, values: [40] },
      { group: ids[1]!, time: DAY0, values: [40] },
    ])
  })

  it('stores late data in its place and never lets it replace the latest value', async () => {
    const device = newDevice('late')
    const onTime = [10, 11, 12].map((i) => river(device, i))
    // Sent from a backlog an hour later, with a reading time before all of them.
    const late = { ...river(device, 5, { waterLevel: 999 }), receivedAt: T0 + 70 * MINUTE }
    await writeBoth(onTime, [late])
    same(await rowsOf('river-level', device), [late, ...onTime])
    const newest = await rowsOf('river-level', device, T0 + 12 * MINUTE - 1, T0 + 30 * DAY)
    same(newest, [onTime[2]!])
    const last = analyst('river-level', { devices: [device] }, ['waterLevel', 'seq', 'receivedAt'], {
      windowMs: DAY,
      aggregates: ['last'] satisfies AnalystAggregate[],
      from: DAY0,
      to: DAY0 + DAY,
    })
    same(await analystOf(last), [{ group: device, time: DAY0, values: [112, 12, onTime[2]!.receivedAt] }])
  })

  it('keeps readings a millisecond apart as separate points, with their exact times and inclusive bounds', async () => {
    const device = newDevice('ms')
    const readings = [0, 1, 2, 999, 1000].map((ms, i) => ({ ...river(device, 0), ts: T0 + ms, seq: i }))
    await writeBoth(readings)
    same(await rowsOf('river-level', device), readings)
    same(await rowsOf('river-level', device, T0 + 1, T0 + 2), readings.slice(1, 3))
    same(await rowsOf('river-level', device, T0 + 999, T0 + 999), [readings[3]!])
  })

  it('keeps readings of two devices with the same time apart; a district `last` takes the greater', async () => {
    const a = newDevice('twin')
    const b = newDevice('twin')
    const district = `Twin ${a}`
    const ra = { ...river(a, 3, { waterLevel: 40 }), district }
    const rb = { ...river(b, 3, { waterLevel: 41.5 }), district }
    await writeBoth([rb, ra])
    same(await rowsOf('river-level', a), [ra])
    same(await rowsOf('river-level', b), [rb])
    const last = analyst('river-level', { district }, ['waterLevel'], {
      windowMs: DAY,
      aggregates: ['last', 'count'],
      groupBy: 'district',
      from: DAY0,
      to: DAY0 + DAY,
    })
    same(await analystOf(last), [{ group: district, time: DAY0, values: [41.5, 2] }])
  })

  it('two readings of one device with the same time are one point: the later seq wins, fields merge', async () => {
    const device = newDevice('sameTs')
    const first = river(device, 4, { waterLevel: 120.5, battery: 80 })
    const second = { ...first, seq: 5, receivedAt: first.receivedAt + 1, fields: { waterLevel: 121 } }
    await writeBoth([first], [second])
    same(await rowsOf('river-level', device), [{ ...second, fields: { waterLevel: 121, battery: 80 } }])
  })

  it('round-trips extreme but valid values: zero, negatives, the range ends, tiny and huge floats', async () => {
    const device = newDevice('extreme')
    const readings: StoredReading[] = [
      river(device, 0, { waterLevel: 0, flow: 0, battery: 0, rssi: 0 }),
      river(device, 1, { waterLevel: -500, flow: 20_000, battery: 100, rssi: -150 }),
      // The same float field holding a whole number in one reading and a fraction in the next.
      river(device, 2, { waterLevel: 80 }),
      river(device, 3, { waterLevel: 80.5 }),
      river(device, 4, { waterLevel: 1e21, flow: 1.7976931348623157e308 }),
      river(device, 5, { waterLevel: 5e-324, flow: 1e-7, rssi: -123.456789012345 }),
      river(device, 6, { waterLevel: -1.5e-300 }),
    ]
    const crowd = newDevice('extreme-crowd')
    const counts: StoredReading[] = [
      { ...river(crowd, 0), kind: 'crowd-counter', fields: { peopleIn: 0, peopleOut: 0, occupancy: 0 } },
      {
        ...river(crowd, 1),
        kind: 'crowd-counter',
        fields: { peopleIn: 100_000, peopleOut: 100_000, occupancy: 100_000 },
      },
      { ...river(crowd, 2), kind: 'crowd-counter', fields: { peopleIn: Number.MAX_SAFE_INTEGER } },
    ]
    await writeBoth(readings, counts)
    same(await rowsOf('river-level', device), readings)
    same(await rowsOf('crowd-counter', crowd), counts)
  })

  it('round-trips non-ASCII tags and finds them by district and regency', async () => {
    const device = `pasar-ᬩᬮᬶ-${newDevice('u')}`
    const district = `Kecamatan Ubud 🌾 👨‍👩‍👧 é ${device}`
    const regency = 'Kabupaten Gianyar — ᬕᬶᬬᬜ᭄ᬬᬭ, "Bali" = 🏝 עברית'
    const readings = [0, 1].map((i) => ({ ...river(device, i), district, regency }))
    await writeBoth(readings)
    same(await rowsOf('river-level', device), readings)
    for (const filter of [{ district }, { regency, district }]) {
      const q = analyst('river-level', filter, ['waterLevel'], { groupBy: 'district' })
      same(await analystOf(q), [
        { group: district, time: readings[0]!.ts, device, values: [100] },
        { group: district, time: readings[1]!.ts, device, values: [101] },
      ])
    }
  })

  it('refuses a registry value that could break or inject a line, and stores nothing of its batch', async () => {
    const device = newDevice('inject')
    const victim = newDevice('victim')
    const good = river(device, 1)
    const evil: StoredReading[] = [
      {
        ...good,
        district: `Kuta\nriver-level,device=${victim},district=x,kind=river-level,regency=y waterLevel=1,seq=1i,receivedAt=1i ${T0}`,
      },
      { ...good, regency: 'Badung\\' },
      { ...good, district: 'Kuta\\ Selatan' },
      { ...good, district: 'Kuta\r' },
      { ...good, device: `${device}\n` },
    ]
    for (const { name, store } of stores) {
      for (const bad of evil) {
        const error = await store.write([good, bad]).then(
          () => undefined,
          (e: unknown) => e,
        )
        expect(error, `${name} ${JSON.stringify(bad)}`).toBeInstanceOf(StoreWriteError)
        expect((error as StoreWriteError).retryable).toBe(false)
      }
    }
    same(await rowsOf('river-level', device), [])
    same(await rowsOf('river-level', victim), [])
  })

  it('applies repeats of a reading within one write in order, also when the write takes several requests', async () => {
    // One request per line: InfluxDB runs concurrent requests in any order, so a repeat sent in a request
    // of its own could land before the reading it follows (it did in about a third of these writes).
    const split = createInfluxStore({
      url: influx.url,
      apiVersion: 'v1',
      database: 'edge',
      maxRetries: 0,
      batchSize: 1,
    })
    const device = newDevice('repeat')
    const expected: StoredReading[] = []
    try {
      for (let k = 0; k < 100; k++) {
        const first = river(device, k, { waterLevel: 1, battery: 50 })
        const others = [1, 2, 3].map((j) => river(`${device}-other-${j}`, k))
        const repeat = {
          ...first,
          seq: first.seq + 1000,
          receivedAt: first.receivedAt + 1,
          fields: { waterLevel: 2 },
        }
        const batch = [first, ...others, repeat]
        await split.write(batch)
        await stores[1]!.store.write(batch)
        expected.push({ ...repeat, fields: { waterLevel: 2, battery: 50 } })
      }
    } finally {
      await split.close()
    }
    same(await rowsOf('river-level', device), expected)
  })
})

describe('the store writer over refused readings (both stores)', () => {
  async function writeThroughSpool(store: TimeSeriesStore, readings: StoredReading[]) {
    const spoolDir = mkdtempSync(join(dir, 'spool-'))
    const spool = Spool.open({
      dir: spoolDir,
      segmentBytes: 64 * 1024,
      maxMemoryReadings: 0,
      maxBytes: 10_000_000,
    })
    for (const r of readings) await spool.append([r])
    const deadLetterPath = join(spoolDir, 'dead-letter.ndjson')
    const writer = new StoreWriter(
      spool,
      store,
      { batchSize: 1000, maxBatchWaitMs: 0, retryInitialMs: 5, retryMaxMs: 20, deadLetterPath },
      { log: pino({ level: 'silent' }), metrics: createMetrics(), bus: new PlatformBus() },
    )
    writer.start()
    const drained = await spool.whenDrained(10_000)
    await writer.stop()
    await spool.close()
    const dead = readFileSync(deadLetterPath, 'utf8')
      .trim()
      .split('\n')
      .map((line) => (JSON.parse(line) as { reading: StoredReading }).reading)
    return { drained, dead }
  }

  it('sets aside only the readings whose registry tags cannot be stored, and stores the rest once', async () => {
    const device = newDevice('mixed')
    const broken = newDevice('broken')
    const readings: StoredReading[] = []
    for (let i = 0; i < 40; i++) {
      readings.push(
        i % 10 === 7 ? { ...river(broken, i), district: 'Kuta\\' } : river(device, i, { waterLevel: i }),
      )
    }
    for (const { name, store } of stores) {
      const { drained, dead } = await writeThroughSpool(store, readings)
      expect(drained, name).toBe(true)
      expect(
        dead.map((r) => r.seq),
        name,
      ).toEqual([7, 17, 27, 37])
    }
    same(
      await rowsOf('river-level', device),
      readings.filter((r) => r.device === device),
    )
    same(await rowsOf('river-level', broken), [])
  })
  it('sets aside only the line of a field type conflict, also when a write takes several requests', async () => {
    // A database of its own: the conflict is with a string `flow` another writer put in this week's shard.
    const conflicted = createInfluxStore({
      url: influx.url,
      apiVersion: 'v1',
      database: 'edge_conflict',
      maxRetries: 0,
      batchSize: 3,
    })
    try {
      await conflicted.init()
      expect(
        (await influx.write('edge_conflict', `river-level,device=legacy flow="broken" ${T0}`)).status,
      ).toBe(204)
      const device = newDevice('conflict')
      const readings = Array.from({ length: 20 }, (_, i) =>
        river(device, i, i === 11 ? { waterLevel: i, flow: 2.5 } : { waterLevel: i }),
      )
      // The same reading twice more, as a replay would send it, around the refused one.
      readings.push(readings[10]!, readings[12]!)
      const { drained, dead } = await writeThroughSpool(conflicted, readings)
      expect(drained).toBe(true)
      expect(dead.map((r) => r.seq)).toEqual([11])
      const rows = await conflicted.queryDevice({
        kind: 'river-level',
        device,
        from: T0,
        to: T0 + DAY,
        limit: 100,
      })
      expect(rows).toEqual(readings.slice(0, 20).filter((r) => r.seq !== 11))
    } finally {
      await conflicted.close()
    }
  })
})

describe('embedded store: a write that fails halfway', () => {
  it('leaves nothing of its batch, not even in the staging tables, and the next write succeeds', async () => {
    const path = join(dir, 'halfway.duckdb')
    // The air-quality table refuses PM2.5 readings over 1000: a failure in the batch's second table.
    const instance = await DuckDBInstance.create(path)
    const connection = await instance.connect()
    const metrics = metricColumns('air-quality').map((m) => `"${m.name}" ${m.integer ? 'BIGINT' : 'DOUBLE'}`)
    await connection.run(
      `CREATE TABLE "${tableName('air-quality')}" (ts BIGINT NOT NULL, device VARCHAR NOT NULL,
       district VARCHAR NOT NULL, regency VARCHAR NOT NULL, kind VARCHAR NOT NULL, seq BIGINT NOT NULL,
       received_at BIGINT NOT NULL, ${metrics.join(', ')}, PRIMARY KEY (device, ts),
       CHECK (pm25 IS NULL OR pm25 <= 1000))`,
    )
    connection.closeSync()
    instance.closeSync()

    const store = createDuckDbStore({ path })
    try {
      await store.init()
      const gauge = newDevice('half')
      const station = newDevice('half-aq')
      const first = river(gauge, 1)
      const aq = (i: number, pm25: number): StoredReading => ({
        ...river(station, i),
        kind: 'air-quality',
        fields: { pm25 },
      })
      const error = await store.write([first, aq(1, 20), aq(2, 1500)]).then(
        () => undefined,
        (e: unknown) => e,
      )
      expect(error).toBeInstanceOf(StoreWriteError)
      expect((error as StoreWriteError).retryable).toBe(false)
      const read = (kind: DeviceKind, device: string) =>
        store.queryDevice({ kind, device, from: 0, to: T0 * 2, limit: 100 })
      expect(await read('river-level', gauge)).toEqual([])
      expect(await read('air-quality', station)).toEqual([])

      // Rows staged by the failed batch must not ride along with the next ones.
      const other = river(newDevice('half'), 2)
      await store.write([other])
      await store.write([aq(3, 30)])
      expect(await read('river-level', gauge)).toEqual([])
      expect(await read('river-level', other.device)).toEqual([other])
      expect(await read('air-quality', station)).toEqual([aq(3, 30)])
    } finally {
      await store.close()
    }
  })
})
