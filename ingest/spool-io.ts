import { fdatasyncSync, writeSync } from 'node:fs'
import { Worker } from 'node:worker_threads'

/** Writes a group commit to a segment file and fdatasyncs it. One call at a time. */
export interface SpoolIo {
  writeAndSync(fd: number, text: string): Promise<void>
  /** The kernel id of the thread that syncs (Linux), once it runs; undefined when it is the caller's. */
  threadId(): Promise<number | undefined>
  close(): Promise<void>
}

function writeAndSyncNow(fd: number, text: string): void {
  const data = Buffer.from(text, 'utf8')
  let offset = 0
  while (offset < data.length) offset += writeSync(fd, data, offset, data.length - offset)
  fdatasyncSync(fd)
}

/** In the caller's thread, blocking it for the write and the sync (tests, tools). */
export function inlineSpoolIo(): SpoolIo {
  return {
    writeAndSync: (fd, text) => {
      try {
        writeAndSyncNow(fd, text)
        return Promise.resolve()
      } catch (err) {
        return Promise.reject(err)
      }
    },
    threadId: () => Promise.resolve(undefined),
    close: () => Promise.resolve(),
  }
}

// Plain JavaScript, so the thread starts in milliseconds without a TypeScript loader.
const IO_THREAD_SOURCE = `
const { parentPort } = require('node:worker_threads')
const { fdatasyncSync, readlinkSync, writeSync } = require('node:fs')
let tid = null
try { tid = Number(readlinkSync('/proc/thread-self').split('/').pop()) } catch {}
parentPort.postMessage({ tid: Number.isInteger(tid) && tid > 0 ? tid : null })
parentPort.on('message', ({ fd, text }) => {
  try {
    const data = Buffer.from(text, 'utf8')
    let offset = 0
    while (offset < data.length) offset += writeSync(fd, data, offset, data.length - offset)
    fdatasyncSync(fd)
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
 */
export function threadSpoolIo(): SpoolIo {
  const worker = new Worker(IO_THREAD_SOURCE, { eval: true })
  worker.unref()
  let pending: { resolve: () => void; reject: (err: Error) => void } | undefined
  let broken: Error | undefined
  const fail = (err: Error) => {
    broken ??= err
    pending?.reject(err)
    pending = undefined
  }
  let tidKnown: (tid: number | undefined) => void = () => undefined
  const tid = new Promise<number | undefined>((resolve) => {
    tidKnown = resolve
  })
  // The thread's first message is its id; every later one answers a commit (null, or the error's text).
  worker.on('message', (message: string | null | { tid: number | null }) => {
    if (typeof message === 'object' && message !== null) return tidKnown(message.tid ?? undefined)
    const p = pending
    pending = undefined
    if (message === null) p?.resolve()
    else p?.reject(new Error(message))
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
        worker.postMessage({ fd, text })
      })
    },
    threadId: () => tid,
    close: async () => {
      broken ??= new Error('spool io closed')
      await worker.terminate()
    },
  }
}
