import type { Client } from 'aedes'
import mqtt, { type MqttClient } from 'mqtt'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import {
  EDGE_INTERNAL,
  EDGE_SECRET,
  type EdgeBroker,
  RawMqtt,
  sleep,
  startEdgeBroker,
  telemetry,
} from './helpers/broker-edge.ts'

// Sessions at their edges: a registry change that lands while a CONNECT is being handled, a session taken
// over while its readings are being committed, MQTT 5 clients, last wills and topics a device may not use.

async function disconnectedCount(edge: EdgeBroker, reason: string): Promise<number> {
  const metric = await edge.metrics.registry.getSingleMetric('broker_devices_disconnected_total')?.get()
  return metric?.values.find((v) => v.labels.reason === reason)?.value ?? 0
}

/** Waits for the connection to close, at most `ms`; says whether it did. */
async function closesWithin(client: RawMqtt, ms: number): Promise<boolean> {
  await Promise.race([client.whenClosed, sleep(ms)])
  return client.closed
}

describe('broker sessions at their edges', () => {
  let edge: EdgeBroker
  let n = 0
  const nextId = () => `dps-river-se-${++n}`
  const storedOf = (id: string) => edge.spool.stored.filter((r) => r.device === id).map((r) => r.seq)

  beforeAll(async () => {
    edge = await startEdgeBroker()
  })
  afterAll(async () => edge?.close())

  /** Runs `change` when Aedes registers the client of `id`: authenticated, its CONNACK not yet written. */
  function duringConnect(id: string, change: () => void) {
    const onClient = (client: Client) => {
      if (client.id !== id) return
      edge.broker.aedes.off('client', onClient)
      change()
    }
    edge.broker.aedes.on('client', onClient)
  }

  it('ends a session whose secret was rotated between its authentication and its CONNACK', async () => {
    const id = nextId()
    edge.addDevice(id)
    const before = await disconnectedCount(edge, 'rotated')
    duringConnect(id, () => edge.rotate(id, 'new-secret-0123456789abcdef'))
    const { client, returnCode } = await RawMqtt.connect(edge.port, id)
    // Aedes had accepted the CONNECT; the change must still end the session, as it ends a connected one.
    expect(returnCode).toBe(0)
    client.send(telemetry(id, 1, { qos: 1, messageId: 1 }))
    expect(await closesWithin(client, 1000)).toBe(true)
    expect(client.count('puback')).toBe(0)
    expect(storedOf(id)).toEqual([])
    expect(await disconnectedCount(edge, 'rotated')).toBe(before + 1)
    // The new secret works; the old one does not.
    expect((await RawMqtt.connect(edge.port, id)).returnCode).toBe(4)
    const fresh = await RawMqtt.connect(edge.port, id, { secret: 'new-secret-0123456789abcdef' })
    expect(fresh.returnCode).toBe(0)
    await fresh.client.destroy()
  })

  it('ends a session revoked between its authentication and its CONNACK, and never shows it online', async () => {
    const id = nextId()
    edge.addDevice(id)
    duringConnect(id, () => edge.revoke(id))
    const { client } = await RawMqtt.connect(edge.port, id)
    client.send({ cmd: 'subscribe', messageId: 1, subscriptions: [{ topic: `devices/${id}/cmd`, qos: 1 }] })
    expect(await closesWithin(client, 1000)).toBe(true)
    expect(client.count('suback')).toBe(0)
    expect(edge.statuses.filter((s) => s.deviceId === id && s.online)).toEqual([])
    expect(await disconnectedCount(edge, 'revoked')).toBeGreaterThan(0)
  })

  it('refuses a publish from a device revoked after its CONNACK', async () => {
    const id = nextId()
    edge.addDevice(id)
    const { client } = await RawMqtt.connect(edge.port, id)
    client.send(telemetry(id, 1, { qos: 1, messageId: 1 }))
    await client.next('puback')
    edge.revoke(id)
    client.send(telemetry(id, 2, { qos: 1, messageId: 2 }))
    expect(await closesWithin(client, 2000)).toBe(true)
    expect(client.count('puback')).toBe(1)
    expect(storedOf(id)).toEqual([1])
  })

  it('stores the readings a taken-over session had in flight, and acknowledges each on its own connection', async () => {
    const id = nextId()
    edge.addDevice(id)
    const first = (await RawMqtt.connect(edge.port, id)).client
    edge.spool.hold()
    let second: RawMqtt
    try {
      first.send(telemetry(id, 1, { qos: 1, messageId: 1 }))
      await expect.poll(() => edge.spool.waiting).toBe(1)
      second = (await RawMqtt.connect(edge.port, id)).client
      await first.whenClosed
      // The new connection uses the same packet id; the old one's PUBACK must not answer it.
      second.send(telemetry(id, 2, { qos: 1, messageId: 1 }))
      await expect.poll(() => edge.spool.waiting).toBe(2)
      edge.spool.releaseNext()
      await sleep(200)
      expect(second.count('puback')).toBe(0)
    } finally {
      edge.spool.release()
    }
    await second.next('puback', (p) => p.messageId === 1)
    expect(storedOf(id)).toEqual([1, 2])
    expect(second.closed).toBe(false)
    await second.destroy()
  })

  it('refuses MQTT 5 clients, topic aliases and all, and keeps serving', async () => {
    const id = nextId()
    edge.addDevice(id)
    const v5 = await new Promise<Error | MqttClient>((resolve) => {
      const c = mqtt.connect(`mqtt://127.0.0.1:${edge.port}`, {
        clientId: id,
        username: id,
        password: EDGE_SECRET,
        protocolVersion: 5,
        reconnectPeriod: 0,
        properties: { topicAliasMaximum: 10, sessionExpiryInterval: 3600, receiveMaximum: 5 },
      })
      c.once('connect', () => resolve(c))
      c.once('error', (e) => {
        c.end(true)
        resolve(e)
      })
      c.once('close', () => resolve(new Error('closed before CONNACK')))
    })
    expect(v5).toBeInstanceOf(Error)

    // A raw MQTT 5 CONNECT with a topic alias set and then used (empty topic), all in one write.
    const raw = await RawMqtt.open(edge.port)
    const v = { protocolVersion: 5 }
    raw.send(
      {
        cmd: 'connect',
        protocolId: 'MQTT',
        protocolVersion: 5,
        clean: true,
        clientId: id,
        keepalive: 60,
        username: id,
        password: Buffer.from(EDGE_SECRET),
        properties: { sessionExpiryInterval: 3600, receiveMaximum: 5, topicAliasMaximum: 10 },
      },
      v,
    )
    raw.send({ ...telemetry(id, 1, { qos: 1, messageId: 1 }), properties: { topicAlias: 1 } }, v)
    raw.send(
      {
        ...telemetry(id, 2, { qos: 1, messageId: 2 }),
        topic: '',
        properties: { topicAlias: 1, userProperties: { device: 'dps-river-other' } },
      },
      v,
    )
    expect(await closesWithin(raw, 2000)).toBe(true)
    expect(raw.count('puback')).toBe(0)
    expect(storedOf(id)).toEqual([])

    const ok = (await RawMqtt.connect(edge.port, id)).client
    ok.send(telemetry(id, 3, { qos: 1, messageId: 1 }))
    await ok.next('puback')
    expect(storedOf(id)).toEqual([3])
    await ok.destroy()
  })

  it("publishes no last will on another device's topic, a down channel or retained", async () => {
    const id = nextId()
    const other = nextId()
    edge.addDevice(id)
    edge.addDevice(other)
    const watcher = await mqtt.connectAsync(`mqtt://127.0.0.1:${edge.port}`, {
      clientId: EDGE_INTERNAL.name,
      username: EDGE_INTERNAL.name,
      password: EDGE_INTERNAL.secret,
      reconnectPeriod: 0,
    })
    const seen: string[] = []
    watcher.on('message', (topic) => seen.push(topic))
    await watcher.subscribeAsync([`devices/${other}/telemetry`, `devices/${other}/status`], { qos: 1 })
    const otherDevice = (await RawMqtt.connect(edge.port, other)).client
    otherDevice.send({
      cmd: 'subscribe',
      messageId: 1,
      subscriptions: [{ topic: `devices/${other}/cmd`, qos: 1 }],
    })
    await otherDevice.next('suback')

    const wills = [
      { topic: `devices/${other}/telemetry`, payload: '{"v":1,"seq":1,"waterLevel":999}', retain: false },
      { topic: `devices/${other}/status`, payload: '{"v":1,"online":false}', retain: false },
      { topic: `devices/${other}/cmd`, payload: '{"v":1,"id":"c-1","name":"reboot"}', retain: false },
      { topic: `devices/${id}/cmd`, payload: '{"v":1,"id":"c-2","name":"reboot"}', retain: false },
      { topic: `devices/${id}/status`, payload: '{"v":1,"online":false}', retain: true },
    ]
    for (const will of wills) {
      const { client, returnCode } = await RawMqtt.connect(edge.port, id, {
        will: { ...will, payload: Buffer.from(will.payload), qos: 1 },
      })
      expect(returnCode).toBe(0)
      await client.destroy()
    }
    await sleep(300)
    expect(seen).toEqual([])
    expect(otherDevice.count('publish')).toBe(0)
    expect(storedOf(other)).toEqual([])
    expect(edge.statuses.filter((s) => s.source === 'will')).toEqual([])
    const retained = (
      edge.broker.aedes as unknown as {
        persistence: { createRetainedStream(pattern: string): AsyncIterable<unknown> }
      }
    ).persistence.createRetainedStream('#')
    const kept: unknown[] = []
    for await (const packet of retained) kept.push(packet)
    expect(kept).toEqual([])
    await otherDevice.destroy()
    await watcher.endAsync(true)
  })

  it('closes a device that publishes to a wildcard topic, and refuses $SYS and $share subscriptions', async () => {
    const id = nextId()
    edge.addDevice(id)
    for (const topic of [`devices/${id}/+`, 'devices/#', `devices/+/telemetry`]) {
      const { client } = await RawMqtt.connect(edge.port, id)
      client.send({ ...telemetry(id, 1, { qos: 1, messageId: 1 }), topic })
      expect(await closesWithin(client, 2000)).toBe(true)
      expect(client.count('puback')).toBe(0)
    }
    expect(storedOf(id)).toEqual([])

    const filters = ['$SYS/#', '$share/g/devices/+/telemetry', `$share/g/devices/${id}/cmd`, '+/+/+']
    const { client } = await RawMqtt.connect(edge.port, id)
    client.send({
      cmd: 'subscribe',
      messageId: 1,
      subscriptions: filters.map((topic) => ({ topic, qos: 1 })),
    })
    expect((await client.next('suback')).granted).toEqual(filters.map(() => 128))
    await client.destroy()

    const ops = await mqtt.connectAsync(`mqtt://127.0.0.1:${edge.port}`, {
      clientId: EDGE_INTERNAL.name,
      username: EDGE_INTERNAL.name,
      password: EDGE_INTERNAL.secret,
      reconnectPeriod: 0,
    })
    const granted = await new Promise<number[]>((resolve) =>
      ops.subscribe(['$SYS/#', '$share/g/devices/+/telemetry'], { qos: 1 }, (err, g) =>
        resolve(
          (err as { packet?: { granted?: number[] } } | null)?.packet?.granted ?? (g ?? []).map((x) => x.qos),
        ),
      ),
    )
    expect(granted).toEqual([128, 128])
    await ops.endAsync(true)
  })

  it('refuses a 65,535-character client id and keeps serving', async () => {
    const id = nextId()
    edge.addDevice(id)
    const long = 'a'.repeat(65_535)
    const { client, returnCode } = await RawMqtt.connect(edge.port, long)
    expect(returnCode).toBe(4)
    expect(await closesWithin(client, 1000)).toBe(true)
    const ok = (await RawMqtt.connect(edge.port, id)).client
    ok.send(telemetry(id, 1, { qos: 1, messageId: 1 }))
    await ok.next('puback')
    await ok.destroy()
  })
})

describe('last wills and the rate limit', () => {
  let edge: EdgeBroker

  beforeAll(async () => {
    edge = await startEdgeBroker({
      MQTT_DEVICE_RATE_PER_SEC: '1',
      MQTT_DEVICE_BURST: '5',
      MQTT_DEVICE_FLOOD_LIMIT: '5',
    })
  })
  afterAll(async () => edge?.close())

  it('counts a last will against its device, so reconnecting does not multiply its rate', async () => {
    const id = 'dps-river-will-rate'
    edge.addDevice(id)
    // Each connection leaves one reading behind as its will and drops at once: 40 in well under 40 s.
    const started = performance.now()
    for (let seq = 1; seq <= 40; seq++) {
      const will = {
        topic: `devices/${id}/telemetry`,
        payload: Buffer.from(JSON.stringify({ v: 1, seq, waterLevel: 100 + seq })),
        qos: 1,
        retain: false,
      }
      const { client, returnCode } = await RawMqtt.connect(edge.port, id, { will })
      expect(returnCode).toBe(0)
      await client.destroy()
    }
    await sleep(200)
    const seconds = (performance.now() - started) / 1000
    const stored = edge.spool.stored.filter((r) => r.device === id).length
    // At most the burst, the flood allowance and a reading a second: what publishes would have been let through.
    expect(stored).toBeLessThanOrEqual(5 + 5 + Math.ceil(seconds) + 1)
    expect(stored).toBeGreaterThanOrEqual(5)
  })
})
