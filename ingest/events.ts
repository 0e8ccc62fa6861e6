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
 * The platform's typed event bus, on the platform thread. Listeners must be cheap and must not throw.
 * Events from the broker thread (status, rejections) and durable readings from the spool arrive here in
 * order; the broker thread has its own bus instance that forwards them (broker/thread.ts).
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
