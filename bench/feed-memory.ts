// What the spool feed keeps per reading while the store has not confirmed it: the durable batches' text
// parsed by `parseBatch` (readings share one copy of their repeated strings), against the same text parsed
// with a plain JSON.parse per batch (the baseline, as before the strings were shared), in the same run.
// 200,000 readings (the default SPOOL_MAX_MEMORY_READINGS) from 1,000 devices of the four kinds, in
// batches of 30 as the broker thread commits them at 10,000 readings/s. Also the CPU of each parse.
// `npm run bench:feed-memory` (needs --expose-gc, which the script passes).
import { DEVICE_KINDS } from '../firmware-contracts/index.ts'
import { parseBatch, spoolLine } from '../ingest/spool.ts'
import type { StoredReading } from '../ingest/store/types.ts'

const gc = (globalThis as { gc?: () => void }).gc
if (gc === undefined) throw new Error('bench: run with node --expose-gc (npm run bench:feed-memory)')

const READINGS = 200_000
const PER_BATCH = 30
const DEVICES = 1000
const FIELDS: Record<string, Record<string, number>> = {
  'river-level': { waterLevel: 123.4, battery: 3.9, rssi: -71 },
  'rain-gauge': { rainfall: 0.2, battery: 3.8, rssi: -69 },
  'air-quality': {
    pm25: 35.2,
    pm10: 51.7,
    co: 912.3,
    o3: 41.5,
    no2: 22.1,
    so2: 10.4,
    battery: 3.7,
    rssi: -65,
  },
  'crowd-counter': { occupancy: 412, peopleIn: 12, peopleOut: 9, battery: 3.9, rssi: -60 },
}

function batches(): string[] {
  const out: string[] = []
  const start = Date.now()
  let text = ''
  for (let i = 0; i < READINGS; i++) {
    const d = i % DEVICES
    const kind = DEVICE_KINDS[d % DEVICE_KINDS.length]!
    const reading: StoredReading = {
      kind,
      device: `dps-${kind}-${String(d).padStart(4, '0')}`,
      district: `Kecamatan ${d % 40}`,
      regency: `Kabupaten ${d % 8}`,
      ts: start + i,
      receivedAt: start + i + 3,
      seq: Math.floor(i / DEVICES),
      fields: FIELDS[kind]!,
    }
    text += spoolLine(i, reading)
    if ((i + 1) % PER_BATCH === 0) {
      // Flat, as a message from the broker thread arrives: not a rope of the concatenations above.
      out.push(Buffer.from(text).toString())
      text = ''
    }
  }
  return out
}

function plainParse(text: string): unknown[] {
  const list = JSON.parse(`[${text.slice(0, -1).replaceAll('\n', ',')}]`) as Array<{ o: number; r: unknown }>
  return list.map((line) => ({ offset: line.o, reading: line.r }))
}

/** Bytes of heap the parsed batches keep (after full collections), and µs of parsing per reading. */
function measure(
  texts: readonly string[],
  parse: (text: string) => unknown[],
): { bytes: number; us: number } {
  gc!()
  gc!()
  const kept: unknown[][] = []
  const t = process.hrtime.bigint()
  for (const text of texts) kept.push(parse(text))
  const us = Number(process.hrtime.bigint() - t) / 1000 / READINGS
  gc!()
  gc!()
  const withKept = process.memoryUsage().heapUsed
  kept.length = 0
  gc!()
  gc!()
  const after = process.memoryUsage().heapUsed
  // What the batches alone kept: the heap with them less the heap once they are gone.
  return { bytes: (withKept - after) / READINGS, us }
}

const texts = batches()
// Interleaved, twice, so that neither side gets the warmer or the quieter moment.
const runs = {
  plain: [] as Array<{ bytes: number; us: number }>,
  shared: [] as Array<{ bytes: number; us: number }>,
}
for (let i = 0; i < 2; i++) {
  runs.plain.push(measure(texts, plainParse))
  runs.shared.push(measure(texts, parseBatch))
}
const best = (a: Array<{ bytes: number; us: number }>) => ({
  bytes: Math.round(Math.min(...a.map((r) => r.bytes))),
  us: Math.min(...a.map((r) => r.us)),
})
const [p, s] = [best(runs.plain), best(runs.shared)]
process.stdout.write(
  `spool feed, ${READINGS.toLocaleString('en')} readings kept: plain JSON.parse ${p.bytes} bytes a reading (${p.us.toFixed(2)} µs to parse), ` +
    `parseBatch ${s.bytes} bytes (${s.us.toFixed(2)} µs), ${(((p.bytes - s.bytes) / p.bytes) * 100).toFixed(0)}% less\n`,
)
process.stdout.write(
  `${JSON.stringify({ baselineBytesPerReading: p.bytes, bytesPerReading: s.bytes, baselineParseUs: Number(p.us.toFixed(3)), parseUs: Number(s.us.toFixed(3)) })}\n`,
)
