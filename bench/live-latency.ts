/**
 * Live stream benchmark: publish-to-screen latency for 100 WebSocket displays while 1,000 simulated
 * devices send 2,000 readings/s over MQTT (QoS 1), and the server's memory. Not a test: it prints figures.
 *
 * The platform (broker, ingest, embedded store, dashboard) runs in this process; the load generator too
 * (raw sockets, device-sim/load.ts); the 100 displays run in a worker thread so that parsing their frames
 * does not share the server's event loop. Latency = display receive time - the reading's `ts` (stamped by
 * the generator when it publishes), for the reading each delta shows per device: deltas are coalesced,
 * so readings superseded within one LIVE_INTERVAL_MS tick are never shown, by design. Reference from the
 * same run: the generator's publish-to-PUBACK latency (the durable-ingest path the displays sit behind).
 *
 *   npm run bench:live [-- --devices 1000 --rate 2000 --seconds 20 --clients 100]
 */
import { mkdtempSync, rmSync } from 'node:fs'
import { availableParallelism, cpus, tmpdir } from 'node:os'
import { join } from 'node:path'
import { Worker } from 'node:worker_threads'
import { pino } from 'pino'
import { defineFleet, runLoad } from '../device-sim/index.ts'
import { loadPlatformConfig } from '../platform/config.ts'
import { startPlatform } from '../platform/platform.ts'

const args = process.argv.slice(2)
const num = (name: string, def: number) => {
  const i = args.indexOf(`--${name}`)
  const v = i >= 0 ? Number(args[i + 1]) : def
  return Number.isFinite(v) && v > 0 ? v : def
}
const DEVICES = num('devices', 1000)
const RATE = num('rate', 2000)
const SECONDS = Math.min(num('seconds', 20), 120)
const CLIENTS = Math.min(num('clients', 100), 1000)
const INTERVAL_MS = num('interval', 500)

// The displays: plain JS in a worker (ws resolved from this package), a 1 ms-bucket histogram each.
const WORKER = `
const { parentPort, workerData } = require('node:worker_threads')
const { createRequire } = require('node:module')
const WebSocket = createRequire(workerData.base)('ws')
const hist = new Uint32Array(60001)
let counting = false, frames = 0, bytes = 0, samples = 0, ready = 0, closed = 0
const sockets = []
for (let i = 0; i < workerData.clients; i++) {
  const ws = new WebSocket(workerData.url)
  sockets.push(ws)
  ws.on('open', () => ws.send(JSON.stringify({ v: 1, type: 'subscribe', scope: {} })))
  let snapshots = 0
  ws.on('message', (data) => {
    const now = Date.now()
    const s = data.toString()
    if (s.startsWith('{"v":1,"type":"snapshot"')) {
      if (++snapshots === 2) { ready++; if (ready === workerData.clients) parentPort.postMessage({ type: 'ready' }) }
      return
    }
    if (!counting || !s.startsWith('{"v":1,"type":"delta"')) return
    frames++
    bytes += s.length
    const re = /"latest":\\{"ts":(\\d+)/g
    let m
    while ((m = re.exec(s)) !== null) {
      const ms = Math.max(0, now - Number(m[1]))
      hist[Math.min(60000, ms)]++
      samples++
    }
  })
  ws.on('close', () => closed++)
  ws.on('error', () => {})
}
const q = (p) => { let seen = 0; const rank = Math.max(1, Math.ceil(p * samples)); for (let i = 0; i < hist.length; i++) { seen += hist[i]; if (seen >= rank) return i } return 60000 }
parentPort.on('message', (msg) => {
  if (msg === 'start') { counting = true; hist.fill(0); frames = 0; bytes = 0; samples = 0 }
  if (msg === 'stop') {
    counting = false
    parentPort.postMessage({ type: 'result', frames, bytes, samples, p50: q(0.5), p90: q(0.9), p99: q(0.99), max: q(1), closed })
    for (const ws of sockets) ws.terminate()
  }
})
`

async function main() {
  const dataDir = mkdtempSync(join(tmpdir(), 'bench-live-'))
  const config = loadPlatformConfig({
    MQTT_HOST: '127.0.0.1',
    MQTT_PORT: '0',
    HTTP_HOST: '127.0.0.1',
    HTTP_PORT: '0',
    DATA_DIR: dataDir,
    SIM_ENABLED: 'false',
    LOG_LEVEL: 'silent',
    LIVE_INTERVAL_MS: String(INTERVAL_MS),
  })
  const platform = await startPlatform(config, pino({ level: 'silent' }))
  const kinds = 4
  const fleet = defineFleet({ perKind: Math.ceil(DEVICES / kinds), seed: 7 }).slice(0, DEVICES)
  const devices = []
  for (const spec of fleet) {
    const { secret } = await platform.registry.register({ ...spec, reportingIntervalMs: 1000 }, 'bench')
    devices.push({ id: spec.id, kind: spec.kind, secret })
  }
  const memBefore = process.memoryUsage()

  const worker = new Worker(WORKER, {
    eval: true,
    workerData: {
      base: new URL('../package.json', import.meta.url).href,
      url: `${platform.httpUrl.replace('http', 'ws')}/api/v1/live`,
      clients: CLIENTS,
    },
  })
  const fromWorker = (type: string) =>
    new Promise<Record<string, number>>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`worker did not send ${type} within 60 s`)), 60_000)
      const on = (m: { type: string } & Record<string, number>) => {
        if (m.type !== type) return
        clearTimeout(timer)
        worker.off('message', on)
        resolve(m)
      }
      worker.on('message', on)
    })
  await fromWorker('ready')

  let peakRss = 0
  let peakHeap = 0
  const sampler = setInterval(() => {
    const m = process.memoryUsage()
    peakRss = Math.max(peakRss, m.rss)
    peakHeap = Math.max(peakHeap, m.heapUsed)
  }, 250)
  worker.postMessage('start')
  const report = await runLoad({
    url: platform.mqttUrl,
    devices,
    ratePerSec: RATE,
    durationMs: SECONDS * 1000,
    qos: 1,
  })
  // One more tick so the last readings reach the displays.
  await new Promise((r) => setTimeout(r, 2 * INTERVAL_MS))
  const resultP = fromWorker('result')
  worker.postMessage('stop')
  const screen = await resultP
  clearInterval(sampler)
  const hub = (await (
    await fetch(`${platform.httpUrl}/api/v1/live/stats`, {
      headers: { authorization: `Bearer ${platform.apiToken}` },
    })
  ).json()) as Record<string, number>
  await worker.terminate()
  await platform.stop({ flushTimeoutMs: 30_000 })
  rmSync(dataDir, { recursive: true, force: true })

  const mb = (b: number) => Math.round(b / 1024 / 1024)
  const out = {
    machine: { cpus: availableParallelism(), model: cpus()[0]?.model ?? 'unknown', node: process.version },
    setup: {
      devices: DEVICES,
      ratePerSec: RATE,
      seconds: SECONDS,
      clients: CLIENTS,
      liveIntervalMs: INTERVAL_MS,
    },
    load: {
      sent: report.sent,
      acked: report.acked,
      achievedRatePerSec: Math.round(report.achievedRatePerSec),
      pubackP50Ms: report.latency.p50Ms,
      pubackP99Ms: report.latency.p99Ms,
    },
    screen: {
      deviceUpdates: screen.samples,
      frames: screen.frames,
      mbReceived: Math.round((screen.bytes ?? 0) / 1e6),
      p50Ms: screen.p50,
      p90Ms: screen.p90,
      p99Ms: screen.p99,
      maxMs: screen.max,
      clientsClosedByServer: screen.closed,
    },
    server: {
      rssBeforeMb: mb(memBefore.rss),
      heapBeforeMb: mb(memBefore.heapUsed),
      peakRssMb: mb(peakRss),
      peakHeapMb: mb(peakHeap),
      slowDisconnects: hub.slowDisconnects,
      bufferedPeakBytes: hub.bufferedPeak,
    },
  }
  console.log(
    `machine: ${out.machine.cpus} cores (${out.machine.model}), Node ${out.machine.node}; server, load generator and displays share it`,
  )
  console.log(
    `load: ${DEVICES} devices, ${report.sent} readings in ${SECONDS} s (${out.load.achievedRatePerSec}/s), ${report.acked} acked`,
  )
  console.log(
    `reference, publish -> PUBACK: p50 ${out.load.pubackP50Ms.toFixed(1)} ms, p99 ${out.load.pubackP99Ms.toFixed(1)} ms`,
  )
  console.log(
    `publish -> screen (${CLIENTS} displays, deltas every ${INTERVAL_MS} ms): p50 ${screen.p50} ms, p90 ${screen.p90} ms, p99 ${screen.p99} ms, max ${screen.max} ms over ${screen.samples} device updates in ${screen.frames} frames (${out.screen.mbReceived} MB)`,
  )
  console.log(
    `server memory (whole process incl. displays' worker): RSS ${out.server.rssBeforeMb} MB before, peak ${out.server.peakRssMb} MB; heap ${out.server.heapBeforeMb} -> peak ${out.server.peakHeapMb} MB; slow displays cut off: ${hub.slowDisconnects}`,
  )
  console.log(JSON.stringify(out))
}

main().catch((err) => {
  console.error(err)
  process.exit(1)
})
