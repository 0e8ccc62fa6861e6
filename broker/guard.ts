import type { Duplex } from 'node:stream'
import { MAX_DEVICE_ID_LENGTH, topicFor } from '../firmware-contracts/index.ts'

export type GuardViolation = 'packet_too_large' | 'malformed_length'

/**
 * Bytes a device's telemetry PUBLISH carries besides its payload within the remaining length that
 * `maxPacketBytes` caps: the topic's length prefix, the longest telemetry topic and a QoS 1/2 packet id.
 * Aedes speaks MQTT 3.1 and 3.1.1 only, so there are no properties to allow for. A payload limit above
 * `maxPacketBytes` minus this would promise `too_large` rejections that the guard turns into closed
 * connections.
 */
export const TELEMETRY_PUBLISH_OVERHEAD_BYTES =
  2 + Buffer.byteLength(topicFor('x'.repeat(MAX_DEVICE_ID_LENGTH), 'telemetry')) + 2

/**
 * Follows MQTT framing across chunk boundaries (fixed header byte, remaining-length varint, body) without
 * buffering anything. Aedes 1.x has no maximum packet size and would buffer a declared 256 MB packet byte by
 * byte; this sees the declared length as soon as its bytes arrive.
 */
export class MqttFrameScanner {
  /** 0: expecting a fixed header byte, 1: in the remaining-length varint, 2: skipping a body. */
  private state = 0
  private length = 0
  private multiplier = 1
  private lengthBytes = 0
  private remaining = 0

  constructor(private readonly maxPacketBytes: number) {}

  scan(chunk: Uint8Array): GuardViolation | null {
    let i = 0
    const n = chunk.length
    while (i < n) {
      if (this.state === 2) {
        const skip = Math.min(this.remaining, n - i)
        this.remaining -= skip
        i += skip
        if (this.remaining === 0) this.state = 0
        continue
      }
      const b = chunk[i++] as number
      if (this.state === 0) {
        this.state = 1
        this.length = 0
        this.multiplier = 1
        this.lengthBytes = 0
        continue
      }
      this.length += (b & 0x7f) * this.multiplier
      this.multiplier *= 128
      this.lengthBytes++
      // Each further varint byte only adds, so the length so far is a lower bound of the declared one.
      if (this.length > this.maxPacketBytes) return 'packet_too_large'
      if (b & 0x80) {
        if (this.lengthBytes >= 4) return 'malformed_length'
        continue
      }
      if (this.length === 0) this.state = 0
      else {
        this.state = 2
        this.remaining = this.length
      }
    }
    return null
  }
}

/**
 * A duplex that Aedes reads and writes instead of the raw transport (TCP, TLS or WebSocket stream). Bytes
 * pass through unchanged; a packet declaring more than the cap destroys the connection before its body is
 * read. Backpressure is kept both ways.
 */
/**
 * Scans every chunk a transport delivers before Aedes can buffer it, and destroys the transport on a
 * violation. It hooks the transport's own `push` (where net, tls and ws streams hand over what they read)
 * instead of putting a second stream in between: no extra buffers per connection, no extra hop per read
 * or write, and corked PUBACKs still reach the socket's own writev.
 */
export function guardConnection(
  transport: Duplex,
  maxPacketBytes: number,
  onViolation: (violation: GuardViolation) => void,
): void {
  const scanner = new MqttFrameScanner(maxPacketBytes)
  const push = transport.push
  transport.push = function guardedPush(chunk: unknown, encoding?: BufferEncoding): boolean {
    if (chunk !== null && chunk !== undefined && !transport.destroyed) {
      const violation = scanner.scan(chunk as Uint8Array)
      if (violation !== null) {
        onViolation(violation)
        transport.destroy()
        return false
      }
    }
    return push.call(transport, chunk, encoding)
  }
}

/** Open connections per remote address; a limit against one host exhausting the broker's sockets. */
export class ConnectionLimiter {
  private readonly open = new Map<string, number>()

  constructor(private readonly maxPerAddress: number) {}

  /** Counts a connection; false (and nothing counted) when the address is at its limit. */
  acquire(address: string): boolean {
    const n = this.open.get(address) ?? 0
    if (n >= this.maxPerAddress) return false
    this.open.set(address, n + 1)
    return true
  }

  release(address: string): void {
    const n = (this.open.get(address) ?? 1) - 1
    if (n <= 0) this.open.delete(address)
    else this.open.set(address, n)
  }

  count(address: string): number {
    return this.open.get(address) ?? 0
  }
}
