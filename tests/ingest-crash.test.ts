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

const DEVICES = 20
const EVERY_MS = 40 // per device: 500 readings/s in all

/** The real entry point as its own process, so that SIGKILL is a real crash. */
function startPlatformProcess(env: Record<string, string>) {
  const p = spawnTs('platform/main.ts', [], env)
  return { child: p.child, running: p.waitFor(/is running/), output: p.output }
}

describe('crash safety', () => {
  let influx: Influxd
  let dataDir: string
  const children: ChildProcess[] = []
  const clients: MqttClient[] = []

  beforeAll(async () => {
    influx = await startInfluxd()
    dataDir = mkdtempSync(join(tmpdir(), 'crash-test-'))
  })
  afterAll(async () => {
    for (const c of clients) c.end(true)
    for (const c of children) if (c.exitCode === null) c.kill('SIGKILL')
    await influx?.stop()
    rmSync(dataDir, { recursive: true, force: true })
  })

  it('keeps every acknowledged reading through a SIGKILL mid-batch; unacknowledged ones are resent and stored once', {
    timeout: 120_000,
  }, async () => {
    const [mqttPort, httpPort] = [await freePort(), await freePort()]
    const env = {
      ...platformProcessEnv({
        mqttPort,
        httpPort,
        dataDir,
        influxUrl: influx.url,
        apiToken: TEST_API_TOKEN,
        logLevel: 'info',
      }),
      // Slow batches make it likely that the kill lands while a batch is spooled but not yet stored.
      WRITER_MAX_WAIT_MS: '200',
    }
    let platform = startPlatformProcess(env)
    children.push(platform.child)
    await platform.running

    const secrets = new Map<string, string>()
    for (let i = 0; i < DEVICES; i++) {
      const id = `dps-river-${String(100 + i)}`
      const res = await fetch(`http://127.0.0.1:${httpPort}/api/v1/devices`, {
        method: 'POST',
        headers: { authorization: `Bearer ${TEST_API_TOKEN}`, 'content-type': 'application/json' },
        body: JSON.stringify({ ...RIVER_DEVICE, id }),
      })
      expect(res.status).toBe(201)
      secrets.set(id, ((await res.json()) as { secret: string }).secret)
    }

    const acked = new Map<string, Set<number>>()
    const sent = new Map<string, number>()
    let publishing = true
    const loops: Promise<void>[] = []
    for (const [id, secret] of secrets) {
      // mqtt.js keeps unacknowledged QoS 1 messages and sends them again after it reconnects.
      const client = mqtt.connect(`mqtt://127.0.0.1:${mqttPort}`, {
        clientId: id,
        username: id,
        password: secret,
        clean: false,
        reconnectPeriod: 300,
        connectTimeout: 5000,
      })
      client.on('error', () => undefined)
      clients.push(client)
      acked.set(id, new Set())
      loops.push(
        (async () => {
          let seq = 0
          const t0 = Date.now()
          while (publishing) {
            const s = seq++
            sent.set(id, seq)
            const payload = JSON.stringify({ ts: t0 + s, seq: s, waterLevel: 100 + (s % 50) })
            client.publish(`devices/${id}/telemetry`, payload, { qos: 1 }, (err) => {
              if (!err) acked.get(id)!.add(s)
            })
            await new Promise((r) => setTimeout(r, EVERY_MS))
          }
        })(),
      )
    }

    await new Promise((r) => setTimeout(r, 4000))
    const ackedBeforeKill = [...acked.values()].reduce((n, s) => n + s.size, 0)
    expect(ackedBeforeKill).toBeGreaterThan(500)
    platform.child.kill('SIGKILL')
    await new Promise<void>((r) => platform.child.once('exit', () => r()))
    await new Promise((r) => setTimeout(r, 1000))

    platform = startPlatformProcess(env)
    children.push(platform.child)
    await platform.running
    // The kill landed between spool and store: the new process replays what the store did not confirm.
    expect(platform.output()).toMatch(/"readings":[1-9]\d*,"msg":"replaying spooled readings into the store"/)
    await new Promise((r) => setTimeout(r, 3000))
    publishing = false
    await Promise.all(loops)

    // Every message each device sent must eventually be acknowledged (resent after the restart if needed).
    const sentTotal = [...sent.values()].reduce((n, s) => n + s, 0)
    await eventually(
      async () => ([...acked.values()].reduce((n, s) => n + s.size, 0) === sentTotal ? true : undefined),
      30_000,
      200,
    )

    const stored = await eventually(
      async () => {
        const s = await storedSeqsByDevice(influx, 'river-level')
        const total = [...s.values()].reduce((n, v) => n + v.length, 0)
        return total >= sentTotal ? s : undefined
      },
      30_000,
      250,
    )
    for (const [id, seqs] of acked) {
      const have = stored.get(id) ?? []
      const missing = [...seqs].filter((s) => !have.includes(s))
      expect(missing, `acknowledged but not stored for ${id}`).toEqual([])
      // Replays overwrite (same series and timestamp): one point per seq, never two.
      expect(have.length, `points stored for ${id}`).toBe(new Set(have).size)
      expect(have.length).toBe(seqs.size)
    }
    for (const c of clients) c.end(true)
    platform.child.kill('SIGTERM')
    expect(await new Promise((r) => platform.child.once('exit', (code) => r(code)))).toBe(0)
  })
})
