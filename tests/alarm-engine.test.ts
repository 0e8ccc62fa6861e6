import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import pino from 'pino'
import { afterEach, beforeEach, describe, expect, it } from 'vitest'
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
    await store.save(
      raised,
      {
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
      [],
      true,
    )
    gate = { hold: undefined, fail: undefined }
    const save = store.save.bind(store)
    store.save = async (...args) => {
      await gate.hold
      if (gate.fail) throw gate.fail
      return save(...args)
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
