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
import { open } from 'node:fs/promises'
import { join } from 'node:path'
import type { StoredReading } from './store/types.ts'

export interface SpoolOptions {
  readonly dir: string
  /** A segment file is closed and a new one started past this size. */
  readonly segmentBytes: number
  /**
   * Readings waiting for the store that are also kept in memory for the writer. Past this (a long store
   * outage), new readings stay on disk only and the writer reads them back: memory stays bounded.
   */
  readonly maxMemoryReadings: number
  /** Disk use past which appends wait (and so do the devices' PUBACKs): devices slow down, nothing is dropped. */
  readonly maxBytes: number
  /** Called after each group commit with its duration and size (for metrics). */
  readonly onCommit?: (seconds: number, readings: number) => void
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

/** Where the writer reads back readings that are on disk only. */
interface DiskCursor {
  segmentFirstOffset: number
  bytePos: number
  /** Next offset the cursor will hand out. */
  nextOffset: number
}

const SEGMENT_RE = /^seg-(\d{16})\.log$/
const CHECKPOINT = 'checkpoint.json'
const READ_CHUNK_BYTES = 1024 * 1024

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
 * are on disk; that is when the broker may acknowledge. The store writer reads durable readings in
 * offset order and calls `commit(offset)` once the store confirmed them; segments wholly below the
 * checkpoint are deleted. Offsets are contiguous, so "pending" is simply durable − checkpoint.
 *
 * While the store keeps up, the writer is fed from memory. When more than `maxMemoryReadings` wait, the
 * spool stops keeping copies in memory and the writer reads the backlog back from the segment files;
 * once it has caught up, memory feeding resumes. On open, everything past the checkpoint is replayed
 * from disk (re-writing a stored reading is harmless: same identity).
 */
export class Spool {
  private readonly segments: Segment[] = []
  private fd = -1
  private nextOffset = 0
  /** Highest offset that is fdatasync'd. */
  private durable = -1
  private checkpoint = -1
  private lastCheckpointWritten = -1

  private buffered: string[] = []
  private bufferedEntries: SpoolEntry[] = []
  private bufferedWaiters: Waiter[] = []
  private flushing = false
  private closed = false
  private failure: Error | undefined

  /** In-memory copies of durable, unconfirmed readings, contiguous from `memory[memoryHead]`. */
  private memory: SpoolEntry[] = []
  private memoryHead = 0
  /** Defined while readings from this offset on are on disk only. */
  private spilledFrom: number | undefined
  private cursor: DiskCursor | undefined

  /** Durable appends waiting for disk room (back-pressure). */
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

  /** Durable readings not yet confirmed by the store. */
  get pendingCount(): number {
    return this.durable - this.checkpoint
  }

  /** Pending readings held in memory (the rest are read back from disk). */
  get memoryCount(): number {
    return this.memory.length - this.memoryHead
  }

  get diskBytes(): number {
    let total = 0
    for (const s of this.segments) total += s.bytes
    return total
  }

  get maxBytes(): number {
    return this.options.maxBytes
  }

  get checkpointOffset(): number {
    return this.checkpoint
  }

  /** Appends are waiting for disk room. */
  get backPressured(): boolean {
    return this.held.length > 0
  }

  /**
   * Up to `max` durable readings after `afterOffset`, in offset order, without removing them: from memory
   * when they are there, otherwise read back from the segment files.
   */
  async read(max: number, afterOffset: number): Promise<SpoolEntry[]> {
    const out: SpoolEntry[] = []
    for (let i = this.memoryHead; i < this.memory.length && out.length < max; i++) {
      const entry = this.memory[i]!
      if (entry.offset > afterOffset) out.push(entry)
    }
    if (out.length > 0 || this.spilledFrom === undefined) return out
    return this.readFromDisk(max, Math.max(afterOffset + 1, this.spilledFrom))
  }

  /** Calls `listener` whenever new readings became durable. Returns an unsubscribe function. */
  onAvailable(listener: () => void): () => void {
    this.availableListeners.add(listener)
    return () => this.availableListeners.delete(listener)
  }

  /** The store confirmed every reading up to and including `offset`. */
  commit(offset: number): void {
    if (offset <= this.checkpoint) return
    this.checkpoint = Math.min(offset, this.durable)
    while (this.memoryHead < this.memory.length && this.memory[this.memoryHead]!.offset <= this.checkpoint) {
      this.memoryHead++
    }
    // Compact now and then rather than shifting per entry (Array.shift is O(n)).
    if (this.memoryHead > 4096 && this.memoryHead * 2 > this.memory.length) {
      this.memory = this.memory.slice(this.memoryHead)
      this.memoryHead = 0
    }
    this.writeCheckpoint()
    this.dropConfirmedSegments()
    this.releaseHeld()
    if (this.isIdle()) for (const w of this.idleWaiters.splice(0)) w()
  }

  /** Resolves once everything appended so far is confirmed by the store (or the timeout passes). */
  whenDrained(timeoutMs: number): Promise<boolean> {
    if (this.isIdle()) return Promise.resolve(true)
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

  private isIdle() {
    return this.pendingCount === 0 && this.buffered.length === 0 && !this.flushing
  }

  private async flush(): Promise<void> {
    while (this.buffered.length > 0) {
      const data = Buffer.from(this.buffered.join(''), 'utf8')
      const entries = this.bufferedEntries
      const waiters = this.bufferedWaiters
      this.buffered = []
      this.bufferedEntries = []
      this.bufferedWaiters = []
      const started = performance.now()
      try {
        const fd = this.segmentFor(data.length, entries[0]!.offset)
        await writeAll(fd, data)
        await datasync(fd)
        this.segments[this.segments.length - 1]!.bytes += data.length
        this.options.onCommit?.((performance.now() - started) / 1000, entries.length)
      } catch (err) {
        // A spool that cannot write must not acknowledge anything again: devices will resend.
        this.failure = err instanceof Error ? err : new Error(String(err))
        for (const w of waiters) w.reject(this.failure)
        for (const w of this.bufferedWaiters.splice(0)) w.reject(this.failure)
        this.buffered = []
        this.bufferedEntries = []
        break
      }
      this.durable = entries[entries.length - 1]!.offset
      if (
        this.spilledFrom === undefined &&
        this.memoryCount + entries.length <= this.options.maxMemoryReadings
      ) {
        for (const e of entries) this.memory.push(e)
      } else {
        this.spilledFrom ??= entries[0]!.offset
      }
      if (this.hasRoom()) for (const w of waiters) w.resolve()
      else for (const w of waiters) this.held.push(w)
      for (const listener of this.availableListeners) listener()
    }
    this.flushing = false
  }

  /** Reads durable readings from `from` on out of the segment files, continuing where the last read stopped. */
  private async readFromDisk(max: number, from: number): Promise<SpoolEntry[]> {
    const out: SpoolEntry[] = []
    if (from > this.durable) return out
    let cursor = this.cursor
    if (
      cursor === undefined ||
      cursor.nextOffset !== from ||
      !this.segments.some((s) => s.firstOffset === cursor!.segmentFirstOffset)
    ) {
      const seg = [...this.segments].reverse().find((s) => s.firstOffset <= from) ?? this.segments[0]
      if (seg === undefined) return out
      cursor = { segmentFirstOffset: seg.firstOffset, bytePos: 0, nextOffset: from }
    }
    while (out.length < max) {
      const index = this.segments.findIndex((s) => s.firstOffset === cursor.segmentFirstOffset)
      const seg = this.segments[index]
      if (seg === undefined) break
      const handle = await open(seg.path, 'r')
      let chunk: Buffer
      let eof: boolean
      try {
        const buf = Buffer.allocUnsafe(READ_CHUNK_BYTES)
        const { bytesRead } = await handle.read(buf, 0, buf.length, cursor.bytePos)
        chunk = buf.subarray(0, bytesRead)
        eof = bytesRead < buf.length
      } finally {
        await handle.close()
      }
      let pos = 0
      let stop = false
      while (out.length < max) {
        const nl = chunk.indexOf(10, pos)
        if (nl < 0) break
        let parsed: { o: number; r: StoredReading } | undefined
        try {
          parsed = JSON.parse(chunk.toString('utf8', pos, nl))
        } catch {
          parsed = undefined
        }
        // A torn line (from a crash) was never acknowledged: skip it. Offsets past `durable` are not ours yet.
        if (parsed !== undefined && parsed.o > this.durable) {
          stop = true
          break
        }
        pos = nl + 1
        if (parsed !== undefined && parsed.o >= cursor.nextOffset) {
          out.push({ offset: parsed.o, reading: parsed.r })
          cursor.nextOffset = parsed.o + 1
        }
      }
      cursor.bytePos += pos
      if (stop || out.length >= max) break
      if (eof) {
        // What is left of an older segment is a torn line from a crash: go on with the next one.
        const next = this.segments[index + 1]
        if (next === undefined) break
        cursor.segmentFirstOffset = next.firstOffset
        cursor.bytePos = 0
      } else if (pos === 0) {
        break
      }
    }
    this.cursor = cursor
    // Caught up with everything durable: feed the writer from memory again.
    if (cursor.nextOffset > this.durable && !this.flushing) {
      this.spilledFrom = undefined
      this.cursor = undefined
    }
    return out
  }

  private hasRoom(): boolean {
    return this.diskBytes < this.options.maxBytes
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
    for (const f of files) {
      const path = join(this.options.dir, f.name)
      this.segments.push({ firstOffset: Number(f.m[1]), path, bytes: statSync(path).size })
    }
    // Only the newest segment is read here, for its last complete line; the backlog is read lazily.
    let last = this.checkpoint
    for (let i = this.segments.length - 1; i >= 0 && last === this.checkpoint; i--) {
      const lines = readFileSync(this.segments[i]!.path, 'utf8').split('\n')
      for (let j = lines.length - 1; j >= 0; j--) {
        try {
          const parsed = JSON.parse(lines[j]!) as { o: number }
          if (typeof parsed.o === 'number') {
            last = Math.max(last, parsed.o)
            break
          }
        } catch {
          // torn or empty line
        }
      }
    }
    this.durable = last
    this.nextOffset = last + 1
    if (this.durable > this.checkpoint) this.spilledFrom = this.checkpoint + 1
    this.dropConfirmedSegments()
  }
}
