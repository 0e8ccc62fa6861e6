import {
  appendFileSync,
  closeSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  openSync,
  readdirSync,
  readFileSync,
  rmSync,
  symlinkSync,
} from 'node:fs'
import { availableParallelism, tmpdir } from 'node:os'
import { join } from 'node:path'
import { Worker } from 'node:worker_threads'
import fc from 'fast-check'
import { afterEach, describe, expect, it, vi } from 'vitest'
import { tsWorkerSource } from '../broker/thread-client.ts'
import { type DurableBatch, parseBatch, Spool, SpoolFeed, SpoolLog, spoolLine } from '../ingest/spool.ts'
import { inlineSpoolIo, threadSpoolIo } from '../ingest/spool-io.ts'
import type { StoredReading } from '../ingest/store/types.ts'
import { riverReading as reading } from './helpers/readings.ts'
import type { SpoolLogWorkerData, SpoolLogWorkerMessage } from './helpers/spool-log-worker.ts'

const LOG_WORKER = new URL('./helpers/spool-log-worker.ts', import.meta.url).href

const dirs: string[] = []
function tempDir() {
  const d = mkdtempSync(join(tmpdir(), 'spool-test-'))
  dirs.push(d)
  return d
}
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true })
})

const options = (dir: string) => ({ dir, segmentBytes: 1024, maxMemoryReadings: 1000, maxBytes: 10_000_000 })

/** Drains the spool like the store writer does: read a batch after the checkpoint, then commit it. */
async function drain(spool: Spool, batch: number): Promise<StoredReading[]> {
  const out: StoredReading[] = []
  for (let guard = 0; guard < 10_000; guard++) {
    const entries = await spool.read(batch, spool.checkpointOffset)
    if (entries.length === 0) break
    out.push(...entries.map((e) => e.reading))
    spool.commit(entries.at(-1)!.offset)
  }
  return out
}

describe('spool', () => {
  it('group-commits concurrent appends and hands them to the writer in order', async () => {
    const spool = Spool.open(options(tempDir()))
    await Promise.all([spool.append([reading(1), reading(2)]), spool.append([reading(3)])])
    expect(spool.pendingCount).toBe(3)
    const entries = await spool.read(10, -1)
    expect(entries.map((e) => e.reading.seq)).toEqual([1, 2, 3])
    expect(entries.map((e) => e.offset)).toEqual([0, 1, 2])
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
    expect((await second.read(1, second.checkpointOffset))[0]!.reading.seq).toBe(20)
    // New appends continue the offsets rather than reusing them.
    await second.append([reading(99)])
    const all = await drain(second, 7)
    expect(all.map((r) => r.seq)).toEqual([...Array.from({ length: 30 }, (_, i) => i + 20), 99])
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
    expect((await reopened.read(10, -1)).map((e) => e.reading.seq)).toEqual([1])
    await reopened.close()
  })

  // A crash after the log created a segment file and before (or during) its first commit leaves a newest
  // segment with no complete line, named for the offset the next commit starts at. Appending to that file
  // glued the first new line onto a torn one, and a second entry for the same path let the log delete the
  // segment it was writing to once the store confirmed the one before: acknowledged readings lost.
  it.each([
    ['empty', ''],
    ['holding only a torn line', '{"o":3,"r":{"kind":"river-le'],
  ])(
    'keeps what it acknowledges after a restart that finds the newest segment %s',
    async (_what, leftover) => {
      const dir = tempDir()
      const first = Spool.open(options(dir))
      for (let i = 0; i < 3; i++) await first.append([reading(i)])
      await first.close()
      appendFileSync(join(dir, 'seg-0000000000000003.log'), leftover)

      const second = Spool.open(options(dir))
      await second.append([reading(3)])
      await second.append([reading(4)])
      // The store confirms the readings before the crash: the segment holding them may go, no other.
      second.commit(2)
      await second.close()

      const third = Spool.open(options(dir))
      expect((await drain(third, 10)).map((r) => r.seq)).toEqual([3, 4])
      await third.close()
    },
  )

  it('refuses to append to a segment file that is already there, rather than mix lines into it', async () => {
    const dir = tempDir()
    const spool = Spool.open(options(dir))
    // Appeared after the log looked (never expected): the commit fails and nothing is acknowledged.
    appendFileSync(join(dir, 'seg-0000000000000000.log'), 'not ours\n')
    await expect(spool.append([reading(1)])).rejects.toThrow(/EEXIST/)
    await expect(spool.append([reading(2)])).rejects.toThrow()
    await spool.close()
  })

  it('frees disk when the checkpoint file cannot be written, and says so', async () => {
    const dir = tempDir()
    const spool = Spool.open(options(dir))
    for (let i = 0; i < 40; i++) await spool.append([reading(i)])
    const segments = () => readdirSync(dir).filter((f) => f.startsWith('seg-')).length
    expect(segments()).toBeGreaterThan(2)
    // The checkpoint is written through a temporary file; a directory in its place makes that fail, as a
    // full disk would.
    mkdirSync(join(dir, 'checkpoint.json.tmp'))
    expect(() => spool.commit(39)).toThrow(/EISDIR/)
    expect(segments()).toBe(1)
    expect(spool.pendingCount).toBe(0)
    await spool.close()
  })

  it('keeps memory bounded during a long store outage and reads the backlog back from disk, in order', async () => {
    const spool = Spool.open({ ...options(tempDir()), maxMemoryReadings: 10 })
    for (let i = 0; i < 100; i++) await spool.append([reading(i)])
    expect(spool.pendingCount).toBe(100)
    expect(spool.memoryCount).toBeLessThanOrEqual(10)
    const first = await drain(spool, 7)
    expect(first.map((r) => r.seq)).toEqual(Array.from({ length: 100 }, (_, i) => i))
    expect(spool.pendingCount).toBe(0)
    // Caught up: new readings are fed from memory again.
    await spool.append([reading(100)])
    expect(spool.memoryCount).toBe(1)
    expect((await drain(spool, 7)).map((r) => r.seq)).toEqual([100])
    await spool.close()
  })

  // On the platform the log runs on the broker thread and deletes a segment as soon as it learns that the
  // store confirmed everything in it, at any moment after the feed's commit: between the feed listing the
  // segments and stat-ing them, or between listing and opening one. Both are reproduced here by leaving in
  // the confirmed segment's place what such a race leaves the feed: an entry that vanishes when stat-ed
  // (a dangling link), or one that cannot be read (a directory).
  it.each([
    ['is gone before the feed stats it', (path: string) => symlinkSync(`${path}.gone`, path)],
    ['cannot be opened and read any more', (path: string) => mkdirSync(path)],
  ])('reads on from the next segment when the confirmed one %s', async (_what, leave) => {
    const dir = tempDir()
    const log = SpoolLog.open({ dir, segmentBytes: 1024, maxBytes: 10_000_000 })
    // Nothing in memory: every reading is read back from the segment files, as past the memory window.
    const feed = new SpoolFeed(
      { dir, maxMemoryReadings: 0, maxBytes: 10_000_000 },
      { ...log.position, diskBytes: log.diskBytes },
      () => {
        // The broker thread has not handled this commit yet.
      },
    )
    log.onDurable = (batch) => feed.receive(structuredClone(batch))
    for (let i = 0; i < 40; i++) await log.append([reading(i)])
    const [first, second] = readdirSync(dir)
      .filter((f) => f.startsWith('seg-'))
      .sort()
    const inFirst = Number(second!.slice(4, 20))
    expect(inFirst).toBeGreaterThan(1)
    const head = await feed.read(inFirst, feed.checkpointOffset)
    expect(head.map((e) => e.reading.seq)).toEqual(Array.from({ length: inFirst }, (_, i) => i))
    feed.commit(head.at(-1)!.offset)
    rmSync(join(dir, first!))
    leave(join(dir, first!))
    const rest: number[] = []
    for (let guard = 0; guard < 100 && feed.pendingCount > 0; guard++) {
      const entries = await feed.read(7, feed.checkpointOffset)
      rest.push(...entries.map((e) => e.reading.seq))
      feed.commit(entries.at(-1)!.offset)
    }
    expect(rest).toEqual(Array.from({ length: 40 - inFirst }, (_, i) => i + inFirst))
    await log.close()
  })

  it('feeds every reading once while the log, on another thread, deletes the segments the feed confirmed', async () => {
    const dir = tempDir()
    const total = 60_000
    const worker = new Worker(tsWorkerSource(LOG_WORKER), {
      eval: true,
      workerData: { dir, total } satisfies SpoolLogWorkerData,
    })
    const seqs: number[] = []
    let failure: unknown
    try {
      await new Promise<void>((resolve, reject) => {
        let feed: SpoolFeed | undefined
        let reading = false
        const readOn = async () => {
          if (reading || feed === undefined) return
          reading = true
          try {
            // As the store writer does: read after the checkpoint, commit, and at once read again.
            while (feed.pendingCount > 0) {
              const entries = await feed.read(100, feed.checkpointOffset)
              for (const e of entries) seqs.push(e.reading.seq)
              if (entries.length > 0) feed.commit(entries.at(-1)!.offset)
            }
          } catch (err) {
            reject(err)
            return
          } finally {
            reading = false
          }
          if (seqs.length >= total) resolve()
        }
        worker.on('error', reject)
        worker.on('message', (m: SpoolLogWorkerMessage) => {
          if (m.t === 'opened') {
            feed = new SpoolFeed({ dir, maxMemoryReadings: 1000, maxBytes: 1e12 }, m.start, (offset) =>
              worker.postMessage(offset),
            )
          } else {
            feed!.receive(m.batch)
            void readOn()
          }
        })
      })
    } catch (err) {
      failure = err
    } finally {
      await worker.terminate()
    }
    expect(failure).toBeUndefined()
    expect(seqs).toEqual(Array.from({ length: total }, (_, i) => i))
  })

  it('replays across segments after a crash, skipping a torn line at the end of an older segment', async () => {
    const dir = tempDir()
    const first = Spool.open(options(dir))
    for (let i = 0; i < 10; i++) await first.append([reading(i)])
    await first.close()
    const seg = readdirSync(dir)
      .filter((f) => f.startsWith('seg-'))
      .sort()
      .at(-1)!
    appendFileSync(join(dir, seg), '{"o":10,"r":{"kind":"riv')
    const second = Spool.open(options(dir))
    for (let i = 10; i < 30; i++) await second.append([reading(i)])
    await second.close()
    const third = Spool.open(options(dir))
    expect(third.pendingCount).toBe(30)
    expect((await drain(third, 4)).map((r) => r.seq)).toEqual(Array.from({ length: 30 }, (_, i) => i))
    await third.close()
  })

  it('holds appends (and so PUBACKs) while the disk limit is reached, and releases them on commit', async () => {
    const spool = Spool.open({ ...options(tempDir()), segmentBytes: 300, maxBytes: 1500 })
    const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms))
    let appended = 0
    let last: Promise<void> = Promise.resolve()
    while (!spool.backPressured && appended < 100) {
      last = spool.append([reading(appended++)])
      await Promise.race([last, sleep(50)])
    }
    expect(spool.backPressured).toBe(true)
    expect(spool.diskBytes).toBeGreaterThanOrEqual(1500)
    let released = false
    void last.then(() => {
      released = true
    })
    await sleep(50)
    expect(released).toBe(false)
    // Durable already, though: it is in the spool for the writer.
    expect(spool.pendingCount).toBe(appended)
    await drain(spool, 100)
    await last
    expect(released).toBe(true)
    expect(spool.backPressured).toBe(false)
    await spool.close()
  })

  it('reads batches that arrive as text cut anywhere for the writer: within a batch, across batches', async () => {
    const dir = tempDir()
    const confirmed: number[] = []
    const feed = new SpoolFeed(
      { dir, maxMemoryReadings: 10, maxBytes: 10_000_000 },
      { checkpoint: -1, durable: -1, diskBytes: 0 },
      (offset) => confirmed.push(offset),
    )
    const batch = (first: number, count: number): DurableBatch => {
      const offsets = Array.from({ length: count }, (_, i) => first + i)
      const text = offsets.map((o) => spoolLine(o, reading(100 + o))).join('')
      return { firstOffset: first, lastOffset: first + count - 1, text, diskBytes: 0 }
    }
    const seen: number[] = []
    feed.onReadings((readings) => seen.push(...readings.map((r) => r.seq)))
    feed.receive(batch(0, 4))
    feed.receive(batch(4, 4))
    // A third batch would pass the window of 10: it stays on disk only, while the listeners still see it.
    feed.receive(batch(8, 4))
    expect(seen).toEqual(Array.from({ length: 12 }, (_, i) => 100 + i))
    expect(feed.pendingCount).toBe(12)
    expect(feed.memoryCount).toBe(8)

    const seqs = async (max: number) =>
      (await feed.read(max, feed.checkpointOffset)).map((e) => e.reading.seq)
    expect(await seqs(3)).toEqual([100, 101, 102])
    // Read again before a commit: the same readings (the writer retries a failed batch this way).
    expect(await seqs(3)).toEqual([100, 101, 102])
    feed.commit(2)
    expect(feed.memoryCount).toBe(5)
    expect(await seqs(3)).toEqual([103, 104, 105])
    feed.commit(5)
    expect(feed.memoryCount).toBe(2)
    expect(await seqs(10)).toEqual([106, 107])
    feed.commit(7)
    expect(feed.memoryCount).toBe(0)
    expect(confirmed).toEqual([2, 5, 7])
    // Below the window again, but the readings after the spill are on disk first: memory waits for them.
    feed.receive(batch(12, 2))
    expect(feed.memoryCount).toBe(0)
    expect(feed.pendingCount).toBe(6)
  })

  it('works split across threads: the feed gets text batches only, and commits reach the log', async () => {
    const dir = tempDir()
    const open = () => {
      const log = SpoolLog.open({ dir, segmentBytes: 1024, maxBytes: 10_000_000, ioThread: true })
      const feed = new SpoolFeed(
        { dir, maxMemoryReadings: 25, maxBytes: 10_000_000 },
        { ...log.position, diskBytes: log.diskBytes },
        (offset) => log.commit(offset),
      )
      const seen: number[] = []
      feed.onReadings((readings) => seen.push(...readings.map((r) => r.seq)))
      // What postMessage does: a structured clone, and no objects but the text.
      log.onDurable = (batch) => {
        expect(batch.entries).toBeUndefined()
        feed.receive(structuredClone(batch) satisfies DurableBatch)
      }
      log.onDiskState = (state) => feed.updateDisk(state)
      return { log, feed, seen }
    }
    const a = open()
    await Promise.all(Array.from({ length: 60 }, (_, i) => a.log.append([reading(i)])))
    expect(a.seen).toEqual(Array.from({ length: 60 }, (_, i) => i))
    expect(a.feed.pendingCount).toBe(60)
    // Past the memory window the feed reads the rest back from the segment files the log wrote.
    expect(a.feed.memoryCount).toBeLessThanOrEqual(25)
    expect(a.feed.diskBytes).toBe(a.log.diskBytes)
    const firstHalf = await a.feed.read(30, -1)
    a.feed.commit(firstHalf.at(-1)!.offset)
    expect(a.log.checkpointOffset).toBe(29)
    await a.log.close()

    // Restarted: the log finds the checkpoint, the feed replays the rest from disk, in order.
    const b = open()
    expect(b.feed.pendingCount).toBe(30)
    const rest: number[] = []
    for (let guard = 0; guard < 100; guard++) {
      const entries = await b.feed.read(7, b.feed.checkpointOffset)
      if (entries.length === 0) break
      rest.push(...entries.map((e) => e.reading.seq))
      b.feed.commit(entries.at(-1)!.offset)
    }
    expect(rest).toEqual(Array.from({ length: 30 }, (_, i) => i + 30))
    expect(await b.feed.whenDrained(1000)).toBe(true)
    await b.log.close()
  })

  it('settles a commit synced on its own thread on the next append, while the event loop never turns', async () => {
    const log = SpoolLog.open({ dir: tempDir(), segmentBytes: 1 << 20, maxBytes: 10_000_000, ioThread: true })
    await log.ioThreadId()
    let settled = false
    void log.append([reading(0)]).then(() => {
      settled = true
    })
    // The commit starts at the end of the loop's iteration, just before this continues: the thread's
    // message cannot have been delivered yet.
    await new Promise((resolve) => setImmediate(resolve))
    // Only busy-waiting and microtasks from here: the thread's message announcing the sync cannot be
    // delivered, so only the next append's look at the shared counter can settle the first commit.
    const deadline = performance.now() + 10_000
    let seq = 1
    while (!settled && performance.now() < deadline) {
      const until = performance.now() + 5
      while (performance.now() < until) {
        // spin
      }
      void log.append([reading(seq++)])
      for (let i = 0; i < 20; i++) await null
    }
    const settledWhileBusy = settled
    await log.close()
    expect(settledWhileBusy).toBe(true)
    expect(log.durableOffset).toBe(seq - 1)
  })

  it.each([
    ['on its own thread', () => threadSpoolIo()],
    ['inline', () => inlineSpoolIo()],
  ])("fsyncs the directory it is given after the file's commit (%s)", async (_where, make) => {
    const dir = tempDir()
    const fd = openSync(join(dir, 'new.log'), 'a')
    const dirFd = openSync(dir, 'r')
    const io = make()
    try {
      await io.writeAndSync(fd, 'first\n', dirFd)
      // An fd that is not open makes the directory's fsync fail: proof that it ran, after the write.
      closeSync(dirFd)
      await expect(io.writeAndSync(fd, 'second\n', dirFd)).rejects.toThrow(/EBADF/)
      expect(readFileSync(join(dir, 'new.log'), 'utf8')).toBe('first\nsecond\n')
    } finally {
      await io.close()
      closeSync(fd)
    }
  })

  it('keeps settling commits when the count of synced commits wraps past 2^31', async () => {
    const path = join(tempDir(), 'wrap.log')
    const fd = openSync(path, 'a')
    const io = threadSpoolIo(2 ** 31 - 2)
    try {
      for (let i = 0; i < 4; i++) {
        await io.writeAndSync(fd, `line ${i}\n`)
        io.poll()
      }
      expect(readFileSync(path, 'utf8')).toBe('line 0\nline 1\nline 2\nline 3\n')
    } finally {
      await io.close()
      closeSync(fd)
    }
  })

  it.each([
    ['on its own thread', () => threadSpoolIo()],
    ['inline', () => inlineSpoolIo()],
  ])('writes each commit exactly, through the buffer it keeps between commits (%s)', async (_where, make) => {
    const path = join(tempDir(), 'kept.log')
    const fd = openSync(path, 'a')
    const io = make()
    // Long then short (no stale bytes may follow), multi-byte text, one too large to keep, then short again.
    const commits = [
      `${'a'.repeat(5000)}\n`,
      'b\n',
      'Kabupaten Gianyar — Ubud ✓ 🌧\n',
      `${'ü'.repeat(3 << 20)}\n`,
      'c\n',
    ]
    try {
      for (const text of commits) await io.writeAndSync(fd, text)
      expect(readFileSync(path, 'utf8')).toBe(commits.join(''))
    } finally {
      await io.close()
      closeSync(fd)
    }
  })

  it("reports each commit's disk time and CPU wait from the thread that made it durable", async () => {
    const path = join(tempDir(), 'timed.log')
    const fd = openSync(path, 'a')
    const io = threadSpoolIo()
    try {
      // A large commit first: its time on the thread is measurably above zero.
      for (const text of ['x'.repeat(8 << 20) + '\n', 'small\n', 'small again\n']) {
        const started = performance.now()
        const { diskSeconds, cpuWaitSeconds } = await io.writeAndSync(fd, text)
        const seenSeconds = (performance.now() - started) / 1000
        expect(diskSeconds).toBeGreaterThan(0)
        expect(cpuWaitSeconds).toBeGreaterThanOrEqual(0)
        // Parts of what the caller waited for, never more (µs rounding aside).
        expect(diskSeconds + cpuWaitSeconds).toBeLessThanOrEqual(seenSeconds + 2e-6)
      }
    } finally {
      await io.close()
      closeSync(fd)
    }
  })

  it.runIf(existsSync('/proc/thread-self/schedstat'))(
    "counts the sync thread's wait for a busy CPU apart from the disk's time",
    async () => {
      const path = join(tempDir(), 'busy.log')
      const fd = openSync(path, 'a')
      const io = threadSpoolIo()
      // More spinning threads than cores: each time a commit's fdatasync completes, its thread finds every
      // core taken and waits in the run queue. Bounded by the flag, and terminated in any case.
      const stop = new Int32Array(new SharedArrayBuffer(4))
      const spinners = Array.from(
        { length: availableParallelism() + 1 },
        () =>
          new Worker(
            'const s = new Int32Array(require("node:worker_threads").workerData); while (Atomics.load(s, 0) === 0) {}',
            { eval: true, workerData: stop.buffer },
          ),
      )
      try {
        let disk = 0
        let wait = 0
        let seen = 0
        for (let i = 0; i < 200; i++) {
          const started = performance.now()
          const times = await io.writeAndSync(fd, `line ${i}\n`)
          seen += (performance.now() - started) / 1000
          disk += times.diskSeconds
          wait += times.cpuWaitSeconds
        }
        expect(wait).toBeGreaterThan(0)
        expect(disk).toBeGreaterThan(0)
        expect(disk + wait).toBeLessThanOrEqual(seen + 200 * 2e-6)
      } finally {
        Atomics.store(stop, 0, 1)
        await Promise.all(spinners.map((w) => w.terminate()))
        await io.close()
        closeSync(fd)
      }
    },
  )

  it("passes each commit its size, its time and where the time went on the disk's thread", async () => {
    const commits: Array<[number, number, number, number]> = []
    const log = SpoolLog.open({
      dir: tempDir(),
      segmentBytes: 1 << 20,
      maxBytes: 10_000_000,
      ioThread: true,
      onCommit: (seconds, readings, times) =>
        commits.push([seconds, readings, times.diskSeconds, times.cpuWaitSeconds]),
    })
    try {
      await Promise.all([log.append([reading(1), reading(2)]), log.append([reading(3)])])
      await log.append([reading(4)])
    } finally {
      await log.close()
    }
    expect(commits.reduce((n, [, readings]) => n + readings, 0)).toBe(4)
    for (const [seconds, , diskSeconds, cpuWaitSeconds] of commits) {
      expect(diskSeconds).toBeGreaterThan(0)
      expect(cpuWaitSeconds).toBeGreaterThanOrEqual(0)
      expect(diskSeconds + cpuWaitSeconds).toBeLessThanOrEqual(seconds + 2e-6)
    }
  })

  it('calls each appendWith back once, after its commit is durable, with its count', async () => {
    const log = SpoolLog.open({ dir: tempDir(), segmentBytes: 1 << 20, maxBytes: 10_000_000 })
    const calls: Array<[string, Error | undefined, number, number]> = []
    const done = (name: string) => (err: Error | undefined, n: number) =>
      calls.push([name, err, n, log.durableOffset])
    log.appendWith([reading(1), reading(2)], done('a'))
    log.appendWith([reading(3)], done('b'))
    log.appendWith([], done('empty'))
    // Nothing is durable before the commit at the end of this iteration: only the empty append is done.
    expect(calls).toEqual([['empty', undefined, 0, -1]])
    await log.flushed()
    expect(calls).toEqual([
      ['empty', undefined, 0, -1],
      ['a', undefined, 2, 2],
      ['b', undefined, 1, 2],
    ])
    await log.close()
  })

  it('calls every waiter of a commit even if one throws, and reports what it threw afterwards', async () => {
    const log = SpoolLog.open({ dir: tempDir(), segmentBytes: 1 << 20, maxBytes: 10_000_000 })
    const reported: Array<() => void> = []
    vi.stubGlobal('queueMicrotask', (task: () => void) => reported.push(task))
    try {
      const calls: string[] = []
      log.appendWith([reading(1)], () => calls.push('a'))
      log.appendWith([reading(2)], () => {
        calls.push('b')
        throw new Error('boom')
      })
      log.appendWith([reading(3)], () => calls.push('c'))
      await log.flushed()
      expect(calls).toEqual(['a', 'b', 'c'])
      expect(reported).toHaveLength(1)
      expect(() => reported[0]!()).toThrow('boom')
    } finally {
      vi.unstubAllGlobals()
    }
    await log.close()
  })

  it('fails the appends of a commit it cannot write, and every later one, acknowledging none', async () => {
    const log = SpoolLog.open({ dir: tempDir(), segmentBytes: 1 << 20, maxBytes: 10_000_000 })
    await log.append([reading(0)])
    // The segment's descriptor closed under the log: the next write fails.
    closeSync((log as unknown as { fd: number }).fd)
    const outcomes: Array<[Error | undefined, number]> = []
    log.appendWith([reading(1)], (err, n) => outcomes.push([err, n]))
    log.appendWith([reading(2), reading(3)], (err, n) => outcomes.push([err, n]))
    await log.flushed()
    expect(outcomes).toHaveLength(2)
    for (const [err, n] of outcomes) {
      expect(err?.message).toMatch(/EBADF/)
      expect(n).toBe(0)
    }
    await expect(log.append([reading(4)])).rejects.toThrow(/EBADF/)
    expect(log.durableOffset).toBe(0)
    ;(log as unknown as { fd: number }).fd = -1
    await log.close()
  })

  it('writes a reading as JSON.stringify would, byte for byte, whatever its tags and numbers', () => {
    const text = fc.string({ unit: 'binary', maxLength: 12 })
    const number = fc.oneof(
      fc.double(),
      fc.integer(),
      fc.constantFrom(-0, Number.NaN, Number.POSITIVE_INFINITY),
    )
    const anyReading = fc.record({
      kind: fc.oneof(fc.constantFrom('river-level', 'air-quality'), text),
      device: fc.oneof(fc.constantFrom('dps-river-001', 'dps-river-002'), text),
      district: fc.oneof(fc.constant('Denpasar Barat'), text),
      regency: fc.oneof(fc.constant('Kota Denpasar'), text),
      ts: number,
      receivedAt: number,
      seq: number,
      fields: fc.dictionary(fc.oneof(fc.constantFrom('waterLevel', 'flow', '0', '__proto__'), text), number, {
        maxKeys: 4,
      }),
    })
    fc.assert(
      fc.property(fc.nat(), anyReading, (offset, r) => {
        const line = spoolLine(offset, r as StoredReading)
        expect(line).toBe(`{"o":${offset},"r":${JSON.stringify(r)}}\n`)
      }),
      { numRuns: 2000 },
    )
    // A device re-registered with other tags gets lines with its new tags, not the cached ones.
    const first = reading(1)
    const moved = { ...first, district: 'Denpasar Timur', seq: 2 }
    expect(parseBatch(spoolLine(0, first) + spoolLine(1, moved)).map((e) => e.reading.district)).toEqual([
      'Denpasar Barat',
      'Denpasar Timur',
    ])
  })

  it('parses a batch into the readings of its lines, sharing repeated strings without mixing them up', () => {
    // More distinct devices than the shared strings are kept for (100,000), so the pool is emptied on the way.
    const devices = 100_500
    const lines: string[] = []
    const expected: unknown[] = []
    for (let i = 0; i < devices + 2000; i++) {
      const r = { ...reading(i), device: `dev-${i % devices}`, district: `Kecamatan ${i % 7}`, seq: i }
      lines.push(spoolLine(i, r))
      expected.push({ offset: i, reading: JSON.parse(JSON.stringify(r)) })
    }
    const parsed: unknown[] = []
    for (let i = 0; i < lines.length; i += 30) parsed.push(...parseBatch(lines.slice(i, i + 30).join('')))
    expect(parsed).toEqual(expected)
  })
})
