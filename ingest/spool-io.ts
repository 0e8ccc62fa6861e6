import { closeSync, fdatasyncSync, openSync, readSync, writeSync } from 'node:fs'
import { Worker } from 'node:worker_threads'

/**
 * Where the time of one write + fdatasync went, on the thread that ran them. On a busy machine a thread
 * woken by the disk's completion may wait for a core before it can report it; that wait looked like a slow
 * disk until it was measured apart (a probe with both cores half busy and no other I/O turned a fdatasync
 * p99 of 0.3 ms into 2–3 ms).
 */
export interface SyncTimes {
  /** The disk's own time: the write + fdatasync less the CPU wait within it. */
  readonly diskSeconds: number
  /**
   * The time the thread was ready to run but waited for a core in the middle of the write + fdatasync
   * (Linux schedstat); 0 where the kernel does not say.
   */
  readonly cpuWaitSeconds: number
}

/** Writes a group commit to a segment file and fdatasyncs it. One call at a time. */
export interface SpoolIo {
  /** Resolves with where the write and the fdatasync spent their time, apart from any hand-off between threads. */
  writeAndSync(fd: number, text: string): Promise<SyncTimes>
  /**
   * Settles the commit in progress if it finished, without waiting for the event loop to deliver the
   * news. Cheap enough to call on every append.
   */
  poll(): void
  /** The kernel id of the thread that syncs (Linux), once it runs; undefined when it is the caller's. */
  threadId(): Promise<number | undefined>
  close(): Promise<void>
}

/**
 * Nanoseconds the calling thread has waited for a CPU so far (the second field of Linux's
 * `/proc/thread-self/schedstat`), through a file kept open; 0 where there is none. The file is the thread
 * that opened it, so each thread needs its own.
 */
interface RunQueueClock {
  waitedNs(): number
  close(): void
}

function runQueueClock(): RunQueueClock {
  let fd = -1
  try {
    fd = openSync('/proc/thread-self/schedstat', 'r')
  } catch {
    return { waitedNs: () => 0, close: () => undefined }
  }
  const buffer = Buffer.alloc(96)
  return {
    waitedNs: () => {
      try {
        // Read from offset 0 each time: the kernel writes the figures anew.
        const n = readSync(fd, buffer, 0, buffer.length, 0)
        return Number(buffer.toString('latin1', 0, n).split(' ')[1]) || 0
      } catch {
        return 0
      }
    },
    close: () => closeSync(fd),
  }
}

/**
 * The bytes of a commit go through one buffer kept for the next commit. A new buffer per commit was
 * a new ArrayBuffer each time, hundreds a second at 10,000 readings/s, and V8 sweeps ArrayBuffers inside
 * its scavenges: the sync thread's own GC pauses reached 4–13 ms with a commit waiting behind them.
 */
interface CommitBytes {
  buffer: Buffer
}

/** Above this a commit's buffer is not kept: a rare huge commit (a backlog) should not pin its size. */
const KEEP_BUFFER_BYTES = 4 * 1024 * 1024

function encodeCommit(text: string, bytes: CommitBytes): Buffer {
  // UTF-8 needs at most 3 bytes per UTF-16 code unit, so the text always fits.
  const need = text.length * 3
  const buffer = need <= bytes.buffer.length ? bytes.buffer : Buffer.allocUnsafeSlow(need)
  if (need <= KEEP_BUFFER_BYTES) bytes.buffer = buffer
  return buffer.subarray(0, buffer.write(text, 0, 'utf8'))
}

function writeAndSyncNow(fd: number, text: string, clock: RunQueueClock, bytes: CommitBytes): SyncTimes {
  // The clock readings stay inside the timed span: a wait for a core between a reading and the span's
  // edge would be counted as wait but not as time, and leave the disk with none.
  const started = performance.now()
  const waitedBefore = clock.waitedNs()
  const data = encodeCommit(text, bytes)
  let offset = 0
  while (offset < data.length) offset += writeSync(fd, data, offset, data.length - offset)
  fdatasyncSync(fd)
  const waitedAfter = clock.waitedNs()
  const seconds = (performance.now() - started) / 1000
  const cpuWaitSeconds = Math.min(seconds, Math.max(0, waitedAfter - waitedBefore) / 1e9)
  return { diskSeconds: seconds - cpuWaitSeconds, cpuWaitSeconds }
}

/**
 * In the caller's thread, blocking it for the write and the sync (tests, tools). Its CPU wait is the
 * creating thread's, the only one that may call it.
 */
export function inlineSpoolIo(): SpoolIo {
  const clock = runQueueClock()
  const bytes: CommitBytes = { buffer: Buffer.allocUnsafeSlow(64 * 1024) }
  let closed = false
  return {
    writeAndSync: (fd, text) => {
      try {
        return Promise.resolve(writeAndSyncNow(fd, text, clock, bytes))
      } catch (err) {
        return Promise.reject(err)
      }
    },
    poll: () => undefined,
    threadId: () => Promise.resolve(undefined),
    close: () => {
      if (!closed) clock.close()
      closed = true
      return Promise.resolve()
    },
  }
}

// Plain JavaScript, so the thread starts in milliseconds without a TypeScript loader.
const IO_THREAD_SOURCE = `
const { parentPort, workerData } = require('node:worker_threads')
const { fdatasyncSync, openSync, readSync, readlinkSync, writeSync } = require('node:fs')
const synced = new Int32Array(workerData.synced)
let tid = null
try { tid = Number(readlinkSync('/proc/thread-self').split('/').pop()) } catch {}
let sched = -1
try { sched = openSync('/proc/thread-self/schedstat', 'r') } catch {}
const schedBuffer = Buffer.alloc(96)
const waitedNs = () => {
  if (sched < 0) return 0
  try {
    const n = readSync(sched, schedBuffer, 0, schedBuffer.length, 0)
    return Number(schedBuffer.toString('latin1', 0, n).split(' ')[1]) || 0
  } catch { return 0 }
}
const us = (ms) => Math.min(2147483647, Math.max(0, Math.round(ms * 1000)))
// One buffer kept from commit to commit, as encodeCommit does for the inline io.
let kept = Buffer.allocUnsafeSlow(64 * 1024)
const encode = (text) => {
  const need = text.length * 3
  const buffer = need <= kept.length ? kept : Buffer.allocUnsafeSlow(need)
  if (need <= ${KEEP_BUFFER_BYTES}) kept = buffer
  return buffer.subarray(0, buffer.write(text, 0, 'utf8'))
}
parentPort.postMessage({ tid: Number.isInteger(tid) && tid > 0 ? tid : null })
parentPort.on('message', ({ fd, text }) => {
  try {
    // The schedstat readings inside the timed span, so that the wait counted is within it.
    const started = performance.now()
    const waitedBefore = waitedNs()
    const data = encode(text)
    let offset = 0
    while (offset < data.length) offset += writeSync(fd, data, offset, data.length - offset)
    fdatasyncSync(fd)
    const waitedAfter = waitedNs()
    const ms = performance.now() - started
    const waitMs = Math.min(ms, Math.max(0, waitedAfter - waitedBefore) / 1e6)
    // The disk's time and the CPU wait in µs, stored before the count that tells the caller this commit is done.
    Atomics.store(synced, 1, us(ms - waitMs))
    Atomics.store(synced, 2, us(waitMs))
    // Counted before the message: a busy caller sees it on its next append instead of after its iteration.
    Atomics.add(synced, 0, 1)
    parentPort.postMessage(null)
  } catch (err) {
    parentPort.postMessage(String(err && err.message || err))
  }
})
`

/**
 * On a thread of its own: the caller's event loop goes on parsing and validating the next packets while
 * a commit is on its way to disk. Not libuv's thread pool, which the whole process shares (the store
 * client's gzip queues there) and which would add a second hop between the write and the sync.
 *
 * The thread counts finished commits in shared memory as well as posting a message, and keeps the last
 * one's times beside the count. A saturated event loop delivers that message only in its next
 * iteration, which at 10,000 readings/s took tens of milliseconds; `poll()` on each append settles the
 * commit within one reading's time instead. `firstCount` lets tests start the count near its wrap.
 */
export function threadSpoolIo(firstCount = 0): SpoolIo {
  // [commits synced, the last one's disk time in µs, its CPU wait in µs]
  const synced = new Int32Array(new SharedArrayBuffer(12))
  synced[0] = firstCount
  const worker = new Worker(IO_THREAD_SOURCE, { eval: true, workerData: { synced: synced.buffer } })
  worker.unref()
  let pending: { resolve: (times: SyncTimes) => void; reject: (err: Error) => void } | undefined
  /**
   * Commits handed to the thread so far; the pending one is done when the thread's count reaches it. Both
   * wrap the same way past 2^31 (Int32 arithmetic), which a platform that runs for years does reach.
   */
  let posted = firstCount
  let broken: Error | undefined
  const fail = (err: Error) => {
    broken ??= err
    pending?.reject(err)
    pending = undefined
  }
  const poll = () => {
    if (pending === undefined || Atomics.load(synced, 0) !== posted) return
    const p = pending
    pending = undefined
    p.resolve({ diskSeconds: Atomics.load(synced, 1) / 1e6, cpuWaitSeconds: Atomics.load(synced, 2) / 1e6 })
  }
  let tidKnown: (tid: number | undefined) => void = () => undefined
  const tid = new Promise<number | undefined>((resolve) => {
    tidKnown = resolve
  })
  // The thread's first message is its id; every later one answers a commit (null, or the error's text).
  // A null may come after `poll()` settled its commit already; it is then only a wake-up.
  worker.on('message', (message: string | null | { tid: number | null }) => {
    if (typeof message === 'object' && message !== null) return tidKnown(message.tid ?? undefined)
    if (message === null) return poll()
    fail(new Error(message))
  })
  worker.on('error', fail)
  worker.on('exit', () => {
    tidKnown(undefined)
    fail(new Error('spool io thread exited'))
  })
  return {
    writeAndSync: (fd, text) => {
      if (broken) return Promise.reject(broken)
      if (pending) return Promise.reject(new Error('spool io: one commit at a time'))
      return new Promise((resolve, reject) => {
        pending = { resolve, reject }
        posted = (posted + 1) | 0
        worker.postMessage({ fd, text })
      })
    },
    poll,
    threadId: () => tid,
    close: async () => {
      broken ??= new Error('spool io closed')
      await worker.terminate()
    },
  }
}
