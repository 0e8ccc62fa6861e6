import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { createServer } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { type Influxd, startInfluxd } from './helpers/influxd.ts'
import { connectDevice, eventually, publishQos1, RIVER_DEVICE } from './helpers/platform.ts'
import { freePort, spawnTs, type TsProcess } from './helpers/process.ts'
import { storedSeqsByDevice } from './helpers/stored.ts'

const KILL_PRELOAD = new URL('./helpers/platform-edge-kill-broker.mjs', import.meta.url).pathname

/** Resolves with the exit code, or 'hung' when the process is still running after `ms`. */
function exitWithin(p: TsProcess, ms: number): Promise<number | null | 'hung'> {
  return Promise.race([p.exited, new Promise<'hung'>((r) => setTimeout(() => r('hung'), ms).unref())])
}

describe('platform process: failures an operator meets', () => {
  let dir: string
  let influx: Influxd | undefined
  const procs: TsProcess[] = []
  const env = (extra: Record<string, string> = {}) => ({
    MQTT_HOST: '127.0.0.1',
    MQTT_PORT: '0',
    HTTP_HOST: '127.0.0.1',
    HTTP_PORT: '0',
    SIM_ENABLED: 'false',
    API_TOKEN: 'platform-edge-token-0123456789',
    DATA_DIR: join(dir, `data-${procs.length}`),
    ...extra,
  })
  const start = (e: Record<string, string>, nodeArgs: string[] = []) => {
    const p = spawnTs('platform/main.ts', [], e, nodeArgs)
    procs.push(p)
    return p
  }

  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), 'platform-edge-startup-'))
  })
  afterAll(async () => {
    for (const p of procs) if (p.child.exitCode === null) p.child.kill('SIGKILL')
    await influx?.stop()
    rmSync(dir, { recursive: true, force: true })
  })

  it('exits non-zero after its broker thread died, so that the supervisor starts it again', {
    timeout: 60_000,
  }, async () => {
    const trigger = join(dir, 'kill-broker-thread')
    const p = start(env({ KILL_WORKERS_WHEN: trigger }), ['--import', KILL_PRELOAD])
    await p.waitFor(/is running/)
    writeFileSync(trigger, '')
    const code = await exitWithin(p, 40_000)
    expect(p.output()).toMatch(/broker thread failed; readings are no longer taken/)
    // Before the fix close-with-grace's exit(0) replaced the exit code set for the failure: systemd's
    // Restart=on-failure left the platform down.
    expect(code, p.output().slice(-2000)).toBe(1)
  })

  it('starts while InfluxDB is down, spools what devices send, and stores it once InfluxDB answers', {
    timeout: 90_000,
  }, async () => {
    influx = await startInfluxd()
    await influx.halt()
    const token = 'platform-edge-token-0123456789'
    const p = start(
      env({ INFLUX_URL: influx.url, INFLUX_API: 'v1', INFLUX_DATABASE: 'city', LOG_LEVEL: 'info' }),
    )
    // Before the fix: "platform failed to start" (/ping failed) and exit 1, so a machine whose InfluxDB
    // comes up after the platform (a power cut) crash-looped into systemd's start limit.
    const [, httpUrl] = await p.waitFor(/REST API:\s+(http:\/\/\S+?)\/api\/v1/)
    expect(p.output()).toMatch(/InfluxDB is not reachable/)
    const api = (path: string, init: RequestInit = {}) =>
      fetch(`${httpUrl}${path}`, {
        ...init,
        headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
      })
    const health = (await (await api('/api/v1/health')).json()) as { status: string }
    expect(health.status).toBe('degraded')

    const res = await api('/api/v1/devices', { method: 'POST', body: JSON.stringify(RIVER_DEVICE) })
    expect(res.status).toBe(201)
    const { secret } = (await res.json()) as { secret: string }
    const [, mqttUrl] = await p.waitFor(/MQTT:\s+(mqtt:\/\/\S+)/)
    const device = await connectDevice(mqttUrl!, RIVER_DEVICE.id, secret)
    const t0 = Date.now() - 60_000
    for (let seq = 0; seq < 20; seq++)
      await publishQos1(
        device,
        `devices/${RIVER_DEVICE.id}/telemetry`,
        JSON.stringify({ ts: t0 + seq * 1000, seq, waterLevel: 120 }),
      )
    device.end(true)

    // The database does not exist yet: the writer must wait for the store to be prepared, not have its
    // writes refused (404) and dead-lettered.
    await influx.start()
    const stored = await eventually(
      async () => {
        const s = await storedSeqsByDevice(influx!, 'river-level').catch(() => undefined)
        return s && (s.get(RIVER_DEVICE.id)?.length ?? 0) >= 20 ? s : undefined
      },
      40_000,
      250,
    )
    expect([...(stored.get(RIVER_DEVICE.id) ?? [])].sort((a, b) => a - b)).toEqual(
      Array.from({ length: 20 }, (_, i) => i),
    )
    expect(p.output()).not.toMatch(/dead-lettered/)
    p.child.kill('SIGTERM')
    expect(await exitWithin(p, 30_000)).toBe(0)
  })

  it('refuses a listen address that is neither an IP address nor a host name, before any socket opens', {
    timeout: 60_000,
  }, async () => {
    for (const [variable, value] of [
      ['HTTP_HOST', '999.999.1.1'],
      ['MQTT_HOST', '\u0661\u0662'],
      ['HTTP_HOST', '-bad-.example'],
      ['MQTT_HOST', '127.0.0.1:1883'],
    ] as const) {
      const p = start(env({ [variable]: value, LOG_LEVEL: 'info' }))
      const code = await exitWithin(p, 30_000)
      // Before the fix the broker opened its MQTT socket first, and the bad name failed in getaddrinfo
      // (exit 1, ENOTFOUND, no variable named).
      expect(code, p.output().slice(-1500)).toBe(78)
      expect(p.stderr()).toMatch(new RegExp(`${variable}: expected an IP address or a host name`))
      expect(p.output()).not.toMatch(/mqtt listener|is running/)
    }
  })

  it('refuses two listeners on one port, naming both variables, before any socket opens', {
    timeout: 60_000,
  }, async () => {
    const port = String(await freePort())
    const clashes: Record<string, string>[] = [
      { MQTT_PORT: port, HTTP_PORT: port },
      { MQTT_WS_PORT: port, HTTP_PORT: port },
      { MQTT_PORT: port, MQTT_WS_PORT: port },
    ]
    for (const clash of clashes) {
      const [first, second] = Object.keys(clash)
      const p = start(env({ ...clash, LOG_LEVEL: 'info' }))
      const code = await exitWithin(p, 30_000)
      // Before the fix the broker took the port and the second listener failed with EADDRINUSE (exit 1),
      // naming no variable.
      expect(code, p.output().slice(-1500)).toBe(78)
      expect(p.stderr()).toMatch(new RegExp(`${second}: expected a port other than ${first}'s \\(${port}\\)`))
      expect(p.output()).not.toMatch(/mqtt listener|is running/)
    }
  })

  it('refuses a registry key or API token file it cannot use, naming the file, instead of starting with it', {
    timeout: 60_000,
  }, async () => {
    for (const [file, content, expected] of [
      [
        'registry.key',
        'not a hex key, edited by hand\n',
        /registry\.key.*expected at least 32 hexadecimal characters/,
      ],
      ['api-token', 'short\n', /api-token.*expected at least 16 characters/],
      // What a power cut could leave of a key written without a sync: a new key would lock every
      // registered device out, so it is refused too.
      ['registry.key', '', /registry\.key is empty: restore it from a backup/],
    ] as const) {
      // Without API_TOKEN the platform takes its token from the file.
      const e = Object.fromEntries(
        Object.entries(env({ LOG_LEVEL: 'info' })).filter(([k]) => k !== 'API_TOKEN'),
      )
      mkdirSync(e.DATA_DIR!, { recursive: true })
      writeFileSync(join(e.DATA_DIR!, file), content)
      const p = start(e)
      const code = await exitWithin(p, 30_000)
      // Before the fix the platform started: the registry hashed device secrets with Buffer.from(text, 'hex')
      // of that text (an empty key), so every device registered before was refused with no word why; a
      // five-character API token was accepted.
      expect(code, p.output().slice(-1500)).toBe(1)
      expect(p.output()).toMatch(expected)
      expect(p.output()).not.toMatch(/is running/)
    }
  })

  it('names the variable of a port another process holds', { timeout: 60_000 }, async () => {
    const squatter = createServer()
    await new Promise<void>((r) => squatter.listen(0, '127.0.0.1', r))
    const port = String((squatter.address() as { port: number }).port)
    try {
      for (const variable of ['MQTT_PORT', 'HTTP_PORT']) {
        const p = start(env({ [variable]: port, LOG_LEVEL: 'info' }))
        const code = await exitWithin(p, 30_000)
        expect(code, p.output().slice(-1500)).toBe(1)
        // Before the fix the line said only "listen EADDRINUSE: address already in use 127.0.0.1:<port>".
        expect(p.output()).toMatch(
          new RegExp(`"msg":"platform failed to start: ${variable} ${port} on 127.0.0.1 is already in use`),
        )
        expect(p.output()).not.toMatch(/is running/)
      }
    } finally {
      squatter.close()
    }
  })
})
