import { createRequire } from 'node:module'
import { fileURLToPath } from 'node:url'
import { Worker } from 'node:worker_threads'

// The write + fdatasync is written once, in CommonJS, for both the sync thread and the inline io.
const SYNC_MODULE = fileURLToPath(new URL('./spool-io-sync.cjs', import.meta.url))
const sync = createRequire(import.meta.url)(SYNC_MODULE) as typeof import('./spool-io-sync.cjs')

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
  /**
   * Resolves with where the write and the fdatasync spent their time, apart from any hand-off between
   * threads. `dirFd` (≥ 0): a directory to fsync after the file, for the commit that starts a new file.
   */
  writeAndSync(fd: number, text: string, dirFd?: number): Promise<SyncTimes>
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
 * In the caller's thread, blocking it for the write and the sync (tests, tools). Its CPU wait is the
 * creating thread's, the only one that may call it.
 */
export function inlineSpoolIo(): SpoolIo {
  const writer = sync.commitWriter()
  return {
    writeAndSync: (fd, text, dirFd) => {
      try {
        return Promise.resolve(writer.writeAndSync(fd, text, dirFd))
      } catch (err) {
        return Promise.reject(err)
      }
    },
    poll: () => undefined,
    threadId: () => Promise.resolve(undefined),
    close: () => {
      writer.close()
      return Promise.resolve()
    },
  }
}

// The thread loads the same file by path, as plain CommonJS: no TypeScript loader to start.
const IO_THREAD_SOURCE = `require(${JSON.stringify(SYNC_MODULE)}).serveSyncThread()`

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
    writeAndSync: (fd, text, dirFd = -1) => {
      if (broken) return Promise.reject(broken)
      if (pending) return Promise.reject(new Error('spool io: one commit at a time'))
      return new Promise((resolve, reject) => {
        pending = { resolve, reject }
        posted = (posted + 1) | 0
        worker.postMessage({ fd, text, dirFd })
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
