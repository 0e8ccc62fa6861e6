import { describe, expect, it } from 'vitest'
import { backoffMs, RULES, rulesFor, signBody } from '../dashboard-api/alarms/index.ts'
import type { DeviceLive } from '../dashboard-api/protocol.ts'
import type { Device } from '../ingest/registry.ts'

const device = (kind: Device['kind'], thresholds?: Record<string, number>): Device => ({
  id: 'x-1',
  kind,
  name: 'x',
  regency: 'r',
  district: 'd',
  latitude: 0,
  longitude: 0,
  reportingIntervalMs: 60_000,
  calibrationOffset: 0,
  ...(thresholds && { thresholds }),
  status: 'active',
  createdAt: 0,
  updatedAt: 0,
  createdBy: 'admin',
  updatedBy: 'admin',
})

const view = (over: Partial<DeviceLive>): DeviceLive => ({
  id: 'x-1',
  kind: 'air-quality',
  name: 'x',
  regency: 'r',
  district: 'd',
  latitude: 0,
  longitude: 0,
  reportingIntervalMs: 60_000,
  online: true,
  status: 'online',
  lastSeen: 1,
  lastReadingAt: 1,
  latest: { ts: 1, receivedAt: 1, seq: 1, fields: {} },
  windows: {},
  spark: null,
  ispu: null,
  river: null,
  occupancy: null,
  ...over,
})

const rule = (type: string) => RULES.find((r) => r.type === type)!

describe('alarm rules', () => {
  it('ISPU at or above Tidak Sehat, with a band to clear and the category as level', () => {
    const ispu = (value: number, category: 'sedang' | 'tidak-sehat' | 'berbahaya') =>
      view({
        ispu: { value, category, critical: 'pm25', subIndices: {}, table: 'P.14/2020', basis: 'mean-1h' },
      })
    const d = device('air-quality')
    expect(rule('ispu').observe({ view: ispu(100, 'sedang'), device: d, hour: undefined }, false)).toEqual({
      active: false,
    })
    expect(
      rule('ispu').observe({ view: ispu(101, 'tidak-sehat'), device: d, hour: undefined }, false),
    ).toMatchObject({
      active: true,
      level: 'tidak-sehat',
      priority: 'warning',
    })
    expect(
      rule('ispu').observe({ view: ispu(95, 'sedang'), device: d, hour: undefined }, true),
    ).toMatchObject({ active: true })
    expect(rule('ispu').observe({ view: ispu(90, 'sedang'), device: d, hour: undefined }, true)).toEqual({
      active: false,
    })
    expect(
      rule('ispu').observe({ view: ispu(320, 'berbahaya'), device: d, hour: undefined }, false),
    ).toMatchObject({
      priority: 'emergency',
    })
    // Per-device override from the registry.
    expect(
      rule('ispu').observe(
        { view: ispu(60, 'sedang'), device: device('air-quality', { ispuAlarm: 51 }), hour: undefined },
        false,
      ),
    ).toMatchObject({ active: true })
  })

  it('battery low and fast rise, and "cannot tell" without data', () => {
    const d = device('river-level', { batteryLow: 15 })
    const withBattery = (battery: number) =>
      view({ latest: { ts: 1, receivedAt: 1, seq: 1, fields: { battery } } })
    expect(
      rule('battery').observe({ view: withBattery(15), device: d, hour: undefined }, false),
    ).toMatchObject({ active: true })
    expect(
      rule('battery').observe({ view: withBattery(18), device: d, hour: undefined }, true),
    ).toMatchObject({ active: true })
    expect(rule('battery').observe({ view: withBattery(21), device: d, hour: undefined }, true)).toEqual({
      active: false,
    })
    expect(
      rule('battery').observe(
        { view: view({ latest: null, status: 'unknown' }), device: d, hour: undefined },
        true,
      ),
    ).toBe(undefined)
    const river = (rise: number | null) =>
      view({
        kind: 'river-level',
        river: {
          level: 'normal',
          jakarta: 'Siaga 4',
          waterLevel: 100,
          riseCmPerHour: rise,
          thresholds: { waspada: 150, siaga: 200, awas: 250 },
        },
      })
    expect(rule('rise').observe({ view: river(35), device: d, hour: undefined }, false)).toMatchObject({
      active: true,
      priority: 'high',
    })
    expect(rule('rise').observe({ view: river(25), device: d, hour: undefined }, false)).toEqual({
      active: false,
    })
    expect(rule('rise').observe({ view: river(25), device: d, hour: undefined }, true)).toMatchObject({
      active: true,
    })
    expect(
      rule('offline').observe({ view: view({ status: 'unknown' }), device: d, hour: undefined }, true),
    ).toBe(undefined)
    expect(
      rule('offline').observe({ view: view({ status: 'stale' }), device: d, hour: undefined }, false),
    ).toMatchObject({
      level: 'stale',
    })
  })

  it('completeness over an hour, judged only after the device has reported for most of it', () => {
    const d = device('rain-gauge')
    const v = view({ kind: 'rain-gauge' })
    expect(
      rule('completeness').observe({ view: v, device: d, hour: { count: 10, spanMs: 20 * 60_000 } }, false),
    ).toBe(undefined)
    expect(
      rule('completeness').observe({ view: v, device: d, hour: { count: 30, spanMs: 3_600_000 } }, false),
    ).toMatchObject({
      active: true,
      value: 0.5,
    })
    expect(
      rule('completeness').observe({ view: v, device: d, hour: { count: 50, spanMs: 3_600_000 } }, false),
    ).toEqual({
      active: false,
    })
    expect(
      rule('completeness').observe({ view: v, device: d, hour: { count: 50, spanMs: 3_600_000 } }, true),
    ).toMatchObject({
      active: true,
    })
  })

  it('gives each kind its rules as one array, the same on every call', () => {
    const river = rulesFor('river-level')
    expect(river.map((r) => r.type)).toEqual(
      RULES.filter((r) => r.kinds === 'all' || r.kinds.includes('river-level')).map((r) => r.type),
    )
    expect(river.some((r) => r.type === 'ispu')).toBe(false)
    // The engine keys its per-device state by this array: a new one per call would rebuild that state.
    expect(rulesFor('river-level')).toBe(river)
  })
})

describe('webhook signing and backoff', () => {
  it('signs the raw body with HMAC-SHA256 and backs off exponentially with bounded jitter', () => {
    expect(signBody('k'.repeat(16), '{"a":1}')).toMatch(/^sha256=[0-9a-f]{64}$/)
    expect(signBody('k'.repeat(16), '{"a":1}')).not.toBe(signBody('k'.repeat(16), '{"a":2}'))
    expect(backoffMs(100, 1, () => 0)).toBe(50)
    expect(backoffMs(100, 1, () => 1)).toBe(100)
    expect(backoffMs(100, 4, () => 1)).toBe(800)
    expect(backoffMs(100, 40, () => 1)).toBe(600_000)
  })
})
