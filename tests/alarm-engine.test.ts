import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import pino from 'pino'
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest'
import { DEFAULT_AGGREGATOR_OPTIONS } from '../dashboard-api/aggregates/aggregator.ts'
import { ALARMS_DEFAULTS } from '../dashboard-api/alarms/config.ts'
import { AlarmEngine } from '../dashboard-api/alarms/engine.ts'
import { type AlarmRecord, AlarmStore } from '../dashboard-api/alarms/store.ts'
import { WebhookDispatcher } from '../dashboard-api/alarms/webhooks.ts'
import { LiveState } from '../dashboard-api/live-state.ts'
import { PlatformBus } from '../ingest/events.ts'
import { DeviceRegistry } from '../ingest/registry.ts'

const DEVICE = 'dps-river-001'

/**
 * The engine against a real alarm store whose writes the test holds back or fails, to see what readers of
 * the open alarms get while a transition is being stored.
 */
describe('alarm engine and its store', () => {
  let dir: string
  let registry: DeviceRegistry
  let store: AlarmStore
  let engine: AlarmEngine
  let gate: { hold: Promise<void> | undefined; fail: Error | undefined }
  let alarmId: string

  beforeEach(async () => {
    dir = mkdtempSync(join(tmpdir(), 'alarm-engine-'))
    registry = await DeviceRegistry.open({ path: join(dir, 'r.duckdb'), key: Buffer.alloc(32, 3) })
    await registry.register(
      {
        id: DEVICE,
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
    store = await AlarmStore.open(join(dir, 'alarms.duckdb'))
    const now = Date.now()
    alarmId = `alm-${now.toString(36)}-0123abcd`
    const raised: AlarmRecord = {
      id: alarmId,
      deviceId: DEVICE,
      type: 'river',
      kind: 'river-level',
      name: 'Tukad Badung',
      regency: 'Kota Denpasar',
      district: 'Denpasar Barat',
      level: 'siaga',
      priority: 'high',
      value: 210,
      state: 'raised',
      raisedAt: now,
      updatedAt: now,
      slaDueAt: now + 3_600_000,
      escalatedAt: null,
      acknowledgedAt: null,
      acknowledgedBy: null,
      clearedAt: null,
      clearedBy: null,
      closedAt: null,
      closedBy: null,
    }
    await store.saveMany([
      {
        alarm: raised,
        transition: {
          alarmId,
          seq: 1,
          at: now,
          actor: 'system',
          action: 'raised',
          fromState: null,
          toState: 'raised',
          comment: null,
          detail: null,
        },
        deliveries: [],
        insert: true,
      },
    ])
    gate = { hold: undefined, fail: undefined }
    const saveMany = store.saveMany.bind(store)
    store.saveMany = async (...args) => {
      await gate.hold
      if (gate.fail) throw gate.fail
      return saveMany(...args)
    }
    const log = pino({ level: 'silent' })
    const config = { ...ALARMS_DEFAULTS, evalIntervalMs: 600_000 }
    engine = new AlarmEngine(config, {
      store,
      live: new LiveState(registry, new PlatformBus(), DEFAULT_AGGREGATOR_OPTIONS),
      registry,
      webhooks: new WebhookDispatcher(config.webhooks, store, log),
      log,
    })
    await engine.start()
  })

  afterEach(async () => {
    await engine.stop()
    await store.close()
    await registry.close()
    rmSync(dir, { recursive: true, force: true })
  })

  it('filters by kind in the query, before its limit', async () => {
    // A newer alarm of another kind: a filter applied after LIMIT 1 would find no river alarm at all.
    const newer = Date.now() + 1000
    const [raised] = await store.list({ deviceId: DEVICE, limit: 1 })
    const air: AlarmRecord = {
      ...raised!,
      id: `alm-${newer.toString(36)}-4567cdef`,
      deviceId: 'dps-air-001',
      type: 'ispu',
      kind: 'air-quality',
      raisedAt: newer,
      updatedAt: newer,
    }
    await store.saveMany([
      {
        alarm: air,
        transition: {
          alarmId: air.id,
          seq: 1,
          at: newer,
          actor: 'system',
          action: 'raised',
          fromState: null,
          toState: 'raised',
          comment: null,
          detail: null,
        },
        deliveries: [],
        insert: true,
      },
    ])
    expect((await store.list({ limit: 1 })).map((a) => a.id)).toEqual([air.id])
    expect((await store.list({ kind: 'river-level', limit: 1 })).map((a) => a.id)).toEqual([alarmId])
    expect((await store.list({ kind: 'rain-gauge', limit: 10 })).map((a) => a.id)).toEqual([])
  })

  it('shows a new state only once its transition is stored', async () => {
    let release = () => {}
    gate.hold = new Promise<void>((r) => {
      release = r
    })
    const acting = engine.act(alarmId, 'acknowledged', 'operator-wayan', 'crew on the way')
    await new Promise((r) => setTimeout(r, 50))
    // The write is held: the alarm as readers see it is still raised.
    const whileHeld = engine.openAlarms().find((a) => a.id === alarmId)?.state
    release()
    expect(whileHeld).toBe('raised')
    const { alarm, transition } = await acting
    expect(alarm.state).toBe('acknowledged')
    expect(transition.seq).toBe(2)
    expect(engine.openAlarms().find((a) => a.id === alarmId)).toMatchObject({
      state: 'acknowledged',
      acknowledgedBy: 'operator-wayan',
    })
    expect((await store.transitions(alarmId)).map((t) => [t.seq, t.action])).toEqual([
      [1, 'raised'],
      [2, 'acknowledged'],
    ])
  })

  it('refuses two changes of one alarm in one batch, storing neither', async () => {
    const [stored] = await store.list({ deviceId: DEVICE, limit: 1 })
    const change = (seq: number, state: 'acknowledged' | 'cleared') => ({
      alarm: { ...stored!, state, updatedAt: stored!.updatedAt + seq },
      transition: {
        alarmId,
        seq,
        at: stored!.updatedAt + seq,
        actor: 'system',
        action: state,
        fromState: 'raised' as const,
        toState: state,
        comment: null,
        detail: null,
      },
      deliveries: [],
      insert: false,
    })
    await expect(store.saveMany([change(2, 'acknowledged'), change(3, 'cleared')])).rejects.toThrow(
      'more than one change',
    )
    expect(await store.get(alarmId)).toMatchObject({ state: 'raised' })
    expect((await store.transitions(alarmId)).map((t) => t.seq)).toEqual([1])
  })

  it('leaves the alarm as it was when the store refuses the transition', async () => {
    gate.fail = new Error('disk full')
    await expect(engine.act(alarmId, 'acknowledged', 'operator-wayan', 'on it')).rejects.toThrow('disk full')
    expect(engine.openAlarms().find((a) => a.id === alarmId)).toMatchObject({
      state: 'raised',
      acknowledgedAt: null,
      acknowledgedBy: null,
    })
    // The next attempt numbers its transition after the last stored one.
    gate.fail = undefined
    const { transition } = await engine.act(alarmId, 'acknowledged', 'operator-wayan', 'on it')
    expect(transition.seq).toBe(2)
  })
})

/**
 * A regency-wide power or network cut: every device goes offline at once and one evaluation pass raises an
 * alarm for each. The pass stores them in a few transactions, not one per alarm, and a change the store
 * refuses does not hold back the others.
 */
describe('alarm engine in a mass outage', () => {
  const DEVICES = 600
  let dir: string
  let registry: DeviceRegistry
  let store: AlarmStore
  let engine: AlarmEngine
  let bus: PlatformBus
  let live: LiveState
  let saves: number[]
  let refuse: string | undefined
  let run = 0
  const config = { ...ALARMS_DEFAULTS, evalIntervalMs: 600_000, minDurationMs: 60_000 }

  // Registering is the slow part and no test changes the fleet: one registry for all of them.
  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'alarm-outage-'))
    registry = await DeviceRegistry.open({ path: join(dir, 'r.duckdb'), key: Buffer.alloc(32, 3) })
    for (let i = 0; i < DEVICES; i++) {
      await registry.register(
        {
          id: `bli-rain-${String(i).padStart(4, '0')}`,
          kind: 'rain-gauge',
          name: `Rain gauge ${i}`,
          regency: 'Bangli',
          district: 'Kintamani',
          latitude: -8.3,
          longitude: 115.35,
          reportingIntervalMs: 60_000,
        },
        't',
      )
    }
  }, 60_000)

  afterAll(async () => {
    await registry.close()
    rmSync(dir, { recursive: true, force: true })
  })

  beforeEach(async () => {
    store = await AlarmStore.open(join(dir, `alarms-${++run}.duckdb`))
    saves = []
    refuse = undefined
    const saveMany = store.saveMany.bind(store)
    store.saveMany = async (items) => {
      saves.push(items.length)
      if (refuse !== undefined && items.some((i) => i.alarm.deviceId === refuse))
        throw new Error('constraint violated')
      return saveMany(items)
    }
    bus = new PlatformBus()
    live = new LiveState(registry, bus, DEFAULT_AGGREGATOR_OPTIONS)
    const log = pino({ level: 'silent' })
    engine = new AlarmEngine(config, {
      store,
      live,
      registry,
      webhooks: new WebhookDispatcher(config.webhooks, store, log),
      log,
    })
    await engine.start()
  }, 60_000)

  afterEach(async () => {
    await engine.stop()
    live.close()
    await store.close()
  })

  /** What the platform's timers do: views brought up to date, then one evaluation pass. */
  async function evaluate(now: number) {
    live.refresh(now)
    await engine.evaluate(now)
  }

  /** Every device connects at t0 and drops at t0 + 1 s. */
  function outage(t0: number) {
    for (const d of registry.list())
      bus.emit('device.status', { deviceId: d.id, online: true, at: t0, source: 'connect' })
    for (const d of registry.list())
      bus.emit('device.status', { deviceId: d.id, online: false, at: t0 + 1000, source: 'disconnect' })
  }

  it('raises one offline alarm per device, stored a slice at a time', async () => {
    const t0 = Date.now()
    outage(t0)
    await evaluate(t0 + 2000)
    expect(engine.openAlarms()).toHaveLength(0)
    expect(saves).toEqual([])
    await evaluate(t0 + 2000 + config.minDurationMs)
    const open = engine.openAlarms()
    expect(open).toHaveLength(DEVICES)
    expect(new Set(open.map((a) => a.deviceId)).size).toBe(DEVICES)
    expect(open.every((a) => a.type === 'offline' && a.state === 'raised')).toBe(true)
    // A few transactions (one per slice of the fleet), not one per alarm.
    expect(saves.length).toBeLessThanOrEqual(5)
    expect(saves.reduce((a, b) => a + b, 0)).toBe(DEVICES)
    const stored = await store.list({ type: 'offline', limit: 1000 })
    expect(stored).toHaveLength(DEVICES)
    const sample = open[DEVICES - 1]!
    expect(await store.get(sample.id)).toEqual(sample)
    expect((await store.transitions(sample.id)).map((t) => [t.seq, t.action, t.toState])).toEqual([
      [1, 'raised', 'raised'],
    ])

    // Power comes back: every alarm clears in the same few transactions, and the trail continues its seqs.
    saves = []
    const t1 = t0 + 2000 + config.minDurationMs + 1000
    for (const d of registry.list())
      bus.emit('device.status', { deviceId: d.id, online: true, at: t1, source: 'connect' })
    await evaluate(t1)
    await evaluate(t1 + config.minDurationMs)
    expect(engine.openAlarms().every((a) => a.state === 'cleared')).toBe(true)
    expect(saves.length).toBeLessThanOrEqual(5)
    expect(saves.reduce((a, b) => a + b, 0)).toBe(DEVICES)
    expect((await store.list({ state: ['cleared'], limit: 1000 })).length).toBe(DEVICES)
    expect((await store.transitions(sample.id)).map((t) => [t.seq, t.action, t.toState])).toEqual([
      [1, 'raised', 'raised'],
      [2, 'cleared', 'cleared'],
    ])
    expect(await store.get(sample.id)).toMatchObject({ state: 'cleared', clearedBy: 'system' })
  }, 60_000)

  it('stores the rest when one change in the pass is refused, and raises that one on a later pass', async () => {
    const t0 = Date.now()
    const bad = registry.list()[7]!.id
    refuse = bad
    outage(t0)
    await evaluate(t0 + 2000)
    await evaluate(t0 + 2000 + config.minDurationMs)
    expect(engine.openAlarms()).toHaveLength(DEVICES - 1)
    // The refused slice is halved down to the bad change: a few more transactions, not one per alarm.
    expect(saves.length).toBeLessThan(30)
    expect(engine.openAlarms().some((a) => a.deviceId === bad)).toBe(false)
    expect(await store.list({ type: 'offline', limit: 1000 })).toHaveLength(DEVICES - 1)
    // Nothing half applied: the refused alarm is neither in memory nor in the store.
    expect(await store.list({ deviceId: bad, limit: 10 })).toEqual([])

    refuse = undefined
    await evaluate(t0 + 3000 + config.minDurationMs)
    await evaluate(t0 + 3000 + 2 * config.minDurationMs)
    expect(engine.openAlarms()).toHaveLength(DEVICES)
    expect(await store.list({ deviceId: bad, limit: 10 })).toHaveLength(1)
  }, 60_000)
})
