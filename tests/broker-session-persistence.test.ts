import type { Readable } from 'node:stream'
import mqtt from 'mqtt'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { brokerConfigFromEnv } from '../broker/config.ts'
import {
  EDGE_INTERNAL,
  type EdgeBroker,
  RawMqtt,
  sleep,
  startEdgeBroker,
  telemetry,
} from './helpers/broker-edge.ts'
import {
  connectDevice,
  RIVER_DEVICE,
  registerDevice,
  startTestPlatform,
  type TestPlatform,
} from './helpers/platform.ts'

// A persistent MQTT session (clean=false) belongs to one device, not to its id: a revoked or decommissioned
// device's session (its subscriptions, the config and cmd messages queued for it, its unreleased QoS 2 packet
// ids) goes with it, a device registered again under the id starts without it, and a session left offline
// ends after MQTT_SESSION_EXPIRY_S.

const NEW_SECRET = 'second-device-secret-0123456789ab'

/** Aedes's persistence, as the broker keeps it: what a device would find when it connects with clean=false. */
interface SessionState {
  subscriptionsByClient(client: { id: string }): Promise<Array<{ topic: string }>>
  outgoingStream(client: { id: string }): Readable
  incomingGetPacket(client: { id: string }, packet: { messageId: number }): Promise<unknown>
}

function sessionStore(edge: EdgeBroker): SessionState {
  return (edge.broker.aedes as unknown as { persistence: SessionState }).persistence
}

async function sessionOf(edge: EdgeBroker, id: string, qos2MessageId?: number) {
  const store = sessionStore(edge)
  const queued: string[] = []
  for await (const packet of store.outgoingStream({ id })) queued.push(String(packet.payload))
  const subscriptions = (await store.subscriptionsByClient({ id })).map((s) => s.topic)
  const unreleased =
    qos2MessageId === undefined
      ? undefined
      : await store.incomingGetPacket({ id }, { messageId: qos2MessageId }).then(
          () => true,
          () => false,
        )
  return { subscriptions, queued, unreleased }
}

const payloads = (client: RawMqtt) =>
  client.received.filter((p) => p.cmd === 'publish').map((p) => String(p.payload))

/** A device's persistent session (clean=false), connected, that asked for its cmd topic. */
async function persistentSubscriber(edge: EdgeBroker, id: string, secret?: string) {
  const { client, returnCode } = await RawMqtt.connect(edge.port, id, {
    clean: false,
    ...(secret !== undefined && { secret }),
  })
  expect(returnCode).toBe(0)
  client.send({ cmd: 'subscribe', messageId: 1, subscriptions: [{ topic: `devices/${id}/cmd`, qos: 1 }] })
  expect((await client.next('suback')).granted).toEqual([1])
  return client
}

async function internalClient(edge: EdgeBroker) {
  const { client, returnCode } = await RawMqtt.connect(edge.port, EDGE_INTERNAL.name, {
    secret: EDGE_INTERNAL.secret,
  })
  expect(returnCode).toBe(0)
  let messageId = 0
  return {
    client,
    /** A QoS 1 command to the device, acknowledged by the broker (queued for it when it is offline). */
    async command(id: string, text: string) {
      const mid = ++messageId
      client.send({
        cmd: 'publish',
        topic: `devices/${id}/cmd`,
        payload: Buffer.from(text),
        qos: 1,
        messageId: mid,
        dup: false,
        retain: false,
      })
      await client.next('puback', (p) => p.messageId === mid)
    },
    /** A retained QoS 1 config message: what the device gets whenever it subscribes to its config topic. */
    async retainedConfig(id: string, text: string) {
      const mid = ++messageId
      client.send({
        cmd: 'publish',
        topic: `devices/${id}/config`,
        payload: Buffer.from(text),
        qos: 1,
        messageId: mid,
        dup: false,
        retain: true,
      })
      await client.next('puback', (p) => p.messageId === mid)
    },
  }
}

/**
 * The device connects with clean=false, asks for its cmd topic (again, if the broker says there is no
 * session), and gets a command sent after that: everything queued before arrives ahead of it.
 */
async function reconnectAndReceive(
  edge: EdgeBroker,
  ops: Awaited<ReturnType<typeof internalClient>>,
  id: string,
  secret?: string,
) {
  const { client, returnCode } = await RawMqtt.connect(edge.port, id, {
    clean: false,
    ...(secret !== undefined && { secret }),
  })
  expect(returnCode).toBe(0)
  const sessionPresent = client.received.find((p) => p.cmd === 'connack')?.sessionPresent
  client.send({ cmd: 'subscribe', messageId: 1, subscriptions: [{ topic: `devices/${id}/cmd`, qos: 1 }] })
  await client.next('suback')
  await ops.command(id, 'after')
  await client.next('publish', (p) => String(p.payload) === 'after')
  return { client, sessionPresent, received: payloads(client) }
}

describe('persistent sessions end with their device', () => {
  let edge: EdgeBroker
  let ops: Awaited<ReturnType<typeof internalClient>>
  let n = 0
  const nextId = () => `dps-river-ps-${++n}`

  beforeAll(async () => {
    edge = await startEdgeBroker()
    ops = await internalClient(edge)
  })
  afterAll(async () => {
    await ops?.client.destroy()
    await edge?.close()
  })

  it('gives an id registered again a session of its own, not the old device’s queued commands', async () => {
    const id = nextId()
    edge.addDevice(id)
    await (await persistentSubscriber(edge, id)).destroy()
    await ops.command(id, 'open the gate of the old gauge')
    await expect
      .poll(async () => (await sessionOf(edge, id)).queued)
      .toEqual(['open the gate of the old gauge'])

    edge.decommission(id)
    edge.reregister(id, NEW_SECRET)
    const fresh = await reconnectAndReceive(edge, ops, id, NEW_SECRET)
    expect(fresh.sessionPresent).toBe(false)
    expect(fresh.received).toEqual(['after'])
    await fresh.client.destroy()
  })

  it('drops a revoked device’s subscriptions, queued and unacknowledged commands and QoS 2 ids, and only its', async () => {
    const [revoked, other] = [nextId(), nextId()]
    edge.addDevice(revoked)
    edge.addDevice(other)
    // The other device: offline with a command queued and an unreleased QoS 2 reading.
    const otherClient = await persistentSubscriber(edge, other)
    otherClient.send(telemetry(other, 1, { qos: 2, messageId: 7 }))
    await otherClient.next('pubrec')
    await otherClient.destroy()
    await ops.command(other, 'for the other device')

    // The revoked one is connected: a command it has not acknowledged, a QoS 2 reading it has not released.
    const device = await persistentSubscriber(edge, revoked)
    device.send(telemetry(revoked, 1, { qos: 2, messageId: 7 }))
    await device.next('pubrec')
    await ops.command(revoked, 'unacknowledged')
    await device.next('publish')
    expect(await sessionOf(edge, revoked, 7)).toEqual({
      subscriptions: [`devices/${revoked}/cmd`],
      queued: ['unacknowledged'],
      unreleased: true,
    })

    edge.revoke(revoked)
    await device.whenClosed
    await expect
      .poll(() => sessionOf(edge, revoked, 7))
      .toEqual({ subscriptions: [], queued: [], unreleased: false })
    // A command sent to the revoked device now is queued for nobody.
    await ops.command(revoked, 'to nobody')
    expect((await sessionOf(edge, revoked)).queued).toEqual([])

    expect(await sessionOf(edge, other, 7)).toEqual({
      subscriptions: [`devices/${other}/cmd`],
      queued: ['for the other device'],
      unreleased: true,
    })
    const back = await reconnectAndReceive(edge, ops, other)
    expect(back.sessionPresent).toBe(true)
    expect(back.received).toEqual(['for the other device', 'after'])
    await back.client.destroy()
  })

  it('keeps no QoS 2 packet id of a reading whose commit lands after its device was revoked', async () => {
    const id = nextId()
    edge.addDevice(id)
    const device = (await RawMqtt.connect(edge.port, id, { clean: false })).client
    // Aedes ends its handling of the PUBLISH with an error on the closed connection (no PUBREC can go out).
    const handled = new Promise<void>((resolve) => {
      const onError = (client: { id: string }) => {
        if (client.id !== id) return
        edge.broker.aedes.off('clientError', onError)
        resolve()
      }
      edge.broker.aedes.on('clientError', onError)
    })
    edge.spool.hold()
    try {
      device.send(telemetry(id, 1, { qos: 2, messageId: 9 }))
      await expect.poll(() => edge.spool.waiting).toBe(1)
      edge.revoke(id)
      await device.whenClosed
    } finally {
      edge.spool.release()
    }
    await handled
    expect(edge.spool.stored.filter((r) => r.device === id).map((r) => r.seq)).toEqual([1])
    expect(await sessionOf(edge, id, 9)).toEqual({ subscriptions: [], queued: [], unreleased: false })
  })

  it('starts a device registered again after a revocation without the revoked session', async () => {
    const id = nextId()
    edge.addDevice(id)
    await (await persistentSubscriber(edge, id)).destroy()
    await ops.command(id, 'before the revocation')
    edge.revoke(id)
    edge.decommission(id)
    edge.reregister(id, NEW_SECRET)
    const fresh = await reconnectAndReceive(edge, ops, id, NEW_SECRET)
    expect(fresh.sessionPresent).toBe(false)
    expect(fresh.received).toEqual(['after'])
    await fresh.client.destroy()
  })

  it('does not hand an id registered again the config retained for the old device', async () => {
    const id = nextId()
    edge.addDevice(id)
    await ops.retainedConfig(id, '{"intervalS":60,"note":"old gauge"}')
    const before = (await RawMqtt.connect(edge.port, id)).client
    before.send({
      cmd: 'subscribe',
      messageId: 1,
      subscriptions: [{ topic: `devices/${id}/config`, qos: 1 }],
    })
    expect(String((await before.next('publish')).payload)).toBe('{"intervalS":60,"note":"old gauge"}')
    await before.destroy()

    edge.decommission(id)
    edge.reregister(id, NEW_SECRET)
    const fresh = (await RawMqtt.connect(edge.port, id, { secret: NEW_SECRET })).client
    fresh.send({ cmd: 'subscribe', messageId: 1, subscriptions: [{ topic: `devices/${id}/config`, qos: 1 }] })
    await fresh.next('suback')
    // Retained messages go out right after the SUBACK: one sent after it arrives behind any of them.
    await ops.retainedConfig(id, '{"intervalS":30}')
    await fresh.next('publish', (p) => String(p.payload) === '{"intervalS":30}')
    expect(payloads(fresh)).toEqual(['{"intervalS":30}'])
    await fresh.destroy()
  })

  it('keeps a rotated device’s session: the same device, a new secret', async () => {
    const id = nextId()
    edge.addDevice(id)
    await (await persistentSubscriber(edge, id)).destroy()
    await ops.command(id, 'still yours')
    edge.rotate(id, NEW_SECRET)
    const back = await reconnectAndReceive(edge, ops, id, NEW_SECRET)
    expect(back.sessionPresent).toBe(true)
    expect(back.received).toEqual(['still yours', 'after'])
    await back.client.destroy()
  })
})

describe('MQTT_SESSION_EXPIRY_S', () => {
  it('is validated, with a default of seven days', () => {
    expect(brokerConfigFromEnv({}).sessionExpiryS).toBe(604_800)
    expect(brokerConfigFromEnv({ MQTT_SESSION_EXPIRY_S: '3600' }).sessionExpiryS).toBe(3600)
    for (const bad of ['0', '-5', '1.5', 'week', '31536001'])
      expect(() => brokerConfigFromEnv({ MQTT_SESSION_EXPIRY_S: bad })).toThrow(/MQTT_SESSION_EXPIRY_S/)
  })

  it('drops a session offline that long, and keeps the sessions of connected devices', async () => {
    const edge = await startEdgeBroker({ MQTT_SESSION_EXPIRY_S: '1' })
    const ops = await internalClient(edge)
    try {
      const [away, connected] = ['dps-river-px-1', 'dps-river-px-2']
      edge.addDevice(away)
      edge.addDevice(connected)
      const stays = await persistentSubscriber(edge, connected)
      await (await persistentSubscriber(edge, away)).destroy()
      await ops.command(away, 'queued while away')
      await expect.poll(async () => (await sessionOf(edge, away)).queued).toEqual(['queued while away'])

      await expect
        .poll(() => sessionOf(edge, away), { timeout: 10_000, interval: 100 })
        .toEqual({ subscriptions: [], queued: [], unreleased: undefined })
      const fresh = await reconnectAndReceive(edge, ops, away)
      expect(fresh.sessionPresent).toBe(false)
      expect(fresh.received).toEqual(['after'])
      await fresh.client.destroy()

      // Connected for longer than the expiry all along: its session is whole.
      await sleep(1500)
      expect((await sessionOf(edge, connected)).subscriptions).toEqual([`devices/${connected}/cmd`])
      await ops.command(connected, 'live')
      await stays.next('publish', (p) => String(p.payload) === 'live')
      await stays.destroy()
    } finally {
      await ops.client.destroy()
      await edge.close()
    }
  })
})

describe('a device id registered again through the API, broker on its own thread', () => {
  let platform: TestPlatform
  const INTERNAL = 'internal-ops:internal-secret-0123456789abcdef'

  beforeAll(async () => {
    platform = await startTestPlatform({ env: { MQTT_INTERNAL_CREDENTIALS: INTERNAL } })
  })
  afterAll(async () => platform?.close())

  it('does not hand the new device the commands queued for the decommissioned one', async () => {
    const id = 'dps-river-ps-api'
    const oldSecret = await registerDevice(platform, { ...RIVER_DEVICE, id })
    const old = await connectDevice(platform.mqttUrl, id, oldSecret, { clean: false })
    await old.subscribeAsync(`devices/${id}/cmd`, { qos: 1 })
    await old.endAsync()

    const ops = await connectDevice(platform.mqttUrl, 'internal-ops', 'internal-secret-0123456789abcdef')
    await ops.publishAsync(`devices/${id}/cmd`, 'for the old device', { qos: 1 })
    expect((await platform.api('POST', `/api/v1/devices/${id}/decommission`)).status).toBe(200)
    const newSecret = await registerDevice(platform, { ...RIVER_DEVICE, id })

    // Listening before the CONNACK: a queued message follows it at once.
    const received: string[] = []
    const fresh = mqtt.connect(platform.mqttUrl, {
      clientId: id,
      username: id,
      password: newSecret,
      clean: false,
      reconnectPeriod: 0,
    })
    fresh.on('message', (_topic, payload) => received.push(String(payload)))
    const connack = await new Promise<{ sessionPresent: boolean }>((resolve, reject) => {
      fresh.once('connect', resolve)
      fresh.once('error', reject)
    })
    expect(connack.sessionPresent).toBe(false)
    await fresh.subscribeAsync(`devices/${id}/cmd`, { qos: 1 })
    await ops.publishAsync(`devices/${id}/cmd`, 'for the new device', { qos: 1 })
    await expect.poll(() => received.includes('for the new device')).toBe(true)
    expect(received).toEqual(['for the new device'])
    await fresh.endAsync()
    await ops.endAsync()
  })
})
