/**
 * Regenerates docs/wall-display.png, the README's picture of the wall display: starts the platform in
 * this process, registers the demo fleet, sends each device the last hour of its simulated signal (so
 * sparklines and windows are filled), runs the simulator sped up 30× from a wet-season morning when a
 * river is high, and photographs the page at 1920×1080 in headless Chromium. One rain gauge is left out
 * of the live simulator so the picture shows how stale data looks.
 *
 *   npm run docs:screenshot [-- --out docs/wall-display.png --lang en]
 */
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { pathToFileURL } from 'node:url'
import mqtt from 'mqtt'
import { pino } from 'pino'
import { defineFleet, type SimDeviceSpec, simulateSeries, startSimulator } from '../device-sim/index.ts'
import { riverSample } from '../device-sim/signals.ts'
import { loadPlatformConfig } from '../platform/config.ts'
import { type Platform, startPlatform } from '../platform/platform.ts'
import { launchChromium } from '../tests/helpers/browser.ts'

const SEED = 20261123
const HOUR = 3_600_000

/** A wet-season morning (markets busy) when the most river gauges of the fleet stand at Waspada or above. */
export function dramaticMoment(fleet: readonly SimDeviceSpec[], seed = SEED): number {
  const rivers = fleet.filter((d) => d.kind === 'river-level')
  let best = Date.UTC(2026, 0, 15, 0, 0)
  let bestScore = -1
  for (let day = 0; day < 45; day++) {
    for (let step = 0; step < 8; step++) {
      // 07:00–10:30 WITA = 23:00–02:30 UTC of the day before.
      const t = Date.UTC(2026, 0, 1 + day, 7, 0) - 8 * HOUR + step * 30 * 60_000
      let score = 0
      for (const r of rivers) {
        const level = riverSample({ ...r, reportingIntervalMs: 60_000 }, t, seed).waterLevel
        score += level / (r.thresholds?.waspada ?? 1)
      }
      if (score > bestScore) {
        bestScore = score
        best = t
      }
    }
  }
  return best
}

export interface WallDemo {
  readonly platform: Platform
  readonly wallUrl: string
  readonly staleDeviceId: string
  readonly liveDeviceIds: readonly string[]
  stop(): Promise<void>
}

/** The platform with a sped-up simulated fleet and an hour of history; for the screenshot and the browser test. */
export async function startWallDemo(
  options: { perKind?: number; dataDir?: string; httpPort?: number } = {},
): Promise<WallDemo> {
  const dataDir = options.dataDir ?? mkdtempSync(join(tmpdir(), 'wall-demo-'))
  const config = loadPlatformConfig({
    MQTT_HOST: '127.0.0.1',
    MQTT_PORT: '0',
    HTTP_HOST: '127.0.0.1',
    HTTP_PORT: String(options.httpPort ?? 0),
    DATA_DIR: dataDir,
    SIM_ENABLED: 'false',
    LOG_LEVEL: 'silent',
    LIVE_INTERVAL_MS: '250',
    WRITER_MAX_WAIT_MS: '20',
  })
  const platform = await startPlatform(config, pino({ level: 'silent' }))
  const intervalMs = 2000
  const fleet = defineFleet({ perKind: options.perKind ?? 3, seed: SEED }).map((s) => ({
    ...s,
    reportingIntervalMs: intervalMs,
  }))
  const signalStart = dramaticMoment(fleet)
  const wallNow = Date.now()
  const devices = []
  for (const spec of fleet) {
    const { secret } = await platform.registry.register(spec, 'screenshot')
    devices.push({ ...spec, secret })
  }
  const stale = devices.find((d) => d.kind === 'rain-gauge')!
  // The stale gauge stays connected but silent: online, no readings, so stale after 3 intervals.
  let staleClient: mqtt.MqttClient | undefined
  // The last hour, one reading a minute, stamped in wall-clock time.
  await Promise.all(
    devices.map(async (d) => {
      const series = simulateSeries(d, {
        from: signalStart - 59 * 60_000,
        to: signalStart - 60_000,
        intervalMs: 60_000,
        seed: SEED,
        firstSeq: 1_000_000,
      })
      const readings = series.map((r) => ({ ts: wallNow - (signalStart - r.ts), seq: r.seq, ...r.metrics }))
      const client = await mqtt.connectAsync(platform.mqttUrl, {
        clientId: d.id,
        username: d.id,
        password: d.secret,
        reconnectPeriod: 0,
      })
      await client.publishAsync(`devices/${d.id}/telemetry`, JSON.stringify({ v: 1, readings }), { qos: 1 })
      if (d.id === stale.id) staleClient = client
      else await client.endAsync()
    }),
  )
  const live = devices.filter((d) => d.id !== stale.id)
  const sim = await startSimulator({
    url: platform.mqttUrl,
    devices: live,
    seed: SEED,
    intervalMs,
    timeScale: 30,
    signalStart,
    connectJitterMs: 200,
  })
  return {
    platform,
    wallUrl: platform.wallUrl,
    staleDeviceId: stale.id,
    liveDeviceIds: live.map((d) => d.id),
    async stop() {
      await sim.stop()
      await staleClient?.endAsync()
      await platform.stop({ flushTimeoutMs: 5000 })
      if (options.dataDir === undefined) rmSync(dataDir, { recursive: true, force: true })
    },
  }
}

async function main() {
  const args = process.argv.slice(2)
  const arg = (name: string) => {
    const i = args.indexOf(`--${name}`)
    return i >= 0 ? args[i + 1] : undefined
  }
  const out = arg('out') ?? 'docs/wall-display.png'
  const lang = arg('lang') === 'en' ? 'en' : 'id'
  const demo = await startWallDemo()
  const browser = await launchChromium()
  try {
    const page = await browser.newPage({ viewport: { width: 1920, height: 1080 } })
    await page.goto(`${demo.wallUrl}${lang === 'en' ? '?lang=en' : ''}`)
    await page.waitForSelector('.conn-up', { timeout: 20_000 })
    await page
      .locator(`[data-device="${demo.staleDeviceId}"][data-status="stale"]`)
      .waitFor({ timeout: 30_000 })
    // A few sped-up minutes of signal, so the last minute of each sparkline moves.
    await page.waitForTimeout(4000)
    await page.screenshot({ path: out })
    console.log(`saved ${out}`)
  } finally {
    await browser.close()
    await demo.stop()
  }
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  main().catch((err) => {
    console.error(err)
    process.exit(1)
  })
}
