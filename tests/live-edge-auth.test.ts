import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import WebSocket from 'ws'
import { dashboardConfigFromEnv } from '../dashboard-api/index.ts'
import { startTestPlatform, type TestPlatform } from './helpers/platform.ts'

const DISPLAY_TOKEN = 'display-token-edge-0123456789'

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

describe('live stream: display token and allowed origins (real ws clients)', () => {
  let platform: TestPlatform
  let url: string

  beforeAll(async () => {
    platform = await startTestPlatform({
      env: {
        DISPLAY_TOKEN,
        // As an operator may write them: a capital letter, a trailing slash, the scheme's default port.
        LIVE_ALLOWED_ORIGINS: 'https://Wall.Denpasar.example/, http://wall2.example:80',
      },
    })
    url = `${platform.httpUrl.replace('http', 'ws')}/api/v1/live?token=${DISPLAY_TOKEN}`
  })
  afterAll(async () => {
    await platform?.close()
  })

  it('allows the origins a browser sends for the configured ones, whatever their spelling in the setting', async () => {
    // What a browser sends for pages of those two sites.
    expect(await upgradeStatus(url, { origin: 'https://wall.denpasar.example' })).toBe(101)
    expect(await upgradeStatus(url, { origin: 'http://wall2.example' })).toBe(101)
  })

  it('refuses other origins, look-alikes and the opaque origin', async () => {
    for (const origin of [
      'https://evil.example',
      'http://wall.denpasar.example',
      'https://wall.denpasar.example.evil.example',
      'https://wall.denpasar.example:8443',
      'null',
      '',
    ]) {
      expect({ origin, status: await upgradeStatus(url, { origin }) }).toEqual({ origin, status: 403 })
    }
  })

  it('takes the display token from the query only, compared exactly', async () => {
    const bare = `${platform.httpUrl.replace('http', 'ws')}/api/v1/live`
    expect(await upgradeStatus(bare)).toBe(401)
    expect(await upgradeStatus(bare, { authorization: `Bearer ${DISPLAY_TOKEN}` })).toBe(401)
    expect(await upgradeStatus(`${bare}?token=${DISPLAY_TOKEN.toUpperCase()}`)).toBe(401)
    expect(await upgradeStatus(`${bare}?token=${DISPLAY_TOKEN}x`)).toBe(401)
    expect(await upgradeStatus(`${bare}?token=${DISPLAY_TOKEN}&token=${DISPLAY_TOKEN}`)).toBe(401)
    expect(await upgradeStatus(`${bare}?token=${DISPLAY_TOKEN}`)).toBe(101)
  })
})

describe('LIVE_ALLOWED_ORIGINS', () => {
  it('takes origins as browsers send them and refuses anything else at start, naming the variable', () => {
    const origins = (value: string) =>
      dashboardConfigFromEnv({ API_TOKEN: 'api-token-0123456789abcdef', LIVE_ALLOWED_ORIGINS: value })
        .allowedOrigins
    expect(origins('https://Wall.Denpasar.example/, http://wall2.example:80')).toHaveLength(2)
    // Such entries matched no browser: every display was refused, and nothing said why at start.
    for (const bad of [
      'wall.denpasar.example',
      'https://wall.example/wall',
      'ftp://wall.example',
      'null',
      '*',
    ])
      expect(() => origins(bad), bad).toThrow(/LIVE_ALLOWED_ORIGINS: expected comma-separated origins/)
  })
})
