import { execFileSync } from 'node:child_process'
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { DuckDBInstance } from '@duckdb/node-api'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { DEVICE_KINDS, KIND_SPECS, type MetricSpec } from '../firmware-contracts/index.ts'
import { createDuckDbStore, tableName } from '../ingest/store/duckdb.ts'
import { type StoredReading, StoreWriteError, type TimeSeriesStore } from '../ingest/store/types.ts'

const T0 = Date.UTC(2025, 7, 17, 9, 0, 0)

function rain(device: string, i: number, rainfall = i / 2): StoredReading {
  return {
    kind: 'rain-gauge',
    device,
    district: 'Praya',
    regency: 'Lombok Tengah',
    ts: T0 + i * 60_000,
    receivedAt: T0 + i * 60_000 + 900,
    seq: i,
    fields: { rainfall, battery: 64.5 },
  }
}

function everything(store: TimeSeriesStore, device: string, kind: StoredReading['kind'] = 'rain-gauge') {
  return store.queryDevice({ kind, device, from: 0, to: T0 * 2, limit: 1_000_000 })
}

/** Opens the file with DuckDB in another process, as a second platform instance would. */
function openInChildProcess(path: string): string {
  const script = `
    import { DuckDBInstance } from '@duckdb/node-api'
    try {
      const instance = await DuckDBInstance.create(process.argv[1])
      instance.closeSync()
      console.log('opened')
    } catch (error) {
      console.log('failed: ' + error.message)
    }`
  return execFileSync(process.execPath, ['--input-type=module', '-e', script, path], {
    encoding: 'utf8',
  }).trim()
}

describe('embedded DuckDB store', () => {
  let dir: string

  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), 'duckdb-store-'))
  })

  afterAll(() => {
    rmSync(dir, { recursive: true, force: true })
  })

  it('keeps the file locked while open and releases it on close, with the data kept', async () => {
    const path = join(dir, 'nested', 'data', 'readings.duckdb')
    const first = createDuckDbStore({ path })
    await first.init()
    const r = rain('gauge-1', 1)
    await first.write([r])

    // POSIX locks keep other processes out, but not a second DuckDB instance in this one: the store does.
    const rival = createDuckDbStore({ path })
    await expect(rival.init()).rejects.toThrow(/already open in this process/)
    await rival.close()
    expect(openInChildProcess(path)).toMatch(/^failed: .*lock/i)

    await first.close()
    expect(openInChildProcess(path)).toBe('opened')
    const reopened = createDuckDbStore({ path })
    try {
      await reopened.init()
      expect(await everything(reopened, 'gauge-1')).toEqual([r])
    } finally {
      await reopened.close()
    }
  })

  it('creates one table per kind with a (device, ts) key, BIGINT integer metrics and DOUBLE others', async () => {
    const path = join(dir, 'schema.duckdb')
    const store = createDuckDbStore({ path })
    await store.init()
    await store.close()

    const instance = await DuckDBInstance.create(path)
    const connection = await instance.connect()
    try {
      for (const kind of DEVICE_KINDS) {
        const described = await connection.runAndReadAll(`DESCRIBE "${tableName(kind)}"`)
        const types = Object.fromEntries(
          described.getRowObjects().map((row) => [row.column_name, row.column_type]),
        )
        const expected: Record<string, string> = {
          ts: 'BIGINT',
          device: 'VARCHAR',
          district: 'VARCHAR',
          regency: 'VARCHAR',
          kind: 'VARCHAR',
          seq: 'BIGINT',
          received_at: 'BIGINT',
        }
        for (const [name, spec] of Object.entries(KIND_SPECS[kind].metrics) as [string, MetricSpec][]) {
          expected[name] = spec.integer === true ? 'BIGINT' : 'DOUBLE'
        }
        expect(types, kind).toEqual(expected)
        const keys = described.getRowObjects().filter((row) => row.key === 'PRI')
        expect(keys.map((row) => row.column_name).sort()).toEqual(['device', 'ts'])
      }
    } finally {
      connection.closeSync()
      instance.closeSync()
    }
  })

  it('adds columns for metrics that a newer contract introduced to an existing table', async () => {
    const path = join(dir, 'old-schema.duckdb')
    const instance = await DuckDBInstance.create(path)
    const connection = await instance.connect()
    await connection.run(
      `CREATE TABLE "readings_river_level" (ts BIGINT NOT NULL, device VARCHAR NOT NULL, district VARCHAR NOT NULL,
       regency VARCHAR NOT NULL, kind VARCHAR NOT NULL, seq BIGINT NOT NULL, received_at BIGINT NOT NULL,
       "waterLevel" DOUBLE, PRIMARY KEY (device, ts))`,
    )
    await connection.run(
      `INSERT INTO "readings_river_level" VALUES (${T0}, 'old-gauge', 'Negara', 'Jembrana', 'river-level', 1, ${T0 + 5}, 42.5)`,
    )
    connection.closeSync()
    instance.closeSync()

    const store = createDuckDbStore({ path })
    try {
      await store.init()
      const r: StoredReading = {
        kind: 'river-level',
        device: 'old-gauge',
        district: 'Negara',
        regency: 'Jembrana',
        ts: T0 + 60_000,
        receivedAt: T0 + 60_005,
        seq: 2,
        fields: { waterLevel: 43.5, flow: 12.25, rssi: -80 },
      }
      await store.write([r])
      const rows = await everything(store, 'old-gauge', 'river-level')
      expect(rows).toEqual([
        {
          kind: 'river-level',
          device: 'old-gauge',
          district: 'Negara',
          regency: 'Jembrana',
          ts: T0,
          receivedAt: T0 + 5,
          seq: 1,
          fields: { waterLevel: 42.5 },
        },
        r,
      ])
    } finally {
      await store.close()
    }
  })

  it('works in memory', async () => {
    const store = createDuckDbStore({ path: ':memory:' })
    try {
      await store.init()
      expect(store.description).toBe('embedded DuckDB store in memory')
      await store.write([rain('mem', 1)])
      expect(await everything(store, 'mem')).toEqual([rain('mem', 1)])
    } finally {
      await store.close()
    }
  })

  it('serializes concurrent writes of overlapping readings on its one write connection', async () => {
    const store = createDuckDbStore({ path: join(dir, 'busy.duckdb') })
    try {
      await store.init()
      // Every call rewrites readings 0..99, so any two unserialized transactions would conflict on keys.
      const calls = Array.from({ length: 25 }, (_, c) =>
        store.write(Array.from({ length: 100 }, (_, i) => ({ ...rain('busy', i, c), seq: c * 1000 + i }))),
      )
      await Promise.all(calls)
      const rows = await everything(store, 'busy')
      expect(rows).toHaveLength(100)
      // The last call queued is the last applied.
      expect(
        rows.every((row) => row.fields.rainfall === 24 && row.seq === 24_000 + (row.ts - T0) / 60_000),
      ).toBe(true)
    } finally {
      await store.close()
    }
  })

  it('writes large batches in one transaction', async () => {
    const store = createDuckDbStore({ path: join(dir, 'large.duckdb') })
    try {
      await store.init()
      const readings = Array.from({ length: 50_000 }, (_, i) => rain(`device-${i % 50}`, i))
      await store.write(readings)
      const rows = await everything(store, 'device-7')
      expect(rows).toHaveLength(1000)
      expect(rows[999]).toEqual(readings[49_957])
    } finally {
      await store.close()
    }
  })

  it('fails init() when the file cannot be opened, and write() with a retryable StoreWriteError', async () => {
    const path = join(dir, 'a-directory')
    mkdirSync(path)
    const store = createDuckDbStore({ path })
    await expect(store.init()).rejects.toThrow()
    const error = await store.write([rain('x', 1)]).then(
      () => undefined,
      (e: unknown) => e,
    )
    expect(error).toBeInstanceOf(StoreWriteError)
    expect((error as StoreWriteError).retryable).toBe(true)
    await store.close()
  })
})
