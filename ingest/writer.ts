import { appendFileSync } from 'node:fs'
import type { Logger } from 'pino'
import type { PlatformBus } from './events.ts'
import type { PlatformMetrics } from './metrics.ts'
import type { SpoolEntry, SpoolReader } from './spool.ts'
import { StoreWriteError, type TimeSeriesStore } from './store/types.ts'

export interface WriterOptions {
  readonly batchSize: number
  /** How long to wait for a batch to fill once the first reading is there. */
  readonly maxBatchWaitMs: number
  readonly retryInitialMs: number
  readonly retryMaxMs: number
  /** NDJSON file for readings the store refused (with the reason). */
  readonly deadLetterPath: string
}

/** The steps of the writer's loop, as `ingest_writer_faults_total` names them. */
type WriterStep = 'read' | 'write' | 'commit'

/**
 * Moves readings from the spool to the store, in offset order, one batch at a time, and commits the
 * spool only after the store confirmed. Retryable failures (store down, 5xx, timeouts) are retried with
 * capped exponential backoff and jitter, forever: the spool holds the data meanwhile. A batch the store
 * refuses is split until the refused readings are isolated and set aside in the dead-letter file.
 */
export class StoreWriter {
  private running = false
  private loop: Promise<void> | undefined
  private wake: (() => void) | undefined
  /** When new readings arrive, should the loop wake up now? Depends on what it is waiting for. */
  private wakeWhen: () => boolean = () => true
  private unsubscribe: (() => void) | undefined
  private sleepTimer: NodeJS.Timeout | undefined
  private lastError: { message: string; at: number; retryable: boolean } | undefined
  private nearLimit = false

  constructor(
    private readonly spool: SpoolReader,
    private readonly store: TimeSeriesStore,
    private readonly options: WriterOptions,
    private readonly deps: { log: Logger; metrics: PlatformMetrics; bus: PlatformBus },
  ) {}

  start(): void {
    if (this.running) return
    this.running = true
    this.unsubscribe = this.spool.onAvailable(() => {
      if (this.wakeWhen()) this.wake?.()
    })
    this.loop = this.run()
  }

  /** Stops after the batch in flight. Whatever is not yet stored stays in the spool for the next start. */
  async stop(): Promise<void> {
    this.running = false
    this.unsubscribe?.()
    if (this.sleepTimer) clearTimeout(this.sleepTimer)
    this.wake?.()
    await this.loop
  }

  get status() {
    return {
      pending: this.spool.pendingCount,
      spoolBytes: this.spool.diskBytes,
      spoolLimitBytes: this.spool.maxBytes,
      spoolNearLimit: this.nearLimit,
      backPressure: this.spool.backPressured,
      lastError: this.lastError,
    }
  }

  /** Warns once when the spool passes 80% of its disk limit, and once when it is back under 60%. */
  private checkSpoolPressure() {
    const share = this.spool.diskBytes / this.spool.maxBytes
    if (!this.nearLimit && share >= 0.8) {
      this.nearLimit = true
      this.deps.log.warn(
        {
          spoolBytes: this.spool.diskBytes,
          limitBytes: this.spool.maxBytes,
          pending: this.spool.pendingCount,
        },
        'spool is near its disk limit; devices will be slowed down when it is reached',
      )
    } else if (this.nearLimit && share < 0.6) {
      this.nearLimit = false
      this.deps.log.info({ spoolBytes: this.spool.diskBytes }, 'spool back under its disk limit')
    }
  }

  private async run(): Promise<void> {
    let faultDelay = this.options.retryInitialMs
    while (this.running) {
      let step: WriterStep = 'read'
      try {
        if (this.spool.pendingCount === 0) {
          this.wakeWhen = () => true
          await new Promise<void>((resolve) => {
            this.wake = resolve
          })
          this.wake = undefined
          continue
        }
        if (this.spool.pendingCount < this.options.batchSize && this.options.maxBatchWaitMs > 0) {
          this.wakeWhen = () => this.spool.pendingCount >= this.options.batchSize
          await this.sleep(this.options.maxBatchWaitMs)
        }
        this.wakeWhen = () => false
        // Small batches keep each synchronous build short; a backlog gets bigger ones, so fewer round trips catch up.
        const size = Math.min(
          this.options.batchSize * 5,
          Math.max(this.options.batchSize, Math.floor(this.spool.pendingCount / 2)),
        )
        const batch = await this.spool.read(size, this.spool.checkpointOffset)
        if (batch.length === 0) continue
        step = 'write'
        const done = await this.writeBatch(batch)
        if (!done) continue
        step = 'commit'
        this.spool.commit(batch[batch.length - 1]!.offset)
        this.checkSpoolPressure()
        faultDelay = this.options.retryInitialMs
      } catch (err) {
        // This loop is the only way readings reach the store: if it ended, the spool would grow until the
        // devices are held at its disk limit, with nothing but a stalled checkpoint to show for it. So a
        // failed step (a segment file that cannot be read back, a dead-letter or checkpoint file that
        // cannot be written) is logged, counted and tried again; nothing is committed past it meanwhile.
        const message = err instanceof Error ? err.message : String(err)
        this.lastError = { message, at: Date.now(), retryable: true }
        this.deps.metrics.writerFaults.inc({ step })
        this.deps.log.error(
          { err: message, step, retryInMs: faultDelay },
          'store writer step failed; retrying',
        )
        this.wakeWhen = () => false
        await this.sleep(faultDelay * (0.5 + Math.random()))
        faultDelay = Math.min(faultDelay * 2, this.options.retryMaxMs)
      }
    }
  }

  /** true when every reading of the batch is either stored or dead-lettered; false when stopped. */
  private async writeBatch(batch: SpoolEntry[]): Promise<boolean> {
    let delay = this.options.retryInitialMs
    while (this.running) {
      try {
        await this.store.write(batch.map((e) => e.reading))
        this.deps.metrics.readingsStored.inc(batch.length)
        this.lastError = undefined
        return true
      } catch (err) {
        const retryable = !(err instanceof StoreWriteError) || err.retryable
        const message = err instanceof Error ? err.message : String(err)
        this.lastError = { message, at: Date.now(), retryable }
        this.deps.metrics.storeWriteErrors.inc({ retryable: String(retryable) })
        if (!retryable) {
          if (batch.length === 1) {
            this.deadLetter(batch[0]!, message)
            return true
          }
          const mid = batch.length >> 1
          const first = await this.writeBatch(batch.slice(0, mid))
          return first && (await this.writeBatch(batch.slice(mid)))
        }
        this.deps.log.warn(
          { err: message, batch: batch.length, retryInMs: delay },
          'store write failed; retrying',
        )
        await this.sleep(delay * (0.5 + Math.random()))
        delay = Math.min(delay * 2, this.options.retryMaxMs)
      }
    }
    return false
  }

  private deadLetter(entry: SpoolEntry, reason: string) {
    const r = entry.reading
    appendFileSync(
      this.options.deadLetterPath,
      `${JSON.stringify({ at: Date.now(), reason, offset: entry.offset, reading: r })}\n`,
    )
    this.deps.metrics.readingsDeadLettered.inc()
    this.deps.log.error(
      { deviceId: r.device, seq: r.seq, ts: r.ts, reason },
      'store refused reading; dead-lettered',
    )
    this.deps.bus.emit('reading.rejected', {
      deviceId: r.device,
      code: 'store_refused',
      message: reason.slice(0, 500),
      receivedAt: r.receivedAt,
      payload: JSON.stringify(r.fields).slice(0, 512),
      payloadBytes: 0,
    })
  }

  private sleep(ms: number): Promise<void> {
    return new Promise((resolve) => {
      this.sleepTimer = setTimeout(resolve, ms)
      this.wake = resolve
    })
  }
}
