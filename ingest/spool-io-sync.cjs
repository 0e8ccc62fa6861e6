'use strict'
// The write + fdatasync of a group commit, once for both ways the spool runs it: on the sync thread, which
// loads this file by path and so starts in milliseconds without a TypeScript loader, and inline, where
// spool-io.ts loads it through createRequire. Plain CommonJS for that reason; its types are in
// spool-io-sync.d.cts.
const {
  closeSync,
  fdatasyncSync,
  fsyncSync,
  openSync,
  readSync,
  readlinkSync,
  writeSync,
} = require('node:fs')
const { parentPort, workerData } = require('node:worker_threads')

/** Above this a commit's buffer is not kept: a rare huge commit (a backlog) should not pin its size. */
const KEEP_BUFFER_BYTES = 4 * 1024 * 1024

/**
 * Nanoseconds the calling thread has waited for a CPU so far (the second field of Linux's
 * `/proc/thread-self/schedstat`), through a file kept open; 0 where there is none. The file is the thread
 * that opened it, so each thread needs its own.
 */
function runQueueClock() {
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
 * Writes commits for the thread that creates it. The bytes of a commit go through one buffer kept for the
 * next commit: a new buffer per commit was a new ArrayBuffer each time, hundreds a second at 10,000
 * readings/s, and V8 sweeps ArrayBuffers inside its scavenges, so the sync thread's own GC pauses reached
 * 4–13 ms with a commit waiting behind them.
 */
function commitWriter() {
  const clock = runQueueClock()
  let kept = Buffer.allocUnsafeSlow(64 * 1024)
  const encode = (text) => {
    // UTF-8 needs at most 3 bytes per UTF-16 code unit, so the text always fits.
    const need = text.length * 3
    const buffer = need <= kept.length ? kept : Buffer.allocUnsafeSlow(need)
    if (need <= KEEP_BUFFER_BYTES) kept = buffer
    return buffer.subarray(0, buffer.write(text, 0, 'utf8'))
  }
  let closed = false
  return {
    writeAndSync(fd, text, dirFd = -1) {
      // The clock readings stay inside the timed span: a wait for a core between a reading and the span's
      // edge would be counted as wait but not as time, and leave the disk with none.
      const started = performance.now()
      const waitedBefore = clock.waitedNs()
      const data = encode(text)
      let offset = 0
      while (offset < data.length) offset += writeSync(fd, data, offset, data.length - offset)
      fdatasyncSync(fd)
      // A new file's name is in its directory: without this, POSIX does not promise the entry outlives a
      // power cut, and the commits acknowledged in it would go with it. Once per segment.
      if (dirFd >= 0) fsyncSync(dirFd)
      const waitedAfter = clock.waitedNs()
      const seconds = (performance.now() - started) / 1000
      const cpuWaitSeconds = Math.min(seconds, Math.max(0, waitedAfter - waitedBefore) / 1e9)
      return { diskSeconds: seconds - cpuWaitSeconds, cpuWaitSeconds }
    },
    close() {
      if (!closed) clock.close()
      closed = true
    },
  }
}

/**
 * The sync thread's body. It counts finished commits in shared memory (`workerData.synced`: count, the
 * last one's disk time and CPU wait in µs) as well as posting a message; see threadSpoolIo for why.
 */
function serveSyncThread() {
  const synced = new Int32Array(workerData.synced)
  const writer = commitWriter()
  let tid = null
  try {
    tid = Number(readlinkSync('/proc/thread-self').split('/').pop())
  } catch {}
  const us = (seconds) => Math.min(2147483647, Math.max(0, Math.round(seconds * 1e6)))
  parentPort.postMessage({ tid: Number.isInteger(tid) && tid > 0 ? tid : null })
  parentPort.on('message', ({ fd, text, dirFd }) => {
    try {
      const times = writer.writeAndSync(fd, text, dirFd)
      // The times are stored before the count that tells the caller this commit is done.
      Atomics.store(synced, 1, us(times.diskSeconds))
      Atomics.store(synced, 2, us(times.cpuWaitSeconds))
      // Counted before the message: a busy caller sees it on its next append instead of after its iteration.
      Atomics.add(synced, 0, 1)
      parentPort.postMessage(null)
    } catch (err) {
      parentPort.postMessage(String(err?.message || err))
    }
  })
}

module.exports = { commitWriter, serveSyncThread }
