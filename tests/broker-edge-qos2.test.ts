import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { type EdgeBroker, RawMqtt, sleep, startEdgeBroker, telemetry } from './helpers/broker-edge.ts'

// QoS 2 telemetry: PUBREC is the acknowledgement, so it waits for the commit as PUBACK does, and a reading
// is spooled once however often the device resends it (dup=1) before its PUBREL: on the same connection,
// while the first copy is still on its way to disk, and on a persistent session's next connection.

describe('QoS 2 telemetry', () => {
  let edge: EdgeBroker

  beforeAll(async () => {
    edge = await startEdgeBroker({ MQTT_DEVICE_BURST: '5000', MQTT_DEVICE_FLOOD_LIMIT: '5000' })
  })
  afterAll(async () => edge?.close())

  /** A fresh device and its connection; each test its own id, so that spool and sessions do not mix. */
  let n = 0
  async function device(options: { clean?: boolean } = {}) {
    const id = `dps-river-q2-${++n}`
    edge.addDevice(id)
    const { client, returnCode } = await RawMqtt.connect(edge.port, id, options)
    expect(returnCode).toBe(0)
    return { id, client }
  }
  const storedOf = (id: string) => edge.spool.stored.filter((r) => r.device === id).map((r) => r.seq)

  it('sends PUBREC only once the reading is durable', async () => {
    const { id, client } = await device()
    edge.spool.hold()
    try {
      client.send(telemetry(id, 1, { messageId: 3 }))
      await sleep(200)
      expect(edge.spool.waiting).toBe(1)
      expect(client.count('pubrec')).toBe(0)
    } finally {
      edge.spool.release()
    }
    await client.next('pubrec', (p) => p.messageId === 3)
    expect(storedOf(id)).toEqual([1])
    client.send({ cmd: 'pubrel', messageId: 3 })
    await client.next('pubcomp', (p) => p.messageId === 3)
    await client.destroy()
  })

  it('stores a reading once when the device resends it before its first copy is durable', async () => {
    const { id, client } = await device()
    edge.spool.hold()
    try {
      client.send(telemetry(id, 1, { messageId: 7 }))
      client.send(telemetry(id, 1, { messageId: 7, dup: true }))
      await sleep(200)
      expect(client.count('pubrec')).toBe(0)
    } finally {
      edge.spool.release()
    }
    await client.next('pubrec', (p) => p.messageId === 7)
    client.send({ cmd: 'pubrel', messageId: 7 })
    await client.next('pubcomp', (p) => p.messageId === 7)
    // A later reading shows that everything before it was handled.
    client.send(telemetry(id, 2, { messageId: 8 }))
    await client.next('pubrec', (p) => p.messageId === 8)
    expect(storedOf(id)).toEqual([1, 2])
    expect(client.closed).toBe(false)
    await client.destroy()
  })

  it('stores a reading once when the device resends it after PUBREC, before PUBREL', async () => {
    const { id, client } = await device()
    client.send(telemetry(id, 1, { messageId: 9 }))
    await client.next('pubrec', (p) => p.messageId === 9)
    client.send(telemetry(id, 1, { messageId: 9, dup: true }))
    await client.next('pubrec', (p) => p.messageId === 9)
    client.send({ cmd: 'pubrel', messageId: 9 })
    await client.next('pubcomp', (p) => p.messageId === 9)
    client.send(telemetry(id, 2, { messageId: 10 }))
    await client.next('pubrec', (p) => p.messageId === 10)
    expect(storedOf(id)).toEqual([1, 2])
    await client.destroy()
  })

  it("stores a reading once when a persistent session's next connection resends it", async () => {
    const { id, client } = await device({ clean: false })
    client.send(telemetry(id, 1, { messageId: 11 }))
    await client.next('pubrec', (p) => p.messageId === 11)
    // The PUBREC is lost with the connection: the device resends on its next one, as MQTT asks.
    await client.destroy()
    const again = (await RawMqtt.connect(edge.port, id, { clean: false })).client
    again.send(telemetry(id, 1, { messageId: 11, dup: true }))
    await again.next('pubrec', (p) => p.messageId === 11)
    again.send({ cmd: 'pubrel', messageId: 11 })
    await again.next('pubcomp', (p) => p.messageId === 11)
    again.send(telemetry(id, 2, { messageId: 12 }))
    await again.next('pubrec', (p) => p.messageId === 12)
    expect(storedOf(id)).toEqual([1, 2])
    await again.destroy()
  })

  it('stores a new reading under an unreleased packet id when it is not marked as a resend', async () => {
    // A device that rebooted, lost its session state and reuses the id with dup=0: against MQTT, but
    // dropping the reading after acknowledging it would be worse than storing it.
    const { id, client } = await device({ clean: false })
    client.send(telemetry(id, 1, { messageId: 21 }))
    await client.next('pubrec', (p) => p.messageId === 21)
    await client.destroy()
    const again = (await RawMqtt.connect(edge.port, id, { clean: false })).client
    again.send(telemetry(id, 2, { messageId: 21 }))
    await again.next('pubrec', (p) => p.messageId === 21)
    again.send({ cmd: 'pubrel', messageId: 21 })
    await again.next('pubcomp', (p) => p.messageId === 21)
    expect(storedOf(id)).toEqual([1, 2])
    await again.destroy()
  })

  it('stores a reading once when a persistent session takes over while its first copy is committed', async () => {
    const { id, client } = await device({ clean: false })
    edge.spool.hold()
    let again: RawMqtt
    try {
      client.send(telemetry(id, 1, { messageId: 13 }))
      await sleep(100)
      again = (await RawMqtt.connect(edge.port, id, { clean: false })).client
      await client.whenClosed
      again.send(telemetry(id, 1, { messageId: 13, dup: true }))
      await sleep(200)
      expect(again.count('pubrec')).toBe(0)
    } finally {
      edge.spool.release()
    }
    await again.next('pubrec', (p) => p.messageId === 13)
    again.send({ cmd: 'pubrel', messageId: 13 })
    await again.next('pubcomp', (p) => p.messageId === 13)
    again.send(telemetry(id, 2, { messageId: 14 }))
    await again.next('pubrec', (p) => p.messageId === 14)
    expect(storedOf(id)).toEqual([1, 2])
    await again.destroy()
  })

  it("stores a clean session's new message under a packet id its predecessor left in flight", async () => {
    // Packet ids belong to a session: after a clean takeover the same id is a new message, never a resend.
    const { id, client } = await device()
    edge.spool.hold()
    let again: RawMqtt
    try {
      client.send(telemetry(id, 1, { messageId: 15 }))
      await sleep(100)
      again = (await RawMqtt.connect(edge.port, id)).client
      await client.whenClosed
    } finally {
      edge.spool.release()
    }
    // The old connection's reading is durable all the same (it was taken before the takeover).
    await sleep(100)
    again.send(telemetry(id, 2, { messageId: 15 }))
    await again.next('pubrec', (p) => p.messageId === 15)
    again.send({ cmd: 'pubrel', messageId: 15 })
    await again.next('pubcomp', (p) => p.messageId === 15)
    // And while both are in flight.
    edge.spool.hold()
    let third: RawMqtt
    try {
      again.send(telemetry(id, 3, { messageId: 16 }))
      await sleep(100)
      third = (await RawMqtt.connect(edge.port, id)).client
      third.send(telemetry(id, 4, { messageId: 16 }))
      await sleep(100)
    } finally {
      edge.spool.release()
    }
    await third.next('pubrec', (p) => p.messageId === 16)
    expect(storedOf(id)).toEqual([1, 2, 3, 4])
    await third.destroy()
  })

  it('publishes a QoS 2 last will', async () => {
    const id = `dps-river-q2-${++n}`
    edge.addDevice(id)
    const will = {
      topic: `devices/${id}/status`,
      payload: Buffer.from(JSON.stringify({ v: 1, online: false, reason: 'connection-lost' })),
      qos: 2,
      retain: false,
    }
    const { client } = await RawMqtt.connect(edge.port, id, { will })
    await client.destroy()
    await expect
      .poll(() => edge.statuses.filter((s) => s.deviceId === id).map((s) => s.source))
      .toContain('will')
  })

  it('keeps no payload of a QoS 2 message waiting for its PUBREL, across persistent reconnects', async () => {
    const { id, client } = await device({ clean: false })
    const payload = Buffer.alloc(8192, 0x20)
    // A device that never sends PUBREL: Aedes lets one connection leave 1,000 messages waiting.
    const publish = (c: RawMqtt, from: number, to: number) => {
      for (let m = from; m <= to; m++)
        c.send({
          ...telemetry(id, m, { messageId: m }),
          payload: Buffer.concat([Buffer.from('{"v":1}'), payload]),
        })
    }
    publish(client, 1, 1000)
    await expect.poll(() => client.count('pubrec'), { timeout: 20_000 }).toBe(1000)
    await client.destroy()
    const again = (await RawMqtt.connect(edge.port, id, { clean: false })).client
    publish(again, 1001, 1500)
    await expect.poll(() => again.count('pubrec'), { timeout: 20_000 }).toBe(500)

    const store = (
      edge.broker.aedes as unknown as {
        persistence: {
          incomingGetPacket(c: { id: string }, p: { messageId: number }): Promise<{ payload: Buffer }>
        }
      }
    ).persistence
    let kept = 0
    let bytes = 0
    for (let m = 1; m <= 1500; m++) {
      const packet = await store.incomingGetPacket({ id }, { messageId: m }).catch(() => undefined)
      if (packet === undefined) continue
      kept++
      bytes += packet.payload.length
    }
    // Each is still known as received (a resend is answered, not stored again), without its payload.
    expect(kept).toBe(1500)
    expect(bytes).toBe(0)
    await again.destroy()
  }, 60_000)
})
