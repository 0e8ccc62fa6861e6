import { mkdirSync, mkdtempSync, readdirSync, readFileSync, renameSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Writable } from 'node:stream'
import pino from 'pino'
import { afterEach, describe, expect, it } from 'vitest'
import { PlatformBus } from '../ingest/events.ts'
import { createMetrics } from '../ingest/metrics.ts'
import { Spool } from '../ingest/spool.ts'
import { createDuckDbStore } from '../ingest/store/duckdb.ts'
import { StoreWriter } from '../ingest/writer.ts'
import { riverReading as reading, READING_T0 as T0 } from './helpers/readings.ts'

const dirs: string[] = []
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true })
})

/**
 * A writer over a real spool (every backlog read back from its segment files) and the embedded store. `fault`
 * breaks one of the spool's files; it is repaired when the writer logs its first failed step, as an operator
 * or a passing condition (a full disk freed) would.
 */
async function run(fault: (dir: string) => () => void) {
  const dir = mkdtempSync(join(tmpdir(), 'writer-test-'))
  dirs.push(dir)
  const spool = Spool.open({ dir, segmentBytes: 1024, maxMemoryReadings: 0, maxBytes: 10_000_000 })
  for (let i = 0; i < 30; i++) await spool.append([reading(i)])
  const store = createDuckDbStore({ path: ':memory:' })
  await store.init()
  const metrics = createMetrics()
  const lines: Array<Record<string, unknown>> = []
  let repair: (() => void) | undefined = fault(dir)
  const sink = new Writable({
    write(chunk, _encoding, done) {
      const line = JSON.parse(String(chunk)) as Record<string, unknown>
      lines.push(line)
      if (line.msg === 'store writer step failed; retrying') {
        repair?.()
        repair = undefined
      }
      done()
    },
  })
  const writer = new StoreWriter(
    spool,
    store,
    {
      batchSize: 10,
      maxBatchWaitMs: 0,
      retryInitialMs: 5,
      retryMaxMs: 20,
      deadLetterPath: join(dir, 'dead'),
    },
    { log: pino({ level: 'warn' }, sink), metrics, bus: new PlatformBus() },
  )
  writer.start()
  const drained = await spool.whenDrained(10_000)
  await writer.stop()
  const rows = await store.queryDevice({
    kind: 'river-level',
    device: 'dps-river-001',
    from: 0,
    to: T0 * 2,
    limit: 1000,
  })
  const faults = (await metrics.registry.getSingleMetric('ingest_writer_faults_total')!.get()).values
  const checkpoint = JSON.parse(readFileSync(join(dir, 'checkpoint.json'), 'utf8')) as { offset: number }
  await store.close()
  await spool.close()
  return { drained, rows, faults, lines, checkpoint, status: writer.status }
}

describe('store writer', () => {
  it('goes on after a segment file could not be read back, and stores every reading once', async () => {
    const result = await run((dir) => {
      const first = join(
        dir,
        readdirSync(dir)
          .filter((f) => f.startsWith('seg-'))
          .sort()[0]!,
      )
      renameSync(first, `${first}.aside`)
      mkdirSync(first)
      return () => {
        rmSync(first, { recursive: true })
        renameSync(`${first}.aside`, first)
      }
    })
    expect(result.drained).toBe(true)
    expect(result.rows.map((r) => r.seq)).toEqual(Array.from({ length: 30 }, (_, i) => i))
    expect(result.faults).toEqual([expect.objectContaining({ labels: { step: 'read' }, value: 1 })])
    expect(result.lines.find((l) => l.msg === 'store writer step failed; retrying')).toMatchObject({
      level: 50,
      step: 'read',
      err: expect.stringContaining('EISDIR'),
    })
    expect(result.checkpoint.offset).toBe(29)
    expect(result.status.lastError).toBeUndefined()
  })

  it('goes on after the checkpoint file could not be written, and stores every reading once', async () => {
    const result = await run((dir) => {
      // The checkpoint is written to a temporary file first; a directory in its place makes that fail.
      const tmp = join(dir, 'checkpoint.json.tmp')
      mkdirSync(tmp)
      return () => rmSync(tmp, { recursive: true })
    })
    expect(result.drained).toBe(true)
    expect(result.rows.map((r) => r.seq)).toEqual(Array.from({ length: 30 }, (_, i) => i))
    expect(result.faults).toEqual([expect.objectContaining({ labels: { step: 'commit' }, value: 1 })])
    expect(result.checkpoint.offset).toBe(29)
  })
})
