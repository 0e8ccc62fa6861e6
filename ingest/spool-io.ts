import { fdatasyncSync, writeSync } from 'node:fs'
import { Worker } from 'node:worker_threads'

/** Writes a group commit to a segment file and fdatasyncs it. One call at a time. */
export interface SpoolIo {
  /**
   * Resolves with the seconds the write and the fdatasync took where they ran: the disk's own time, apart
   * from any hand-off between threads.
   */
  writeAndSync(fd: number, text: string): Promise<number>
  /**
   * Settles the commit in progress if it finished, without waiting for the event loop to deliver the
   * news. Cheap enough to call on every append.
   */
  poll(): void
  /** The kernel id of the thread that syncs (Linux), once it runs; undefined when it is the caller's. */
  threadId(): Promise<number | undefined>
  close(): Promise<void>
}

function writeAndSyncNow(fd: number, text: string): number {
  const started = performance.now()
  const data = Buffer.from(text, 'utf8')
  let offset = 0
  while (offset < data.length) offset += writeSync(fd, data, offset, data.length - offset)
  fdatasyncSync(fd)
  return (performance.now() - started) / 1000
}

/** In the caller's thread, blocking it for the write and the sync (tests, tools). */
export function inlineSpoolIo(): SpoolIo {
  return {
    writeAndSync: (fd, text) => {
      try {
        return Promise.resolve(writeAndSyncNow(fd, text))
      } catch (err) {
        return Promise.reject(err)
      }
    },
    poll: () => undefined,
    threadId: () => Promise.resolve(undefined),
    close: () => Promise.resolve(),
  }
}

// Plain JavaScript, so the thread starts in milliseconds without a TypeScript loader.
const IO_THREAD_SOURCE = `
const { parentPort, workerData } = require('node:worker_threads')
const { fdatasyncSync, readlinkSync, writeSync } = require('node:fs')
const synced = new Int32Array(workerData.synced)
let tid = null
try { tid = Number(readlinkSync('/proc/thread-self').split('/').pop()) } catch {}
parentPort.postMessage({ tid: Number.isInteger(tid) && tid > 0 ? tid : null })
parentPort.on('message', ({ fd, text }) => {
  try {
    const started = performance.now()
    const data = Buffer.from(text, 'utf8')
    let offset = 0
    while (offset < data.length) offset += writeSync(fd, data, offset, data.length - offset)
    fdatasyncSync(fd)
    // Its duration in µs, stored before the count that tells the caller this commit is done.
    Atomics.store(synced, 1, Math.min(2147483647, Math.round((performance.now() - started) * 1000)))
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
 * one's duration beside the count. A saturated event loop delivers that message only in its next
 * iteration, which at 10,000 readings/s took tens of milliseconds; `poll()` on each append settles the
 * commit within one reading's time instead. `firstCount` lets tests start the count near its wrap.
 */
export function threadSpoolIo(firstCount = 0): SpoolIo {
  // [commits synced, the last one's write + fdatasync in µs]
  const synced = new Int32Array(new SharedArrayBuffer(8))
  synced[0] = firstCount
  const worker = new Worker(IO_THREAD_SOURCE, { eval: true, workerData: { synced: synced.buffer } })
  worker.unref()
  let pending: { resolve: (seconds: number) => void; reject: (err: Error) => void } | undefined
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
    p.resolve(Atomics.load(synced, 1) / 1e6)
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
