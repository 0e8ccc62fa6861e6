import {
  closeSync,
  fdatasync,
  mkdirSync,
  openSync,
  readdirSync,
  readFileSync,
  renameSync,
  rmSync,
  statSync,
  write,
  writeFileSync,
} from 'node:fs'
import { join } from 'node:path'
import type { StoredReading } from './store/types.ts'

export interface SpoolOptions {
  readonly dir: string
  /** A segment file is closed and a new one started past this size. */
  readonly segmentBytes: number
  /**
   * Readings durable in the spool but not yet confirmed by the store, held in memory for the writer.
   * Past this, appends wait (and so do the devices' PUBACKs): devices slow down, nothing is dropped.
   */
  readonly maxPendingReadings: number
  /** Disk use past which `append` waits, like the memory bound. */
  readonly maxBytes: number
}

export interface SpoolEntry {
  readonly offset: number
  readonly reading: StoredReading
}

interface Waiter {
  resolve: () => void
  reject: (err: Error) => void
}

interface Segment {
  readonly firstOffset: number
  readonly path: string
  bytes: number
}

const SEGMENT_RE = /^seg-(\d{16})\.log$/
const CHECKPOINT = 'checkpoint.json'

function segmentName(firstOffset: number) {
  return `seg-${String(firstOffset).padStart(16, '0')}.log`
}

function writeAll(fd: number, data: Buffer): Promise<void> {
  return new Promise((resolve, reject) => {
    const step = (offset: number) =>
      write(fd, data, offset, data.length - offset, null, (err, n) => {
        if (err) return reject(err)
        if (offset + n < data.length) step(offset + n)
        else resolve()
      })
    step(0)
  })
}

function datasync(fd: number): Promise<void> {
  return new Promise((resolve, reject) => fdatasync(fd, (err) => (err ? reject(err) : resolve())))
}

/**
 * Append-only log of accepted readings, the buffer of record between the broker's PUBACK and the store.
 *
 * Appends from all devices that arrive while a commit is running are written and fdatasync'd together
 * (group commit), so one fsync serves many readings. An append's promise resolves only after its bytes
 * are on disk; that is when the broker may acknowledge. The store writer takes committed readings in
 * offset order and calls `commit(offset)` once the store confirmed them; segments wholly below the
 * checkpoint are deleted. On open, everything past the checkpoint is replayed (writes are idempotent).
 */
export class Spool {
  private readonly segments: Segment[] = []
  private fd = -1
  private nextOffset = 0
  private checkpoint = -1
  private lastCheckpointWritten = -1

  private buffered: string[] = []
  private bufferedEntries: SpoolEntry[] = []
  private bufferedWaiters: Waiter[] = []
  private flushing = false
  private closed = false
  private failure: Error | undefined

  /** Committed to disk, not yet confirmed by the store, in offset order. */
  private pending: SpoolEntry[] = []
  private pendingHead = 0
  /** Appends that are durable but wait for room (back-pressure). */
  private held: Waiter[] = []
  private availableListeners = new Set<() => void>()
  private idleWaiters: Array<() => void> = []

  private constructor(private readonly options: SpoolOptions) {}

  static open(options: SpoolOptions): Spool {
    mkdirSync(options.dir, { recursive: true })
    const spool = new Spool(options)
    spool.recover()
    return spool
  }

  /** Durable (fdatasync'd) when the promise resolves. */
  append(readings: readonly StoredReading[]): Promise<void> {
    if (this.closed) return Promise.reject(new Error('spool is closed'))
    if (this.failure) return Promise.reject(this.failure)
    if (readings.length === 0) return Promise.resolve()
    let text = ''
    for (const reading of readings) {
      const offset = this.nextOffset++
      text += `${JSON.stringify({ o: offset, r: reading })}\n`
      this.bufferedEntries.push({ offset, reading })
    }
    this.buffered.push(text)
    return new Promise<void>((resolve, reject) => {
      this.bufferedWaiters.push({ resolve, reject })
      if (!this.flushing) {
        this.flushing = true
        // Let every packet of this socket read, and of other sockets read in the same tick, join the commit.
        setImmediate(() => void this.flush())
      }
    })
  }

  /** Readings not yet confirmed by the store. */
  get pendingCount(): number {
    return this.pending.length - this.pendingHead
  }

  get diskBytes(): number {
    let total = 0
    for (const s of this.segments) total += s.bytes
    return total
  }

  get checkpointOffset(): number {
    return this.checkpoint
  }

  /** Up to `max` readings after `afterOffset`, in offset order, without removing them. */
  peek(max: number, afterOffset = -1): SpoolEntry[] {
    const out: SpoolEntry[] = []
    for (let i = this.pendingHead; i < this.pending.length && out.length < max; i++) {
      const entry = this.pending[i]!
      if (entry.offset > afterOffset) out.push(entry)
    }
    return out
  }

  /** Calls `listener` whenever new readings became durable. Returns an unsubscribe function. */
  onAvailable(listener: () => void): () => void {
    this.availableListeners.add(listener)
    return () => this.availableListeners.delete(listener)
  }

  /** The store confirmed every reading up to and including `offset`. */
  commit(offset: number): void {
    if (offset <= this.checkpoint) return
    this.checkpoint = offset
    while (this.pendingHead < this.pending.length && this.pending[this.pendingHead]!.offset <= offset)
      this.pendingHead++
    // Compact now and then rather than shifting per entry (Array.shift is O(n)).
    if (this.pendingHead > 4096 && this.pendingHead * 2 > this.pending.length) {
      this.pending = this.pending.slice(this.pendingHead)
      this.pendingHead = 0
    }
    this.writeCheckpoint()
    this.dropConfirmedSegments()
    this.releaseHeld()
    if (this.pendingCount === 0 && this.buffered.length === 0 && !this.flushing) {
      for (const w of this.idleWaiters.splice(0)) w()
    }
  }

  /** Resolves once everything appended so far is confirmed by the store (or the timeout passes). */
  whenDrained(timeoutMs: number): Promise<boolean> {
    if (this.pendingCount === 0 && this.buffered.length === 0 && !this.flushing) return Promise.resolve(true)
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        this.idleWaiters = this.idleWaiters.filter((w) => w !== done)
        resolve(false)
      }, timeoutMs)
      const done = () => {
        clearTimeout(timer)
        resolve(true)
      }
      this.idleWaiters.push(done)
    })
  }

  /** Flushes appends in progress, then closes files. Unconfirmed readings stay on disk for the next start. */
  async close(): Promise<void> {
    while (this.flushing) await new Promise((r) => setImmediate(r))
    this.closed = true
    for (const w of this.held.splice(0)) w.reject(new Error('spool closed'))
    if (this.fd >= 0) closeSync(this.fd)
    this.fd = -1
    this.writeCheckpoint()
  }

  private async flush(): Promise<void> {
    while (this.buffered.length > 0) {
      const data = Buffer.from(this.buffered.join(''), 'utf8')
      const entries = this.bufferedEntries
      const waiters = this.bufferedWaiters
      this.buffered = []
      this.bufferedEntries = []
      this.bufferedWaiters = []
      try {
        const fd = this.segmentFor(data.length, entries[0]!.offset)
        await writeAll(fd, data)
        await datasync(fd)
        this.segments[this.segments.length - 1]!.bytes += data.length
      } catch (err) {
        // A spool that cannot write must not acknowledge anything again: devices will resend.
        this.failure = err instanceof Error ? err : new Error(String(err))
        for (const w of waiters) w.reject(this.failure)
        for (const w of this.bufferedWaiters.splice(0)) w.reject(this.failure)
        this.buffered = []
        this.bufferedEntries = []
        break
      }
      for (const e of entries) this.pending.push(e)
      if (this.hasRoom()) for (const w of waiters) w.resolve()
      else for (const w of waiters) this.held.push(w)
      for (const listener of this.availableListeners) listener()
    }
    this.flushing = false
  }

  private hasRoom(): boolean {
    return this.pendingCount < this.options.maxPendingReadings && this.diskBytes < this.options.maxBytes
  }

  private releaseHeld() {
    if (this.held.length === 0 || !this.hasRoom()) return
    for (const w of this.held.splice(0)) w.resolve()
  }

  private segmentFor(incoming: number, firstOffset: number): number {
    const current = this.segments[this.segments.length - 1]
    if (this.fd >= 0 && current !== undefined && current.bytes + incoming <= this.options.segmentBytes)
      return this.fd
    if (this.fd >= 0) closeSync(this.fd)
    const path = join(this.options.dir, segmentName(firstOffset))
    this.fd = openSync(path, 'a')
    this.segments.push({ firstOffset, path, bytes: 0 })
    return this.fd
  }

  private writeCheckpoint() {
    if (this.checkpoint === this.lastCheckpointWritten) return
    // Not fsync'd: a lost checkpoint only means replaying readings the store already has, which is harmless.
    const tmp = join(this.options.dir, `${CHECKPOINT}.tmp`)
    writeFileSync(tmp, JSON.stringify({ offset: this.checkpoint }))
    renameSync(tmp, join(this.options.dir, CHECKPOINT))
    this.lastCheckpointWritten = this.checkpoint
  }

  private dropConfirmedSegments() {
    // A segment can go when the next one starts at or below checkpoint + 1; the open one always stays.
    while (this.segments.length > 1 && this.segments[1]!.firstOffset <= this.checkpoint + 1) {
      const gone = this.segments.shift()!
      rmSync(gone.path, { force: true })
    }
  }

  private recover() {
    try {
      const raw = JSON.parse(readFileSync(join(this.options.dir, CHECKPOINT), 'utf8')) as { offset?: unknown }
      if (typeof raw.offset === 'number' && Number.isInteger(raw.offset)) this.checkpoint = raw.offset
    } catch {
      // No checkpoint yet: replay everything there is.
    }
    this.lastCheckpointWritten = this.checkpoint
    const files = readdirSync(this.options.dir)
      .map((name) => ({ name, m: SEGMENT_RE.exec(name) }))
      .filter((f): f is { name: string; m: RegExpExecArray } => f.m !== null)
      .sort((a, b) => a.name.localeCompare(b.name))
    let maxOffset = this.checkpoint
    for (const f of files) {
      const path = join(this.options.dir, f.name)
      const text = readFileSync(path, 'utf8')
      this.segments.push({ firstOffset: Number(f.m[1]), path, bytes: statSync(path).size })
      for (const line of text.split('\n')) {
        if (line.length === 0) continue
        let parsed: { o: number; r: StoredReading }
        try {
          parsed = JSON.parse(line)
        } catch {
          // A torn last line from a crash mid-write: it was never fsync'd, so never acknowledged.
          continue
        }
        if (parsed.o > maxOffset) maxOffset = parsed.o
        if (parsed.o > this.checkpoint) this.pending.push({ offset: parsed.o, reading: parsed.r })
      }
    }
    this.pending.sort((a, b) => a.offset - b.offset)
    this.nextOffset = maxOffset + 1
    this.dropConfirmedSegments()
  }
}
