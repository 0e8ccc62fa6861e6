import { EventEmitter } from 'node:events'
import type { RejectReason } from '../firmware-contracts/index.ts'
import type { StoredReading } from './store/types.ts'

export interface RejectedRecord {
  readonly deviceId: string
  readonly code: RejectReason
  readonly message: string
  readonly receivedAt: number
  /** The raw payload as text, truncated; invalid UTF-8 shows as U+FFFD. */
  readonly payload: string
  readonly payloadBytes: number
}

export interface DeviceStatusEvent {
  readonly deviceId: string
  readonly online: boolean
  readonly at: number
  /** `birth`/`will` come from the device's status topic, `connect`/`disconnect` from the broker. */
  readonly source: 'birth' | 'will' | 'connect' | 'disconnect'
}

/**
 * The platform's typed event bus. Listeners must be cheap and must not throw: they run on the ingest hot
 * path, after the reading is durable and before the device is acknowledged.
 */
export interface PlatformEvents {
  /** Readings that are durable in the spool (in arrival order per device). */
  'readings.accepted': [readings: readonly StoredReading[]]
  'reading.rejected': [record: RejectedRecord]
  'device.status': [event: DeviceStatusEvent]
}

export class PlatformBus extends EventEmitter<PlatformEvents> {
  constructor() {
    super({ captureRejections: false })
    // A dashboard with many wall displays attaches one listener per feature, not per socket.
    this.setMaxListeners(50)
  }
}
