import { Duplex } from 'node:stream'

export type GuardViolation = 'packet_too_large' | 'malformed_length'

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
export class GuardedConnection extends Duplex {
  private readonly scanner: MqttFrameScanner

  constructor(
    private readonly inner: Duplex,
    maxPacketBytes: number,
    onViolation: (violation: GuardViolation) => void,
  ) {
    super({ allowHalfOpen: false })
    this.scanner = new MqttFrameScanner(maxPacketBytes)
    inner.on('data', (chunk: Buffer) => {
      if (this.destroyed) return
      const violation = this.scanner.scan(chunk)
      if (violation !== null) {
        onViolation(violation)
        inner.destroy()
        this.destroy()
        return
      }
      if (!this.push(chunk)) inner.pause()
    })
    inner.on('end', () => this.push(null))
    inner.on('error', (err) => this.destroy(err))
    inner.on('close', () => {
      if (!this.destroyed) this.destroy()
    })
    inner.on('drain', () => this.emit('innerDrain'))
  }

  override _read(): void {
    this.inner.resume()
  }

  override _write(chunk: Buffer, _encoding: BufferEncoding, cb: (error?: Error | null) => void): void {
    if (this.inner.destroyed || this.inner.write(chunk)) cb()
    else this.once('innerDrain', () => cb())
  }

  /** Corked writes (the PUBACKs of one group commit) reach the socket as one write: one syscall, not one each. */
  override _writev(chunks: Array<{ chunk: Buffer }>, cb: (error?: Error | null) => void): void {
    const data = chunks.length === 1 ? chunks[0]!.chunk : Buffer.concat(chunks.map((c) => c.chunk))
    this._write(data, 'binary', cb)
  }

  override _final(cb: (error?: Error | null) => void): void {
    this.inner.end()
    cb()
  }

  override _destroy(err: Error | null, cb: (error?: Error | null) => void): void {
    if (!this.inner.destroyed) this.inner.destroy()
    this.emit('innerDrain')
    cb(err)
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
