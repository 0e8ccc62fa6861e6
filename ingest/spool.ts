import {
  closeSync,
  mkdirSync,
  openSync,
  readdirSync,
  readFileSync,
  renameSync,
  rmSync,
  statSync,
  writeFileSync,
} from 'node:fs'
import { open } from 'node:fs/promises'
import { join } from 'node:path'
import { inlineSpoolIo, type SpoolIo, type SyncTimes, threadSpoolIo } from './spool-io.ts'
import { perDeviceTags } from './store/per-device.ts'
import type { StoredReading } from './store/types.ts'

// The spool is two halves that may live on different threads. `SpoolLog` is the broker's half: it appends
// readings, group-commits them with fdatasync and settles each append only then (the broker acknowledges
// after that), keeps the segments and the checkpoint file, and holds appends past the disk limit.
// `SpoolFeed` is the store writer's half: it is told about every durable batch, keeps a bounded window of
// them in memory, reads the rest back from the segment files, and tells the log what the store confirmed.
// `Spool` wires both in one thread (tests, tools); the platform runs the log on the broker thread.

export interface SpoolLogOptions {
  readonly dir: string
  /** A segment file is closed and a new one started past this size. */
  readonly segmentBytes: number
  /** Disk use past which appends wait (and so do the devices' PUBACKs): devices slow down, nothing is dropped. */
  readonly maxBytes: number
  /**
   * Called after each group commit (for metrics) with its duration as the caller saw it, its size, and
   * where the write and the fdatasync spent their time on the thread that made it durable: the disk's own
   * time, and that thread's wait for a core.
   */
  readonly onCommit?: (seconds: number, readings: number, times: SyncTimes) => void
  /**
   * Write and fdatasync on a thread of their own, so the caller's event loop keeps taking packets while a
   * commit is on its way to disk (the broker thread). Otherwise they block the caller (tests, tools).
   */
  readonly ioThread?: boolean
}

export interface SpoolFeedOptions {
  readonly dir: string
  /**
   * Readings waiting for the store that are also kept in memory for the writer. Past this (a long store
   * outage), new readings stay on disk only and the writer reads them back: memory stays bounded.
   */
  readonly maxMemoryReadings: number
  readonly maxBytes: number
}

export type SpoolOptions = SpoolLogOptions & SpoolFeedOptions

export interface SpoolEntry {
  readonly offset: number
  readonly reading: StoredReading
}

/** One group commit, as the log reports it once it is on disk. */
export interface DurableBatch {
  readonly firstOffset: number
  readonly lastOffset: number
  /** The segment lines of the batch, `{"o":offset,"r":reading}\n` each: cheap to pass between threads. */
  readonly text: string
  /** The same readings as objects, when the feed runs in the log's thread. */
  readonly entries?: readonly SpoolEntry[]
  /** Bytes of segments on disk after this commit. */
  readonly diskBytes: number
}

/** Where the log stands on disk, for the feed's gauges and health. */
export interface SpoolDiskState {
  readonly diskBytes: number
  readonly backPressured: boolean
}

/** What the store writer needs from the spool. */
export interface SpoolReader {
  readonly pendingCount: number
  readonly diskBytes: number
  readonly maxBytes: number
  readonly backPressured: boolean
  readonly checkpointOffset: number
  read(max: number, afterOffset: number): Promise<SpoolEntry[]>
  onAvailable(listener: () => void): () => void
  commit(offset: number): void
}

/**
 * Called once per append: with no error when its readings are durable (and room is left on disk), with
 * how many they were; or with the error that stopped the spool.
 */
export type AppendDone = (err: Error | undefined, count: number) => void

/** Calls every waiter even if one throws; what a waiter throws surfaces afterwards, as an uncaught error. */
function settle(waiters: readonly AppendDone[], counts: readonly number[], err?: Error) {
  for (let i = 0; i < waiters.length; i++) {
    try {
      waiters[i]!(err, err === undefined ? counts[i]! : 0)
    } catch (thrown) {
      queueMicrotask(() => {
        throw thrown
      })
    }
  }
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

/**
 * The segment files in the directory, oldest first. The feed lists them on the platform thread while the
 * log deletes confirmed ones on the broker thread, so a file can be gone between `readdir` and `stat`:
 * it was wholly confirmed, and it is left out.
 */
function listSegments(dir: string): Segment[] {
  const segments: Segment[] = []
  for (const name of readdirSync(dir).sort()) {
    const m = SEGMENT_RE.exec(name)
    if (m === null) continue
    const path = join(dir, name)
    const stat = statSync(path, { throwIfNoEntry: false })
    if (stat !== undefined) segments.push({ firstOffset: Number(m[1]), path, bytes: stat.size })
  }
  return segments
}

/** A device's tags as the spool writes them, built once per device instead of once per reading. */
const lineHead = perDeviceTags(
  (reading) =>
    `{"kind":${JSON.stringify(reading.kind)},"device":${JSON.stringify(reading.device)}` +
    `,"district":${JSON.stringify(reading.district)},"regency":${JSON.stringify(reading.regency)}`,
)
const fieldKeys = new Map<string, string>()
const MAX_CACHED_KEYS = 1_000

/** `JSON.stringify` of a number: finite ones print alike, NaN and the infinities become null. */
const jsonNumber = (n: number) => (Number.isFinite(n) ? `${n}` : 'null')

function fieldKey(name: string): string {
  let key = fieldKeys.get(name)
  if (key === undefined) {
    key = `${JSON.stringify(name)}:`
    if (fieldKeys.size < MAX_CACHED_KEYS) fieldKeys.set(name, key)
  }
  return key
}

/**
 * One spool line, `{"o":offset,"r":reading}`: the same JSON as `JSON.stringify` gives for a StoredReading,
 * built from per-device pieces. Every reading the broker acknowledges passes here, on the broker thread,
 * and stringifying the whole object cost about twice as much (2.0–2.9 µs a line against 1.1–1.3 µs).
 */
export function spoolLine(offset: number, reading: StoredReading): string {
  let fields = ''
  for (const name in reading.fields) {
    const value = reading.fields[name]
    // As JSON.stringify: a key without a value is left out.
    if (value === undefined) continue
    fields += `${fields === '' ? '' : ','}${fieldKey(name)}${jsonNumber(value)}`
  }
  return (
    `{"o":${offset},"r":${lineHead(reading)},"ts":${jsonNumber(reading.ts)},"receivedAt":${jsonNumber(reading.receivedAt)}` +
    `,"seq":${jsonNumber(reading.seq)},"fields":{${fields}}}}\n`
  )
}

/**
 * One copy of each string that readings repeat (kind, device, district, regency). JSON.parse makes new
 * ones for every reading, and the feed keeps each reading until the store confirms it: through an outage
 * up to SPOOL_MAX_MEMORY_READINGS of them, and at 10,000 readings/s whatever waits for the next write is
 * copied and promoted by the platform thread's scavenges. `npm run bench:feed-memory`: 280 bytes a reading
 * kept instead of 408.
 */
const repeatedStrings = new Map<string, string>()
/** The registry bounds these strings; past this many (a very large registry) they are shared less. */
const MAX_REPEATED_STRINGS = 100_000

function shared<T extends string>(s: T): T {
  const known = repeatedStrings.get(s)
  if (known !== undefined) return known as T
  if (repeatedStrings.size >= MAX_REPEATED_STRINGS) repeatedStrings.clear()
  repeatedStrings.set(s, s)
  return s
}

/** The readings of one durable batch's text, in order. */
export function parseBatch(text: string): SpoolEntry[] {
  // One JSON.parse over the whole batch is several times faster than one per line.
  const list = JSON.parse(`[${text.slice(0, -1).replaceAll('\n', ',')}]`) as Array<{
    o: number
    r: { -readonly [K in keyof StoredReading]: StoredReading[K] }
  }>
  return list.map(({ o, r }) => {
    r.kind = shared(r.kind)
    r.device = shared(r.device)
    r.district = shared(r.district)
    r.regency = shared(r.regency)
    return { offset: o, reading: r }
  })
}

/**
 * The append-only log of accepted readings, the buffer of record between the broker's PUBACK and the store.
 *
 * Appends from all devices that arrive while a commit is running are written and fdatasync'd together
 * (group commit), so one fsync serves many readings. An append settles (its promise, or its callback with
 * `appendWith`) only after its bytes are on disk; that is when the broker may acknowledge. Offsets are
 * contiguous. `commit(offset)` records what the store confirmed (the feed has written the checkpoint
 * file): segments wholly below it are deleted, and appends held at the disk limit go on.
 */
export class SpoolLog {
  private readonly segments: Segment[] = []
  private fd = -1
  /** The spool directory, fsync'd with the first commit of each new segment; -1 where it cannot be opened. */
  private dirFd = -1
  /** The open segment was created since the last commit: its directory entry is not durable yet. */
  private freshSegment = false
  private nextOffset = 0
  /** Highest offset that is fdatasync'd. */
  private durable = -1
  private checkpoint = -1

  private buffered: string[] = []
  private bufferedFirst = 0
  private bufferedCount = 0
  private bufferedEntries: SpoolEntry[] | undefined
  private bufferedWaiters: AppendDone[] = []
  private bufferedCounts: number[] = []
  private flushing = false
  private closed = false
  private failure: Error | undefined
  private flushedWaiters: Array<() => void> = []

  /** Durable appends waiting for disk room (back-pressure). */
  private held: AppendDone[] = []
  private heldCounts: number[] = []

  /**
   * Called with every durable batch, in offset order, before its appends resolve. `keepEntries` makes the
   * batch carry its readings as objects too (for a feed in the same thread).
   */
  onDurable: ((batch: DurableBatch) => void) | undefined
  /** Called when disk use or back-pressure changed after a commit. */
  onDiskState: ((state: SpoolDiskState) => void) | undefined

  private readonly io: SpoolIo

  private constructor(
    private readonly options: SpoolLogOptions,
    private readonly keepEntries: boolean,
  ) {
    this.io = options.ioThread ? threadSpoolIo() : inlineSpoolIo()
  }

  static open(options: SpoolLogOptions, opts: { keepEntries?: boolean } = {}): SpoolLog {
    mkdirSync(options.dir, { recursive: true })
    const log = new SpoolLog(options, opts.keepEntries ?? false)
    try {
      log.dirFd = openSync(options.dir, 'r')
    } catch {
      // Not every platform opens directories (Windows); Linux, where the platform runs, does.
    }
    log.recover()
    return log
  }

  /** The kernel id of the thread that makes commits durable, when it is not the caller's (`ioThread`). */
  ioThreadId(): Promise<number | undefined> {
    return this.io.threadId()
  }

  /** Confirmed and durable offsets found on open: what the feed must replay. */
  get position(): { checkpoint: number; durable: number } {
    return { checkpoint: this.checkpoint, durable: this.durable }
  }

  /** Durable (fdatasync'd) when the promise resolves. */
  append(readings: readonly StoredReading[]): Promise<void> {
    return new Promise((resolve, reject) =>
      this.appendWith(readings, (err) => (err === undefined ? resolve() : reject(err))),
    )
  }

  /**
   * `append` for the broker's hot path: `done` is called when the readings are durable. A callback kept
   * as it is costs one object per publish where promises cost several (an append's promise and resolvers,
   * the caller's `then`), and every one of them lives until the commit is on disk.
   */
  appendWith(readings: readonly StoredReading[], done: AppendDone): void {
    const refused = this.closed ? new Error('spool is closed') : this.failure
    if (refused !== undefined || readings.length === 0) {
      done(refused, 0)
      return
    }
    this.io.poll()
    if (this.bufferedCount === 0) this.bufferedFirst = this.nextOffset
    let text = ''
    for (const reading of readings) {
      const offset = this.nextOffset++
      text += spoolLine(offset, reading)
      this.bufferedEntries?.push({ offset, reading })
    }
    this.bufferedCount += readings.length
    this.buffered.push(text)
    this.bufferedWaiters.push(done)
    this.bufferedCounts.push(readings.length)
    if (!this.flushing) {
      this.flushing = true
      // Let every packet of this socket read, and of other sockets read in the same tick, join the commit.
      setImmediate(() => void this.flush())
    }
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

  get durableOffset(): number {
    return this.durable
  }

  /** Appends are waiting for disk room. */
  get backPressured(): boolean {
    return this.held.length > 0
  }

  /**
   * Disk use is at the limit: what is appended now is held until the store confirms enough. Best-effort
   * (QoS 0) readings, which have no acknowledgement to hold, are not appended then (see Ingest).
   */
  get full(): boolean {
    return !this.hasRoom()
  }

  /** Nothing appended is waiting to be written. */
  get settled(): boolean {
    return this.buffered.length === 0 && !this.flushing
  }

  /** Resolves once everything appended so far is durable (or failed). */
  flushed(): Promise<void> {
    if (this.settled) return Promise.resolve()
    return new Promise((resolve) => this.flushedWaiters.push(resolve))
  }

  /** The store confirmed every reading up to and including `offset`. */
  commit(offset: number): void {
    if (offset <= this.checkpoint) return
    const before = { diskBytes: this.diskBytes, backPressured: this.backPressured }
    this.checkpoint = Math.min(offset, this.durable)
    this.dropConfirmedSegments()
    this.releaseHeld()
    const after = { diskBytes: this.diskBytes, backPressured: this.backPressured }
    if (after.diskBytes !== before.diskBytes || after.backPressured !== before.backPressured)
      this.onDiskState?.(after)
  }

  /** Flushes appends in progress, then closes files. Unconfirmed readings stay on disk for the next start. */
  async close(): Promise<void> {
    await this.flushed()
    this.closed = true
    const held = this.held.splice(0)
    settle(held, this.heldCounts.splice(0), new Error('spool closed'))
    if (this.fd >= 0) closeSync(this.fd)
    this.fd = -1
    if (this.dirFd >= 0) closeSync(this.dirFd)
    this.dirFd = -1
    await this.io.close()
  }

  private async flush(): Promise<void> {
    while (this.buffered.length > 0) {
      const text = this.buffered.join('')
      const bytes = Buffer.byteLength(text, 'utf8')
      const firstOffset = this.bufferedFirst
      const lastOffset = firstOffset + this.bufferedCount - 1
      const entries = this.bufferedEntries
      const waiters = this.bufferedWaiters
      const counts = this.bufferedCounts
      this.buffered = []
      this.bufferedCount = 0
      this.bufferedEntries = this.keepEntries ? [] : undefined
      this.bufferedWaiters = []
      this.bufferedCounts = []
      const started = performance.now()
      try {
        const fd = this.segmentFor(bytes, firstOffset)
        const dirFd = this.freshSegment ? this.dirFd : -1
        // Appends arriving meanwhile are buffered and form the next commit.
        const times = await this.io.writeAndSync(fd, text, dirFd)
        this.freshSegment = false
        this.segments[this.segments.length - 1]!.bytes += bytes
        this.options.onCommit?.((performance.now() - started) / 1000, lastOffset - firstOffset + 1, times)
      } catch (err) {
        // A spool that cannot write must not acknowledge anything again: devices will resend.
        this.failure = err instanceof Error ? err : new Error(String(err))
        settle(waiters, counts, this.failure)
        settle(this.bufferedWaiters.splice(0), this.bufferedCounts.splice(0), this.failure)
        this.buffered = []
        this.bufferedCount = 0
        break
      }
      this.durable = lastOffset
      this.onDurable?.({
        firstOffset,
        lastOffset,
        text,
        diskBytes: this.diskBytes,
        ...(entries && { entries }),
      })
      if (this.hasRoom()) settle(waiters, counts)
      else {
        const wasHeld = this.held.length > 0
        for (let i = 0; i < waiters.length; i++) {
          this.held.push(waiters[i]!)
          this.heldCounts.push(counts[i]!)
        }
        if (!wasHeld) this.onDiskState?.({ diskBytes: this.diskBytes, backPressured: true })
      }
      // A commit that an append settled (`poll`) ends in the middle of an iteration of the event loop. The
      // next one waits for the iteration's end, so that every packet read in it joins: about one commit per
      // iteration, as many readings per fdatasync as before, and acknowledgements no later than the sync.
      if (this.buffered.length > 0) await new Promise<void>((r) => setImmediate(r))
    }
    this.flushing = false
    for (const w of this.flushedWaiters.splice(0)) w()
  }

  private hasRoom(): boolean {
    return this.diskBytes < this.options.maxBytes
  }

  private releaseHeld() {
    if (this.held.length === 0 || !this.hasRoom()) return
    const held = this.held.splice(0)
    settle(held, this.heldCounts.splice(0))
  }

  private segmentFor(incoming: number, firstOffset: number): number {
    const current = this.segments[this.segments.length - 1]
    if (this.fd >= 0 && current !== undefined && current.bytes + incoming <= this.options.segmentBytes)
      return this.fd
    if (this.fd >= 0) closeSync(this.fd)
    const path = join(this.options.dir, segmentName(firstOffset))
    // Never an existing file ('x'): appending to one (a leftover with a torn line, say) could glue a new
    // line onto the torn one, and a second entry for one path would let the log delete the open segment.
    // `recover` clears such leftovers; if one is still there, the spool fails and acknowledges nothing.
    this.fd = openSync(path, 'ax')
    this.freshSegment = true
    this.segments.push({ firstOffset, path, bytes: 0 })
    return this.fd
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
    this.segments.push(...listSegments(this.options.dir))
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
    // A newest segment with no complete line (the process died after creating it, before or during its
    // first commit) holds nothing that was acknowledged, and its name is the one the next commit needs.
    while (this.segments.length > 0 && this.segments[this.segments.length - 1]!.firstOffset > last) {
      rmSync(this.segments.pop()!.path, { force: true })
    }
    this.durable = last
    this.nextOffset = last + 1
    this.bufferedEntries = this.keepEntries ? [] : undefined
    this.dropConfirmedSegments()
  }
}

/**
 * The store writer's view of the spool: durable readings in offset order, from memory while the store
 * keeps up, read back from the segment files when more than `maxMemoryReadings` wait (a long store outage)
 * or after a restart. Offsets are contiguous, so "pending" is simply durable − checkpoint. `commit` passes
 * what the store confirmed on to the log.
 */
export class SpoolFeed implements SpoolReader {
  private durable: number
  private checkpoint: number
  /** In-memory copies of durable, unconfirmed readings, contiguous from `memory[memoryHead]`. */
  private memory: SpoolEntry[] = []
  private memoryHead = 0
  /** Defined while readings from this offset on are on disk only. */
  private spilledFrom: number | undefined
  private cursor: DiskCursor | undefined
  private disk: SpoolDiskState
  private readonly availableListeners = new Set<() => void>()
  private readonly readingListeners = new Set<(readings: readonly StoredReading[]) => void>()
  private idleWaiters: Array<() => void> = []
  private settledSource: () => boolean = () => true

  constructor(
    private readonly options: SpoolFeedOptions,
    start: { checkpoint: number; durable: number; diskBytes: number },
    private readonly confirm: (offset: number) => void,
  ) {
    this.checkpoint = start.checkpoint
    this.durable = start.durable
    this.disk = { diskBytes: start.diskBytes, backPressured: false }
    if (this.durable > this.checkpoint) this.spilledFrom = this.checkpoint + 1
  }

  /** A batch became durable in the log. */
  receive(batch: DurableBatch): void {
    if (batch.firstOffset !== this.durable + 1) {
      // Never expected (the log numbers contiguously); fall back to the files rather than lose readings.
      this.spilledFrom ??= Math.min(batch.firstOffset, this.durable + 1)
    }
    const entries = batch.entries ?? parseBatch(batch.text)
    this.durable = batch.lastOffset
    this.disk = { ...this.disk, diskBytes: batch.diskBytes }
    if (
      this.spilledFrom === undefined &&
      this.memoryCount + entries.length <= this.options.maxMemoryReadings
    ) {
      for (const e of entries) this.memory.push(e)
    } else {
      this.spilledFrom ??= batch.firstOffset
    }
    if (this.readingListeners.size > 0) {
      const readings = entries.map((e) => e.reading)
      for (const listener of this.readingListeners) listener(readings)
    }
    for (const listener of this.availableListeners) listener()
  }

  /** The log's disk use changed. */
  updateDisk(state: SpoolDiskState): void {
    this.disk = state
  }

  /** Lets `whenDrained` also wait for appends the log has not made durable yet (same-thread use). */
  setSettledSource(source: () => boolean): void {
    this.settledSource = source
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
    return this.disk.diskBytes
  }

  get maxBytes(): number {
    return this.options.maxBytes
  }

  get backPressured(): boolean {
    return this.disk.backPressured
  }

  get checkpointOffset(): number {
    return this.checkpoint
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

  /** Calls `listener` with the readings of every durable batch (live views, alarms). */
  onReadings(listener: (readings: readonly StoredReading[]) => void): () => void {
    this.readingListeners.add(listener)
    return () => this.readingListeners.delete(listener)
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
    // The checkpoint file is written here, off the broker thread; not fsync'd: a lost checkpoint only
    // means replaying readings the store already has, which is harmless. For the same reason the log is
    // told even when the file cannot be written: on a full disk, deleting confirmed segments is what makes
    // room. The error still goes to the caller (the writer counts and logs it); the next commit tries again.
    let failed: unknown
    try {
      const tmp = join(this.options.dir, `${CHECKPOINT}.tmp`)
      writeFileSync(tmp, JSON.stringify({ offset: this.checkpoint }))
      renameSync(tmp, join(this.options.dir, CHECKPOINT))
    } catch (err) {
      failed = err
    }
    this.confirm(this.checkpoint)
    this.checkIdle()
    if (failed !== undefined) throw failed
  }

  /** Resolves once everything made durable so far is confirmed by the store (or the timeout passes). */
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

  /** Re-checks idleness (the log settled). */
  checkIdle(): void {
    if (this.isIdle()) for (const w of this.idleWaiters.splice(0)) w()
  }

  private isIdle() {
    return this.pendingCount === 0 && this.settledSource()
  }

  /** Reads durable readings from `from` on out of the segment files, continuing where the last read stopped. */
  private async readFromDisk(max: number, from: number): Promise<SpoolEntry[]> {
    const out: SpoolEntry[] = []
    if (from > this.durable) return out
    // Always the segment that holds `from` (the newest one starting at or before it), never one before:
    // the log, on the broker thread, deletes a segment as soon as the one after it starts at or below
    // its checkpoint + 1, at any moment after this feed's commit. A cursor left at the end of such a
    // segment once pointed here at a file deleted between this listing and its `open`, and the writer's
    // loop died with ENOENT (a full benchmark run stalled for good at a segment boundary that way).
    // The segment holding `from` stays: the one after it starts past `from`, and `from` is past the
    // checkpoint the log knows.
    const segments = listSegments(this.options.dir)
    const holding = segments.findLast((s) => s.firstOffset <= from) ?? segments[0]
    if (holding === undefined) return out
    let cursor = this.cursor
    if (
      cursor === undefined ||
      cursor.nextOffset !== from ||
      cursor.segmentFirstOffset !== holding.firstOffset
    ) {
      cursor = { segmentFirstOffset: holding.firstOffset, bytePos: 0, nextOffset: from }
    }
    while (out.length < max) {
      const index = segments.findIndex((s) => s.firstOffset === cursor.segmentFirstOffset)
      const seg = segments[index]
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
        const next = segments[index + 1]
        if (next === undefined) break
        cursor.segmentFirstOffset = next.firstOffset
        cursor.bytePos = 0
      } else if (pos === 0) {
        break
      }
    }
    this.cursor = cursor
    // Caught up with everything durable: feed the writer from memory again.
    if (cursor.nextOffset > this.durable) {
      this.spilledFrom = undefined
      this.cursor = undefined
    }
    return out
  }
}

/** Log and feed wired together in one thread: the whole spool behind one object. */
export class Spool implements SpoolReader {
  private constructor(
    private readonly log: SpoolLog,
    readonly feed: SpoolFeed,
  ) {}

  static open(options: SpoolOptions): Spool {
    const log = SpoolLog.open(options, { keepEntries: true })
    const feed = new SpoolFeed(options, { ...log.position, diskBytes: log.diskBytes }, (offset) =>
      log.commit(offset),
    )
    log.onDurable = (batch) => feed.receive(batch)
    log.onDiskState = (state) => feed.updateDisk(state)
    feed.setSettledSource(() => log.settled)
    return new Spool(log, feed)
  }

  /** Durable (fdatasync'd) when the promise resolves. */
  append(readings: readonly StoredReading[]): Promise<void> {
    return this.log.append(readings).finally(() => this.feed.checkIdle())
  }

  get pendingCount(): number {
    return this.feed.pendingCount
  }

  get memoryCount(): number {
    return this.feed.memoryCount
  }

  get diskBytes(): number {
    return this.log.diskBytes
  }

  get maxBytes(): number {
    return this.log.maxBytes
  }

  get checkpointOffset(): number {
    return this.feed.checkpointOffset
  }

  get backPressured(): boolean {
    return this.log.backPressured
  }

  get full(): boolean {
    return this.log.full
  }

  read(max: number, afterOffset: number): Promise<SpoolEntry[]> {
    return this.feed.read(max, afterOffset)
  }

  onAvailable(listener: () => void): () => void {
    return this.feed.onAvailable(listener)
  }

  commit(offset: number): void {
    this.feed.commit(offset)
  }

  whenDrained(timeoutMs: number): Promise<boolean> {
    return this.feed.whenDrained(timeoutMs)
  }

  close(): Promise<void> {
    return this.log.close()
  }
}
