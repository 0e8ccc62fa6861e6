import { appendFileSync, mkdtempSync, readdirSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterEach, describe, expect, it } from 'vitest'
import { Spool } from '../ingest/spool.ts'
import type { StoredReading } from '../ingest/store/types.ts'

const dirs: string[] = []
function tempDir() {
  const d = mkdtempSync(join(tmpdir(), 'spool-test-'))
  dirs.push(d)
  return d
}
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true })
})

function reading(seq: number): StoredReading {
  return {
    kind: 'river-level',
    device: 'dps-river-001',
    district: 'Denpasar Barat',
    regency: 'Kota Denpasar',
    ts: 1_790_000_000_000 + seq * 1000,
    receivedAt: 1_790_000_000_000 + seq * 1000,
    seq,
    fields: { waterLevel: 100 + seq },
  }
}

const options = (dir: string) => ({ dir, segmentBytes: 1024, maxPendingReadings: 1000, maxBytes: 10_000_000 })

describe('spool', () => {
  it('group-commits concurrent appends and hands them to the writer in order', async () => {
    const spool = Spool.open(options(tempDir()))
    await Promise.all([spool.append([reading(1), reading(2)]), spool.append([reading(3)])])
    expect(spool.pendingCount).toBe(3)
    expect(spool.peek(10).map((e) => e.reading.seq)).toEqual([1, 2, 3])
    expect(spool.peek(10).map((e) => e.offset)).toEqual([0, 1, 2])
    await spool.close()
  })

  it('replays everything past the checkpoint after a restart, and nothing before it', async () => {
    const dir = tempDir()
    const first = Spool.open(options(dir))
    for (let i = 0; i < 50; i++) await first.append([reading(i)])
    first.commit(19)
    await first.close()

    const second = Spool.open(options(dir))
    expect(second.pendingCount).toBe(30)
    expect(second.peek(1)[0]!.reading.seq).toBe(20)
    // New appends continue the offsets rather than reusing them.
    await second.append([reading(99)])
    expect(second.peek(100).at(-1)!.offset).toBe(50)
    await second.close()
  })

  it('deletes segments once the store confirmed everything in them', async () => {
    const dir = tempDir()
    const spool = Spool.open(options(dir))
    for (let i = 0; i < 40; i++) await spool.append([reading(i)])
    const before = readdirSync(dir).filter((f) => f.startsWith('seg-')).length
    expect(before).toBeGreaterThan(2)
    spool.commit(39)
    const after = readdirSync(dir).filter((f) => f.startsWith('seg-')).length
    expect(after).toBe(1)
    expect(spool.pendingCount).toBe(0)
    await spool.close()
  })

  it('ignores a torn last line left by a crash mid-write', async () => {
    const dir = tempDir()
    const spool = Spool.open(options(dir))
    await spool.append([reading(1)])
    await spool.close()
    const seg = readdirSync(dir).find((f) => f.startsWith('seg-'))!
    appendFileSync(join(dir, seg), '{"o":1,"r":{"kind":"river-le')
    const reopened = Spool.open(options(dir))
    expect(reopened.peek(10).map((e) => e.reading.seq)).toEqual([1])
    await reopened.close()
  })

  it('holds appends (and so PUBACKs) while too much waits for the store, and releases them on commit', async () => {
    const spool = Spool.open({ ...options(tempDir()), maxPendingReadings: 5 })
    await spool.append([reading(0), reading(1), reading(2), reading(3)])
    let released = false
    const held = spool.append([reading(4), reading(5)]).then(() => {
      released = true
    })
    await new Promise((r) => setTimeout(r, 50))
    expect(released).toBe(false)
    // Durable already, though: it is in the spool for the writer.
    expect(spool.pendingCount).toBe(6)
    spool.commit(3)
    await held
    expect(released).toBe(true)
    await spool.close()
  })
})
