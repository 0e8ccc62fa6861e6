import { createHmac } from 'node:crypto'
import { mkdtempSync, rmSync } from 'node:fs'
import { createServer, type Server } from 'node:http'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import type { Alarm } from '../dashboard-api/protocol.ts'
import { defineFleet, startSimulator } from '../device-sim/index.ts'
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

const SECRET = 'webhook-secret-0123456789abcdef'

interface Received {
  readonly headers: Record<string, string | string[] | undefined>
  readonly body: string
  readonly status: number
}

/** A webhook receiver on 127.0.0.1: answers with `respond(requestNumber)` and keeps every request. */
async function startReceiver(respond: (n: number) => number = () => 200) {
  const received: Received[] = []
  const server: Server = createServer((req, res) => {
    const chunks: Buffer[] = []
    req.on('data', (c: Buffer) => chunks.push(c))
    req.on('end', () => {
      const status = respond(received.length + 1)
      received.push({ headers: req.headers, body: Buffer.concat(chunks).toString('utf8'), status })
      res.writeHead(status).end()
    })
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const address = server.address()
  const port = typeof address === 'object' && address ? address.port : 0
  return {
    url: `http://127.0.0.1:${port}/hook`,
    received,
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  }
}

function validSignature(r: Received): boolean {
  const expected = `sha256=${createHmac('sha256', SECRET).update(r.body).digest('hex')}`
  return r.headers['x-kota-signature'] === expected
}

interface AlarmJson {
  id: string
  type: string
  state: string
  level: string
  priority: string
  deviceId: string
  acknowledgedBy: string | null
  escalatedAt: number | null
}
interface TransitionJson {
  seq: number
  action: string
  actor: string
  comment: string | null
  fromState: string | null
  toState: string
}
interface DeliveryJson {
  id: string
  event: string
  status: string
  attempts: number
  lastError: string | null
}
interface AlarmDetail {
  alarm: AlarmJson
  transitions: TransitionJson[]
  deliveries: DeliveryJson[]
}

async function openAlarm(p: TestPlatform, deviceId: string, type: string) {
  const res = await p.api<{ alarms: AlarmJson[] }>(
    'GET',
    `/api/v1/alarms?device=${deviceId}&type=${type}&state=open`,
  )
  return res.body.alarms[0]
}

async function detail(p: TestPlatform, id: string) {
  return (await p.api<AlarmDetail>('GET', `/api/v1/alarms/${id}`)).body
}

async function as(p: TestPlatform, token: string, method: string, path: string, body?: unknown) {
  const res = await fetch(`${p.httpUrl}${path}`, {
    method,
    headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
    body: body === undefined ? undefined : JSON.stringify(body),
  })
  return {
    status: res.status,
    body: (await res.json()) as Record<string, unknown> & { error?: { code: string } },
  }
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms))

describe('alarms through the real pipeline', () => {
  it('a simulated river past Siaga: raised, escalated, acknowledged with a comment, cleared, closed; audited, signed webhooks, live stream; offline when the simulator stops', async () => {
    const receiver = await startReceiver()
    const platform = await startTestPlatform({
      env: {
        ALARM_EVAL_INTERVAL_MS: '50',
        ALARM_MIN_DURATION_MS: '300',
        ALARM_SLA_HIGH_MS: '1500',
        ALARM_WEBHOOK_URLS: receiver.url,
        ALARM_WEBHOOK_SECRET: SECRET,
        ALARM_WEBHOOK_RETRY_MS: '50',
      },
    })
    const [spec] = defineFleet({ perKind: 1, seed: 7, kinds: ['river-level'] })
    const id = spec!.id
    const secret = await registerDevice(platform, { ...spec })
    const sim = await startSimulator({
      url: platform.mqttUrl,
      devices: [{ ...spec!, secret }],
      intervalMs: 200,
      connectJitterMs: 0,
    })
    const live = await openLive(platform.httpUrl)
    let simStopped = false
    try {
      await sim.ready(10_000)
      // The gauge's own alert levels put the simulated water at Siaga (the signal does not depend on them).
      const patched = await platform.api('PATCH', `/api/v1/devices/${id}`, {
        thresholds: { waspada: -1000, siaga: -999, awas: 100_000 },
      })
      expect(patched.status).toBe(200)

      const raised = await eventually(() => openAlarm(platform, id, 'river'), 15_000)
      expect(raised).toMatchObject({ state: 'raised', level: 'siaga', priority: 'high', deviceId: id })
      const onStream = await live.waitFor(
        (m) => (m.type === 'snapshot' || m.type === 'delta') && !!m.alarms?.some((a) => a.id === raised.id),
      )
      const streamed = (onStream as { alarms: Alarm[] }).alarms.find((a) => a.id === raised.id)!
      expect(streamed).toMatchObject({ source: 'rule', type: 'river', state: 'raised', severity: 'critical' })
      expect(streamed.slaDueAt).toBeGreaterThan(streamed.since)

      // Not acknowledged within the rule's SLA (1.5 s here): escalated, once.
      const escalated = await eventually(async () => {
        const d = await detail(platform, raised.id)
        return d.transitions.some((t) => t.action === 'escalated') ? d : undefined
      }, 15_000)
      expect(escalated.alarm.escalatedAt).not.toBeNull()

      // Acknowledging needs a comment; the actor is the token's name.
      const noComment = await platform.api<{ error: { code: string } }>(
        'POST',
        `/api/v1/alarms/${raised.id}/acknowledge`,
        {},
      )
      expect(noComment.status).toBe(400)
      expect(noComment.body.error.code).toBe('comment_required')
      const blank = await platform.api<{ error: { code: string } }>(
        'POST',
        `/api/v1/alarms/${raised.id}/acknowledge`,
        { comment: '   ' },
      )
      expect(blank.body.error.code).toBe('comment_required')
      const made = await platform.api<{ token: string }>('POST', '/api/v1/installers', { name: 'made' })
      expect(made.status).toBe(201)
      const ack = await as(platform, made.body.token, 'POST', `/api/v1/alarms/${raised.id}/acknowledge`, {
        comment: 'BPBD Bangli informed, team on the way',
      })
      expect(ack.status).toBe(200)
      expect(ack.body.alarm).toMatchObject({ state: 'acknowledged', acknowledgedBy: 'made' })
      const again = await as(platform, made.body.token, 'POST', `/api/v1/alarms/${raised.id}/acknowledge`, {
        comment: 'twice',
      })
      expect(again.status).toBe(409)
      await live.waitFor(
        (m) =>
          m.type === 'delta' &&
          !!m.alarms?.some(
            (a) => a.id === raised.id && a.state === 'acknowledged' && a.acknowledgedBy === 'made',
          ),
      )
      const note = await as(platform, made.body.token, 'POST', `/api/v1/alarms/${raised.id}/comments`, {
        comment: 'water still rising at the bridge',
      })
      expect(note.status).toBe(201)
      const early = await platform.api<{ error: { code: string } }>(
        'POST',
        `/api/v1/alarms/${raised.id}/close`,
        {
          comment: 'done',
        },
      )
      expect(early.status).toBe(409)

      // The water falls below the alert levels: the alarm clears by itself, then an operator closes it.
      await platform.api('PATCH', `/api/v1/devices/${id}`, {
        thresholds: { waspada: 100_000, siaga: 100_001, awas: 100_002 },
      })
      await eventually(
        async () => ((await detail(platform, raised.id)).alarm.state === 'cleared' ? true : undefined),
        15_000,
      )
      const closed = await platform.api<{ alarm: AlarmJson }>('POST', `/api/v1/alarms/${raised.id}/close`, {
        comment: 'river back to normal, checked on site',
      })
      expect(closed.status).toBe(200)
      expect(closed.body.alarm.state).toBe('closed')

      const final = await detail(platform, raised.id)
      expect(final.transitions.map((t) => [t.action, t.actor, t.toState])).toEqual([
        ['raised', 'system', 'raised'],
        ['escalated', 'system', 'raised'],
        ['acknowledged', 'made', 'acknowledged'],
        ['commented', 'made', 'acknowledged'],
        ['cleared', 'system', 'cleared'],
        ['closed', 'admin', 'closed'],
      ])
      expect(final.transitions.map((t) => t.seq)).toEqual([1, 2, 3, 4, 5, 6])
      expect(final.transitions[2]!.comment).toBe('BPBD Bangli informed, team on the way')
      expect(final.transitions[5]!.comment).toBe('river back to normal, checked on site')

      // Every transition but the comment went out as a signed POST, and each is recorded as delivered.
      const delivered = await eventually(async () => {
        const d = await detail(platform, raised.id)
        return d.deliveries.length === 5 && d.deliveries.every((x) => x.status === 'delivered')
          ? d.deliveries
          : undefined
      })
      expect(delivered.map((d) => d.event)).toEqual([
        'alarm.raised',
        'alarm.escalated',
        'alarm.acknowledged',
        'alarm.cleared',
        'alarm.closed',
      ])
      const mine = receiver.received.filter((r) => JSON.parse(r.body).alarm.id === raised.id)
      expect(mine).toHaveLength(5)
      for (const r of mine) {
        expect(validSignature(r)).toBe(true)
        expect(Number(r.headers['x-kota-timestamp'])).toBeGreaterThan(0)
        const body = JSON.parse(r.body)
        expect(r.headers['x-kota-delivery']).toBe(body.id)
        expect(body.transition.alarmId).toBe(raised.id)
      }
      const tampered = { ...mine[0]!, body: mine[0]!.body.replace('"raised"', '"closed"') }
      expect(validSignature(tampered)).toBe(false)

      // Only a list sent after the last one that still held the alarm counts as its removal.
      const lastWith = live.messages.findLastIndex(
        (m) => (m.type === 'snapshot' || m.type === 'delta') && !!m.alarms?.some((a) => a.id === raised.id),
      )
      expect(lastWith).toBeGreaterThanOrEqual(0)
      const gone = await live.waitFor(
        (m) =>
          live.messages.indexOf(m) > lastWith &&
          m.type === 'delta' &&
          m.alarms !== undefined &&
          !m.alarms.some((a) => a.id === raised.id),
      )
      expect(gone.type).toBe('delta')

      // The simulator stops (goodbye and disconnect): the device is offline, an alarm follows.
      await sim.stop()
      simStopped = true
      const offline = await eventually(() => openAlarm(platform, id, 'offline'), 15_000)
      expect(offline).toMatchObject({ state: 'raised', level: 'offline', priority: 'technical' })
    } finally {
      live.close()
      if (!simStopped) await sim.stop()
      await platform.close()
      await receiver.close()
    }
  }, 60_000)

  describe('crafted readings', () => {
    let platform: TestPlatform
    let receiver: Awaited<ReturnType<typeof startReceiver>>
    const processed = new Set<string>()
    let processedCount = 0

    beforeAll(async () => {
      // Fails the first two requests it ever gets, then succeeds; processes each delivery id once.
      receiver = await startReceiver((n) => (n <= 2 ? 500 : 200))
      platform = await startTestPlatform({
        env: {
          ALARM_EVAL_INTERVAL_MS: '50',
          ALARM_MIN_DURATION_MS: '300',
          ALARM_WEBHOOK_URLS: receiver.url,
          ALARM_WEBHOOK_SECRET: SECRET,
          ALARM_WEBHOOK_RETRY_MS: '50',
        },
      })
    })
    afterAll(async () => {
      await platform?.close()
      await receiver?.close()
    })

    const market = (id: string, thresholds: Record<string, number>) => ({
      id,
      kind: 'crowd-counter',
      name: `Pasar ${id}`,
      regency: 'Kota Denpasar',
      district: 'Denpasar Timur',
      latitude: -8.65,
      longitude: 115.22,
      reportingIntervalMs: 60_000,
      thresholds,
    })

    it('a receiver that fails twice then succeeds gets the alarm exactly once acknowledged as delivered', async () => {
      const id = 'dps-crowd-801'
      const secret = await registerDevice(platform, market(id, { capacity: 10 }))
      const client = await connectDevice(platform.mqttUrl, id, secret)
      try {
        await publishQos1(
          client,
          `devices/${id}/telemetry`,
          JSON.stringify({ v: 1, ts: Date.now(), seq: 1, occupancy: 25 }),
        )
        const alarm = await eventually(() => openAlarm(platform, id, 'occupancy'))
        const d = await eventually(async () => {
          const x = await detail(platform, alarm.id)
          return x.deliveries[0]?.status === 'delivered' ? x.deliveries[0] : undefined
        })
        expect(d).toMatchObject({ event: 'alarm.raised', status: 'delivered', attempts: 3, lastError: null })
        const seen = receiver.received.filter((r) => r.headers['x-kota-delivery'] === d.id)
        expect(seen.map((r) => r.status)).toEqual([500, 500, 200])
        expect(new Set(seen.map((r) => r.body)).size).toBe(1)
        for (const r of seen) {
          expect(validSignature(r)).toBe(true)
          if (r.status === 200 && !processed.has(d.id)) {
            processed.add(d.id)
            processedCount++
          }
        }
        expect(processedCount).toBe(1)
        // Nothing more arrives for it once it was delivered.
        await sleep(300)
        expect(receiver.received.filter((r) => r.headers['x-kota-delivery'] === d.id)).toHaveLength(3)
      } finally {
        client.end(true)
      }
    }, 30_000)

    it('no alarm flaps when a reading oscillates around a threshold within the hysteresis band', async () => {
      // Same readings for two markets: one with the default band (5 % of capacity), one without a band.
      const banded = 'dps-crowd-802'
      const bare = 'dps-crowd-803'
      const river = { ...RIVER_DEVICE, id: 'dps-river-802' }
      const clients = await Promise.all([
        registerDevice(platform, market(banded, { capacity: 100 })).then((s) =>
          connectDevice(platform.mqttUrl, banded, s),
        ),
        registerDevice(platform, market(bare, { capacity: 100, occupancyBandRatio: 0 })).then((s) =>
          connectDevice(platform.mqttUrl, bare, s),
        ),
        registerDevice(platform, river).then((s) => connectDevice(platform.mqttUrl, river.id, s)),
      ])
      try {
        // Each value holds longer than the minimum duration (300 ms), so only hysteresis can prevent flapping.
        for (let i = 0; i < 6; i++) {
          const ts = Date.now()
          const people = i % 2 === 0 ? 102 : 98
          await publishQos1(
            clients[0]!,
            `devices/${banded}/telemetry`,
            JSON.stringify({ v: 1, ts, seq: i + 1, occupancy: people }),
          )
          await publishQos1(
            clients[1]!,
            `devices/${bare}/telemetry`,
            JSON.stringify({ v: 1, ts, seq: i + 1, occupancy: people }),
          )
          // Waspada at 150 cm; RIVER_HYSTERESIS_CM is 5.
          const level = i % 2 === 0 ? 152 : 148
          await publishQos1(
            clients[2]!,
            `devices/${river.id}/telemetry`,
            JSON.stringify({ v: 1, ts, seq: i + 1, waterLevel: level }),
          )
          await sleep(700)
        }
        const all = (await platform.api<{ alarms: AlarmJson[] }>('GET', '/api/v1/alarms?limit=1000')).body
          .alarms
        const of = (device: string, type: string) =>
          all.filter((a) => a.deviceId === device && a.type === type)
        const actions = async (a: AlarmJson) =>
          (await detail(platform, a.id)).transitions.map((t) => t.action)

        expect(of(banded, 'occupancy')).toHaveLength(1)
        expect(await actions(of(banded, 'occupancy')[0]!)).toEqual(['raised'])
        expect(of(river.id, 'river')).toHaveLength(1)
        expect(await actions(of(river.id, 'river')[0]!)).toEqual(['raised'])
        // The control: without a band the same readings raise, clear and reopen the alarm.
        expect(of(bare, 'occupancy')).toHaveLength(1)
        const bareActions = await actions(of(bare, 'occupancy')[0]!)
        expect(bareActions.filter((a) => a === 'cleared').length).toBeGreaterThanOrEqual(2)

        // Well below the band, the banded alarm does clear.
        await publishQos1(
          clients[0]!,
          `devices/${banded}/telemetry`,
          JSON.stringify({ v: 1, ts: Date.now(), seq: 7, occupancy: 50 }),
        )
        await eventually(async () =>
          (await actions(of(banded, 'occupancy')[0]!)).includes('cleared') ? true : undefined,
        )
      } finally {
        for (const c of clients) c.end(true)
      }
    }, 30_000)

    it('rejects bad requests with stable codes', async () => {
      const bad = await platform.api<{ error: { code: string } }>('GET', '/api/v1/alarms?state=nonsense')
      expect(bad.status).toBe(400)
      expect(bad.body.error.code).toBe('bad_request')
      const missing = await platform.api<{ error: { code: string } }>(
        'GET',
        '/api/v1/alarms/alm-abc-0123abcd',
      )
      expect(missing.body.error.code).toBe('not_found')
      const noAuth = await fetch(`${platform.httpUrl}/api/v1/alarms`)
      expect(noAuth.status).toBe(401)
      const ackMissing = await platform.api<{ error: { code: string } }>(
        'POST',
        '/api/v1/alarms/alm-abc-0123abcd/acknowledge',
        { comment: 'x' },
      )
      expect(ackMissing.status).toBe(404)
    })
  })

  it('alarms survive a restart and are evaluated again from the aggregator', async () => {
    const dataDir = mkdtempSync(join(tmpdir(), 'alarms-restart-'))
    const env = { ALARM_EVAL_INTERVAL_MS: '50', ALARM_MIN_DURATION_MS: '200' }
    try {
      let alarmId: string
      let secret: string
      {
        const p1 = await startTestPlatform({ dataDir, env })
        try {
          secret = await registerDevice(p1, RIVER_DEVICE)
          const c = await connectDevice(p1.mqttUrl, RIVER_DEVICE.id, secret)
          await publishQos1(
            c,
            `devices/${RIVER_DEVICE.id}/telemetry`,
            JSON.stringify({ v: 1, ts: Date.now(), seq: 1, waterLevel: 210 }),
          )
          const a = await eventually(() => openAlarm(p1, RIVER_DEVICE.id, 'river'))
          expect(a.level).toBe('siaga')
          alarmId = a.id
          c.end(true)
        } finally {
          await p1.close()
        }
      }
      const p2 = await startTestPlatform({ dataDir, env })
      try {
        const after = await openAlarm(p2, RIVER_DEVICE.id, 'river')
        expect(after).toMatchObject({ id: alarmId, state: 'raised', level: 'siaga' })
        const live = await openLive(p2.httpUrl)
        const snap = await live.waitFor((m) => m.type === 'snapshot')
        expect(
          snap.type === 'snapshot' && snap.alarms.some((x) => x.id === alarmId && x.source === 'rule'),
        ).toBe(true)
        live.close()
        // No reading since the restart: the engine cannot tell, so the alarm stays as it was.
        await sleep(600)
        expect((await detail(p2, alarmId)).alarm.state).toBe('raised')
        // The river is back to normal: the same alarm clears, its trail continues.
        const c = await connectDevice(p2.mqttUrl, RIVER_DEVICE.id, secret)
        await publishQos1(
          c,
          `devices/${RIVER_DEVICE.id}/telemetry`,
          JSON.stringify({ v: 1, ts: Date.now(), seq: 2, waterLevel: 90 }),
        )
        const cleared = await eventually(async () => {
          const d = await detail(p2, alarmId)
          return d.alarm.state === 'cleared' ? d : undefined
        })
        expect(cleared.transitions.map((t) => [t.seq, t.action])).toEqual([
          [1, 'raised'],
          [2, 'cleared'],
        ])
        c.end(true)
      } finally {
        await p2.close()
      }
    } finally {
      rmSync(dataDir, { recursive: true, force: true })
    }
  }, 40_000)
})
