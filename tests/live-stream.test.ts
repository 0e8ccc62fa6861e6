import type { MqttClient } from 'mqtt'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import WebSocket from 'ws'
import type { DeviceLive, ServerMessage } from '../dashboard-api/protocol.ts'
import type { StoredReading } from '../ingest/store/types.ts'
import {
  connectDevice,
  eventually,
  openLive,
  publishQos1,
  RIVER_DEVICE,
  registerDevice,
  startTestPlatform,
  type TestPlatform,
} from './helpers/platform.ts'

const DISPLAY_TOKEN = 'display-token-0123456789abcdef'
const Q = `?token=${DISPLAY_TOKEN}`
const AIR_DEVICE = {
  id: 'dps-air-901',
  kind: 'air-quality',
  name: 'AQMS Renon',
  regency: 'Kota Denpasar',
  district: 'Denpasar Selatan',
  latitude: -8.6726,
  longitude: 115.2336,
  reportingIntervalMs: 60_000,
} as const

interface LiveStats {
  clients: number
  pendingMax: number
  bufferedMax: number
  bufferedPeak: number
  slowDisconnects: number
  deadDisconnects: number
}

function devicesOf(m: ServerMessage): DeviceLive[] {
  return m.type === 'snapshot' || m.type === 'delta' ? m.devices : []
}

/** Status of a refused upgrade, or 101 when it went through. */
function upgradeStatus(url: string, headers: Record<string, string> = {}): Promise<number> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url, { headers })
    ws.once('unexpected-response', (_req, res) => {
      resolve(res.statusCode ?? 0)
      ws.terminate()
    })
    ws.once('open', () => {
      resolve(101)
      ws.close()
    })
    ws.once('error', (err) => {
      if (!String(err).includes('Unexpected server response')) reject(err)
    })
  })
}

describe('live stream protocol (real ws clients)', () => {
  let platform: TestPlatform
  let river: MqttClient
  let air: MqttClient

  beforeAll(async () => {
    platform = await startTestPlatform({
      env: {
        DISPLAY_TOKEN,
        LIVE_ALLOWED_ORIGINS: 'http://wall.example',
        LIVE_INTERVAL_MS: '100',
        LIVE_MAX_BUFFERED_BYTES: '65536',
        LIVE_SLOW_CLIENT_TIMEOUT_MS: '1000',
      },
    })
    river = await connectDevice(
      platform.mqttUrl,
      RIVER_DEVICE.id,
      await registerDevice(platform, RIVER_DEVICE),
    )
    air = await connectDevice(platform.mqttUrl, AIR_DEVICE.id, await registerDevice(platform, AIR_DEVICE))
  })
  afterAll(async () => {
    river?.end(true)
    air?.end(true)
    await platform?.close()
  })

  it('checks the display token and the origin before the upgrade', async () => {
    const url = `${platform.httpUrl.replace('http', 'ws')}/api/v1/live`
    expect(await upgradeStatus(url)).toBe(401)
    expect(await upgradeStatus(`${url}?token=wrong-token-0123456789`)).toBe(401)
    expect(await upgradeStatus(`${url}${Q}`, { origin: 'http://evil.example' })).toBe(403)
    expect(await upgradeStatus(`${url}${Q}`, { origin: 'http://wall.example' })).toBe(101)
  })

  it('sends hello, a snapshot with rollups and alarms, then coalesced deltas with aggregates', async () => {
    const live = await openLive(platform.httpUrl, Q)
    try {
      const hello = await live.waitFor((m) => m.type === 'hello')
      expect(hello).toMatchObject({ v: 1, intervalMs: 100, ispuTable: 'P.14/2020' })
      const snapshot = await live.waitFor((m) => m.type === 'snapshot')
      expect(live.messages.indexOf(hello)).toBeLessThan(live.messages.indexOf(snapshot))
      expect(
        devicesOf(snapshot)
          .map((d) => d.id)
          .sort(),
      ).toEqual([AIR_DEVICE.id, RIVER_DEVICE.id])
      expect(snapshot.type === 'snapshot' && snapshot.rollups.some((r) => r.group === 'regency')).toBe(true)

      const t = Date.now()
      await publishQos1(
        river,
        `devices/${RIVER_DEVICE.id}/telemetry`,
        JSON.stringify({
          v: 1,
          readings: [
            { ts: t - 2000, seq: 1, waterLevel: 120 },
            { ts: t - 1000, seq: 2, waterLevel: 140 },
            { ts: t, seq: 3, waterLevel: 160 },
          ],
        }),
      )
      // Three readings in one message reach the display as one coalesced update of the device.
      const delta = await live.waitFor(
        (m) =>
          m.type === 'delta' && devicesOf(m).some((d) => d.id === RIVER_DEVICE.id && d.latest?.seq === 3),
      )
      const d = devicesOf(delta).find((x) => x.id === RIVER_DEVICE.id)!
      expect(devicesOf(delta).filter((x) => x.id === RIVER_DEVICE.id)).toHaveLength(1)
      expect(d.status).toBe('online')
      expect(d.windows.waterLevel?.m1).toEqual([140, 120, 160])
      expect(d.river).toMatchObject({ level: 'waspada', jakarta: 'Siaga 3', waterLevel: 160 })
      // An earlier delta may carry another alarm list (e.g. from the device connecting): wait for the one
      // that brings the river alarm, in whichever tick it lands.
      const withAlarms = await live.waitFor(
        (m) => m.type === 'delta' && (m.alarms ?? []).some((a) => a.id === `${RIVER_DEVICE.id}:river`),
      )
      expect(withAlarms.type === 'delta' && withAlarms.alarms?.map((a) => a.id)).toContain(
        `${RIVER_DEVICE.id}:river`,
      )

      // A late reading (older ts) does not replace the newer latest value.
      await publishQos1(
        river,
        `devices/${RIVER_DEVICE.id}/telemetry`,
        JSON.stringify({ v: 1, ts: t - 500, seq: 4, waterLevel: 90 }),
      )
      const late = await live.waitFor(
        (m) =>
          m.type === 'delta' &&
          devicesOf(m).some((x) => x.id === RIVER_DEVICE.id && x.windows.waterLevel?.m1?.[1] === 90),
      )
      expect(devicesOf(late).find((x) => x.id === RIVER_DEVICE.id)?.latest?.seq).toBe(3)
    } finally {
      live.close()
    }
  })

  it('filters by scope: kind, district, regency and device', async () => {
    const live = await openLive(platform.httpUrl, Q)
    try {
      await live.waitFor((m) => m.type === 'snapshot')
      const scoped = async (scope: object) => {
        const before = live.messages.length
        live.ws.send(JSON.stringify({ v: 1, type: 'subscribe', scope }))
        const snap = await eventually(async () =>
          live.messages.slice(before).find((m) => m.type === 'snapshot'),
        )
        return devicesOf(snap).map((d) => d.id)
      }
      expect(await scoped({ district: ['Denpasar Barat'] })).toEqual([RIVER_DEVICE.id])
      expect(await scoped({ regency: ['Jembrana'] })).toEqual([])
      expect(await scoped({ device: [AIR_DEVICE.id] })).toEqual([AIR_DEVICE.id])
      expect(await scoped({ kind: ['air-quality'], regency: ['Kota Denpasar'] })).toEqual([AIR_DEVICE.id])
      const from = live.messages.length
      const t = Date.now()
      await publishQos1(
        river,
        `devices/${RIVER_DEVICE.id}/telemetry`,
        JSON.stringify({ v: 1, ts: t, seq: 10, waterLevel: 130 }),
      )
      await publishQos1(
        air,
        `devices/${AIR_DEVICE.id}/telemetry`,
        JSON.stringify({ v: 1, ts: t, seq: 1, pm25: 102.9, pm10: 40 }),
      )
      const delta = await live.waitFor(
        (m) =>
          live.messages.indexOf(m) >= from &&
          m.type === 'delta' &&
          devicesOf(m).some((d) => d.id === AIR_DEVICE.id),
      )
      expect(devicesOf(delta).find((d) => d.id === AIR_DEVICE.id)?.ispu).toMatchObject({
        value: 150,
        category: 'tidak-sehat',
        critical: 'pm25',
      })
      // Wait two more ticks: the river update must never reach this display.
      await new Promise((r) => setTimeout(r, 300))
      const ids = live.messages.slice(from).flatMap((m) => devicesOf(m).map((d) => d.id))
      expect(ids).not.toContain(RIVER_DEVICE.id)
      const rollupKeys = live.messages
        .slice(from)
        .flatMap((m) => (m.type === 'delta' ? (m.rollups ?? []) : []))
        .map((r) => r.key)
      expect(rollupKeys).not.toContain('river-level')
    } finally {
      live.close()
    }
  })

  it('answers a bad message with an error frame and keeps serving', async () => {
    const live = await openLive(platform.httpUrl, Q)
    try {
      await live.waitFor((m) => m.type === 'snapshot')
      const errorsBefore = () => live.messages.filter((m) => m.type === 'error').length
      live.ws.send('not json at all {')
      live.ws.send(JSON.stringify({ type: 'subscribe', scope: { planet: ['mars'] } }))
      live.ws.send(JSON.stringify({ v: 2, type: 'ping' }))
      live.ws.send(Buffer.from([0, 1, 2, 3]), { binary: true })
      await eventually(async () => (errorsBefore() >= 4 ? true : undefined))
      const err = live.messages.find((m) => m.type === 'error')
      expect(err).toMatchObject({ type: 'error', code: 'bad_message' })
      live.ws.send(JSON.stringify({ v: 1, type: 'ping', id: 'abc' }))
      await live.waitFor((m) => m.type === 'pong' && m.id === 'abc')
    } finally {
      live.close()
    }
    // An oversized frame closes that socket (1009), and the server keeps serving others.
    const big = new WebSocket(`${platform.httpUrl.replace('http', 'ws')}/api/v1/live${Q}`)
    await new Promise((r) => big.once('open', r))
    const closed = new Promise<number>((r) => big.once('close', (code) => r(code)))
    big.send('x'.repeat(10_000))
    expect(await closed).toBe(1009)
    const again = await openLive(platform.httpUrl, Q)
    await again.waitFor((m) => m.type === 'snapshot')
    again.close()
  })

  it('a client that stops reading stays bounded in server memory, does not delay another client, and is cut off', async () => {
    // Many devices with wide payloads, so that a paused socket fills its buffers within seconds.
    const N = 200
    const ids: string[] = []
    for (let i = 0; i < N; i++) {
      const id = `lteng-air-${String(500 + i).padStart(3, '0')}`
      ids.push(id)
      await platform.registry.register(
        { ...AIR_DEVICE, id, name: `Load ${i}`, regency: 'Lombok Tengah', district: 'Praya' },
        'test',
      )
    }
    const scope = { regency: ['Lombok Tengah'] }
    const slow = new WebSocket(`${platform.httpUrl.replace('http', 'ws')}/api/v1/live${Q}`)
    await new Promise((r) => slow.once('open', r))
    slow.send(JSON.stringify({ v: 1, type: 'subscribe', scope }))
    const slowClosed = new Promise<void>((r) => slow.once('close', () => r()))
    slow.on('error', () => undefined)
    const fast = await openLive(platform.httpUrl, Q)
    fast.ws.send(JSON.stringify({ v: 1, type: 'subscribe', scope }))
    await fast.waitFor((m) => m.type === 'snapshot' && m.devices.length === N)
    // Stop reading: the kernel buffers fill, then the server's send buffer for this socket.
    slow.pause()

    const stats = async () => (await platform.api<LiveStats>('GET', '/api/v1/live/stats')).body
    let seq = 0
    let checked = 0
    let cutOff = false
    const deadline = Date.now() + 40_000
    while (Date.now() < deadline && !cutOff) {
      seq++
      const ts = Date.now()
      const readings: StoredReading[] = ids.map((device) => ({
        kind: 'air-quality',
        device,
        district: 'Praya',
        regency: 'Lombok Tengah',
        ts,
        receivedAt: ts,
        seq,
        fields: {
          pm25: 10 + (seq % 50),
          pm10: 20,
          o3: 30,
          co: 400,
          no2: 15,
          so2: 5,
          hc: 9,
          temperature: 28,
          relativeHumidity: 80,
        },
      }))
      // The bus is what ingest calls after the spool commit: it must return without touching sockets.
      platform.bus.emit('readings.accepted', readings)
      if (seq % 10 === 0) {
        // The reading order: the fast display gets the newest value while the slow one is stuck.
        const want = seq
        await fast.waitFor(
          (m) =>
            m.type === 'delta' && m.devices.some((d) => d.id === ids[N - 1] && (d.latest?.seq ?? 0) >= want),
          5000,
        )
        checked++
        const s = await stats()
        expect(s.pendingMax).toBeLessThanOrEqual(N)
        cutOff = s.slowDisconnects >= 1
      }
      await new Promise((r) => setTimeout(r, 20))
    }
    const s = await stats()
    expect(s.slowDisconnects).toBeGreaterThanOrEqual(1)
    expect(s.clients).toBe(1)
    // Bounded: the send buffer never grew far past the limit (one frame of 200 devices on top of it).
    expect(s.bufferedPeak).toBeLessThan(65_536 + 1024 * 1024)
    expect(checked).toBeGreaterThan(0)
    slow.resume()
    await slowClosed
    fast.close()
  }, 90_000)

  it('a client that floods subscribe while not reading gets no frames past the limit and is cut off like a slow display', async () => {
    // Devices of their own, with readings, so that each snapshot is large; no reading arrives afterwards,
    // so no delta is ever pending for this client: only its own requests could fill its socket.
    const N = 200
    const ts = Date.now()
    const readings: StoredReading[] = []
    for (let i = 0; i < N; i++) {
      const device = `bangli-air-${String(100 + i).padStart(3, '0')}`
      await platform.registry.register(
        { ...AIR_DEVICE, id: device, name: `Flood ${i}`, regency: 'Bangli', district: 'Kintamani' },
        'test',
      )
      readings.push({
        kind: 'air-quality',
        device,
        district: 'Kintamani',
        regency: 'Bangli',
        ts,
        receivedAt: ts,
        seq: 1,
        fields: { pm25: 12, pm10: 20, o3: 30, co: 400, no2: 15, so2: 5, hc: 9, temperature: 24 },
      })
    }
    platform.bus.emit('readings.accepted', readings)
    const subscribe = JSON.stringify({ v: 1, type: 'subscribe', scope: { regency: ['Bangli'] } })
    const flooder = await openLive(platform.httpUrl, Q)
    // The readings reach the devices' views on the next tick: ask until a snapshot carries them.
    const first = await eventually(async () => {
      const from = flooder.messages.length
      flooder.ws.send(subscribe)
      const snap = await flooder.waitFor((m) => flooder.messages.indexOf(m) >= from && m.type === 'snapshot')
      return devicesOf(snap).length === N && devicesOf(snap).every((d) => d.latest !== null)
        ? snap
        : undefined
    })
    const snapshotBytes = Buffer.byteLength(JSON.stringify(first))
    expect(snapshotBytes).toBeGreaterThan(100_000)
    const closed = new Promise<number>((r) => flooder.ws.once('close', (code) => r(code)))
    const before = (await platform.api<LiveStats>('GET', '/api/v1/live/stats')).body
    // Stop reading, and keep asking for snapshots (about twice what the rate limit lets through).
    flooder.ws.pause()

    let bufferedMax = 0
    let cutOff = false
    const deadline = Date.now() + 30_000
    for (let i = 0; i < 1500 && Date.now() < deadline && !cutOff; i++) {
      if (flooder.ws.readyState === WebSocket.OPEN) flooder.ws.send(subscribe)
      await new Promise((r) => setTimeout(r, 50))
      const s = (await platform.api<LiveStats>('GET', '/api/v1/live/stats')).body
      bufferedMax = Math.max(bufferedMax, s.bufferedMax)
      cutOff = s.slowDisconnects > before.slowDisconnects
    }
    const s = (await platform.api<LiveStats>('GET', '/api/v1/live/stats')).body
    // Bounded: at most one frame on top of the limit (a snapshot, plus a few bytes of framing).
    expect(bufferedMax).toBeLessThanOrEqual(65_536 + snapshotBytes + 1024)
    expect(s.slowDisconnects).toBe(before.slowDisconnects + 1)
    expect(s.clients).toBe(0)
    flooder.ws.resume()
    // Cut off exactly as a slow display is: the socket is dropped, with no close frame (1006).
    expect(await closed).toBe(1006)
  }, 60_000)
})

describe('live stream heartbeat (real ws clients)', () => {
  let platform: TestPlatform

  beforeAll(async () => {
    platform = await startTestPlatform({ env: { LIVE_HEARTBEAT_MS: '1000' } })
  })
  afterAll(async () => {
    await platform?.close()
  })

  it('closes a client that never answers the ping, whatever pongs it sends unasked', async () => {
    const url = `${platform.httpUrl.replace('http', 'ws')}/api/v1/live`
    const answering = await openLive(platform.httpUrl)
    // Pongs sent blindly, as a client that never reads its socket could, must not count as answers.
    const blind = new WebSocket(url, { autoPong: false })
    blind.on('error', () => undefined)
    await new Promise((r) => blind.once('open', r))
    const closed = new Promise<void>((r) => blind.once('close', () => r()))
    const timer = setInterval(() => {
      if (blind.readyState === WebSocket.OPEN) blind.pong()
    }, 50)
    try {
      await closed
      const s = (await platform.api<LiveStats>('GET', '/api/v1/live/stats')).body
      expect(s.deadDisconnects).toBe(1)
      // The browser-like client echoes each ping's data and stays connected.
      expect(answering.ws.readyState).toBe(WebSocket.OPEN)
      expect(s.clients).toBe(1)
    } finally {
      clearInterval(timer)
      answering.close()
    }
  }, 15_000)
})
