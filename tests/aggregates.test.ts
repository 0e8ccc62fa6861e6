import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import fc from 'fast-check'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import {
  Aggregator,
  computeIspu,
  computeRollups,
  conditionsOf,
  ISPU_TABLES,
  ispuCategory,
  nextRiverLevel,
  RollingMetric,
  subIndex,
} from '../dashboard-api/aggregates/index.ts'
import type { Alarm, DeviceLive } from '../dashboard-api/protocol.ts'
import { PlatformBus } from '../ingest/events.ts'
import { DeviceRegistry } from '../ingest/registry.ts'
import type { StoredReading } from '../ingest/store/types.ts'

describe('ISPU (P.14/2020 break points)', () => {
  // Worked out by hand: I = (Ia - Ib) / (Xa - Xb) * (X - Xb) + Ib, rounded.
  const cases = [
    // PM2.5 15.5/55.4/150.4/250.4/500
    { p: 'pm25', c: 0, ispu: 0 },
    { p: 'pm25', c: 7.75, ispu: 25 }, // 50/15.5 * 7.75
    { p: 'pm25', c: 15.5, ispu: 50 },
    { p: 'pm25', c: 35.45, ispu: 75 }, // 50 + 50/39.9 * 19.95
    { p: 'pm25', c: 55.4, ispu: 100 },
    { p: 'pm25', c: 102.9, ispu: 150 }, // 100 + 100/95 * 47.5
    { p: 'pm25', c: 200.4, ispu: 250 },
    { p: 'pm25', c: 375.2, ispu: 400 }, // 300 + 200/249.6 * 124.8
    { p: 'pm25', c: 900, ispu: 500 }, // the scale ends at 500
    // PM10 50/150/350/420/500
    { p: 'pm10', c: 100, ispu: 75 },
    { p: 'pm10', c: 250, ispu: 150 },
    { p: 'pm10', c: 385, ispu: 250 },
    // SO2 52/180/400/800/1200
    { p: 'so2', c: 26, ispu: 25 },
    { p: 'so2', c: 116, ispu: 75 },
    { p: 'so2', c: 1000, ispu: 400 },
    // CO 4000/8000/15000/30000/45000
    { p: 'co', c: 6000, ispu: 75 },
    { p: 'co', c: 11500, ispu: 150 },
    { p: 'co', c: 22500, ispu: 250 },
    // O3 120/235/400/800/1000
    { p: 'o3', c: 177.5, ispu: 75 },
    { p: 'o3', c: 317.5, ispu: 150 },
    // NO2 80/200/1130/2260/3000
    { p: 'no2', c: 140, ispu: 75 },
    { p: 'no2', c: 665, ispu: 150 },
    { p: 'no2', c: 2630, ispu: 400 },
    // HC 45/100/215/432/648
    { p: 'hc', c: 72.5, ispu: 75 },
    { p: 'hc', c: 157.5, ispu: 150 },
    { p: 'hc', c: 540, ispu: 400 },
  ] as const
  it.each(cases)('$p at $c µg/m³ has sub-index $ispu', ({ p, c, ispu }) => {
    expect(subIndex(p, c)).toBe(ispu)
  })

  it('bands: Baik 0–50, Sedang 51–100, Tidak Sehat 101–200, Sangat Tidak Sehat 201–300, Berbahaya >300', () => {
    expect([0, 50, 51, 100, 101, 200, 201, 300, 301, 500].map(ispuCategory)).toEqual([
      'baik',
      'baik',
      'sedang',
      'sedang',
      'tidak-sehat',
      'tidak-sehat',
      'sangat-tidak-sehat',
      'sangat-tidak-sehat',
      'berbahaya',
      'berbahaya',
    ])
  })

  it('site ISPU is the highest sub-index and names the critical pollutant and the table', () => {
    const r = computeIspu({ pm25: 35.45, pm10: 250, co: 6000, o3: undefined })
    expect(r).toEqual({
      value: 150,
      category: 'tidak-sehat',
      critical: 'pm10',
      subIndices: { pm25: 75, pm10: 150, co: 75 },
      table: 'P.14/2020',
    })
    expect(computeIspu({})).toBeNull()
    expect(ISPU_TABLES['P.14/2020'].breakPoints.hc).toEqual([45, 100, 215, 432, 648])
  })
})

describe('river status with hysteresis', () => {
  const t = { waspada: 150, siaga: 200, awas: 250 }
  const walk = (levels: number[], margin = 5) => {
    let l: ReturnType<typeof nextRiverLevel> = 'normal'
    return levels.map((v) => {
      l = nextRiverLevel(l, v, t, margin)
      return l
    })
  }
  it('enters a level at its threshold and leaves it only a margin below', () => {
    expect(
      walk([100, 149.9, 150, 147, 146, 145, 144.9, 150, 199, 200, 260, 249, 246, 245, 244, 190, 120]),
    ).toEqual([
      'normal',
      'normal',
      'waspada',
      'waspada', // 147 > 150 - 5
      'waspada',
      'waspada', // exactly at the margin stays
      'normal',
      'waspada',
      'waspada',
      'siaga',
      'awas',
      'awas',
      'awas',
      'awas',
      'siaga', // below 245 - leaves awas, still above 200
      'waspada', // 190 < 200 - 5: leaves siaga, still above 150
      'normal',
    ])
  })
  it('a fall through several levels at once lands on the level the water is at', () => {
    expect(walk([300, 100])).toEqual(['awas', 'normal'])
    expect(walk([300, 197])).toEqual(['awas', 'siaga'])
  })
  it('without a margin it follows the thresholds exactly', () => {
    expect(walk([150, 149.9, 200, 199], 0)).toEqual(['waspada', 'normal', 'siaga', 'waspada'])
  })
})

describe('rolling windows', () => {
  it('gives 1-minute, 15-minute and 1-hour mean/min/max ending at the newest observation', () => {
    const m = new RollingMetric()
    const t0 = Date.UTC(2026, 0, 1, 0, 0, 0)
    // One reading a minute for 90 minutes, value = minute index.
    for (let i = 0; i < 90; i++) m.add(t0 + i * 60_000, i)
    const end = t0 + 89 * 60_000
    expect(m.window('m1', end)).toEqual({ mean: 89, min: 89, max: 89, count: 1 })
    expect(m.window('m15', end)).toEqual({ mean: 82, min: 75, max: 89, count: 15 })
    expect(m.window('h1', end)).toEqual({ mean: 59.5, min: 30, max: 89, count: 60 })
    expect(m.hour(end)).toHaveLength(60)
    expect(m.hour(end)[0]).toBe(30)
    // 1 per minute: slope 60 per hour.
    expect(m.slopePerHour(end)).toBeCloseTo(60, 6)
  })
  it('a reading older than the window reach is ignored; a late one inside it counts', () => {
    const m = new RollingMetric()
    const t0 = Date.UTC(2026, 0, 1, 0, 0, 0)
    m.add(t0 + 120 * 60_000, 10)
    m.add(t0, 1000) // two hours older: outside every window
    m.add(t0 + 119 * 60_000, 20) // late but inside
    expect(m.window('h1', t0 + 120 * 60_000)).toEqual({ mean: 15, min: 10, max: 20, count: 2 })
  })
  it('hour coverage (the incomplete-data rule) agrees with the hour window and the sparkline', () => {
    const t0 = Date.UTC(2026, 0, 1, 0, 0, 0)
    fc.assert(
      fc.property(
        fc.array(fc.integer({ min: 0, max: 180 * 60_000 }), { maxLength: 80 }),
        fc.integer({ min: 0, max: 200 * 60_000 }),
        (offsets, endOffset) => {
          const m = new RollingMetric()
          for (const o of offsets) m.add(t0 + o, 1)
          const end = t0 + endOffset
          expect(m.hourCoverage(end)).toEqual({
            count: m.window('h1', end)?.count ?? 0,
            oldest: m.hour(end).findIndex((v) => v !== null),
          })
        },
      ),
    )
    expect(new RollingMetric().hourCoverage(t0)).toEqual({ count: 0, oldest: -1 })
  })
})

describe('Aggregator on the bus', () => {
  let dir: string
  let registry: DeviceRegistry
  let bus: PlatformBus
  let agg: Aggregator
  // 45 s into a minute, a minute ago: minute buckets hold known readings whatever the wall clock.
  const now = Math.floor(Date.now() / 60_000) * 60_000 - 15_000
  const reading = (
    device: string,
    kind: StoredReading['kind'],
    ts: number,
    fields: Record<string, number>,
    seq = 1,
  ) =>
    ({
      kind,
      device,
      district: 'Denpasar Barat',
      regency: 'Kota Denpasar',
      ts,
      receivedAt: Date.now(),
      seq,
      fields,
    }) as StoredReading

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'agg-test-'))
    registry = await DeviceRegistry.open({ path: join(dir, 'r.duckdb'), key: Buffer.alloc(32, 7) })
    const base = { regency: 'Kota Denpasar', latitude: -8.65, longitude: 115.21, reportingIntervalMs: 60_000 }
    await registry.register(
      {
        ...base,
        id: 'dps-river-001',
        kind: 'river-level',
        name: 'R1',
        district: 'Denpasar Barat',
        thresholds: { waspada: 150, siaga: 200, awas: 250 },
      },
      't',
    )
    await registry.register(
      {
        ...base,
        id: 'dps-river-002',
        kind: 'river-level',
        name: 'R2',
        district: 'Denpasar Utara',
        thresholds: { waspada: 100, siaga: 200, awas: 300 },
      },
      't',
    )
    await registry.register(
      { ...base, id: 'dps-air-001', kind: 'air-quality', name: 'A1', district: 'Denpasar Barat' },
      't',
    )
    await registry.register(
      { ...base, id: 'dps-air-002', kind: 'air-quality', name: 'A2', district: 'Denpasar Utara' },
      't',
    )
    await registry.register(
      {
        ...base,
        id: 'dps-crowd-001',
        kind: 'crowd-counter',
        name: 'Pasar Badung',
        district: 'Denpasar Barat',
        thresholds: { capacity: 1000 },
      },
      't',
    )
    await registry.register(
      {
        ...base,
        id: 'dps-rain-001',
        kind: 'rain-gauge',
        name: 'Rain',
        district: 'Denpasar Barat',
        reportingIntervalMs: 1000,
      },
      't',
    )
    bus = new PlatformBus()
    agg = new Aggregator(registry, bus, { riverHysteresisCm: 5 })
  })
  afterAll(async () => {
    agg.close()
    await registry.close()
    rmSync(dir, { recursive: true, force: true })
  })

  it('keeps the newest reading as latest; a late reading goes into history only', () => {
    bus.emit('readings.accepted', [
      reading('dps-river-001', 'river-level', now - 60_000, { waterLevel: 140 }, 1),
    ])
    bus.emit('readings.accepted', [reading('dps-river-001', 'river-level', now, { waterLevel: 160 }, 3)])
    bus.emit('readings.accepted', [
      reading('dps-river-001', 'river-level', now - 30_000, { waterLevel: 100 }, 2),
    ])
    agg.refresh()
    const v = agg.view('dps-river-001')!
    expect(v.latest).toMatchObject({ seq: 3, fields: { waterLevel: 160 } })
    expect(v.windows.waterLevel!.h1).toEqual([133.33, 100, 160])
    expect(v.river).toMatchObject({ level: 'waspada', jakarta: 'Siaga 3', waterLevel: 160 })
    expect(v.status).toBe('online')
    expect(v.spark?.metric).toBe('waterLevel')
    // The newest minute holds 160 and the late 100 (30 s earlier, same minute).
    expect(v.spark?.points.at(-1)).toBe(130)
    expect(v.spark?.points.at(-2)).toBe(140)
  })

  it('steps river hysteresis reading by reading and computes the rate of rise in cm/h', () => {
    const id = 'dps-river-002'
    // +10 cm every minute over 10 minutes: 600 cm/h.
    for (let i = 0; i < 10; i++)
      bus.emit('readings.accepted', [
        reading(id, 'river-level', now - (10 - i) * 60_000, { waterLevel: 100 + 10 * i }, i),
      ])
    let v = agg.view(id)!
    expect(v.river?.level).toBe('waspada')
    expect(v.river?.riseCmPerHour).toBeCloseTo(600, 0)
    bus.emit('readings.accepted', [reading(id, 'river-level', now - 30_000, { waterLevel: 97 }, 20)])
    expect(agg.view(id)!.river?.level).toBe('waspada')
    bus.emit('readings.accepted', [reading(id, 'river-level', now, { waterLevel: 94 }, 21)])
    v = agg.view(id)!
    expect(v.river?.level).toBe('normal')
  })

  it('computes ISPU from the 1-hour means, occupancy against capacity, alarms and rollups', () => {
    bus.emit('readings.accepted', [
      reading('dps-air-001', 'air-quality', now - 20 * 60_000, { pm25: 100, pm10: 40 }),
      reading('dps-air-001', 'air-quality', now, { pm25: 105.8, pm10: 60 }),
      reading('dps-air-002', 'air-quality', now, { pm25: 10, pm10: 20 }),
      reading('dps-crowd-001', 'crowd-counter', now, { occupancy: 1100, peopleIn: 30, peopleOut: 12 }),
    ])
    const { views, alarmsChanged } = agg.refresh()
    expect(alarmsChanged).toBe(true)
    const cached = views.find((v) => v.view.id === 'dps-air-001')!
    const air = cached.view
    // mean pm25 = 102.9 -> 150 (Tidak Sehat); pm10 mean 50 -> 50.
    expect(air.ispu).toMatchObject({
      value: 150,
      category: 'tidak-sehat',
      critical: 'pm25',
      basis: 'mean-1h',
    })
    // The windows and the sparkline are in the JSON the clients get, not in the summary kept beside it.
    const full: DeviceLive = JSON.parse(cached.json)
    expect(full.windows.pm25!.m1).toEqual([105.8, 105.8, 105.8])
    expect(full.spark?.metric).toBe('pm25')
    expect(full).toEqual({ ...air, windows: full.windows, spark: full.spark })
    expect(full).toEqual(agg.view('dps-air-001'))
    expect(Object.keys(air)).not.toContain('windows')
    expect(Object.keys(air)).not.toContain('spark')
    const crowd = agg.view('dps-crowd-001')!
    expect(crowd.occupancy).toEqual({ people: 1100, capacity: 1000, ratio: 1.1 })
    expect(conditionsOf(crowd).map((c) => c.type)).toEqual(['occupancy'])

    const alarms = agg.alarms()
    expect(alarms.map((a) => a.id).sort()).toEqual([
      'dps-air-001:ispu',
      'dps-crowd-001:occupancy',
      'dps-river-001:river',
    ])
    expect(alarms.every((a) => a.source === 'derived')).toBe(true)

    const rollups = computeRollups(
      agg.all().map((c) => c.view),
      alarms,
    )
    const barat = rollups.find((r) => r.group === 'district' && r.key === 'Denpasar Barat')!
    expect(barat.worstIspu).toMatchObject({ deviceId: 'dps-air-001', value: 150 })
    expect(barat.highestRiver).toMatchObject({ deviceId: 'dps-river-001', level: 'waspada' })
    expect(barat.busiestMarket).toMatchObject({ deviceId: 'dps-crowd-001', ratio: 1.1 })
    expect(barat.alarms).toBe(3)
    const utara = rollups.find((r) => r.group === 'district' && r.key === 'Denpasar Utara')!
    expect(utara.worstIspu).toMatchObject({ deviceId: 'dps-air-002', value: 32 })
    const regency = rollups.find((r) => r.group === 'regency' && r.key === 'Kota Denpasar')!
    expect(regency.worstIspu?.deviceId).toBe('dps-air-001')
    expect(regency.highestRiver?.deviceId).toBe('dps-river-001')
    const kind = rollups.find((r) => r.group === 'kind' && r.key === 'air-quality')!
    expect(kind.devices).toBe(2)
  })

  it('marks a device stale after 3 reporting intervals without a reading, and offline on its will', async () => {
    bus.emit('readings.accepted', [reading('dps-rain-001', 'rain-gauge', Date.now(), { rainfall: 1.2 })])
    agg.refresh()
    expect(agg.view('dps-rain-001')!.status).toBe('online')
    // The rain gauge reports every second: stale after 3 s.
    const later = Date.now() + 3500
    const { views } = agg.refresh(later)
    expect(views.map((v) => v.view.id)).toContain('dps-rain-001')
    expect(agg.view('dps-rain-001', later)!.status).toBe('stale')
    expect(agg.alarms().some((a) => a.id === 'dps-rain-001:stale')).toBe(true)
    bus.emit('device.status', { deviceId: 'dps-rain-001', online: false, at: later, source: 'will' })
    agg.refresh(later)
    expect(agg.view('dps-rain-001', later)!.status).toBe('offline')
    expect(agg.alarms().some((a) => a.id === 'dps-rain-001:offline')).toBe(true)
    expect(agg.alarms().some((a) => a.id === 'dps-rain-001:stale')).toBe(false)
  })
  it('keeps the alarm list until a derived alarm or the rule list changes', () => {
    const id = 'dps-river-002'
    bus.emit('readings.accepted', [reading(id, 'river-level', now + 1000, { waterLevel: 150 }, 30)])
    agg.refresh(now + 1000)
    const first = agg.alarms()
    expect(first.map((a) => a.id)).toContain(`${id}:river`)
    agg.refresh(now + 1000)
    expect(agg.alarms()).toBe(first)

    // A rule alarm list: merged in once, and again only when the source hands out a new list.
    const ruleAlarm: Alarm = {
      ...first[0]!,
      id: 'alm-1',
      source: 'rule',
      type: 'battery',
      deviceId: 'dps-air-002',
    }
    let ruleList: Alarm[] = [ruleAlarm]
    agg.setRuleAlarms({ alarms: () => ruleList, takeChanged: () => false })
    const merged = agg.alarms()
    expect(merged).not.toBe(first)
    expect(merged.map((a) => a.id)).toEqual(expect.arrayContaining(['alm-1', `${id}:river`]))
    expect(agg.alarms()).toBe(merged)
    ruleList = []
    expect(agg.alarms().map((a) => a.id)).not.toContain('alm-1')

    // The river falls back to normal: its derived alarm leaves the list with the next refresh.
    const before = agg.alarms()
    bus.emit('readings.accepted', [reading(id, 'river-level', now + 2000, { waterLevel: 90 }, 31)])
    agg.refresh(now + 2000)
    expect(agg.alarms()).not.toBe(before)
    expect(agg.alarms().map((a) => a.id)).not.toContain(`${id}:river`)
    agg.setRuleAlarms(undefined)
  })

  it('rebuilds at most a budget of changed devices per refresh and keeps the rest for the next call', () => {
    agg.refresh(now)
    bus.emit('readings.accepted', [
      reading('dps-air-001', 'air-quality', now, { pm25: 10 }),
      reading('dps-air-002', 'air-quality', now, { pm25: 20 }),
      reading('dps-crowd-001', 'crowd-counter', now, { occupancy: 10 }),
    ])
    const first = agg.refresh(now, { budget: 2 })
    expect(first.views).toHaveLength(2)
    expect(agg.pendingChanges).toBe(1)
    const second = agg.refresh(now, { budget: 2, sweep: false })
    expect(second.views.map((v) => v.view.id)).toEqual(['dps-crowd-001'])
    expect(agg.pendingChanges).toBe(0)
  })

  it('follows registry changes of a device that sends nothing more: an edit, then its decommissioning', async () => {
    const id = 'dps-crowd-001'
    bus.emit('device.status', { deviceId: id, online: false, at: Date.now(), source: 'will' })
    agg.refresh()
    expect(agg.all().find((v) => v.view.id === id)?.view.status).toBe('offline')
    expect(agg.alarms().some((a) => a.deviceId === id && a.type === 'offline')).toBe(true)

    await registry.update(id, { name: 'Pasar Badung, pintu barat' }, 't')
    const edited = agg.refresh()
    expect(edited.views.find((v) => v.view.id === id)?.view.name).toBe('Pasar Badung, pintu barat')

    await registry.setStatus(id, 'decommissioned', 't')
    const gone = agg.refresh()
    expect(gone.removed).toContain(id)
    expect(agg.all().map((v) => v.view.id)).not.toContain(id)
    expect(agg.alarms().some((a) => a.deviceId === id)).toBe(false)
    // Reported removed once, not on every refresh after.
    expect(agg.refresh().removed).not.toContain(id)

    // The id registered again is another device, with nothing of the one before.
    await registry.register(
      {
        id,
        kind: 'rain-gauge',
        name: 'Pos hujan Badung',
        regency: 'Kota Denpasar',
        district: 'Denpasar Barat',
        latitude: -8.65,
        longitude: 115.21,
        reportingIntervalMs: 60_000,
      },
      't',
    )
    agg.refresh()
    const fresh = agg.view(id)!
    expect(fresh.kind).toBe('rain-gauge')
    expect(fresh.latest).toBeNull()
    expect(fresh.status).toBe('unknown')
  })

  it("moves a device's derived condition with the device to its new district", async () => {
    const id = 'dps-river-001'
    bus.emit('readings.accepted', [reading(id, 'river-level', Date.now(), { waterLevel: 160 }, 100)])
    agg.refresh()
    expect(agg.alarms().find((a) => a.deviceId === id && a.type === 'river')?.district).toBe(
      registry.get(id)!.district,
    )
    await registry.update(id, { district: 'Denpasar Timur' }, 't')
    agg.refresh()
    expect(agg.alarms().find((a) => a.deviceId === id && a.type === 'river')?.district).toBe('Denpasar Timur')
  })
})
