import type { Logger } from 'pino'
import { validateTelemetry } from '../firmware-contracts/index.ts'
import type { PlatformBus, RejectedRecord } from './events.ts'
import type { PlatformMetrics } from './metrics.ts'
import type { Device } from './registry.ts'
import { payloadExcerpt } from './rejections.ts'
import type { StoredReading } from './store/types.ts'

export interface IngestOptions {
  readonly maxFutureSkewMs: number
  readonly maxPayloadBytes: number
}

/**
 * A river gauge's calibration offset (cm, set by the installer against the staff gauge) corrects its water
 * level before anything stores or shows it. Other kinds carry no offset in contract v1.
 */
function calibrate(
  device: Device,
  fields: Readonly<Record<string, number>>,
): Readonly<Record<string, number>> {
  const offset = device.calibrationOffset
  if (!offset || device.kind !== 'river-level' || fields.waterLevel === undefined) return fields
  return { ...fields, waterLevel: Math.round((fields.waterLevel + offset) * 1000) / 1000 }
}

/**
 * Called once per payload: with the error if the spool failed (the broker must not acknowledge), else with
 * how many readings are durable (0 for a rejected payload, which is acknowledged all the same).
 */
export type IngestDone = (err: Error | undefined, accepted: number) => void

/**
 * The hot path between the broker and the spool: validate against the firmware contract, enrich with
 * registry tags (never from the payload, so a device cannot claim to be elsewhere), append durably.
 * A rejected payload is data, not an error: it goes out as a `reading.rejected` event (the platform keeps
 * it for the commissioning view) and the device is acknowledged all the same. Accepted readings reach the
 * rest of the platform through the spool (`SpoolFeed.onReadings`), once durable.
 */
export class Ingest {
  constructor(
    private readonly options: IngestOptions,
    private readonly deps: {
      spool: {
        appendWith(readings: readonly StoredReading[], done: IngestDone): void
        /** At its disk limit: appends are held until the store catches up. */
        readonly full: boolean
      }
      bus: PlatformBus
      metrics: PlatformMetrics
      log: Logger
    },
  ) {}

  /** Rejections of one reason logged at most this often; each is still counted and kept. */
  private static readonly QUIET_REJECTION_LOG_MS = 10_000
  /**
   * Per device, the last time given to a reading that came without `ts` (a device with no clock).
   * A point's identity in the store is its series and time, so two such readings given the same receive
   * time were one point: the readings of a backlog batch all but the last, and two messages that arrived
   * within one millisecond. Each gets a millisecond of its own instead. One number per registered device.
   */
  private readonly lastServerTs = new Map<string, number>()
  private spoolFullLoggedAt = Number.NEGATIVE_INFINITY
  private spoolFullUnlogged = 0

  /**
   * Takes one telemetry payload; `done` runs once its readings are durable (the broker may acknowledge
   * then). A callback rather than a promise: this runs for every publish, and whatever it allocates lives
   * until the group commit is on disk.
   *
   * `bestEffort` (QoS 0): nothing waits for `done`, so a full spool cannot slow the device down by holding
   * it, and appending anyway would grow the disk past its limit and the held acknowledgements without
   * bound through a long outage. Such readings are rejected as `spool_full` instead.
   */
  telemetry(
    device: Device,
    payload: Buffer,
    done: IngestDone,
    bestEffort = false,
    receivedAt = Date.now(),
  ): void {
    const result = validateTelemetry(device.kind, payload, {
      now: receivedAt,
      maxFutureSkewMs: this.options.maxFutureSkewMs,
      maxPayloadBytes: this.options.maxPayloadBytes,
    })
    if (!result.ok) {
      this.reject({
        deviceId: device.id,
        code: result.rejection.code,
        message: result.rejection.message,
        receivedAt,
        payload: payloadExcerpt(payload),
        payloadBytes: payload.byteLength,
      })
      done(undefined, 0)
      return
    }
    if (bestEffort && this.deps.spool.full) {
      this.reject(
        {
          deviceId: device.id,
          code: 'spool_full',
          message: `${result.readings.length} QoS 0 reading(s) not kept: the spool is at its disk limit`,
          receivedAt,
          payload: payloadExcerpt(payload),
          payloadBytes: payload.byteLength,
        },
        receivedAt,
      )
      done(undefined, 0)
      return
    }
    const readings: StoredReading[] = result.readings.map((r) => ({
      kind: device.kind,
      device: device.id,
      district: device.district,
      regency: device.regency,
      ts: r.ts ?? this.serverTime(device.id, receivedAt),
      receivedAt,
      seq: r.seq,
      fields: calibrate(device, r.fields),
    }))
    for (const r of result.readings) {
      // Only readings the device stamped; a clock ahead of ours (within the allowed skew) counts as none.
      if (r.ts !== undefined)
        this.deps.metrics.readingDelaySeconds.observe(Math.max(0, receivedAt - r.ts) / 1000)
    }
    this.deps.spool.appendWith(readings, done)
  }

  /**
   * The receive time, or one millisecond past the device's last such time when that is not earlier.
   * Readings of one message keep their order. A device that sends more than 1,000 readings a second
   * without `ts` would run ahead of the clock: past the allowed future skew it starts again from the
   * receive time (its readings may then overwrite each other, as they all did before).
   */
  private serverTime(deviceId: string, receivedAt: number): number {
    const last = this.lastServerTs.get(deviceId)
    let ts = last !== undefined && last >= receivedAt ? last + 1 : receivedAt
    if (ts - receivedAt > this.options.maxFutureSkewMs) ts = receivedAt
    this.lastServerTs.set(deviceId, ts)
    return ts
  }

  /**
   * Counts, logs and publishes a rejected payload for the commissioning view. A packet over the broker's
   * MQTT_MAX_PACKET_BYTES never gets here: its connection is closed before the payload is read, which is
   * why the platform config keeps INGEST_MAX_PAYLOAD_BYTES within it.
   */
  reject(record: RejectedRecord, now = Date.now()): void {
    this.deps.metrics.readingsRejected.inc({ reason: record.code })
    if (record.code !== 'spool_full') {
      this.deps.log.warn(
        { deviceId: record.deviceId, reason: record.code, detail: record.message.slice(0, 300) },
        'reading rejected',
      )
    } else if (now - this.spoolFullLoggedAt >= Ingest.QUIET_REJECTION_LOG_MS) {
      // Every QoS 0 device rejects this way for as long as the outage lasts: one line per interval.
      this.deps.log.warn(
        { deviceId: record.deviceId, reason: record.code, alsoSince: this.spoolFullUnlogged },
        'QoS 0 readings rejected: the spool is full',
      )
      this.spoolFullLoggedAt = now
      this.spoolFullUnlogged = 0
    } else {
      this.spoolFullUnlogged++
    }
    this.deps.bus.emit('reading.rejected', record)
  }
}
