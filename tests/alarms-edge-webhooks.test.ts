import { createHmac } from 'node:crypto'
import { mkdtempSync, rmSync } from 'node:fs'
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import pino from 'pino'
import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import { ALARMS_DEFAULTS, type AlarmsConfig } from '../dashboard-api/alarms/config.ts'
import { publicAlarm } from '../dashboard-api/alarms/engine.ts'
import { type AlarmRecord, AlarmStore, type Delivery } from '../dashboard-api/alarms/store.ts'
import { WebhookDispatcher } from '../dashboard-api/alarms/webhooks.ts'
import { loadPlatformConfig } from '../platform/config.ts'
import {
  connectDevice,
  eventually,
  publishQos1,
  RIVER_DEVICE,
  registerDevice,
  startTestPlatform,
} from './helpers/platform.ts'

const SECRET = 'webhook-secret-0123456789abcdef'

interface Hit {
  readonly headers: IncomingMessage['headers']
  readonly raw: Buffer
  readonly at: number
}

/** A receiver on 127.0.0.1:0 that keeps every request's raw bytes and answers with `handle`. */
async function startReceiver(
  handle: (n: number, req: IncomingMessage, res: ServerResponse) => void = (_n, _req, res) =>
    res.writeHead(200).end(),
) {
  const hits: Hit[] = []
  const server: Server = createServer((req, res) => {
    const chunks: Buffer[] = []
    req.on('data', (c: Buffer) => chunks.push(c))
    req.on('end', () => {
      hits.push({ headers: req.headers, raw: Buffer.concat(chunks), at: Date.now() })
      handle(hits.length, req, res)
    })
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const address = server.address()
  const port = typeof address === 'object' && address ? address.port : 0
  return {
    port,
    url: `http://127.0.0.1:${port}/hook`,
    hits,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections()
        server.close(() => resolve())
      }),
  }
}

function alarm(now: number, name = 'Tukad Badung'): AlarmRecord {
  return {
    id: `alm-${now.toString(36)}-0123abcd`,
    deviceId: 'dps-river-001',
    type: 'river',
    kind: 'river-level',
    name,
    regency: 'Kota Denpasar',
    district: 'Denpasar Barat',
    level: 'siaga',
    priority: 'high',
    value: 210,
    state: 'raised',
    raisedAt: now,
    updatedAt: now,
    slaDueAt: now + 3_600_000,
    escalatedAt: null,
    acknowledgedAt: null,
    acknowledgedBy: null,
    clearedAt: null,
    clearedBy: null,
    closedAt: null,
    closedBy: null,
  }
}

/**
 * Webhook delivery at its edges: the dispatcher against a real alarm store and real HTTP receivers, each
 * raised alarm stored with its deliveries as the engine stores them. Every log line is kept, to show that
 * no secret reaches it.
 */
describe('alarm webhooks at the edges', () => {
  let dir: string
  let store: AlarmStore
  let logs: string[]
  let log: pino.Logger
  const dispatchers: WebhookDispatcher[] = []
  const receivers: Array<{ close(): Promise<void> }> = []

  beforeEach(async () => {
    dir = mkdtempSync(join(tmpdir(), 'alarms-webhooks-'))
    store = await AlarmStore.open(join(dir, 'alarms.duckdb'))
    logs = []
    log = pino({ level: 'debug' }, { write: (line: string) => logs.push(line) })
  })

  afterEach(async () => {
    for (const d of dispatchers.splice(0)) await d.stop()
    for (const r of receivers.splice(0)) await r.close()
    await store.close()
    rmSync(dir, { recursive: true, force: true })
    // Whatever happened, the signing secret never reached a log line.
    expect(logs.join('\n')).not.toContain(SECRET)
  })

  function webhookConfig(urls: string[], over: Partial<AlarmsConfig['webhooks']> = {}) {
    return { ...ALARMS_DEFAULTS.webhooks, urls, secret: SECRET, retryMs: 10, timeoutMs: 5000, ...over }
  }

  async function receiver(...args: Parameters<typeof startReceiver>) {
    const r = await startReceiver(...args)
    receivers.push(r)
    return r
  }

  function dispatcher(config: AlarmsConfig['webhooks']) {
    const d = new WebhookDispatcher(config, store, log)
    dispatchers.push(d)
    return d
  }

  /** Stores a raised alarm with its deliveries (as the engine does) and returns them. */
  async function raise(d: WebhookDispatcher, name?: string): Promise<Delivery[]> {
    const now = Date.now()
    const a = alarm(now, name)
    const transition = {
      alarmId: a.id,
      seq: 1,
      at: now,
      actor: 'system',
      action: 'raised' as const,
      fromState: null,
      toState: 'raised' as const,
      comment: null,
      detail: { level: 'siaga', value: 210 },
    }
    const deliveries = d.prepare(a.id, 1, 'alarm.raised', { alarm: publicAlarm(a), transition }, now)
    await store.saveMany([{ alarm: a, transition, deliveries, insert: true }])
    return deliveries
  }

  /** The delivery once it is no longer pending. */
  async function settled(delivery: Delivery) {
    return eventually(async () => {
      const d = (await store.deliveries(delivery.alarmId)).find((x) => x.id === delivery.id)
      return d?.status === 'pending' ? undefined : d
    }, 15_000)
  }

  it('signs the exact bytes it sends, non-ASCII included, with the same id and body on every attempt', async () => {
    const r = await receiver((n, _req, res) => res.writeHead(n === 1 ? 503 : 204).end())
    const d = dispatcher(webhookConfig([r.url]))
    await d.start()
    const [delivery] = await raise(d, 'Tukad Badung — jembatan Ümbul 🌊 "hulu"')
    d.enqueue([delivery!])
    expect(await settled(delivery!)).toMatchObject({ status: 'delivered', attempts: 2 })
    expect(r.hits).toHaveLength(2)
    for (const hit of r.hits) {
      const expected = `sha256=${createHmac('sha256', SECRET).update(hit.raw).digest('hex')}`
      expect(hit.headers['x-kota-signature']).toBe(expected)
      expect(hit.headers['x-kota-delivery']).toBe(delivery!.id)
      expect(hit.headers['x-kota-event']).toBe('alarm.raised')
      expect(Number(hit.headers['x-kota-timestamp'])).toBeGreaterThan(0)
      const body = JSON.parse(hit.raw.toString('utf8'))
      expect(body.id).toBe(delivery!.id)
      expect(body.alarm.name).toBe('Tukad Badung — jembatan Ümbul 🌊 "hulu"')
    }
    expect(r.hits[0]!.raw.equals(r.hits[1]!.raw)).toBe(true)
  })

  it('resumes a delivery being retried after a restart: same id, attempts counted on, not before its time, delivered once', async () => {
    // Fails three times, then takes it.
    const r = await receiver((n, _req, res) => res.writeHead(n <= 3 ? 500 : 200).end())
    const config = webhookConfig([r.url], { retryMs: 300 })
    const first = dispatcher(config)
    await first.start()
    const [delivery] = await raise(first, undefined)
    first.enqueue([delivery!])
    const stored = await eventually(async () => {
      const [p] = await store.pendingDeliveries()
      return p !== undefined && p.attempts === 2 ? p : undefined
    })
    await first.stop()
    expect(r.hits).toHaveLength(2)
    expect(stored).toMatchObject({ status: 'pending', lastError: 'HTTP 500', lastStatusCode: 500 })

    const second = dispatcher(config)
    await second.start()
    expect(await settled(delivery!)).toMatchObject({ status: 'delivered', attempts: 4, lastError: null })
    expect(r.hits).toHaveLength(4)
    // The retry timer came back from the store: not before the time the first run set.
    expect(r.hits[2]!.at).toBeGreaterThanOrEqual(stored.nextAttemptAt)
    expect(new Set(r.hits.map((h) => h.headers['x-kota-delivery']))).toEqual(new Set([delivery!.id]))
    // Nothing more once delivered, and a third start sends nothing.
    await second.stop()
    const third = dispatcher(config)
    await third.start()
    await new Promise((res) => setTimeout(res, 300))
    expect(r.hits).toHaveLength(4)
  })

  it('gives up on a receiver that never answers after its timeout, closing each connection', async () => {
    let closed = 0
    const r = await receiver((_n, req) => {
      req.socket.on('close', () => closed++)
    })
    const d = dispatcher(webhookConfig([r.url], { timeoutMs: 200, maxAttempts: 2 }))
    await d.start()
    const [delivery] = await raise(d)
    d.enqueue([delivery!])
    const done = await settled(delivery!)
    expect(done).toMatchObject({ status: 'failed', attempts: 2, lastStatusCode: null })
    expect(done.lastError).toMatch(/timeout/i)
    expect(r.hits).toHaveLength(2)
    await eventually(async () => (closed === 2 ? true : undefined))
  })

  it('does not follow a redirect: the other host gets nothing and the attempt counts as failed', async () => {
    const elsewhere = await receiver()
    const r = await receiver((_n, _req, res) => res.writeHead(307, { location: elsewhere.url }).end())
    const d = dispatcher(webhookConfig([r.url], { maxAttempts: 2 }))
    await d.start()
    const [delivery] = await raise(d)
    d.enqueue([delivery!])
    expect(await settled(delivery!)).toMatchObject({
      status: 'failed',
      attempts: 2,
      lastStatusCode: 307,
      lastError: 'HTTP 307',
    })
    expect(r.hits).toHaveLength(2)
    expect(elsewhere.hits).toHaveLength(0)
  })

  it('does not read an endless answer: delivered on its status, the connection dropped early', async () => {
    const chunk = Buffer.alloc(64 * 1024, 'x')
    let written = 0
    let gone = false
    const r = await receiver((_n, req, res) => {
      res.writeHead(200, { 'content-type': 'text/plain' })
      req.socket.on('close', () => {
        gone = true
      })
      // At most 1 GiB: far more than a dispatcher that read the answer could hold.
      const pump = () => {
        while (!gone && written < 1024 ** 3) {
          written += chunk.length
          if (!res.write(chunk)) return void res.once('drain', pump)
        }
        res.end()
      }
      pump()
    })
    const d = dispatcher(webhookConfig([r.url]))
    await d.start()
    const [delivery] = await raise(d)
    d.enqueue([delivery!])
    expect(await settled(delivery!)).toMatchObject({ status: 'delivered', attempts: 1, lastStatusCode: 200 })
    await eventually(async () => (gone ? true : undefined))
    expect(written).toBeLessThan(64 * 1024 * 1024)
  })

  it('retries a receiver that drops the connection', async () => {
    const r = await receiver((n, req, res) => {
      if (n === 1) req.socket.destroy()
      else res.writeHead(200).end()
    })
    const d = dispatcher(webhookConfig([r.url]))
    await d.start()
    const [delivery] = await raise(d)
    d.enqueue([delivery!])
    expect(await settled(delivery!)).toMatchObject({ status: 'delivered', attempts: 2, lastError: null })
    expect(r.hits).toHaveLength(2)
  })

  it('delivers to a URL with a user and password as Basic auth, and logs neither', async () => {
    const r = await receiver((_n, req, res) =>
      res.writeHead(req.headers.authorization === `Basic ${btoa('gateway:pa55word')}` ? 200 : 401).end(),
    )
    const url = `http://gateway:pa55word@127.0.0.1:${r.port}/hook?apikey=k3y-of-the-gateway`
    // The second URL refuses connections: what its failure logs must not say either.
    const refused = `http://gateway:pa55word@127.0.0.1:1/hook?apikey=k3y-of-the-gateway`
    const d = dispatcher(webhookConfig([url, refused], { maxAttempts: 1 }))
    await d.start()
    const [delivery, lost] = await raise(d)
    d.enqueue([delivery!, lost!])
    expect(await settled(delivery!)).toMatchObject({ status: 'delivered', attempts: 1, lastError: null })
    const failed = await settled(lost!)
    expect(failed).toMatchObject({ status: 'failed', attempts: 1 })
    expect(failed.lastError).not.toContain('pa55word')
    expect(r.hits).toHaveLength(1)
    expect(r.hits[0]!.headers.host).toBe(`127.0.0.1:${r.port}`)
    const all = logs.join('\n')
    expect(all).toContain('alarm webhook failed; giving up')
    expect(all).not.toContain('pa55word')
    expect(all).not.toContain('k3y-of-the-gateway')
  })

  it('keeps delivering to a receiver while another one hangs until its timeout', async () => {
    const hanging = await receiver(() => {})
    const healthy = await receiver()
    const d = dispatcher(webhookConfig([hanging.url, healthy.url], { timeoutMs: 60_000 }))
    await d.start()
    const all: Delivery[] = []
    for (let i = 0; i < 12; i++) {
      all.push(...(await raise(d)))
      // One alarm id per millisecond.
      await new Promise((res) => setTimeout(res, 2))
    }
    d.enqueue(all)
    // Each of the gateway's deliveries goes out while the hanging receiver holds its connections.
    await eventually(async () => (healthy.hits.length === 12 ? true : undefined))
    expect(hanging.hits.length).toBeGreaterThan(0)
    expect(new Set(healthy.hits.map((h) => h.headers['x-kota-delivery'])).size).toBe(12)
  })

  it('does not send after a restart the pending deliveries of a URL taken out of ALARM_WEBHOOK_URLS', async () => {
    const removed = await receiver((_n, _req, res) => res.writeHead(500).end())
    const kept = await receiver()
    const first = dispatcher(webhookConfig([removed.url, kept.url], { retryMs: 60_000 }))
    await first.start()
    const [toRemoved, toKept] = await raise(first)
    first.enqueue([toRemoved!, toKept!])
    expect(await settled(toKept!)).toMatchObject({ status: 'delivered' })
    await eventually(async () => (removed.hits.length === 1 ? true : undefined))
    await first.stop()
    // Pending, to retry in a minute; the operator removes the URL and restarts.
    expect((await store.pendingDeliveries()).map((x) => x.id)).toEqual([toRemoved!.id])
    const second = dispatcher(webhookConfig([kept.url], { retryMs: 10 }))
    await second.start()
    const dropped = await settled(toRemoved!)
    expect(dropped).toMatchObject({ status: 'failed', attempts: 1 })
    expect(dropped.lastError).toContain('ALARM_WEBHOOK_URLS')
    expect(removed.hits).toHaveLength(1)
  })

  it('sends each event once to a receiver listed twice in ALARM_WEBHOOK_URLS', async () => {
    const r = await receiver()
    const config = loadPlatformConfig({
      // The same URL twice, and once more written another way (a compose file merged with an .env file).
      ALARM_WEBHOOK_URLS: `${r.url}, HTTP://127.0.0.1:${r.port}/hook,${r.url}`,
      ALARM_WEBHOOK_SECRET: SECRET,
    }).dashboard.alarms!.webhooks
    const d = dispatcher({ ...config, retryMs: 10 })
    await d.start()
    const deliveries = await raise(d)
    d.enqueue(deliveries)
    await eventually(async () => (r.hits.length >= 1 ? true : undefined))
    await new Promise((res) => setTimeout(res, 200))
    // Two deliveries of one event would carry two ids: the receiver could not tell them for repeats.
    expect(r.hits).toHaveLength(1)
  })

  it('sends a delivery stored as due far ahead (the clock was set back) now, without overflowing its timer', async () => {
    const warnings: string[] = []
    const onWarning = (w: Error) => warnings.push(w.name)
    process.on('warning', onWarning)
    try {
      const r = await receiver()
      const config = webhookConfig([r.url])
      const first = dispatcher(config)
      const [delivery] = await raise(first)
      // Retried at a time when the clock ran 40 days ahead (a board without a real-time clock), then put right.
      await store.updateDelivery({
        ...delivery!,
        attempts: 1,
        lastError: 'HTTP 500',
        nextAttemptAt: Date.now() + 40 * 86_400_000,
      })
      await first.start()
      expect(await settled(delivery!)).toMatchObject({ status: 'delivered', attempts: 2 })
      expect(r.hits).toHaveLength(1)
    } finally {
      process.off('warning', onWarning)
    }
    expect(warnings).not.toContain('TimeoutOverflowWarning')
  })
})

describe('alarm webhooks through the API', () => {
  it('does not show a password or API key that an earlier version stored in a delivery error', async () => {
    const dataDir = mkdtempSync(join(tmpdir(), 'alarms-webhooks-api-'))
    const now = Date.now()
    const a = alarm(now)
    {
      const old = await AlarmStore.open(join(dataDir, 'alarms.duckdb'))
      const url = 'https://gateway:pa55word@gw.example/hook?apikey=k3y-of-the-gateway'
      await old.saveMany([
        {
          alarm: { ...a, state: 'cleared', clearedAt: now, clearedBy: 'system' },
          transition: {
            alarmId: a.id,
            seq: 1,
            at: now,
            actor: 'system',
            action: 'raised',
            fromState: null,
            toState: 'raised',
            comment: null,
            detail: null,
          },
          deliveries: [
            {
              id: '3f1d2c4b-0000-4000-8000-000000000001',
              alarmId: a.id,
              transitionSeq: 1,
              url,
              event: 'alarm.raised',
              body: '{}',
              status: 'failed',
              attempts: 8,
              lastError: `TypeError: Request cannot be constructed from a URL that includes credentials: ${url}`,
              lastStatusCode: null,
              nextAttemptAt: now,
              createdAt: now,
              deliveredAt: null,
            },
          ],
          insert: true,
        },
      ])
      await old.close()
    }
    const platform = await startTestPlatform({ dataDir })
    try {
      const res = await platform.api<{ deliveries: { url: string; lastError: string }[] }>(
        'GET',
        `/api/v1/alarms/${a.id}`,
      )
      expect(res.status).toBe(200)
      expect(res.body.deliveries[0]!.lastError).toBe(
        'TypeError: Request cannot be constructed from a URL that includes credentials: https://gw.example/hook?…',
      )
      expect(JSON.stringify(res.body)).not.toContain('pa55word')
      expect(JSON.stringify(res.body)).not.toContain('k3y-of-the-gateway')
    } finally {
      await platform.close()
      rmSync(dataDir, { recursive: true, force: true })
    }
  })

  it("shows an alarm's deliveries without the webhook URL's password or query", async () => {
    const r = await startReceiver((_n, req, res) =>
      res.writeHead(req.headers.authorization === `Basic ${btoa('gateway:pa55word')}` ? 200 : 401).end(),
    )
    // Delivered means the receiver took the Basic credentials.
    const platform = await startTestPlatform({
      env: {
        ALARM_EVAL_INTERVAL_MS: '50',
        ALARM_MIN_DURATION_MS: '100',
        ALARM_WEBHOOK_URLS: `http://gateway:pa55word@127.0.0.1:${r.port}/hook?apikey=k3y-of-the-gateway`,
        ALARM_WEBHOOK_SECRET: SECRET,
      },
    })
    try {
      const secret = await registerDevice(platform, RIVER_DEVICE)
      const client = await connectDevice(platform.mqttUrl, RIVER_DEVICE.id, secret)
      await publishQos1(
        client,
        `devices/${RIVER_DEVICE.id}/telemetry`,
        JSON.stringify({ v: 1, ts: Date.now(), seq: 1, waterLevel: 210 }),
      )
      client.end(true)
      const detail = await eventually(async () => {
        const list = await platform.api<{ alarms: { id: string }[] }>('GET', '/api/v1/alarms?type=river')
        const id = list.body.alarms[0]?.id
        if (id === undefined) return undefined
        const d = await platform.api<{ deliveries: { url: string; status: string }[] }>(
          'GET',
          `/api/v1/alarms/${id}`,
        )
        return d.body.deliveries[0]?.status === 'delivered' ? d.body : undefined
      })
      expect(detail.deliveries[0]!.url).toBe(`http://127.0.0.1:${r.port}/hook?…`)
      expect(JSON.stringify(detail)).not.toContain('pa55word')
      expect(JSON.stringify(detail)).not.toContain('k3y-of-the-gateway')
    } finally {
      await platform.close()
      await r.close()
    }
  }, 30_000)
})
