import type { ChildProcess } from 'node:child_process'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import mqtt, { type MqttClient } from 'mqtt'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { type Influxd, startInfluxd } from './helpers/influxd.ts'
import { eventually, RIVER_DEVICE, TEST_API_TOKEN } from './helpers/platform.ts'
import { freePort, platformProcessEnv, spawnTs } from './helpers/process.ts'
import { storedSeqsByDevice } from './helpers/stored.ts'

const DEVICES = 5
const EVERY_MS = 50

/** Resolves with the exit code, or 'hung' when the process is still running after `ms`. */
function exitWithin(child: ChildProcess, ms: number): Promise<number | null | 'hung'> {
  if (child.exitCode !== null) return Promise.resolve(child.exitCode)
  return new Promise((resolve) => {
    const timer = setTimeout(() => resolve('hung'), ms)
    child.once('exit', (code) => {
      clearTimeout(timer)
      resolve(code)
    })
  })
}

describe('graceful shutdown while the store does not answer', () => {
  let influx: Influxd
  let dataDir: string
  const children: ChildProcess[] = []
  const clients: MqttClient[] = []

  beforeAll(async () => {
    influx = await startInfluxd()
    dataDir = mkdtempSync(join(tmpdir(), 'platform-edge-shutdown-'))
  })
  afterAll(async () => {
    for (const c of clients) c.end(true)
    for (const c of children) if (c.exitCode === null) c.kill('SIGKILL')
    await influx?.resume().catch(() => undefined)
    await influx?.stop()
    rmSync(dataDir, { recursive: true, force: true })
  })

  it('stops within a bound, says the readings stay in the spool, and stores them after the next start', {
    timeout: 150_000,
  }, async () => {
    const [mqttPort, httpPort] = [await freePort(), await freePort()]
    const env = platformProcessEnv({
      mqttPort,
      httpPort,
      dataDir,
      influxUrl: influx.url,
      apiToken: TEST_API_TOKEN,
      logLevel: 'info',
    })
    let platform = spawnTs('platform/main.ts', [], env)
    children.push(platform.child)
    await platform.waitFor(/is running/)

    const secrets = new Map<string, string>()
    for (let i = 0; i < DEVICES; i++) {
      const id = `dps-river-${String(300 + i)}`
      const res = await fetch(`http://127.0.0.1:${httpPort}/api/v1/devices`, {
        method: 'POST',
        headers: { authorization: `Bearer ${TEST_API_TOKEN}`, 'content-type': 'application/json' },
        body: JSON.stringify({ ...RIVER_DEVICE, id }),
      })
      expect(res.status).toBe(201)
      secrets.set(id, ((await res.json()) as { secret: string }).secret)
    }

    const acked = new Map<string, Set<number>>()
    let publishing = true
    const loops: Promise<void>[] = []
    for (const [id, secret] of secrets) {
      const client = mqtt.connect(`mqtt://127.0.0.1:${mqttPort}`, {
        clientId: id,
        username: id,
        password: secret,
        reconnectPeriod: 0,
        connectTimeout: 5000,
      })
      client.on('error', () => undefined)
      clients.push(client)
      acked.set(id, new Set())
      loops.push(
        (async () => {
          let seq = 0
          const t0 = Date.now()
          while (publishing && !client.disconnected) {
            const s = seq++
            client.publish(
              `devices/${id}/telemetry`,
              JSON.stringify({ ts: t0 + s, seq: s, waterLevel: 120 }),
              { qos: 1 },
              (err) => {
                if (!err) acked.get(id)!.add(s)
              },
            )
            await new Promise((r) => setTimeout(r, EVERY_MS))
          }
        })(),
      )
    }
    await new Promise((r) => setTimeout(r, 1500))
    // InfluxDB hangs: connections are accepted and never answered, the worst case for a flush.
    await influx.pause()
    await new Promise((r) => setTimeout(r, 1500))
    platform.child.kill('SIGTERM')
    const code = await exitWithin(platform.child, 60_000)
    publishing = false
    await Promise.all(loops)
    // Before the fix the write in flight held the stop until close-with-grace's 20 s timer killed it (exit 1,
    // stores left open, a bare "killed by timeout" on stderr).
    expect(code, platform.output().slice(-2000)).toBe(0)
    expect(platform.output()).toMatch(/kept in the spool for the next start/)
    expect(platform.output()).toMatch(/stopped; every accepted reading is in the store or the spool/)
    const ackedTotal = [...acked.values()].reduce((n, s) => n + s.size, 0)
    expect(ackedTotal).toBeGreaterThan(100)

    await influx.resume()
    platform = spawnTs('platform/main.ts', [], env)
    children.push(platform.child)
    await platform.waitFor(/is running/)
    const stored = await eventually(
      async () => {
        const s = await storedSeqsByDevice(influx, 'river-level')
        const total = [...s.values()].reduce((n, v) => n + v.length, 0)
        return total >= ackedTotal ? s : undefined
      },
      30_000,
      250,
    )
    for (const [id, seqs] of acked) {
      const have = new Set(stored.get(id) ?? [])
      expect(
        [...seqs].filter((s) => !have.has(s)),
        `acknowledged but not stored for ${id}`,
      ).toEqual([])
    }
    platform.child.kill('SIGTERM')
    expect(await exitWithin(platform.child, 30_000)).toBe(0)
  })
})
