import { execFileSync } from 'node:child_process'
import { mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { connect as connectTcp } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import mqtt, { type MqttClient } from 'mqtt'
import { generate } from 'mqtt-packet'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import {
  connectDevice,
  eventually,
  publishQos1,
  RIVER_DEVICE,
  registerDevice,
  startTestPlatform,
  type TestPlatform,
} from './helpers/platform.ts'

const INTERNAL = { name: 'internal-dashboard', secret: 'internal-secret-0123456789abcdef' }
// A second credential whose ids extend the first one's name: `internal-dashboard-ops-…`.
const INTERNAL_OPS = { name: 'internal-dashboard-ops', secret: 'internal-ops-secret-0123456789abcdef' }

/** A throwaway self-signed certificate for 127.0.0.1, made with the openssl CLI. */
function selfSignedCert(dir: string) {
  const key = join(dir, 'key.pem')
  const cert = join(dir, 'cert.pem')
  execFileSync(
    'openssl',
    [
      'req',
      '-x509',
      '-newkey',
      'rsa:2048',
      '-nodes',
      '-keyout',
      key,
      '-out',
      cert,
      '-days',
      '1',
      '-subj',
      '/CN=localhost',
      '-addext',
      'subjectAltName=IP:127.0.0.1,DNS:localhost',
    ],
    { stdio: 'ignore' },
  )
  return { key, cert }
}

const reading = (seq: number, waterLevel = 100) => JSON.stringify({ v: 1, seq, waterLevel })

/** Connects, or resolves with an error when the broker refuses or drops the connection (no CONNACK). */
function tryConnect(url: string, id: string, secret: string): Promise<MqttClient | Error> {
  return new Promise((resolve) => {
    const c = mqtt.connect(url, { clientId: id, username: id, password: secret, reconnectPeriod: 0 })
    c.once('connect', () => resolve(c))
    const fail = (err?: Error) => {
      c.end(true)
      resolve(err ?? new Error('connection closed before CONNACK'))
    }
    c.once('error', fail)
    c.once('close', () => fail())
  })
}

function closed(client: MqttClient) {
  return new Promise<void>((resolve) => client.once('close', () => resolve()))
}

describe('broker security', () => {
  let platform: TestPlatform
  let certDir: string
  let cert: { key: string; cert: string }

  beforeAll(async () => {
    certDir = mkdtempSync(join(tmpdir(), 'broker-cert-'))
    cert = selfSignedCert(certDir)
    platform = await startTestPlatform({
      env: {
        MQTT_WS_PORT: '0',
        MQTT_TLS_PORT: '0',
        MQTT_TLS_CERT_FILE: cert.cert,
        MQTT_TLS_KEY_FILE: cert.key,
        MQTT_INTERNAL_CREDENTIALS: `${INTERNAL.name}:${INTERNAL.secret},${INTERNAL_OPS.name}:${INTERNAL_OPS.secret}`,
      },
    })
  }, 60_000)

  afterAll(async () => {
    await platform?.close()
    rmSync(certDir, { recursive: true, force: true })
  })

  it('refuses a wrong secret and a client id that is not the username', async () => {
    const id = 'dps-river-101'
    const secret = await registerDevice(platform, { ...RIVER_DEVICE, id })
    const wrong = await connectDevice(platform.mqttUrl, id, `${secret}x`).catch((e: { code?: number }) => e)
    expect((wrong as { code?: number }).code).toBe(4)
    const mismatch = await connectDevice(platform.mqttUrl, id, secret, { clientId: 'dps-river-999' }).catch(
      (e: { code?: number }) => e,
    )
    expect((mismatch as { code?: number }).code).toBe(4)
    const ok = await connectDevice(platform.mqttUrl, id, secret)
    await publishQos1(ok, `devices/${id}/telemetry`, reading(1))
    ok.end(true)
  })

  it('keeps device A off device B topics and `#`, while an internal client sees only real telemetry', async () => {
    const a = 'dps-river-102'
    const b = 'dps-river-103'
    const secretA = await registerDevice(platform, { ...RIVER_DEVICE, id: a })
    await registerDevice(platform, { ...RIVER_DEVICE, id: b })

    const watcher = await new Promise<MqttClient>((resolve, reject) => {
      const c = mqtt.connect(platform.mqttUrl, {
        clientId: INTERNAL.name,
        username: INTERNAL.name,
        password: INTERNAL.secret,
        reconnectPeriod: 0,
      })
      c.once('connect', () => resolve(c))
      c.once('error', reject)
    })
    const seen: string[] = []
    watcher.on('message', (topic, payload) => seen.push(`${topic} ${String(payload)}`))
    const granted = await watcher.subscribeAsync('devices/+/telemetry', { qos: 0 })
    expect(granted[0]?.qos).toBe(0)

    const device = await connectDevice(platform.mqttUrl, a, secretA)
    // A refused subscription is a SUBACK 0x80, not a disconnect.
    for (const filter of ['#', `devices/${b}/cmd`, '$SYS/#', `devices/${a}/telemetry`]) {
      const suback = await new Promise<{ granted?: number[] }>((resolve) =>
        device.subscribe(filter, { qos: 1 }, (err, g) =>
          resolve((err as { packet?: { granted?: number[] } })?.packet ?? { granted: g?.map((x) => x.qos) }),
        ),
      )
      expect(suback.granted, filter).toEqual([128])
      expect(device.connected).toBe(true)
    }
    const own = await device.subscribeAsync(`devices/${a}/config`, { qos: 1 })
    expect(own[0]?.qos).toBe(1)

    await publishQos1(device, `devices/${a}/telemetry`, reading(1, 11))
    await eventually(async () =>
      seen.some((s) => s.startsWith(`devices/${a}/telemetry`)) ? true : undefined,
    )

    // Publishing as another device (or retained, or to $SYS) gets the connection closed.
    for (const attempt of [
      { topic: `devices/${b}/telemetry`, retain: false },
      { topic: `devices/${a}/telemetry`, retain: true },
      { topic: '$SYS/broker/uptime', retain: false },
      { topic: `devices/${a}/cmd`, retain: false },
    ]) {
      const c = await connectDevice(platform.mqttUrl, a, secretA)
      const gone = closed(c)
      c.publish(attempt.topic, reading(2, 22), { qos: 1, retain: attempt.retain })
      await gone
      c.end(true)
    }
    const r = await platform.api<{ readings: unknown[] }>('GET', `/api/v1/devices/${b}/readings?from=-1h`)
    expect(r.body.readings).toEqual([])
    expect(seen.filter((s) => s.includes(b))).toEqual([])
    expect(seen.filter((s) => s.includes('"waterLevel":22'))).toEqual([])

    // The internal client may not publish readings in a device's name.
    const internalGone = closed(watcher)
    watcher.publish(`devices/${b}/telemetry`, reading(3), { qos: 1 })
    await internalGone
    device.end(true)
    watcher.end(true)
  })

  // Aedes stores a persistent session's subscriptions as the SUBSCRIBE packet asked for them, refused
  // filters included, and restores them on reconnect without asking the hook again.
  it("delivers nothing of device B to device A's persistent session that asked for `#` beside its own config", async () => {
    const a = 'dps-river-130'
    const b = 'dps-river-131'
    const secretA = await registerDevice(platform, { ...RIVER_DEVICE, id: a })
    await registerDevice(platform, { ...RIVER_DEVICE, id: b })
    const persistent = { clean: false }
    const first = await connectDevice(platform.mqttUrl, a, secretA, persistent)
    // One SUBSCRIBE with both filters; mqtt.js reports a partial refusal as an error that carries the SUBACK.
    const granted = await new Promise<number[] | undefined>((resolve) =>
      first.subscribe({ [`devices/${a}/config`]: { qos: 1 }, '#': { qos: 1 } }, (err, g) =>
        resolve((err as { packet?: { granted?: number[] } })?.packet?.granted ?? g?.map((x) => x.qos)),
      ),
    )
    expect(granted).toEqual([1, 128])
    await first.endAsync()

    const ops = await new Promise<MqttClient>((resolve, reject) => {
      const c = mqtt.connect(platform.mqttUrl, {
        clientId: `${INTERNAL.name}-sender`,
        username: INTERNAL.name,
        password: INTERNAL.secret,
        reconnectPeriod: 0,
      })
      c.once('connect', () => resolve(c))
      c.once('error', reject)
    })
    await ops.publishAsync(`devices/${b}/cmd`, JSON.stringify({ v: 1, id: 'c-1', name: 'reboot' }), {
      qos: 1,
    })
    await ops.publishAsync(`devices/${b}/config`, JSON.stringify({ v: 1, interval: 60 }), { qos: 1 })
    await ops.publishAsync(`devices/${a}/config`, JSON.stringify({ v: 1, interval: 120 }), { qos: 1 })

    // Listening before the CONNACK: the queued messages may come in the same read.
    const received: string[] = []
    const again = mqtt.connect(platform.mqttUrl, {
      clientId: a,
      username: a,
      password: secretA,
      reconnectPeriod: 0,
      ...persistent,
    })
    again.on('message', (topic) => received.push(topic))
    await eventually(async () => (received.includes(`devices/${a}/config`) ? true : undefined))
    // Whatever else was queued would arrive with it; give it a moment all the same.
    await new Promise((r) => setTimeout(r, 300))
    expect(received.filter((t) => !t.startsWith(`devices/${a}/`))).toEqual([])
    again.end(true)
    ops.end(true)
  })

  it("refuses an internal client a persistent session, or a client id in another credential's name", async () => {
    const attempt = (opts: { clientId: string; username: string; password: string; clean?: boolean }) =>
      new Promise<{ code?: number }>((resolve) => {
        const c = mqtt.connect(platform.mqttUrl, { reconnectPeriod: 0, ...opts })
        c.once('error', (e) => {
          c.end(true)
          resolve(e as { code?: number })
        })
        c.once('connect', () => {
          c.end(true)
          resolve({ code: 0 })
        })
      })
    const as = { username: INTERNAL.name, password: INTERNAL.secret }
    expect(await attempt({ ...as, clientId: `${INTERNAL.name}-2` })).toEqual({ code: 0 })
    expect((await attempt({ ...as, clientId: `${INTERNAL.name}-3`, clean: false })).code).toBe(4)
    // `internal-dashboard-ops-1` is the other credential's; taking it would end that client's session.
    expect((await attempt({ ...as, clientId: `${INTERNAL_OPS.name}-1` })).code).toBe(4)
    const ops = { username: INTERNAL_OPS.name, password: INTERNAL_OPS.secret }
    expect(await attempt({ ...ops, clientId: `${INTERNAL_OPS.name}-1` })).toEqual({ code: 0 })
  })

  it('refuses internal clients with a wrong secret', async () => {
    const err = await new Promise<{ code?: number }>((resolve) => {
      const c = mqtt.connect(platform.mqttUrl, {
        clientId: INTERNAL.name,
        username: INTERNAL.name,
        password: 'wrong-secret-0123456789abcdef',
        reconnectPeriod: 0,
      })
      c.once('error', (e) => {
        c.end(true)
        resolve(e as { code?: number })
      })
      c.once('connect', () => resolve({}))
    })
    expect(err.code).toBe(4)
  })

  it('disconnects a revoked device at once and refuses it afterwards', async () => {
    const id = 'dps-river-104'
    const secret = await registerDevice(platform, { ...RIVER_DEVICE, id })
    const device = await connectDevice(platform.mqttUrl, id, secret)
    await publishQos1(device, `devices/${id}/telemetry`, reading(1))
    const gone = closed(device)
    const res = await platform.api<{ device: { status: string } }>('POST', `/api/v1/devices/${id}/revoke`)
    expect(res.status).toBe(200)
    expect(res.body.device.status).toBe('revoked')
    await gone
    device.end(true)
    const again = await connectDevice(platform.mqttUrl, id, secret).catch((e: { code?: number }) => e)
    expect((again as { code?: number }).code).toBe(4)
    const metrics = await (await fetch(`${platform.httpUrl}/metrics`)).text()
    expect(metrics).toMatch(/broker_devices_disconnected_total\{reason="revoked"\} 1/)
  })

  it('ends the old secret on rotation, disconnecting its session', async () => {
    const id = 'dps-river-105'
    const secret = await registerDevice(platform, { ...RIVER_DEVICE, id })
    const device = await connectDevice(platform.mqttUrl, id, secret)
    const gone = closed(device)
    const res = await platform.api<{ secret: string }>('POST', `/api/v1/devices/${id}/rotate`)
    expect(res.status).toBe(200)
    await gone
    device.end(true)
    const old = await connectDevice(platform.mqttUrl, id, secret).catch((e: { code?: number }) => e)
    expect((old as { code?: number }).code).toBe(4)
    const fresh = await connectDevice(platform.mqttUrl, id, res.body.secret)
    await publishQos1(fresh, `devices/${id}/telemetry`, reading(2))
    fresh.end(true)
  })

  it('serves MQTT over TLS with the configured certificate', async () => {
    expect(platform.mqttTlsUrl).toMatch(/^mqtts:\/\/127\.0\.0\.1:\d+$/)
    const id = 'dps-river-106'
    const secret = await registerDevice(platform, { ...RIVER_DEVICE, id })
    const device = await connectDevice(platform.mqttTlsUrl!, id, secret, {
      ca: readFileSync(cert.cert),
      rejectUnauthorized: true,
      servername: 'localhost',
    })
    await publishQos1(device, `devices/${id}/telemetry`, reading(1, 77))
    const stored = await eventually(async () => {
      const r = await platform.api<{ readings: Array<{ fields: { waterLevel: number } }> }>(
        'GET',
        `/api/v1/devices/${id}/readings?from=-1h`,
      )
      return r.body.readings.length > 0 ? r.body.readings : undefined
    })
    expect(stored[0]?.fields.waterLevel).toBe(77)
    device.end(true)
    // A client that does not trust the certificate cannot connect.
    const untrusted = await connectDevice(platform.mqttTlsUrl!, id, secret, {
      rejectUnauthorized: true,
    }).catch((e: Error) => e)
    expect(untrusted).toBeInstanceOf(Error)
  })

  it('serves MQTT over WebSocket', async () => {
    expect(platform.mqttWsUrl).toMatch(/^ws:\/\/127\.0\.0\.1:\d+\/mqtt$/)
    const id = 'dps-river-107'
    const secret = await registerDevice(platform, { ...RIVER_DEVICE, id })
    const device = await connectDevice(platform.mqttWsUrl!, id, secret)
    await publishQos1(device, `devices/${id}/telemetry`, reading(1, 55))
    await eventually(async () => {
      const r = await platform.api<{ latestReading: { fields: { waterLevel: number } } | null }>(
        'GET',
        `/api/v1/devices/${id}/commissioning`,
      )
      return r.body.latestReading?.fields.waterLevel === 55 ? true : undefined
    })
    const wrong = await connectDevice(platform.mqttWsUrl!, id, 'nope').catch((e: { code?: number }) => e)
    expect((wrong as { code?: number }).code).toBe(4)
    device.end(true)
  })

  it('marks a device online on its birth message and offline when it drops without DISCONNECT', async () => {
    const id = 'dps-river-108'
    const secret = await registerDevice(platform, { ...RIVER_DEVICE, id })
    const device = await connectDevice(platform.mqttUrl, id, secret, {
      will: {
        topic: `devices/${id}/status`,
        payload: Buffer.from('{"v":1,"online":false}'),
        qos: 1,
        retain: false,
      },
    })
    await publishQos1(device, `devices/${id}/status`, JSON.stringify({ v: 1, online: true }))
    type C = { connection: { online: boolean; lastStatusSource: string | null } }
    const online = await eventually(async () => {
      const r = await platform.api<C>('GET', `/api/v1/devices/${id}/commissioning`)
      return r.body.connection.lastStatusSource === 'birth' ? r.body : undefined
    })
    expect(online.connection.online).toBe(true)
    // Drop the TCP connection without DISCONNECT: the broker publishes the last will.
    device.stream.destroy()
    const offline = await eventually(async () => {
      const r = await platform.api<C>('GET', `/api/v1/devices/${id}/commissioning`)
      return r.body.connection.online === false ? r.body : undefined
    })
    expect(['will', 'disconnect']).toContain(offline.connection.lastStatusSource)
    device.end(true)
  })

  it('keeps a birth message sent right behind its CONNECT: the connection is online before it', async () => {
    // Aedes reads the client again before it is "ready", so a birth right behind the CONNECT can be handled
    // before that; the connection's own status must not come after it and hide it.
    type C = { connection: { online: boolean; lastStatusSource: string | null } }
    const ids = Array.from({ length: 20 }, (_, i) => `dps-river-2${String(i).padStart(2, '0')}`)
    const sockets = []
    for (const [i, id] of ids.entries()) {
      const secret = await registerDevice(platform, { ...RIVER_DEVICE, id })
      const { port } = new URL(platform.mqttUrl)
      const socket = connectTcp(Number(port), '127.0.0.1')
      socket.on('error', () => {})
      const connectPacket = generate({
        cmd: 'connect',
        protocolId: 'MQTT',
        protocolVersion: 4,
        clean: true,
        clientId: id,
        keepalive: 30,
        username: id,
        password: Buffer.from(secret),
      })
      const birth = generate({
        cmd: 'publish',
        topic: `devices/${id}/status`,
        payload: Buffer.from(JSON.stringify({ v: 1, online: true })),
        qos: 1,
        messageId: 1,
        retain: false,
        dup: false,
      })
      // Not in one write: Aedes queues packets parsed with the CONNECT until the client is ready. A later
      // read, while the CONNECT is authenticated or just after its CONNACK, is handled at once. The delays
      // vary because where the birth lands depends on this machine's timing.
      socket.write(connectPacket)
      await new Promise((r) => setTimeout(r, i % 4))
      socket.write(birth)
      sockets.push(socket)
    }
    const connections = async () =>
      Promise.all(
        ids.map(
          async (id) => (await platform.api<C>('GET', `/api/v1/devices/${id}/commissioning`)).body.connection,
        ),
      )
    await eventually(async () =>
      (await connections()).every((c) => c.lastStatusSource === 'birth') ? true : undefined,
    )
    // Aedes's own "ready" comes a few ticks after the birth in the old order: give it time to overwrite.
    await new Promise((r) => setTimeout(r, 300))
    for (const c of await connections()) expect(c).toMatchObject({ online: true, lastStatusSource: 'birth' })
    for (const s of sockets) s.destroy()
  })
})

describe('broker connection limits', () => {
  let platform: TestPlatform
  beforeAll(async () => {
    platform = await startTestPlatform({ env: { MQTT_MAX_CONNECTIONS_PER_IP: '2' } })
  }, 60_000)
  afterAll(async () => platform?.close())

  it('refuses more connections per address than configured, and accepts again after one closes', async () => {
    const ids = ['dps-river-201', 'dps-river-202', 'dps-river-203']
    const secrets = await Promise.all(ids.map((id) => registerDevice(platform, { ...RIVER_DEVICE, id })))
    const first = await connectDevice(platform.mqttUrl, ids[0]!, secrets[0]!)
    const second = await connectDevice(platform.mqttUrl, ids[1]!, secrets[1]!)
    const third = await tryConnect(platform.mqttUrl, ids[2]!, secrets[2]!)
    expect(third).toBeInstanceOf(Error)
    const gone = closed(first)
    first.end()
    await gone
    const again = await eventually(async () => {
      const c = await tryConnect(platform.mqttUrl, ids[2]!, secrets[2]!)
      return c instanceof Error ? undefined : c
    })
    await publishQos1(again, `devices/${ids[2]}/telemetry`, reading(1))
    const metrics = await (await fetch(`${platform.httpUrl}/metrics`)).text()
    expect(metrics).toMatch(/broker_connections_closed_by_guard_total\{reason="too_many_connections"\} [1-9]/)
    second.end(true)
    again.end(true)
  })
})
