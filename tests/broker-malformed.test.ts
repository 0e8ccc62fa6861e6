import { connect, type Socket } from 'node:net'
import mqttPacket from 'mqtt-packet'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import {
  connectDevice,
  publishQos1,
  RIVER_DEVICE,
  registerDevice,
  startTestPlatform,
  type TestPlatform,
} from './helpers/platform.ts'

async function guardCount(httpUrl: string, reason: string): Promise<number> {
  const text = await (await fetch(`${httpUrl}/metrics`)).text()
  const m = text.match(new RegExp(`broker_connections_closed_by_guard_total\\{reason="${reason}"\\} (\\d+)`))
  return m ? Number(m[1]) : 0
}

const gen = (packet: Record<string, unknown>) => mqttPacket.generate(packet as unknown as mqttPacket.Packet)

/** Deterministic pseudo-random bytes (xorshift), so a failure can be replayed. */
function randomBytes(seed: number, n: number): Buffer {
  let x = seed || 1
  const out = Buffer.alloc(n)
  for (let i = 0; i < n; i++) {
    x ^= x << 13
    x ^= x >>> 17
    x ^= x << 5
    out[i] = x & 0xff
  }
  return out
}

interface RawResult {
  readonly closed: boolean
  readonly received: Buffer
}

/**
 * Opens a raw socket, sends the chunks (with a pause between them to cross read boundaries), and waits
 * until the broker closes it or `waitMs` passes.
 */
async function raw(port: number, chunks: Buffer[], options: { gapMs?: number; waitMs?: number } = {}) {
  const socket: Socket = connect(port, '127.0.0.1')
  const received: Buffer[] = []
  let closed = false
  socket.on('data', (d) => received.push(d))
  socket.on('error', () => undefined)
  const done = new Promise<void>((resolve) =>
    socket.once('close', () => {
      closed = true
      resolve()
    }),
  )
  await new Promise<void>((resolve) => socket.once('connect', () => resolve()))
  for (const chunk of chunks) {
    if (closed) break
    socket.write(chunk)
    if (options.gapMs) await new Promise((r) => setTimeout(r, options.gapMs))
  }
  await Promise.race([done, new Promise((r) => setTimeout(r, options.waitMs ?? 1500))])
  socket.destroy()
  return { closed, received: Buffer.concat(received) } satisfies RawResult
}

describe('broker against malformed packets', () => {
  let platform: TestPlatform
  let port: number
  let secret: string
  let authed: Buffer
  let seq = 0
  const id = RIVER_DEVICE.id

  /** After every attack: a normal device still connects and gets a durable acknowledgement. */
  async function brokerStillServes() {
    const device = await connectDevice(platform.mqttUrl, id, secret)
    await publishQos1(device, `devices/${id}/telemetry`, JSON.stringify({ v: 1, seq: ++seq, waterLevel: 10 }))
    await new Promise<void>((resolve) => device.end(false, {}, () => resolve()))
  }

  beforeAll(async () => {
    platform = await startTestPlatform({
      // A small cap keeps the trickle test short; the broker closes the connection once it is passed.
      env: { MQTT_MAX_PACKET_BYTES: String(1024 * 1024), MQTT_CONNECT_TIMEOUT_MS: '2000' },
    })
    port = Number(new URL(platform.mqttUrl).port)
    secret = await registerDevice(platform, RIVER_DEVICE)
    authed = gen({
      cmd: 'connect',
      protocolId: 'MQTT',
      protocolVersion: 4,
      clean: true,
      clientId: id,
      username: id,
      password: Buffer.from(secret),
      keepalive: 30,
    })
    await brokerStillServes()
  }, 60_000)

  afterAll(async () => platform?.close())

  it('survives random bytes', async () => {
    for (let seed = 1; seed <= 20; seed++) {
      const r = await raw(port, [randomBytes(seed, 64 + seed * 37)], { waitMs: 300 })
      // Never a CONNACK that accepts garbage.
      expect(r.received.subarray(0, 4).equals(Buffer.from([0x20, 0x02, 0x00, 0x00]))).toBe(false)
    }
    // Random bytes after a valid CONNECT, too.
    for (let seed = 100; seed < 105; seed++) {
      await raw(port, [authed, randomBytes(seed, 500)], { waitMs: 300 })
    }
    await brokerStillServes()
  })

  it('closes a connection that declares a huge packet and trickles it in, before buffering it', async () => {
    const tooLarge = await guardCount(platform.httpUrl, 'packet_too_large')
    const malformed = await guardCount(platform.httpUrl, 'malformed_length')
    // PUBLISH declaring 268,435,455 bytes (the MQTT maximum), then the body a few bytes at a time.
    const header = Buffer.from([0x30, 0xff, 0xff, 0xff, 0x7f])
    const trickle = Array.from({ length: 20 }, (_, i) => randomBytes(i + 7, 16))
    const r = await raw(port, [authed, header, ...trickle], { gapMs: 20, waitMs: 3000 })
    expect(r.closed).toBe(true)
    // Also when the length bytes themselves arrive one by one across reads.
    const split = await raw(port, [authed, ...[0x30, 0xff, 0xff, 0xff, 0x7f].map((b) => Buffer.from([b]))], {
      gapMs: 30,
      waitMs: 3000,
    })
    expect(split.closed).toBe(true)
    // And a remaining-length varint longer than 4 bytes is malformed.
    const longVarint = await raw(port, [Buffer.from([0x10, 0x80, 0x80, 0x80, 0x80, 0x01])], { waitMs: 3000 })
    expect(longVarint.closed).toBe(true)
    expect(await guardCount(platform.httpUrl, 'packet_too_large')).toBe(tooLarge + 2)
    expect(await guardCount(platform.httpUrl, 'malformed_length')).toBe(malformed + 1)
    await brokerStillServes()
  })

  it('refuses a topic of 200 levels', async () => {
    const topic = `devices/${id}/${Array.from({ length: 198 }, () => 'x').join('/')}`
    const publish = gen({
      cmd: 'publish',
      topic,
      payload: '{}',
      qos: 1,
      messageId: 1,
      retain: false,
      dup: false,
    })
    const r = await raw(port, [authed, publish], { waitMs: 2000 })
    // No PUBACK (0x40) for it: the broker closes the connection instead.
    expect(r.received.includes(Buffer.from([0x40, 0x02, 0x00, 0x01]))).toBe(false)
    const subscribe = gen({ cmd: 'subscribe', messageId: 2, subscriptions: [{ topic, qos: 0 }] })
    await raw(port, [authed, subscribe], { waitMs: 1000 })
    await brokerStillServes()
  })

  it('refuses __proto__ and constructor as client id, username and topic', async () => {
    for (const name of ['__proto__', 'constructor', 'prototype', 'hasOwnProperty']) {
      const connectPacket = gen({
        cmd: 'connect',
        protocolId: 'MQTT',
        protocolVersion: 4,
        clean: true,
        clientId: name,
        username: name,
        password: Buffer.from('x'),
        keepalive: 30,
      })
      const r = await raw(port, [connectPacket], { waitMs: 1000 })
      // CONNACK with return code 4 (bad username or password), never 0.
      expect(r.received[0]).toBe(0x20)
      expect(r.received[3]).toBe(4)
      for (const topic of [name, `devices/${name}/telemetry`, `${name}/${name}`]) {
        const publish = gen({
          cmd: 'publish',
          topic,
          payload: '{}',
          qos: 1,
          messageId: 3,
          retain: false,
          dup: false,
        })
        const subscribe = gen({ cmd: 'subscribe', messageId: 4, subscriptions: [{ topic, qos: 1 }] })
        await raw(port, [authed, subscribe, publish], { waitMs: 300 })
      }
    }
    await brokerStillServes()
  })

  it('survives invalid UTF-8 in client id, topic and payload', async () => {
    const bad = Buffer.from([0xc3, 0x28, 0xff, 0xfe])
    // CONNECT with an invalid UTF-8 client id, by hand: mqtt-packet would refuse to write it.
    const variable = Buffer.concat([
      Buffer.from([0x00, 0x04]),
      Buffer.from('MQTT'),
      Buffer.from([0x04, 0x02, 0x00, 0x1e, 0x00, bad.length]),
      bad,
    ])
    const connectBad = Buffer.concat([Buffer.from([0x10, variable.length]), variable])
    await raw(port, [connectBad], { waitMs: 1000 })
    // PUBLISH (QoS 0) whose topic is invalid UTF-8.
    const topic = Buffer.concat([Buffer.from('devices/'), bad, Buffer.from('/telemetry')])
    const body = Buffer.concat([Buffer.from([0x00, topic.length]), topic, Buffer.from('{}')])
    await raw(port, [authed, Buffer.concat([Buffer.from([0x30, body.length]), body])], { waitMs: 1000 })
    // A telemetry payload of invalid UTF-8 is acknowledged and rejected as data.
    const device = await connectDevice(platform.mqttUrl, id, secret)
    await publishQos1(device, `devices/${id}/telemetry`, Buffer.concat([Buffer.from('{"v":1,"seq":'), bad]))
    device.end(true)
    const c = await platform.api<{ rejections: Array<{ code: string }> }>(
      'GET',
      `/api/v1/devices/${id}/commissioning`,
    )
    expect(c.body.rejections.length).toBeGreaterThan(0)
    await brokerStillServes()
  })

  it('keeps memory bounded across repeated attacks', async () => {
    const before = process.memoryUsage()
    for (let round = 0; round < 30; round++) {
      await Promise.all([
        raw(port, [authed, Buffer.from([0x30, 0xff, 0xff, 0xff, 0x7f]), randomBytes(round + 1, 4096)], {
          waitMs: 500,
        }),
        raw(port, [randomBytes(round + 1000, 2048)], { waitMs: 200 }),
      ])
    }
    await brokerStillServes()
    const after = process.memoryUsage()
    expect(after.rss - before.rss).toBeLessThan(100 * 1024 ** 2)
    expect(after.heapUsed - before.heapUsed).toBeLessThan(100 * 1024 ** 2)
  })
})
