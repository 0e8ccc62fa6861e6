import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import WebSocket from 'ws'
import { eventually, startTestPlatform, type TestPlatform } from './helpers/platform.ts'

// Each display that stops reading may hold LIVE_MAX_BUFFERED_BYTES in the platform's process: without a
// cap on displays, anyone who can reach the stream (everyone, when DISPLAY_TOKEN is unset) could open
// enough of them to take the broker's and ingest's memory too.

function open(url: string): Promise<{ status: number; body: string; socket?: WebSocket }> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url)
    ws.once('unexpected-response', (_req, res) => {
      let body = ''
      res.on('data', (chunk: Buffer) => {
        body += chunk.toString()
      })
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }))
      res.on('error', reject)
    })
    ws.once('open', () => resolve({ status: 101, body: '', socket: ws }))
    ws.once('error', (err) => {
      if (!String(err).includes('Unexpected server response')) reject(err)
    })
  })
}

describe('live stream: at most LIVE_MAX_CLIENTS displays (real ws clients)', () => {
  let platform: TestPlatform
  let url: string
  const sockets: WebSocket[] = []

  beforeAll(async () => {
    platform = await startTestPlatform({ env: { LIVE_MAX_CLIENTS: '3' } })
    url = `${platform.httpUrl.replace('http', 'ws')}/api/v1/live`
  })
  afterAll(async () => {
    for (const s of sockets) s.terminate()
    await platform?.close()
  })

  it('refuses one more with 503 too_many_displays, and takes a display again once one has left', async () => {
    for (let i = 0; i < 3; i++) {
      const r = await open(url)
      expect(r.status).toBe(101)
      sockets.push(r.socket!)
    }
    const refused = await open(url)
    expect(refused.status).toBe(503)
    expect(JSON.parse(refused.body)).toMatchObject({ error: { code: 'too_many_displays' } })

    const leaving = sockets.pop()!
    await new Promise((resolve) => {
      leaving.once('close', resolve)
      leaving.close()
    })
    const again = await eventually(async () => {
      const r = await open(url)
      return r.status === 101 ? r.socket : undefined
    })
    sockets.push(again)
    expect(again.readyState).toBe(WebSocket.OPEN)
  })
})
