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
      spool: { appendWith(readings: readonly StoredReading[], done: IngestDone): void }
      bus: PlatformBus
      metrics: PlatformMetrics
      log: Logger
    },
  ) {}

  /**
   * Takes one telemetry payload; `done` runs once its readings are durable (the broker may acknowledge
   * then). A callback rather than a promise: this runs for every publish, and whatever it allocates lives
   * until the group commit is on disk.
   */
  telemetry(device: Device, payload: Buffer, done: IngestDone, receivedAt = Date.now()): void {
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
    const readings: StoredReading[] = result.readings.map((r) => ({
      kind: device.kind,
      device: device.id,
      district: device.district,
      regency: device.regency,
      ts: r.ts ?? receivedAt,
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
   * Counts, logs and publishes a rejected payload for the commissioning view. A packet over the broker's
   * MQTT_MAX_PACKET_BYTES never gets here: its connection is closed before the payload is read, which is
   * why the platform config keeps INGEST_MAX_PAYLOAD_BYTES within it.
   */
  reject(record: RejectedRecord): void {
    this.deps.metrics.readingsRejected.inc({ reason: record.code })
    this.deps.log.warn(
      { deviceId: record.deviceId, reason: record.code, detail: record.message.slice(0, 300) },
      'reading rejected',
    )
    this.deps.bus.emit('reading.rejected', record)
  }
}
