import type { RejectReason } from '../firmware-contracts/index.ts'
import type { RejectedRecord } from './events.ts'

export const MAX_PAYLOAD_EXCERPT_BYTES = 512

/**
 * Keeps the latest rejected payloads, bounded globally and per device, so an installer can see why a new
 * gauge's readings are refused without the log growing without end.
 */
export class RejectionLog {
  private readonly recent: RejectedRecord[] = []
  private readonly byDevice = new Map<string, RejectedRecord[]>()
  private readonly counts = new Map<RejectReason, number>()

  constructor(
    private readonly maxRecent = 1000,
    private readonly maxPerDevice = 20,
    private readonly maxDevices = 10_000,
  ) {}

  record(record: RejectedRecord): void {
    this.counts.set(record.code, (this.counts.get(record.code) ?? 0) + 1)
    this.recent.push(record)
    if (this.recent.length > this.maxRecent) this.recent.shift()
    let list = this.byDevice.get(record.deviceId)
    if (list === undefined) {
      if (this.byDevice.size >= this.maxDevices) {
        const oldest = this.byDevice.keys().next().value
        if (oldest !== undefined) this.byDevice.delete(oldest)
      }
      list = []
      this.byDevice.set(record.deviceId, list)
    }
    list.push(record)
    if (list.length > this.maxPerDevice) list.shift()
  }

  forDevice(deviceId: string): readonly RejectedRecord[] {
    return this.byDevice.get(deviceId) ?? []
  }

  latest(limit = 100): readonly RejectedRecord[] {
    return this.recent.slice(-limit)
  }

  countsByReason(): Record<string, number> {
    return Object.fromEntries(this.counts)
  }
}

/** Payload text for humans: truncated, never throws on invalid UTF-8. */
export function payloadExcerpt(payload: Uint8Array | string): string {
  if (typeof payload === 'string') return payload.slice(0, MAX_PAYLOAD_EXCERPT_BYTES)
  return Buffer.from(
    payload.buffer,
    payload.byteOffset,
    Math.min(payload.byteLength, MAX_PAYLOAD_EXCERPT_BYTES),
  ).toString('utf8')
}
