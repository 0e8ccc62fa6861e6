import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest'
import WebSocket from 'ws'
import type { ServerMessage } from '../dashboard-api/protocol.ts'
import { eventually, openLive, startTestPlatform, type TestPlatform } from './helpers/platform.ts'

interface LiveStats {
  clients: number
}

/** A raw client that counts frames and records how the socket closed. */
async function rawClient(httpUrl: string) {
  const ws = new WebSocket(`${httpUrl.replace('http', 'ws')}/api/v1/live`)
  const frames: ServerMessage[] = []
  ws.on('message', (data) => frames.push(JSON.parse(String(data)) as ServerMessage))
  ws.on('error', () => undefined)
  const closed = new Promise<number>((r) => ws.once('close', (code) => r(code)))
  await new Promise((r) => ws.once('open', r))
  return { ws, frames, closed }
}

describe('live stream: hostile and odd client messages (real ws clients)', () => {
  let platform: TestPlatform

  beforeAll(async () => {
    platform = await startTestPlatform({ env: { LIVE_INTERVAL_MS: '100' } })
  })
  afterAll(async () => {
    await platform?.close()
  })

  it('a burst over the rate limit gets one error frame, not one per ignored message, and the client stays', async () => {
    const live = await openLive(platform.httpUrl)
    try {
      await live.waitFor((m) => m.type === 'snapshot')
      const from = live.messages.length
      // The burst allowance is 20: the next 30 are ignored, well short of a flood.
      for (let i = 0; i < 50; i++) live.ws.send(JSON.stringify({ v: 1, type: 'ping', id: `b${i}` }))
      await live.waitFor((m) => m.type === 'pong' && m.id === 'b19')
      await new Promise((r) => setTimeout(r, 300))
      const got = live.messages.slice(from)
      expect(got.filter((m) => m.type === 'error' && m.code === 'rate_limited')).toHaveLength(1)
      expect(got.filter((m) => m.type === 'pong').length).toBeGreaterThanOrEqual(20)
      expect(got.filter((m) => m.type === 'pong').length).toBeLessThan(30)
      // Once it slows down it is served again, and another run gets its own error frame.
      await new Promise((r) => setTimeout(r, 500))
      live.ws.send(JSON.stringify({ v: 1, type: 'ping', id: 'after' }))
      await live.waitFor((m) => m.type === 'pong' && m.id === 'after')
      expect(live.ws.readyState).toBe(WebSocket.OPEN)
    } finally {
      live.close()
    }
  })

  it('a client that floods messages is closed with 1008 and gets a bounded number of frames', async () => {
    const before = (await platform.api<LiveStats>('GET', '/api/v1/live/stats')).body.clients
    const flooder = await rawClient(platform.httpUrl)
    await eventually(async () => (flooder.frames.some((m) => m.type === 'snapshot') ? true : undefined))
    const from = flooder.frames.length
    // Tiny frames, each answered before with an error frame ten times its size.
    for (let i = 0; i < 5000 && flooder.ws.readyState === WebSocket.OPEN; i++) flooder.ws.send('1')
    expect(await flooder.closed).toBe(1008)
    const got = flooder.frames.slice(from)
    // At most the burst's replies plus one rate_limited frame (and a tick's delta or two).
    expect(got.filter((m) => m.type === 'error').length).toBeLessThanOrEqual(21)
    expect(got.length).toBeLessThan(40)
    await eventually(async () => {
      const s = (await platform.api<LiveStats>('GET', '/api/v1/live/stats')).body
      return s.clients === before ? true : undefined
    })
    // Others are still served.
    const other = await openLive(platform.httpUrl)
    await other.waitFor((m) => m.type === 'snapshot')
    other.close()
  })

  it('a clock set back does not rate-limit a display that sends one message', async () => {
    const live = await openLive(platform.httpUrl)
    try {
      await live.waitFor((m) => m.type === 'snapshot')
      // As NTP correcting a machine whose clock ran an hour fast: Date.now() jumps back, time goes on.
      vi.useFakeTimers({ toFake: ['Date'], shouldAdvanceTime: true })
      vi.setSystemTime(Date.now() - 3_600_000)
      live.ws.send(JSON.stringify({ v: 1, type: 'ping', id: 'after-jump' }))
      const answer = await live.waitFor(
        (m) =>
          (m.type === 'pong' && m.id === 'after-jump') || (m.type === 'error' && m.code === 'rate_limited'),
      )
      expect(answer.type).toBe('pong')
    } finally {
      vi.useRealTimers()
      live.close()
    }
  })

  it('answers messages that are not a protocol object with bad_message and keeps the socket', async () => {
    const live = await openLive(platform.httpUrl)
    try {
      await live.waitFor((m) => m.type === 'snapshot')
      const bad = [
        'null',
        '[]',
        '1',
        '"subscribe"',
        '{"v":1,"type":"ping","__proto__":{"id":"x"}}',
        '{"v":1,"type":"subscribe","scope":{"constructor":["x"]}}',
        '{"v":1,"type":"subscribe","scope":{},"extra":true}',
        JSON.stringify({
          v: 1,
          type: 'subscribe',
          scope: { device: Array.from({ length: 1001 }, () => 'a') },
        }),
      ]
      for (const text of bad) live.ws.send(text)
      await eventually(async () =>
        live.messages.filter((m) => m.type === 'error' && m.code === 'bad_message').length >= bad.length
          ? true
          : undefined,
      )
      live.ws.send(JSON.stringify({ v: 1, type: 'ping', id: 'still' }))
      await live.waitFor((m) => m.type === 'pong' && m.id === 'still')
    } finally {
      live.close()
    }
  })

  it('closes on invalid UTF-8 (1007) and on a message over 4 KiB however it is fragmented (1009)', async () => {
    const utf = await rawClient(platform.httpUrl)
    utf.ws.send(Buffer.from([0x7b, 0xff, 0xfe, 0x7d]), { binary: false })
    expect(await utf.closed).toBe(1007)

    const frag = await rawClient(platform.httpUrl)
    for (let i = 0; i < 3; i++) frag.ws.send('x'.repeat(2000), { fin: i === 2 })
    expect(await frag.closed).toBe(1009)

    // Fragments that add up to less than 4 KiB make one message.
    const ok = await rawClient(platform.httpUrl)
    const text = JSON.stringify({ v: 1, type: 'ping', id: 'fragmented' })
    ok.ws.send(text.slice(0, 10), { fin: false })
    ok.ws.send(text.slice(10), { fin: true })
    await eventually(async () =>
      ok.frames.some((m) => m.type === 'pong' && m.id === 'fragmented') ? true : undefined,
    )
    ok.ws.close()
  })
})
