import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import pino from 'pino'
import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import { DEFAULT_AGGREGATOR_OPTIONS } from '../dashboard-api/aggregates/aggregator.ts'
import { ALARMS_DEFAULTS, type AlarmsConfig } from '../dashboard-api/alarms/config.ts'
import { AlarmActionError, AlarmEngine } from '../dashboard-api/alarms/engine.ts'
import { AlarmStore } from '../dashboard-api/alarms/store.ts'
import { WebhookDispatcher } from '../dashboard-api/alarms/webhooks.ts'
import { LiveState } from '../dashboard-api/live-state.ts'
import { PlatformBus } from '../ingest/events.ts'
import { DeviceRegistry } from '../ingest/registry.ts'

const RIVER = 'dps-river-001'
const GAUGE = 'bli-rain-001'
const MIN = 1000
const SLA_TECHNICAL = 10_000
const SLA_HIGH = 5000

const config: AlarmsConfig = {
  ...ALARMS_DEFAULTS,
  evalIntervalMs: 600_000,
  minDurationMs: MIN,
  slaMs: { ...ALARMS_DEFAULTS.slaMs, high: SLA_HIGH, technical: SLA_TECHNICAL },
}

/**
 * The alarm lifecycle at its edges: the engine against a real alarm store, registry and aggregator, passes
 * driven by hand with their own clock, and the platform "restarted" by a new engine over the same file.
 */
describe('alarm lifecycle edges', () => {
  let dir: string
  let registry: DeviceRegistry
  let store: AlarmStore
  let bus: PlatformBus
  let live: LiveState
  let engine: AlarmEngine
  const log = pino({ level: 'silent' })

  function newEngine() {
    return new AlarmEngine(config, {
      store,
      live,
      registry,
      webhooks: new WebhookDispatcher(config.webhooks, store, log),
      log,
    })
  }

  /** The platform down and up again: a new engine (and aggregator, which remembers nothing) over the same file. */
  async function restart() {
    await engine.stop()
    live.close()
    await store.close()
    store = await AlarmStore.open(join(dir, 'alarms.duckdb'))
    bus = new PlatformBus()
    live = new LiveState(registry, bus, DEFAULT_AGGREGATOR_OPTIONS)
    engine = newEngine()
    await engine.start()
  }

  async function evaluate(now: number) {
    live.refresh(now)
    await engine.evaluate(now)
  }

  const actions = async (id: string) => (await store.transitions(id)).map((t) => t.action)

  beforeEach(async () => {
    dir = mkdtempSync(join(tmpdir(), 'alarms-edge-'))
    registry = await DeviceRegistry.open({ path: join(dir, 'r.duckdb'), key: Buffer.alloc(32, 5) })
    await registry.register(
      {
        id: RIVER,
        kind: 'river-level',
        name: 'Tukad Badung',
        regency: 'Kota Denpasar',
        district: 'Denpasar Barat',
        latitude: -8.65,
        longitude: 115.21,
        reportingIntervalMs: 60_000,
        thresholds: { waspada: 150, siaga: 200, awas: 250 },
      },
      't',
    )
    await registry.register(
      {
        id: GAUGE,
        kind: 'rain-gauge',
        name: 'Kintamani',
        regency: 'Bangli',
        district: 'Kintamani',
        latitude: -8.3,
        longitude: 115.35,
        reportingIntervalMs: 60_000,
      },
      't',
    )
    store = await AlarmStore.open(join(dir, 'alarms.duckdb'))
    bus = new PlatformBus()
    live = new LiveState(registry, bus, DEFAULT_AGGREGATOR_OPTIONS)
    engine = newEngine()
    await engine.start()
  })

  afterEach(async () => {
    await engine.stop()
    live.close()
    await store.close()
    await registry.close()
    rmSync(dir, { recursive: true, force: true })
  })

  /** The rain gauge connects at t0 and drops at t0 + 1 s; its offline alarm is raised at the returned time. */
  async function raiseOffline(t0: number) {
    bus.emit('device.status', { deviceId: GAUGE, online: true, at: t0, source: 'connect' })
    bus.emit('device.status', { deviceId: GAUGE, online: false, at: t0 + 1000, source: 'disconnect' })
    await evaluate(t0 + 2000)
    await evaluate(t0 + 2000 + MIN)
    const alarm = engine.openAlarms().find((a) => a.deviceId === GAUGE && a.type === 'offline')
    expect(alarm).toMatchObject({ state: 'raised', level: 'offline' })
    return { alarm: alarm!, at: t0 + 2000 + MIN }
  }

  /** The river gauge reads 210 cm (Siaga) at `t`; its river alarm is raised at the returned time. */
  async function raiseRiver(t: number) {
    bus.emit('readings.accepted', [
      {
        kind: 'river-level',
        device: RIVER,
        district: 'Denpasar Barat',
        regency: 'Kota Denpasar',
        ts: t,
        receivedAt: t,
        seq: 1,
        fields: { waterLevel: 210 },
      },
    ])
    await evaluate(t)
    await evaluate(t + MIN)
    const alarm = engine.openAlarms().find((a) => a.deviceId === RIVER && a.type === 'river')
    expect(alarm).toMatchObject({ state: 'raised', level: 'siaga', priority: 'high' })
    return { alarm: alarm!, at: t + MIN }
  }

  for (const status of ['decommissioned', 'revoked'] as const) {
    it(`clears the alarms of a device ${status} while they are open, so they can be closed and do not come back`, async () => {
      const t0 = Date.now()
      const offline = await raiseOffline(t0)
      const river = await raiseRiver(offline.at + 1000)
      // The gauge was already offline: nothing of its own tells the aggregator that it is gone.
      await registry.setStatus(GAUGE, status, 'admin', 'stolen from the pole')
      await registry.setStatus(RIVER, status, 'admin', 'stolen from the pole')
      let t = river.at + 1000
      for (let i = 0; i < 3; i++, t += MIN) await evaluate(t)
      const label = status === 'revoked' ? 'device revoked' : 'device decommissioned'
      for (const { alarm } of [offline, river]) {
        const trail = await store.transitions(alarm.id)
        expect(trail.map((x) => [x.action, x.actor, x.toState, x.comment])).toEqual([
          ['raised', 'system', 'raised', null],
          ['cleared', 'system', 'cleared', label],
        ])
        // An operator closes it; it stays closed and no new alarm is raised for the device.
        const { alarm: closed } = await engine.act(alarm.id, 'closed', 'operator-wayan', 'device removed')
        expect(closed.state).toBe('closed')
      }
      for (let i = 0; i < 3; i++, t += MIN) await evaluate(t)
      expect(engine.openAlarms()).toEqual([])
      expect(await store.list({ limit: 10 })).toHaveLength(2)
      expect(await actions(offline.alarm.id)).toEqual(['raised', 'cleared', 'closed'])
    })
  }

  it('escalates once an alarm whose SLA passed while the platform was down, on the first pass after the start', async () => {
    const { alarm, at } = await raiseRiver(Date.now())
    expect(alarm.slaDueAt).toBe(at + SLA_HIGH)
    await restart()
    const reloaded = engine.openAlarms().find((a) => a.id === alarm.id)
    expect(reloaded).toMatchObject({ state: 'raised', escalatedAt: null })
    // Down past the SLA: the first pass escalates, the next ones do not again.
    const back = alarm.slaDueAt + 60_000
    await evaluate(back)
    await evaluate(back + 1000)
    expect(await actions(alarm.id)).toEqual(['raised', 'escalated'])
    const escalated = (await store.transitions(alarm.id))[1]!
    expect(escalated.detail).toEqual({ slaMs: SLA_HIGH, overdueMs: 60_000 })
    // Down again after the escalation: not escalated twice.
    await restart()
    await evaluate(back + 120_000)
    await evaluate(back + 121_000)
    expect(await actions(alarm.id)).toEqual(['raised', 'escalated'])
    expect(engine.openAlarms().find((a) => a.id === alarm.id)).toMatchObject({ escalatedAt: back })
  })

  it('raises and clears after the minimum duration when the clock was set back meanwhile', async () => {
    const t0 = Date.now()
    bus.emit('device.status', { deviceId: GAUGE, online: true, at: t0, source: 'connect' })
    bus.emit('device.status', { deviceId: GAUGE, online: false, at: t0 + 1000, source: 'disconnect' })
    await evaluate(t0 + 2000)
    // NTP puts a clock that ran an hour ahead right: the condition has held since "the future".
    const back = t0 + 2000 - 3_600_000 + 100
    await evaluate(back)
    await evaluate(back + MIN)
    const alarm = engine.openAlarms().find((a) => a.deviceId === GAUGE && a.type === 'offline')
    expect(alarm).toMatchObject({ state: 'raised' })
    bus.emit('device.status', { deviceId: GAUGE, online: true, at: back + MIN + 100, source: 'connect' })
    await evaluate(back + MIN + 200)
    await evaluate(back + MIN + 200 - 3_600_000 + 100)
    await evaluate(back + 2 * MIN + 200 - 3_600_000 + 100)
    expect(await actions(alarm!.id)).toEqual(['raised', 'cleared'])
  })

  it('raises the offline alarm of a device in service that died while the platform was down', async () => {
    await registry.setStatus(GAUGE, 'active', 'broker')
    await restart()
    // Nothing from either device since the start: the river gauge was never commissioned, the rain gauge was.
    const start = Date.now()
    const stale = start + 3 * 60_000
    await evaluate(start + 60_000)
    await evaluate(stale - 1)
    expect(engine.openAlarms()).toEqual([])
    for (let t = stale + 1; t <= stale + 1 + MIN; t += MIN / 2) await evaluate(t)
    expect(engine.openAlarms().map((a) => [a.deviceId, a.type, a.state, a.level])).toEqual([
      [GAUGE, 'offline', 'raised', 'offline'],
    ])
    // It comes back: the alarm clears as usual.
    bus.emit('device.status', { deviceId: GAUGE, online: true, at: stale + 2 * MIN, source: 'connect' })
    await evaluate(stale + 2 * MIN + 1)
    await evaluate(stale + 3 * MIN + 1)
    expect(engine.openAlarms().map((a) => a.state)).toEqual(['cleared'])
  })

  it('does not escalate after a restart an alarm acknowledged before it', async () => {
    const { alarm } = await raiseRiver(Date.now())
    await engine.act(alarm.id, 'acknowledged', 'operator-wayan', 'crew on the way')
    await restart()
    await evaluate(alarm.slaDueAt + 60_000)
    expect(await actions(alarm.id)).toEqual(['raised', 'acknowledged'])
    // The trail continues its numbering after the restart.
    const { transition } = await engine.act(alarm.id, 'commented', 'operator-made', 'still high')
    expect(transition.seq).toBe(3)
  })

  it('takes an operator action that arrives while the engine is still loading the open alarms', async () => {
    const { alarm } = await raiseRiver(Date.now())
    await engine.stop()
    live.close()
    await store.close()
    store = await AlarmStore.open(join(dir, 'alarms.duckdb'))
    bus = new PlatformBus()
    live = new LiveState(registry, bus, DEFAULT_AGGREGATOR_OPTIONS)
    engine = newEngine()
    // The API listens before the engine has loaded the alarms of the last run (platform.ts starts it after).
    const starting = engine.start()
    const acting = engine.act(alarm.id, 'acknowledged', 'operator-wayan', 'crew on the way')
    await starting
    const { alarm: acked, transition } = await acting
    expect(acked).toMatchObject({ state: 'acknowledged', acknowledgedBy: 'operator-wayan' })
    expect(transition).toMatchObject({ seq: 2, fromState: 'raised', toState: 'acknowledged' })
    expect(engine.openAlarms().find((a) => a.id === alarm.id)?.state).toBe('acknowledged')
  })

  it('lets one of two operators acting at once win; the other gets a conflict and nothing is stored twice', async () => {
    const { alarm } = await raiseRiver(Date.now())
    const conflict = (p: Promise<unknown>) =>
      p.then(
        () => 'ok',
        (err: unknown) => (err instanceof AlarmActionError ? err.code : String(err)),
      )
    const acks = await Promise.all([
      conflict(engine.act(alarm.id, 'acknowledged', 'operator-wayan', 'mine')),
      conflict(engine.act(alarm.id, 'acknowledged', 'operator-made', 'no, mine')),
    ])
    expect(acks.sort()).toEqual(['conflict', 'ok'])
    const clears = await Promise.all([
      conflict(engine.act(alarm.id, 'cleared', 'operator-wayan', 'water down')),
      conflict(engine.act(alarm.id, 'cleared', 'operator-made', 'water down')),
    ])
    expect(clears.sort()).toEqual(['conflict', 'ok'])
    const closes = await Promise.all([
      conflict(engine.act(alarm.id, 'closed', 'operator-wayan', 'done')),
      conflict(engine.act(alarm.id, 'closed', 'operator-made', 'done')),
    ])
    expect(closes.sort()).toEqual(['conflict', 'ok'])
    const trail = await store.transitions(alarm.id)
    expect(trail.map((x) => [x.seq, x.action])).toEqual([
      [1, 'raised'],
      [2, 'acknowledged'],
      [3, 'cleared'],
      [4, 'closed'],
    ])
    expect(await store.get(alarm.id)).toMatchObject({ state: 'closed' })
  })
})
