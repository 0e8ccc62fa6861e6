import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { DEVICE_KINDS, type DeviceKind, KIND_SPECS, type MetricSpec } from '../firmware-contracts/index.ts'
import { createDuckDbStore } from '../ingest/store/duckdb.ts'
import { createInfluxStore } from '../ingest/store/influx.ts'
import { type StoredReading, StoreWriteError, type TimeSeriesStore } from '../ingest/store/types.ts'
import { type Influxd, startInfluxd } from './helpers/influxd.ts'

/** A store under test; `open` gives a fresh, initialised store with its own database or file. */
interface Backend {
  readonly name: string
  setup(): Promise<void>
  open(): Promise<TimeSeriesStore>
  teardown(): Promise<void>
}

function influxBackend(): Backend {
  let server: Influxd | undefined
  let databases = 0
  return {
    name: 'InfluxDB 1.6 (v1 write path)',
    async setup() {
      server = await startInfluxd()
    },
    async open() {
      if (server === undefined) throw new Error('influxd not started')
      const store = createInfluxStore({
        url: server.url,
        apiVersion: 'v1',
        database: `contract_${++databases}`,
        timeoutMs: 10_000,
        maxRetries: 0,
      })
      await store.init()
      return store
    },
    async teardown() {
      await server?.stop()
    },
  }
}

function duckDbBackend(): Backend {
  let dir: string | undefined
  let files = 0
  return {
    name: 'embedded DuckDB',
    async setup() {
      dir = mkdtempSync(join(tmpdir(), 'duckdb-contract-'))
    },
    async open() {
      if (dir === undefined) throw new Error('no temp dir')
      const store = createDuckDbStore({ path: join(dir, `store-${++files}.duckdb`) })
      await store.init()
      return store
    },
    async teardown() {
      if (dir !== undefined) rmSync(dir, { recursive: true, force: true })
    },
  }
}

const T0 = Date.UTC(2025, 2, 10, 0, 0, 0)
const MINUTE = 60_000
let devices = 0
/** Every test writes its own devices, so tests sharing a store cannot see each other's rows. */
function newDevice(prefix = 'gauge'): string {
  return `${prefix}-${++devices}`
}

function specOf(kind: DeviceKind, metric: string): MetricSpec {
  const metrics: Readonly<Record<string, MetricSpec>> = KIND_SPECS[kind].metrics
  return metrics[metric]!
}

/** Every metric of the kind, integers where the contract says so and values with a fraction elsewhere. */
function allFields(kind: DeviceKind, i: number): Record<string, number> {
  const fields: Record<string, number> = {}
  for (const [name, spec] of Object.entries(KIND_SPECS[kind].metrics) as [string, MetricSpec][]) {
    const mid = spec.min + (spec.max - spec.min) * 0.37
    fields[name] = spec.integer === true ? Math.round(mid) + i : Math.round(mid * 100) / 100 + i + 0.25
  }
  return fields
}

function reading(kind: DeviceKind, device: string, i: number, fields = allFields(kind, i)): StoredReading {
  return {
    kind,
    device,
    district: 'Denpasar Selatan',
    regency: 'Kota Denpasar',
    ts: T0 + i * MINUTE,
    receivedAt: T0 + i * MINUTE + 1500,
    seq: i,
    fields,
  }
}

function everything(store: TimeSeriesStore, kind: DeviceKind, device: string) {
  return store.queryDevice({
    kind,
    device,
    from: T0 - 365 * 24 * 60 * MINUTE,
    to: T0 + 365 * 24 * 60 * MINUTE,
    limit: 100_000,
  })
}

async function refusal(promise: Promise<unknown>): Promise<StoreWriteError> {
  const error = await promise.then(
    () => undefined,
    (e: unknown) => e,
  )
  expect(error).toBeInstanceOf(StoreWriteError)
  return error as StoreWriteError
}

describe.each([influxBackend(), duckDbBackend()])('store contract: $name', (backend) => {
  let store: TimeSeriesStore

  beforeAll(async () => {
    await backend.setup()
    store = await backend.open()
  })

  afterAll(async () => {
    await store?.close()
    await backend.teardown()
  })

  it('stores readings of every kind and reads them back with their tags, fields and times', async () => {
    const written: StoredReading[] = []
    for (const kind of DEVICE_KINDS) {
      const device = newDevice(kind)
      const onlyRequired = {
        [KIND_SPECS[kind].requireOneOf[0]!]: allFields(kind, 1)[KIND_SPECS[kind].requireOneOf[0]!]!,
      }
      written.push(reading(kind, device, 0), {
        ...reading(kind, device, 1, onlyRequired),
        district: 'Kuta',
        regency: 'Badung',
      })
    }
    await store.write(written)

    for (const kind of DEVICE_KINDS) {
      const mine = written.filter((r) => r.kind === kind)
      expect(await everything(store, kind, mine[0]!.device)).toEqual(mine)
    }
  })

  it("returns a device's readings in an inclusive time range, oldest first, at most `limit`", async () => {
    const device = newDevice()
    const other = newDevice()
    const readings = [3, 0, 4, 1, 2].map((i) => reading('river-level', device, i))
    await store.write([...readings, reading('river-level', other, 2)])

    const range = { kind: 'river-level', device, from: T0 + MINUTE, to: T0 + 3 * MINUTE } as const
    expect((await store.queryDevice({ ...range, limit: 10 })).map((r) => r.seq)).toEqual([1, 2, 3])
    expect((await store.queryDevice({ ...range, limit: 2 })).map((r) => r.seq)).toEqual([1, 2])
    expect(await store.queryDevice({ ...range, limit: 0 })).toEqual([])
    expect(await store.queryDevice({ ...range, from: range.to + 1, to: range.from, limit: 10 })).toEqual([])
    expect(await store.queryDevice({ ...range, kind: 'rain-gauge', limit: 10 })).toEqual([])
  })

  it('keeps one row when the same reading is written twice', async () => {
    const r = reading('rain-gauge', newDevice(), 5)
    await store.write([r])
    await store.write([r])
    expect(await everything(store, 'rain-gauge', r.device)).toEqual([r])
  })

  it("re-writing a reading's identity updates seq and receivedAt and merges fields as InfluxDB does", async () => {
    const first = reading('river-level', newDevice(), 7, { waterLevel: 100.5, battery: 90 })
    const second = {
      ...first,
      seq: 70,
      receivedAt: first.receivedAt + 30_000,
      fields: { waterLevel: 101.25 },
    }
    await store.write([first])
    await store.write([second])
    expect(await everything(store, 'river-level', first.device)).toEqual([
      { ...second, fields: { waterLevel: 101.25, battery: 90 } },
    ])
  })

  it('collapses repeats of one reading within a batch, later values winning', async () => {
    const r = reading('air-quality', newDevice(), 3, { pm25: 12.5, pm10: 30 })
    const later = { ...r, seq: 4, fields: { pm25: 13.5, temperature: 29.5 } }
    await store.write([r, later])
    expect(await everything(store, 'air-quality', r.device)).toEqual([
      { ...later, fields: { pm25: 13.5, pm10: 30, temperature: 29.5 } },
    ])
  })

  it('keeps integer metrics integers and float metrics exact floats', async () => {
    const device = newDevice('market')
    const crowd = reading('crowd-counter', device, 2, {
      peopleIn: 7,
      peopleOut: 0,
      occupancy: 1234,
      battery: 80,
      rssi: -67.5,
    })
    const river = reading('river-level', device, 2, { waterLevel: 0.1 + 0.2, flow: 1e-7, battery: 99.99999 })
    await store.write([crowd, river])

    const [crowdRow] = await everything(store, 'crowd-counter', device)
    expect(crowdRow?.fields).toEqual(crowd.fields)
    expect(Number.isInteger(crowdRow?.fields.peopleIn)).toBe(true)
    const [riverRow] = await everything(store, 'river-level', device)
    expect(riverRow?.fields).toEqual(river.fields)
    expect(specOf('crowd-counter', 'peopleIn').integer).toBe(true)
  })

  it('refuses readings no store can hold, as not retryable, and stores a separate valid batch', async () => {
    const device = newDevice('refused')
    const good = reading('crowd-counter', device, 1, { peopleIn: 3 })
    const bad: StoredReading[] = [
      { ...good, fields: { peopleIn: 2.5 } },
      { ...good, fields: { notAMetric: 1 } },
      { ...good, fields: { peopleIn: Number.NaN } },
      { ...good, fields: { occupancy: Number.POSITIVE_INFINITY } },
      { ...good, ts: good.ts + 0.5 },
      { ...good, seq: 1.5 },
      { ...good, device: `${device}\nsecond line` },
      { ...good, device: `${device}\ttab` },
      { ...good, device: `${device}\u0000` },
      { ...good, device: `${device}\\` },
      { ...good, device: `${device}\\,x` },
      { ...good, regency: `Bali \uD800` },
      { ...good, district: '' },
      { ...good, kind: 'sewer-level' as DeviceKind },
    ]
    for (const r of bad) {
      const error = await refusal(store.write([reading('crowd-counter', device, 2, { peopleIn: 4 }), r]))
      expect(error.retryable).toBe(false)
    }
    await store.write([good])
    // The valid reading in front of each refused one was refused with its batch.
    expect(await everything(store, 'crowd-counter', device)).toEqual([good])
  })

  it('round-trips tag values with spaces, commas, quotes, equals signs, backslashes and non-ASCII text', async () => {
    const device = `pos 7, "gate"='north'=a\\b ${newDevice('x')}`
    const r = {
      ...reading('crowd-counter', device, 1, { occupancy: 12 }),
      district: 'Kota Denpasar, Bali',
      regency: `Lombok Tengah = NTB 'x' "y" — Praya 日本 🚰`,
    }
    await store.write([r])
    expect(await everything(store, 'crowd-counter', device)).toEqual([r])
  })

  it('answers hostile device ids with nothing, without errors or side effects', async () => {
    const victim = reading('river-level', newDevice('victim'), 1, { waterLevel: 10 })
    const quoted = reading('river-level', `o'brien "${newDevice('q')}"`, 1, { waterLevel: 11 })
    const dotted = reading('river-level', `gauge.${newDevice('re')}`, 1, { waterLevel: 12 })
    await store.write([victim, quoted, dotted])

    const hostile = [
      "' OR '1'='1",
      `${victim.device}' OR "device" =~ /.*/ OR 'x'='`,
      `x'; DROP MEASUREMENT "river-level"; --`,
      `x'; DROP DATABASE contract_1; SELECT '`,
      `${victim.device}"`,
      `${victim.device}\\`,
      '\\',
      "\\'",
      '"',
      '.*',
      '/.*/',
      dotted.device.replace('.', '?'),
      'gauge.%',
      '%',
      '*',
      `${victim.device}\n`,
      '\u0000',
      'דֶּבֶר 🚰 日本語',
      `o'brien`,
      '',
    ]
    for (const device of hostile) {
      expect(await everything(store, 'river-level', device), JSON.stringify(device)).toEqual([])
    }
    expect(await everything(store, 'river-level', victim.device)).toEqual([victim])
    expect(await everything(store, 'river-level', quoted.device)).toEqual([quoted])
    expect(await everything(store, 'river-level', dotted.device)).toEqual([dotted])
    await expect(
      store.queryDevice({
        kind: `river-level" ; DROP` as DeviceKind,
        device: victim.device,
        from: 0,
        to: T0,
        limit: 1,
      }),
    ).rejects.toThrow(RangeError)
  })

  it('resolves every one of many concurrent writes once its readings are stored', async () => {
    const device = newDevice('busy')
    const calls = Array.from({ length: 20 }, (_, c) =>
      store.write(
        Array.from({ length: 50 }, (_, i) => reading('rain-gauge', device, c * 50 + i, { rainfall: i / 4 })),
      ),
    )
    await Promise.all(calls)
    const rows = await everything(store, 'rain-gauge', device)
    expect(rows.map((r) => r.seq)).toEqual(Array.from({ length: 1000 }, (_, i) => i))
  })

  it('refuses writes after close as retryable, so the spool keeps them', async () => {
    const other = await backend.open()
    await other.close()
    const error = await refusal(other.write([reading('rain-gauge', newDevice(), 1, { rainfall: 1 })]))
    expect(error.retryable).toBe(true)
  })
})
