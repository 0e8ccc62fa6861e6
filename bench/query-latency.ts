// Analyst query benchmark (`npm run bench:query`; `-- --quick` for a short smoke run).
//
// Loads 1-minute readings of a district of N river gauges (default 50) over D days (default 30) into a
// real InfluxDB 1.6 and into the embedded DuckDB store, then times the issue-7 query, a D-day range in
// 1-hour windows (mean, max, p95), for one device and for the whole district, on both stores, through the
// same code path as the API (resolve, store, shape). In the same run, the baseline: reading the same
// device's raw readings with the existing per-device query (`queryDevice`), which is what a client had
// to do before. Prints one line per measurement and a final JSON line. Not a test: nothing here asserts
// a speed.
import { mkdtempSync, rmSync } from 'node:fs'
import { cpus, tmpdir, totalmem } from 'node:os'
import { join } from 'node:path'
import { parseArgs } from 'node:util'
import {
  type ReadingsQuery,
  ReadingsQuerySchema,
  type RegisteredDevice,
  resolveQuery,
  runAnalystQuery,
  shapeResult,
} from '../ingest/query/index.ts'
import { createDuckDbStore } from '../ingest/store/duckdb.ts'
import { createInfluxStore } from '../ingest/store/influx.ts'
import type { StoredReading, TimeSeriesStore } from '../ingest/store/types.ts'
import { startInfluxd } from '../tests/helpers/influxd.ts'

const { values: flags } = parseArgs({
  options: {
    quick: { type: 'boolean', default: false },
    devices: { type: 'string' },
    days: { type: 'string' },
    runs: { type: 'string' },
  },
})
const quick = flags.quick ?? false
const DEVICES = Number(flags.devices ?? (quick ? 10 : 50))
const DAYS = Number(flags.days ?? (quick ? 3 : 30))
const RUNS = Number(flags.runs ?? (quick ? 3 : 7))
for (const n of [DEVICES, DAYS, RUNS]) {
  if (!Number.isInteger(n) || n < 1 || n > 10_000) throw new Error(`bad flag value ${n}`)
}
const MINUTE = 60_000
const DISTRICT = 'Denpasar Barat'
const END = Date.UTC(2025, 5, 1, 16, 0, 0)
const START = END - DAYS * 86_400_000
const TIMEOUT_MS = 120_000

const devices: RegisteredDevice[] = Array.from({ length: DEVICES }, (_, i) => ({
  id: `bench-river-${String(i + 1).padStart(3, '0')}`,
  kind: 'river-level',
  district: DISTRICT,
  regency: 'Kota Denpasar',
  reportingIntervalMs: MINUTE,
}))

function* batches(size: number): Generator<StoredReading[]> {
  let batch: StoredReading[] = []
  for (const [di, d] of devices.entries()) {
    let seq = 0
    for (let t = START; t < END; t += MINUTE) {
      const phase = ((t / MINUTE + di * 37) % 1440) / 1440
      batch.push({
        kind: 'river-level',
        device: d.id,
        district: d.district,
        regency: d.regency,
        ts: t,
        receivedAt: t + 800,
        seq: ++seq,
        fields: { waterLevel: Math.round((120 + 60 * Math.sin(phase * 2 * Math.PI) + (seq % 13)) * 10) / 10 },
      })
      if (batch.length === size) {
        yield batch
        batch = []
      }
    }
  }
  if (batch.length > 0) yield batch
}

function lookup(filter: Partial<RegisteredDevice>): RegisteredDevice[] {
  return devices.filter(
    (d) =>
      (filter.id === undefined || d.id === filter.id) &&
      (filter.kind === undefined || d.kind === filter.kind) &&
      (filter.district === undefined || d.district === filter.district),
  )
}

function request(extra: Partial<ReadingsQuery>): ReadingsQuery {
  return ReadingsQuerySchema.parse({
    kind: 'river-level',
    metrics: ['waterLevel'],
    window: '1h',
    aggregates: ['mean', 'max', 'p95'],
    from: START,
    to: END,
    ...extra,
  })
}

async function time(fn: () => Promise<number>): Promise<{ ms: number; rows: number }> {
  const t0 = performance.now()
  const rows = await fn()
  return { ms: performance.now() - t0, rows }
}

function summary(samples: number[]) {
  const sorted = [...samples].sort((a, b) => a - b)
  return {
    medianMs: Math.round(sorted[Math.floor(sorted.length / 2)]! * 10) / 10,
    minMs: Math.round(sorted[0]! * 10) / 10,
    maxMs: Math.round(sorted.at(-1)! * 10) / 10,
  }
}

async function measure(store: TimeSeriesStore) {
  const cases = {
    oneDevice: request({ devices: [devices[0]!.id] }),
    district: request({ district: DISTRICT }),
  }
  const out: Record<string, ReturnType<typeof summary> & { rows: number }> = {}
  for (const [name, req] of Object.entries(cases)) {
    const resolved = resolveQuery(req, { now: END, limits: { maxPoints: 1_000_000 }, devices: lookup })
    const run = async () =>
      shapeResult(resolved, await runAnalystQuery(store, resolved.store, TIMEOUT_MS)).rows
    await run() // warm-up: caches, connections, JIT
    const samples: number[] = []
    let rows = 0
    for (let i = 0; i < RUNS; i++) {
      const r = await time(run)
      samples.push(r.ms)
      rows = r.rows
    }
    out[name] = { ...summary(samples), rows }
    console.log(`${store.kind.padEnd(8)} ${name.padEnd(10)} ${JSON.stringify(out[name])}`)
  }
  // Baseline: the raw readings of one device over the range, with the existing per-device query.
  const raw = async () =>
    (
      await store.queryDevice({
        kind: 'river-level',
        device: devices[0]!.id,
        from: START,
        to: END - 1,
        limit: 100_000,
      })
    ).length
  await raw()
  const samples: number[] = []
  let rows = 0
  for (let i = 0; i < RUNS; i++) {
    const r = await time(raw)
    samples.push(r.ms)
    rows = r.rows
  }
  out.baselineRawOneDevice = { ...summary(samples), rows }
  console.log(`${store.kind.padEnd(8)} ${'baseline'.padEnd(10)} ${JSON.stringify(out.baselineRawOneDevice)}`)
  return out
}

async function load(store: TimeSeriesStore): Promise<number> {
  const t0 = performance.now()
  for (const batch of batches(5000)) await store.write(batch)
  return Math.round(performance.now() - t0)
}

const readings = DEVICES * DAYS * 1440
console.log(
  `# query benchmark — ${cpus().length} cores (${cpus()[0]?.model ?? '?'}), ${Math.round(totalmem() / 2 ** 30)} GiB, node ${process.version}`,
)
console.log(
  `# ${DEVICES} devices × ${DAYS} days of 1-minute readings = ${readings} readings; query: ${DAYS} days in 1-hour windows (mean, max, p95); ${RUNS} runs after a warm-up`,
)

const dir = mkdtempSync(join(tmpdir(), 'bench-query-'))
const influxd = await startInfluxd()
const results: Record<string, unknown> = {}
try {
  const duck = createDuckDbStore({ path: join(dir, 'store.duckdb') })
  const influx = createInfluxStore({
    url: influxd.url,
    apiVersion: 'v1',
    database: 'bench',
    timeoutMs: 120_000,
  })
  for (const store of [duck, influx]) {
    await store.init()
    const loadMs = await load(store)
    console.log(`${store.kind.padEnd(8)} loaded ${readings} readings in ${loadMs} ms`)
    results[store.kind] = { loadMs, ...(await measure(store)) }
    await store.close()
  }
} finally {
  await influxd.stop()
  rmSync(dir, { recursive: true, force: true })
}
console.log(
  JSON.stringify({
    bench: 'query',
    cores: cpus().length,
    devices: DEVICES,
    days: DAYS,
    readings,
    runs: RUNS,
    results,
  }),
)
