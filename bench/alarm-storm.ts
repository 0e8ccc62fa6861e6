// Alarm storm benchmark (`npm run bench:alarms`; `-- --quick` for a short smoke run).
//
// A regency-wide power or network cut: N registered devices (default 10,000) go offline at once, the alarm
// engine raises an `offline` alarm for each in one evaluation pass, then power comes back and it clears
// them all. Times both passes of the real engine over a real alarm store (DuckDB) and reports CPU and wall
// time per alarm and the platform thread's event-loop delay during the pass. In the same run, the
// baseline: the same engine with every change stored in its own transaction, which is what the engine
// did before it stored a pass a slice at a time. Before that, the fleet's first connection: activating
// every device at once against one request at a time. Prints one line per measurement and a final JSON line.
// Not a test: nothing here asserts a speed.
import { mkdtempSync, rmSync } from 'node:fs'
import { cpus, tmpdir } from 'node:os'
import { join } from 'node:path'
import { monitorEventLoopDelay } from 'node:perf_hooks'
import { parseArgs } from 'node:util'
import pino from 'pino'
import { DEFAULT_AGGREGATOR_OPTIONS } from '../dashboard-api/aggregates/aggregator.ts'
import { ALARMS_DEFAULTS, AlarmEngine, AlarmStore, WebhookDispatcher } from '../dashboard-api/alarms/index.ts'
import { LiveState } from '../dashboard-api/live-state.ts'
import { PlatformBus } from '../ingest/events.ts'
import { DeviceRegistry } from '../ingest/registry.ts'

const { values: flags } = parseArgs({
  options: {
    quick: { type: 'boolean', default: false },
    devices: { type: 'string' },
  },
})
const quick = flags.quick ?? false
const DEVICES = Number(flags.devices ?? (quick ? 1000 : 10_000))
if (!Number.isInteger(DEVICES) || DEVICES < 1 || DEVICES > 100_000)
  throw new Error(`bad --devices ${DEVICES}`)

const QUIET_PASSES = 20
const config = { ...ALARMS_DEFAULTS, evalIntervalMs: 3_600_000, minDurationMs: 60_000 }
const log = pino({ level: 'silent' })
const dir = mkdtempSync(join(tmpdir(), 'bench-alarms-'))

interface PassFigures {
  alarms: number
  wallMs: number
  cpuMs: number
  cpuUsPerAlarm: number
  transactions: number
  loopDelayMaxMs: number
}

interface Variant {
  raise: PassFigures
  clear: PassFigures
  quietPassCpuMs: number
}

async function run(registry: DeviceRegistry, name: string, perAlarm: boolean): Promise<Variant> {
  const store = await AlarmStore.open(join(dir, `${name}.duckdb`))
  const saveMany = store.saveMany.bind(store)
  let transactions = 0
  store.saveMany = async (items) => {
    if (!perAlarm) {
      transactions++
      return saveMany(items)
    }
    for (const item of items) {
      transactions++
      await saveMany([item])
    }
  }
  const bus = new PlatformBus()
  const live = new LiveState(registry, bus, DEFAULT_AGGREGATOR_OPTIONS)
  const engine = new AlarmEngine(config, {
    store,
    live,
    registry,
    webhooks: new WebhookDispatcher(config.webhooks, store, log),
    log,
  })
  await engine.start()
  const ids = registry.list().map((d) => d.id)
  const status = (online: boolean, at: number) => {
    for (const deviceId of ids)
      bus.emit('device.status', { deviceId, online, at, source: online ? 'connect' : 'disconnect' })
  }
  const pass = async (now: number, expectOpen: (n: number) => boolean): Promise<PassFigures> => {
    live.refresh(now)
    transactions = 0
    const delay = monitorEventLoopDelay({ resolution: 5 })
    delay.enable()
    const cpu0 = process.cpuUsage()
    const t0 = performance.now()
    await engine.evaluate(now)
    const wallMs = performance.now() - t0
    const cpu = process.cpuUsage(cpu0)
    delay.disable()
    const n = engine.openAlarms().length
    if (!expectOpen(n)) throw new Error(`${name}: unexpected ${n} open alarms`)
    const cpuMs = (cpu.user + cpu.system) / 1000
    return {
      alarms: DEVICES,
      wallMs: round(wallMs),
      cpuMs: round(cpuMs),
      cpuUsPerAlarm: round((cpuMs * 1000) / DEVICES),
      transactions,
      loopDelayMaxMs: round(delay.max / 1e6),
    }
  }
  const t0 = Date.now()
  status(true, t0)
  // The cost every second of a fleet where nothing changes: the engine's standing load.
  live.refresh(t0 + 100)
  await engine.evaluate(t0 + 100)
  // Measured once the JIT has warmed up: the engine runs every second for as long as the platform does.
  for (let i = 1; i <= QUIET_PASSES; i++) await engine.evaluate(t0 + 100 + i)
  const quiet0 = process.cpuUsage()
  for (let i = 1; i <= QUIET_PASSES; i++) await engine.evaluate(t0 + 100 + QUIET_PASSES + i)
  const quiet = process.cpuUsage(quiet0)
  const quietPassCpuMs = round((quiet.user + quiet.system) / 1000 / QUIET_PASSES)
  console.log(
    `${name.padEnd(10)} quiet: a pass over ${DEVICES} devices with nothing to change: ${quietPassCpuMs} ms CPU (after ${QUIET_PASSES} warm-up passes)`,
  )
  status(false, t0 + 1000)
  live.refresh(t0 + 2000)
  await engine.evaluate(t0 + 2000)
  const raise = await pass(t0 + 2000 + config.minDurationMs, (n) => n === DEVICES)
  const t1 = t0 + 3000 + config.minDurationMs
  status(true, t1)
  live.refresh(t1)
  await engine.evaluate(t1)
  const clear = await pass(t1 + config.minDurationMs, (n) => n === DEVICES)
  if (engine.openAlarms().some((a) => a.state !== 'cleared')) throw new Error(`${name}: alarms not cleared`)
  await engine.stop()
  live.close()
  await store.close()
  for (const [what, f] of [
    ['raise', raise],
    ['clear', clear],
  ] as const) {
    console.log(
      `${name.padEnd(10)} ${what}: ${f.alarms} alarms in ${f.transactions} transactions, ${f.wallMs} ms wall, ` +
        `${f.cpuMs} ms CPU (${f.cpuUsPerAlarm} µs/alarm), event loop blocked ≤ ${f.loopDelayMaxMs} ms`,
    )
  }
  return { raise, clear, quietPassCpuMs }
}

function round(n: number) {
  return Math.round(n * 10) / 10
}

try {
  console.log(`alarm storm: ${DEVICES} devices, ${cpus().length} cores, Node ${process.version}`)
  const registry = await DeviceRegistry.open({ path: join(dir, 'registry.duckdb'), key: Buffer.alloc(32, 7) })
  const t = performance.now()
  for (let i = 0; i < DEVICES; i++) {
    await registry.register(
      {
        id: `bench-aq-${String(i).padStart(5, '0')}`,
        kind: 'air-quality',
        name: `Air station ${i}`,
        regency: 'Lombok Tengah',
        district: 'Praya',
        latitude: -8.7,
        longitude: 116.27,
        reportingIntervalMs: 60_000,
      },
      'bench',
    )
  }
  console.log(`registered ${DEVICES} devices in ${Math.round(performance.now() - t)} ms`)
  // The fleet's first connection: the broker activates every provisioned device. Half of them one request
  // at a time (each its own transaction: the baseline), the other half all at once as the broker asks.
  const ids = registry.list().map((d) => d.id)
  const half = Math.floor(ids.length / 2)
  const activate = async (what: string, go: () => Promise<unknown>, n: number) => {
    const cpu0 = process.cpuUsage()
    const t0 = performance.now()
    await go()
    const wall = performance.now() - t0
    const cpu = process.cpuUsage(cpu0)
    const usPer = round((cpu.user + cpu.system) / n)
    console.log(`activate ${what}: ${n} devices in ${round(wall)} ms wall, ${usPer} µs CPU per device`)
    return usPer
  }
  const activateOneByOneUs = await activate(
    'one at a time',
    async () => {
      for (const id of ids.slice(0, half)) await registry.setStatus(id, 'active', 'bench')
    },
    half,
  )
  const activateAtOnceUs = await activate(
    'all at once  ',
    () => Promise.all(ids.slice(half).map((id) => registry.setStatus(id, 'active', 'bench'))),
    ids.length - half,
  )
  // Baseline first, so the batched run does not benefit from a warmer process alone; both are one run each.
  const baseline = await run(registry, 'per-alarm', true)
  const batched = await run(registry, 'batched', false)
  await registry.close()
  const speedup = (b: PassFigures, o: PassFigures) => round(b.cpuMs / o.cpuMs)
  console.log(
    JSON.stringify({
      devices: DEVICES,
      raiseCpuUsPerAlarm: batched.raise.cpuUsPerAlarm,
      baselineRaiseCpuUsPerAlarm: baseline.raise.cpuUsPerAlarm,
      raiseCpuRatio: speedup(baseline.raise, batched.raise),
      clearCpuUsPerAlarm: batched.clear.cpuUsPerAlarm,
      baselineClearCpuUsPerAlarm: baseline.clear.cpuUsPerAlarm,
      clearCpuRatio: speedup(baseline.clear, batched.clear),
      raiseWallMs: batched.raise.wallMs,
      baselineRaiseWallMs: baseline.raise.wallMs,
      quietPassCpuMs: batched.quietPassCpuMs,
      activateCpuUsPerDevice: activateAtOnceUs,
      baselineActivateCpuUsPerDevice: activateOneByOneUs,
      loopDelayMaxMs: Math.max(batched.raise.loopDelayMaxMs, batched.clear.loopDelayMaxMs),
      baselineLoopDelayMaxMs: Math.max(baseline.raise.loopDelayMaxMs, baseline.clear.loopDelayMaxMs),
    }),
  )
} finally {
  rmSync(dir, { recursive: true, force: true })
}
