import type { Socket } from 'node:net'

/**
 * Where the kernel's bytes land for every plain-TCP connection of the broker thread: one buffer, reused
 * by every read. Node otherwise hands each read its own new ArrayBuffer, one per publish at 10,000
 * readings/s, and V8 sweeps ArrayBuffers inside its scavenges: 2.3–3.7 ms of the broker thread's 7 ms
 * scavenge pause went to that (`--trace-gc-nvp`, `scavenge.sweep_array_buffers`), and the PUBACKs of
 * every device waited behind it. Each read is copied out of the shared buffer into a pooled Buffer
 * (Node's 8 KiB slabs), so dozens of reads share one ArrayBuffer.
 *
 * Sharing one buffer between sockets is safe because libuv reads a stream and calls back before it
 * reads the next, and the copy is made inside that call back.
 */
const SHARED_BYTES = 64 * 1024

/**
 * Node's own switch for this is `new net.Socket({ onread })`, which a server's accepted sockets cannot
 * take. These are the fields that option sets (an accepted socket has them too, set to null), found by
 * their symbols' descriptions; where a Node version lacks them the socket keeps Node's default reads.
 */
interface UserBufferFields {
  readonly buffer: symbol
  readonly callback: symbol
  readonly generator: symbol
}

function userBufferFields(socket: Socket): UserBufferFields | undefined {
  const byName = new Map(Object.getOwnPropertySymbols(socket).map((s) => [s.description, s]))
  const buffer = byName.get('kBuffer')
  const callback = byName.get('kBufferCb')
  const generator = byName.get('kBufferGen')
  if (buffer === undefined || callback === undefined || generator === undefined) return undefined
  return { buffer, callback, generator }
}

interface UserBufferHandle {
  useUserBuffer(buffer: Uint8Array): void
}

/** The read side of one thread's TCP connections: `adopt` each accepted socket before it reads. */
export class SharedReadBuffer {
  private readonly buffer = Buffer.allocUnsafeSlow(SHARED_BYTES)
  /** Sockets that read through the shared buffer so far. */
  adopted = 0

  /**
   * Makes `socket` read through the shared buffer; false when this Node cannot, and it reads as before.
   * Call it when the socket is accepted: no read has happened yet then (reads come in a later turn of
   * the event loop).
   */
  adopt(socket: Socket): boolean {
    const handle = (socket as Socket & { _handle?: Partial<UserBufferHandle> | null })._handle
    const fields = userBufferFields(socket)
    if (fields === undefined || typeof handle?.useUserBuffer !== 'function') return false
    const slots = socket as unknown as Record<symbol, unknown>
    if (slots[fields.buffer] !== null) return false
    slots[fields.buffer] = this.buffer
    slots[fields.generator] = null
    // What Node does with its own buffer: push the bytes, and stop reading when the stream is full (the
    // false return). `socket.push` is looked up on each read, so the packet guard's hook still sees them.
    slots[fields.callback] = (nread: number, shared: Buffer) => {
      const chunk = Buffer.allocUnsafe(nread)
      shared.copy(chunk, 0, 0, nread)
      return socket.push(chunk)
    }
    handle.useUserBuffer(this.buffer)
    this.adopted++
    return true
  }
}

/**
 * The same bytes in memory of their own. What a read delivers is a slice of an 8 KiB slab that other
 * reads share, and a slice keeps its whole slab alive: bytes the broker keeps for long (a device's last
 * will, for as long as it is connected; a message Aedes queues or retains) are copied out first, so that
 * 10,000 connected devices do not hold 10,000 slabs.
 */
export function ownBytes(bytes: Buffer): Buffer {
  const own = Buffer.allocUnsafeSlow(bytes.length)
  bytes.copy(own)
  return own
}
