import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import fc from 'fast-check'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { z } from 'zod'
import { computeOccupancy } from '../dashboard-api/aggregates/occupancy.ts'
import { riverThresholds } from '../dashboard-api/aggregates/river-status.ts'
import { RULE_DEFAULTS } from '../dashboard-api/alarms/rules.ts'
import { defineFleet } from '../device-sim/index.ts'
import { DEVICE_KINDS, type DeviceKind } from '../firmware-contracts/index.ts'
import { type Device, DeviceRegistry, type NewDevice, NewDeviceSchema } from '../ingest/registry.ts'
import { RIVER_DEVICE } from './helpers/platform.ts'

/** A registry call's failure, whether its input check throws at once or its promise rejects. */
async function failure(call: () => Promise<unknown>): Promise<Error> {
  try {
    await call()
  } catch (err) {
    return err as Error
  }
  throw new Error('expected the registry to refuse this')
}

/** A refusal as the REST API words it (400 bad_request): zod's issues, each with the path it is at. */
function worded(err: Error): string {
  expect(err).toBeInstanceOf(z.ZodError)
  return z.prettifyError(err as z.ZodError)
}

describe('registry input checks on every path (not only the REST route)', () => {
  let dir: string
  let registry: DeviceRegistry
  let stored: Device

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'registry-validation-'))
    registry = await DeviceRegistry.open({ path: join(dir, 'r.duckdb'), key: Buffer.alloc(32, 5) })
    stored = (await registry.register({ ...RIVER_DEVICE }, 'test')).device
  })
  afterAll(async () => {
    await registry?.close()
    rmSync(dir, { recursive: true, force: true })
  })

  describe('district and regency (tags of every reading)', () => {
    // The stores refuse every reading of a device tagged with such a name, so none of its data would be kept.
    it.each([
      ['district', 'Denpasar Barat\\', 'has a backslash before'],
      ['district', 'Denpasar\\ Barat', 'has a backslash before'],
      ['district', 'Denpasar\nBarat', 'contains a control character'],
      ['regency', 'Kota\u0000Denpasar', 'contains a control character'],
      ['regency', 'Kota \ud800', 'is not well-formed Unicode'],
    ] as const)(
      'refuses %s %j when called directly, as the simulator and tools do',
      async (field, value, why) => {
        const id = 'tag-river-001'
        const registered = await failure(() =>
          registry.register({ ...RIVER_DEVICE, id, [field]: value } as NewDevice, 'simulator'),
        )
        expect(registered.message).toContain(why)
        expect(registered.message).toContain(field)
        expect(registry.get(id)).toBeUndefined()

        const updated = await failure(() => registry.update(RIVER_DEVICE.id, { [field]: value }, 'tool'))
        expect(updated.message).toContain(why)
        expect(registry.get(RIVER_DEVICE.id)).toEqual(stored)
      },
    )

    it('still takes names with a backslash inside a word, accents and spaces around them (trimmed)', async () => {
      const { device } = await registry.register(
        { ...RIVER_DEVICE, id: 'tag-river-002', district: '  Kuta\\Utara ', regency: 'Kabupatén Badung' },
        'test',
      )
      expect(device).toMatchObject({ district: 'Kuta\\Utara', regency: 'Kabupatén Badung' })
    })
  })

  describe('thresholds the aggregator and the alarm rules can use', () => {
    const LEVELS = { waspada: 150, siaga: 200, awas: 250 }
    const { thresholds: _, ...place } = RIVER_DEVICE
    const device = (kind: DeviceKind, id: string, thresholds?: Record<string, number>): NewDevice => ({
      ...place,
      id,
      kind,
      ...(thresholds !== undefined && { thresholds }),
    })
    let n = 0
    const nextId = (kind: DeviceKind) => `thr-${kind.split('-')[0]}-${String(++n).padStart(3, '0')}`

    // Each of these was stored, and the aggregator or the alarm rules then passed over it without a word:
    // no river status and no river or rise alarm, no occupancy, or an alarm that raised on everything or
    // never cleared.
    it.each([
      ['river-level', { waspada: 200, siaga: 150, awas: 250 }, 'siaga'],
      ['river-level', { waspada: 150, siaga: 250, awas: 200 }, 'awas'],
      ['river-level', { waspada: 150 }, 'siaga'],
      ['river-level', { waspada: 150, siaga: 200 }, 'awas'],
      ['river-level', { siaga: 200, awas: 250 }, 'waspada'],
      ['river-level', { Waspada: 150, siaga: 200, awas: 250 }, 'Waspada'],
      ['river-level', { ...LEVELS, capacity: 800 }, 'capacity'],
      ['river-level', { riseCmPerHour: 20 }, 'riseCmPerHour'],
      ['river-level', { ...LEVELS, riseCmPerHour: 0 }, 'riseCmPerHour'],
      ['river-level', { ...LEVELS, riseBandCmPerHour: 30 }, 'riseBandCmPerHour'],
      ['crowd-counter', { capacity: 0 }, 'capacity'],
      ['crowd-counter', { capacity: -800 }, 'capacity'],
      ['crowd-counter', { occupancyAlarmRatio: 0.9 }, 'occupancyAlarmRatio'],
      ['crowd-counter', { capacity: 800, occupancyAlarmRatio: 0 }, 'occupancyAlarmRatio'],
      ['crowd-counter', { capacity: 800, occupancyBandRatio: 1 }, 'occupancyBandRatio'],
      ['crowd-counter', { waspada: 150, siaga: 200, awas: 250 }, 'waspada'],
      ['air-quality', { ispuAlarm: 0 }, 'ispuAlarm'],
      ['air-quality', { ispuAlarm: 501 }, 'ispuAlarm'],
      ['air-quality', { ispuAlarm: 8 }, 'ispuAlarm'],
      ['air-quality', { ispuAlarm: 150, ispuBand: -1 }, 'ispuBand'],
      ['rain-gauge', { batteryLow: 100 }, 'batteryLow'],
      ['rain-gauge', { batteryLow: 90, batteryBand: 10 }, 'batteryBand'],
      ['rain-gauge', { completenessMin: 0 }, 'completenessMin'],
      ['rain-gauge', { completenessMin: 1.2 }, 'completenessMin'],
      ['rain-gauge', { completenessMin: 0.9, completenessBand: 0.2 }, 'completenessBand'],
      ['rain-gauge', { capacity: 10 }, 'capacity'],
    ] as const)('refuses a %s with %j, naming %s', async (kind, thresholds, key) => {
      const id = nextId(kind)
      const message = worded(
        await failure(() => registry.register(device(kind, id, thresholds), 'simulator')),
      )
      expect(message).toContain(`→ at thresholds.${key}`)
      expect(message.split('\n')[0]).toContain(`✖ ${key} `)
      expect(registry.get(id)).toBeUndefined()
    })

    it('refuses the same at update time and leaves the record as it was', async () => {
      const market = (
        await registry.register(device('crowd-counter', nextId('crowd-counter'), { capacity: 800 }), 't')
      ).device
      for (const [id, thresholds, key] of [
        [RIVER_DEVICE.id, { waspada: 200, siaga: 150, awas: 250 }, 'siaga'],
        [RIVER_DEVICE.id, { waspada: 150, siaga: 200 }, 'awas'],
        [market.id, { capacity: 0 }, 'capacity'],
        [market.id, { occupancyBandRatio: 0.1 }, 'occupancyBandRatio'],
      ] as const) {
        const before = registry.get(id)
        const message = worded(await failure(() => registry.update(id, { thresholds }, 'tool')))
        expect(message).toContain(`→ at thresholds.${key}`)
        expect(registry.get(id)).toBe(before)
      }
      expect((await registry.auditLog({ deviceId: market.id })).map((a) => a.action)).toEqual(['register'])
    })

    it('takes a river gauge without levels (set later), and levels cleared again', async () => {
      const bare = await registry.register(device('river-level', nextId('river-level')), 't')
      expect(bare.device.thresholds).toBeUndefined()
      const set = await registry.update(bare.device.id, { thresholds: { ...LEVELS, riseCmPerHour: 25 } }, 't')
      expect(set.thresholds).toEqual({ ...LEVELS, riseCmPerHour: 25 })
      expect((await registry.update(bare.device.id, { thresholds: null }, 't')).thresholds).toBeUndefined()
      const flat = await registry.register(
        device('river-level', nextId('river-level'), { waspada: 200, siaga: 200, awas: 200 }),
        't',
      )
      expect(flat.device.thresholds).toEqual({ waspada: 200, siaga: 200, awas: 200 })
      const market = await registry.register(device('crowd-counter', nextId('crowd-counter')), 't')
      expect(market.device.thresholds).toBeUndefined()
    })

    it("takes every alarm rule's override at its default, on a kind whose rule reads it", () => {
      const companions: Record<DeviceKind, Record<string, number>> = {
        'river-level': LEVELS,
        'crowd-counter': { capacity: 800 },
        'air-quality': {},
        'rain-gauge': {},
      }
      for (const [key, value] of Object.entries(RULE_DEFAULTS)) {
        const takers = DEVICE_KINDS.filter(
          (kind) =>
            NewDeviceSchema.safeParse(device(kind, 'thr-dflt-001', { ...companions[kind], [key]: value }))
              .success,
        )
        expect(takers, key).not.toEqual([])
      }
      // All of them at once, as the rules' defaults.
      const all = NewDeviceSchema.safeParse(
        device('rain-gauge', 'thr-dflt-002', {
          batteryLow: RULE_DEFAULTS.batteryLow,
          batteryBand: RULE_DEFAULTS.batteryBand,
          completenessMin: RULE_DEFAULTS.completenessMin,
          completenessBand: RULE_DEFAULTS.completenessBand,
        }),
      )
      expect(all.success).toBe(true)
    })

    it('takes the simulated fleet as defined', () => {
      for (const spec of defineFleet({ perKind: 12, seed: 1 })) {
        const r = NewDeviceSchema.safeParse(spec)
        expect(r.success, `${spec.id}: ${r.error?.message}`).toBe(true)
      }
    })

    it('takes no river levels or capacity that the aggregator then ignores', () => {
      const value = fc.oneof(
        fc.integer({ min: -600, max: 3200 }),
        fc.double({ min: -1, max: 1, noNaN: true }),
      )
      const river = fc.record(
        { waspada: value, siaga: value, awas: value, riseCmPerHour: value },
        { requiredKeys: [] },
      )
      const market = fc.record({ capacity: value, occupancyAlarmRatio: value }, { requiredKeys: [] })
      fc.assert(
        fc.property(river, market, (r, m) => {
          const gauge = NewDeviceSchema.safeParse(device('river-level', 'thr-prop-001', r))
          const levels = ['waspada', 'siaga', 'awas'].filter((k) => k in r).length
          if (gauge.success && levels > 0) expect(riverThresholds(gauge.data.thresholds)).toBeDefined()
          if (levels === 3 && riverThresholds(r) === undefined) expect(gauge.success).toBe(false)
          const counter = NewDeviceSchema.safeParse(device('crowd-counter', 'thr-prop-002', m))
          if (counter.success && 'capacity' in m)
            expect(computeOccupancy(1, counter.data.thresholds)?.capacity).toBe(m.capacity)
          if ('capacity' in m && !(m.capacity! > 0)) expect(counter.success).toBe(false)
          if (!gauge.success) for (const issue of gauge.error.issues) expect(issue.path[0]).toBe('thresholds')
        }),
        { numRuns: 500 },
      )
    })
  })
})
