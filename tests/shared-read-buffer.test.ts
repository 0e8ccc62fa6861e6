import { once } from 'node:events'
import { type AddressInfo, connect, createServer, type Server, type Socket } from 'node:net'
import { afterEach, describe, expect, it } from 'vitest'
import { SharedReadBuffer } from '../broker/shared-read-buffer.ts'

const servers: Server[] = []
afterEach(async () => {
  for (const s of servers.splice(0)) await new Promise((resolve) => s.close(resolve))
})

/** A TCP server on 127.0.0.1 whose accepted sockets read through one SharedReadBuffer. */
async function serve(onSocket: (socket: Socket) => void) {
  const reads = new SharedReadBuffer()
  const adoptedNow: boolean[] = []
  const server = createServer((socket) => {
    adoptedNow.push(reads.adopt(socket))
    onSocket(socket)
  })
  servers.push(server)
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  return { reads, adoptedNow, port: (server.address() as AddressInfo).port }
}

/** Bytes 0..n-1 of a pattern that differs per client, so a mix-up between sockets shows. */
const pattern = (client: number, n: number) =>
  Buffer.from(Array.from({ length: n }, (_, i) => (i * 7 + client * 31) & 0xff))

describe('shared read buffer', () => {
  it('delivers every socket its own bytes, in order, while many sockets read through one buffer', async () => {
    const received = new Map<number, Buffer[]>()
    const arrayBuffers = new Set<ArrayBufferLike>()
    let chunks = 0
    const { reads, adoptedNow, port } = await serve((socket) => {
      let id: number | undefined
      const parts: Buffer[] = []
      socket.on('data', (chunk: Buffer) => {
        chunks++
        arrayBuffers.add(chunk.buffer)
        parts.push(chunk)
        id ??= chunk[0]
      })
      socket.on('end', () => {
        received.set(id!, parts)
        socket.end()
      })
    })
    const CLIENTS = 20
    const WRITES = 50
    await Promise.all(
      Array.from({ length: CLIENTS }, async (_, client) => {
        const socket = connect(port, '127.0.0.1')
        socket.setNoDelay(true)
        await once(socket, 'connect')
        // Small writes a tick apart (each mostly its own read), then one far larger than the shared buffer.
        for (let w = 0; w < WRITES; w++) {
          socket.write(Buffer.concat([Buffer.from([client]), pattern(client, 100 + w)]))
          await new Promise((resolve) => setImmediate(resolve))
        }
        socket.write(pattern(client, 200_000))
        socket.end()
        await once(socket, 'close')
      }),
    )
    expect(reads.adopted).toBe(CLIENTS)
    expect(adoptedNow.every(Boolean)).toBe(true)
    for (let client = 0; client < CLIENTS; client++) {
      const expected = Buffer.concat([
        ...Array.from({ length: WRITES }, (_, w) =>
          Buffer.concat([Buffer.from([client]), pattern(client, 100 + w)]),
        ),
        pattern(client, 200_000),
      ])
      expect(Buffer.concat(received.get(client)!).equals(expected)).toBe(true)
    }
    // Node's default gives each read an ArrayBuffer of its own; copied out, small reads share slabs.
    expect(arrayBuffers.size).toBeLessThan(chunks / 4)
  })

  it('keeps back-pressure: a socket nobody reads stops reading, and gets everything once read', async () => {
    let serverSide: Socket | undefined
    const { port } = await serve((socket) => {
      // No listener yet: what is read stays in the stream until its high-water mark says stop.
      serverSide = socket
    })
    const client = connect(port, '127.0.0.1')
    await once(client, 'connect')
    const total = 8 * 1024 * 1024
    const sent = pattern(3, total)
    client.end(sent)
    // Unread, the server's stream fills to its high-water mark and reading stops; the rest waits in the
    // kernel and in the client.
    for (let i = 0; i < 100 && serverSide === undefined; i++) await new Promise((r) => setTimeout(r, 10))
    await new Promise((r) => setTimeout(r, 200))
    expect(serverSide!.readableLength).toBeLessThan(total)
    const parts: Buffer[] = []
    serverSide!.on('data', (chunk: Buffer) => parts.push(chunk))
    await once(serverSide!, 'end')
    expect(Buffer.concat(parts).equals(sent)).toBe(true)
    serverSide!.end()
  })

  it('leaves a socket that already has a read buffer of its own as it is', async () => {
    const { reads, adoptedNow, port } = await serve(() => undefined)
    const client = connect(port, '127.0.0.1')
    await once(client, 'connect')
    await new Promise((r) => setTimeout(r, 50))
    // The server adopted its socket; a second adoption of the same socket is refused.
    expect(adoptedNow).toEqual([true])
    const own = connect({
      port,
      host: '127.0.0.1',
      onread: { buffer: Buffer.alloc(1024), callback: () => true },
    })
    await once(own, 'connect')
    expect(reads.adopt(own)).toBe(false)
    own.destroy()
    client.destroy()
  })
})
