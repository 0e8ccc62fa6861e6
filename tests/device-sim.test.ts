import { spawnSync } from 'node:child_process'
import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import { CliUsageError, parseCliArgs, parseDevicesFile, selectDevices } from '../device-sim/cli-args.ts'
import {
  BUCKET_MM,
  chunkBacklog,
  clockSkewPayload,
  defineFleet,
  encodeBatch,
  encodeReading,
  FaultsSchema,
  initialSignalState,
  isCeremonyDay,
  LatencyHistogram,
  localHour,
  localMidnight,
  malformedJsonPayload,
  outOfRangePayload,
  oversizedPayload,
  REGENCY_NAMES,
  rainEventsOn,
  riverSample,
  riverThresholds,
  SeqSet,
  type SimDeviceSpec,
  SimDeviceSpecSchema,
  type SimReading,
  sampleMetrics,
  schemaViolationPayload,
  simulateSeries,
} from '../device-sim/index.ts'
import {
  DEFAULT_MAX_PAYLOAD_BYTES,
  DEVICE_KINDS,
  DeviceIdSchema,
  KIND_SPECS,
  MAX_BATCH_READINGS,
  type MetricSpec,
  validateTelemetry,
} from '../firmware-contracts/index.ts'

const HOUR = 3_600_000
const DAY = 86_400_000
/** Local (WITA) midnight starting 2025-01-06, a Monday in the wet season. */
const WET_DAY = Date.UTC(2025, 0, 6) - 8 * HOUR
/** Local midnight starting 2025-08-04, a Monday in the dry season. */
const DRY_DAY = Date.UTC(2025, 7, 4) - 8 * HOUR

function validate(kind: string, payload: string | Uint8Array, now: number) {
  return validateTelemetry(kind, payload, { now })
}

function rejectionCode(kind: string, payload: string | Uint8Array, now: number): string {
  const result = validate(kind, payload, now)
  return result.ok ? 'ok' : result.rejection.code
}

function deviceOf(kind: (typeof DEVICE_KINDS)[number], seed = 1): SimDeviceSpec {
  return defineFleet({ perKind: 1, seed, kinds: [kind] })[0]!
}

describe('defineFleet', () => {
  it('is deterministic for a seed and only moves positions with another seed', () => {
    const a = defineFleet({ perKind: 12, seed: 42 })
    const b = defineFleet({ perKind: 12, seed: 42 })
    const c = defineFleet({ perKind: 12, seed: 43 })
    expect(a).toEqual(b)
    expect(c.map((d) => d.id)).toEqual(a.map((d) => d.id))
    expect(c.map((d) => d.latitude)).not.toEqual(a.map((d) => d.latitude))
  })

  it('defines valid, unique devices in the four regencies, with alert levels on river gauges', () => {
    const fleet = defineFleet({ perKind: 25, seed: 1 })
    expect(fleet).toHaveLength(25 * DEVICE_KINDS.length)
    expect(new Set(fleet.map((d) => d.id)).size).toBe(fleet.length)
    for (const device of fleet) {
      expect(DeviceIdSchema.safeParse(device.id).success, device.id).toBe(true)
      expect(SimDeviceSpecSchema.parse(device)).toEqual(device)
      expect(REGENCY_NAMES).toContain(device.regency)
      // The islands of Bali and Lombok, nowhere else.
      expect(device.latitude).toBeGreaterThan(-9)
      expect(device.latitude).toBeLessThan(-8.1)
      expect(device.longitude).toBeGreaterThan(114.4)
      expect(device.longitude).toBeLessThan(116.6)
      if (device.kind === 'river-level') {
        const t = device.thresholds!
        expect(t.waspada).toBeLessThan(t.siaga!)
        expect(t.siaga).toBeLessThan(t.awas!)
      } else if (device.kind === 'crowd-counter') {
        // The market's capacity, so the wall display can show occupancy against it.
        expect(device.thresholds?.capacity).toBeGreaterThan(0)
      } else {
        expect(device.thresholds).toBeUndefined()
      }
    }
    expect(fleet.find((d) => d.id === 'dps-river-001')?.name).toContain('Tukad Badung')
    expect(fleet.filter((d) => d.kind === 'crowd-counter').map((d) => d.name)).toEqual(
      expect.arrayContaining([
        expect.stringContaining('Pasar Badung'),
        expect.stringContaining('Pasar Renteng'),
      ]),
    )
    const districts = new Set(fleet.map((d) => d.district))
    for (const district of [
      'Denpasar Barat',
      'Denpasar Timur',
      'Denpasar Selatan',
      'Denpasar Utara',
      'Negara',
      'Bangli',
      'Praya',
    ]) {
      expect(districts).toContain(district)
    }
  })

  it('honours kinds and perKind 0', () => {
    expect(defineFleet({ perKind: 0, seed: 1 })).toEqual([])
    const rivers = defineFleet({ perKind: 3, seed: 1, kinds: ['river-level'] })
    expect(rivers.map((d) => d.kind)).toEqual(['river-level', 'river-level', 'river-level'])
  })
})

describe('signals', () => {
  it('are deterministic for a seed', () => {
    for (const kind of DEVICE_KINDS) {
      const spec = deviceOf(kind)
      const options = { from: WET_DAY, to: WET_DAY + 6 * HOUR, seed: 9 }
      expect(simulateSeries(spec, options)).toEqual(simulateSeries(spec, options))
      expect(simulateSeries(spec, options)).not.toEqual(simulateSeries(spec, { ...options, seed: 10 }))
    }
    const spec = deviceOf('crowd-counter')
    const state = { startedAt: WET_DAY, lastAt: WET_DAY + 6 * HOUR, occupancy: 500 }
    expect(sampleMetrics(spec, WET_DAY + 6.1 * HOUR, 3, state)).toEqual(
      sampleMetrics(spec, WET_DAY + 6.1 * HOUR, 3, state),
    )
  })

  it('produce readings that all validate against the contract, for every kind, over a wet and a dry day', () => {
    const fleet = defineFleet({ perKind: 9, seed: 5 })
    let checked = 0
    for (const day of [WET_DAY, DRY_DAY]) {
      for (const spec of fleet) {
        for (const reading of simulateSeries(spec, { from: day, to: day + DAY, seed: 5 })) {
          const result = validate(spec.kind, encodeReading(reading), reading.ts)
          if (!result.ok) throw new Error(`${spec.id} at ${reading.ts}: ${result.rejection.message}`)
          checked++
        }
      }
    }
    expect(checked).toBeGreaterThan(20_000)
  })

  it('keep every metric inside its contract range for any device and time (property)', () => {
    const fleet = defineFleet({ perKind: 9, seed: 1 })
    fc.assert(
      fc.property(
        fc.integer({ min: 0, max: fleet.length - 1 }),
        fc.integer({ min: Date.UTC(2020, 0, 1), max: Date.UTC(2035, 0, 1) }),
        fc.integer(),
        (index, t, seed) => {
          const spec = fleet[index]!
          const { metrics } = sampleMetrics(spec, t, seed, initialSignalState(t - 30 * DAY))
          const specs: Record<string, MetricSpec> = KIND_SPECS[spec.kind].metrics
          for (const [name, value] of Object.entries(metrics)) {
            const m = specs[name]!
            if (!(value >= m.min && value <= m.max) || (m.integer && !Number.isInteger(value))) return false
          }
          return true
        },
      ),
      { numRuns: 2000 },
    )
  })

  it('raise a river above Waspada after storms in a multi-day wet-season run, and let it fall back', () => {
    const spec = deviceOf('river-level', 1)
    const { waspada } = riverThresholds(spec)
    const readings = simulateSeries(spec, {
      from: WET_DAY,
      to: WET_DAY + 30 * DAY,
      seed: 1,
      intervalMs: 10 * 60_000,
    })
    const levels = readings.map((r) => r.metrics.waterLevel!)
    const firstAbove = levels.findIndex((level) => level >= waspada)
    expect(firstAbove).toBeGreaterThan(0)
    const backBelow = levels.findIndex((level, i) => i > firstAbove && level < waspada)
    expect(backBelow).toBeGreaterThan(firstAbove)
    // Crossings are events, not the normal state.
    expect(levels.filter((level) => level >= waspada).length / levels.length).toBeLessThan(0.1)
    expect(Math.min(...levels)).toBeLessThan(waspada * 0.6)
  })

  it('let the river peak after the rain, with a lag', () => {
    const spec = deviceOf('river-level', 1)
    const storms = Array.from({ length: 30 }, (_, d) =>
      rainEventsOn('Kota Denpasar', Math.floor((WET_DAY + d * DAY + 8 * HOUR) / DAY), 1),
    )
      .flat()
      .sort((a, b) => b.peakMmPerHour * b.durationMs - a.peakMmPerHour * a.durationMs)
    const storm = storms[0]!
    const before = riverSample(spec, storm.start, 1).waterLevel
    const afterLag = riverSample(spec, storm.start + storm.durationMs / 2 + 1.2 * HOUR, 1).waterLevel
    const nextDay = riverSample(spec, storm.start + 30 * HOUR, 1).waterLevel
    expect(afterLag).toBeGreaterThan(before + 20)
    expect(nextDay).toBeLessThan(afterLag)
  })

  it('rain in bucket tips, mostly in wet-season afternoons', () => {
    const fleet = defineFleet({ perKind: 6, seed: 3, kinds: ['rain-gauge'] })
    let wet = 0
    let dry = 0
    let afternoon = 0
    for (const spec of fleet) {
      for (const [from, add] of [
        [WET_DAY, (mm: number) => (wet += mm)],
        [DRY_DAY, (mm: number) => (dry += mm)],
      ] as const) {
        for (const r of simulateSeries(spec, { from, to: from + 30 * DAY, seed: 3 })) {
          const mm = r.metrics.rainfall!
          expect(Math.abs(mm / BUCKET_MM - Math.round(mm / BUCKET_MM))).toBeLessThan(1e-6)
          add(mm)
          const hour = localHour(r.ts)
          if (from === WET_DAY && hour >= 13 && hour <= 22) afternoon += mm
        }
      }
    }
    expect(wet).toBeGreaterThan(3 * dry)
    expect(afternoon / wet).toBeGreaterThan(0.6)
  })

  it('count nobody in a market at night and the most people in the morning; more on ceremony days', () => {
    const spec = deviceOf('crowd-counter', 1)
    const readings = simulateSeries(spec, { from: WET_DAY, to: WET_DAY + 15 * DAY, seed: 1 })
    const peaks = new Map<number, { hour: number; occupancy: number }>()
    for (const r of readings) {
      const hour = localHour(r.ts)
      const occupancy = r.metrics.occupancy!
      expect(occupancy).toBe(r.metrics.occupancy)
      if (hour >= 22 || hour < 3.5) expect(occupancy, `at ${hour.toFixed(2)} h`).toBe(0)
      const day = Math.floor((r.ts + 8 * HOUR) / DAY)
      if (occupancy > (peaks.get(day)?.occupancy ?? -1)) peaks.set(day, { hour, occupancy })
    }
    let ceremony = 0
    let ordinary = 0
    for (const [day, peak] of peaks) {
      if (peak.occupancy === 0) continue
      expect(peak.hour).toBeGreaterThanOrEqual(5)
      expect(peak.hour).toBeLessThanOrEqual(10)
      if (isCeremonyDay(localMidnight(day) + 12 * HOUR)) ceremony = Math.max(ceremony, peak.occupancy)
      else ordinary = Math.max(ordinary, peak.occupancy)
    }
    expect(ceremony).toBeGreaterThan(ordinary * 1.3)
  })

  it('start a counter switched on while the market is open at the occupancy of one running since dawn', () => {
    const spec = deviceOf('crowd-counter', 1)
    const at = WET_DAY + 14 * HOUR + 41 * 60_000
    const sinceDawn = simulateSeries(spec, {
      from: WET_DAY + 2.5 * HOUR,
      to: at,
      seed: 1,
      intervalMs: 60_000,
    })
    const running = sinceDawn[sinceDawn.length - 1]!
    expect(running.ts).toBe(at)
    expect(running.metrics.occupancy).toBeGreaterThan(50)
    const fresh = simulateSeries(spec, { from: at, to: at + 10 * 60_000, seed: 1, intervalMs: 60_000 })
    // Not an empty market at 14:41: within a fifth of the counter that has run all day, from the first reading.
    for (const r of fresh.slice(0, 3)) {
      expect(r.metrics.occupancy).toBeGreaterThan(running.metrics.occupancy! * 0.8)
      expect(r.metrics.occupancy).toBeLessThan(running.metrics.occupancy! * 1.2)
    }
    // At night a fresh counter still starts at zero.
    const night = simulateSeries(spec, { from: WET_DAY + 23 * HOUR, to: WET_DAY + 23 * HOUR, seed: 1 })
    expect(night[0]!.metrics.occupancy).toBe(0)
  })

  it('keep occupancy the running sum of entries minus exits, never below zero', () => {
    const spec = deviceOf('crowd-counter', 2)
    const readings = simulateSeries(spec, { from: WET_DAY + 2.5 * HOUR, to: WET_DAY + 23 * HOUR, seed: 2 })
    let occupancy = 0
    for (const r of readings) {
      occupancy = Math.max(0, occupancy + r.metrics.peopleIn! - r.metrics.peopleOut!)
      expect(r.metrics.occupancy).toBe(occupancy)
    }
  })

  it('give PM2.5 traffic peaks morning and evening, and ozone at midday', () => {
    const spec = deviceOf('air-quality', 1)
    const readings = simulateSeries(spec, { from: DRY_DAY, to: DRY_DAY + 7 * DAY, seed: 1 })
    const mean = (from: number, to: number, metric: string) => {
      const values = readings
        .filter((r) => localHour(r.ts) >= from && localHour(r.ts) < to)
        .map((r) => r.metrics[metric]!)
      return values.reduce((a, b) => a + b, 0) / values.length
    }
    expect(mean(7, 9, 'pm25')).toBeGreaterThan(mean(12, 15, 'pm25') * 1.3)
    expect(mean(18, 20, 'pm25')).toBeGreaterThan(mean(12, 15, 'pm25') * 1.3)
    expect(mean(11, 14, 'o3')).toBeGreaterThan(mean(0, 4, 'o3') * 2)
    expect(mean(13, 15, 'temperature')).toBeGreaterThan(mean(4, 6, 'temperature') + 4)
    expect(mean(4, 6, 'relativeHumidity')).toBeGreaterThan(mean(13, 15, 'relativeHumidity'))
    expect(mean(7, 9, 'co')).toBeGreaterThan(mean(12, 15, 'co'))
  })
})

describe('fault payloads', () => {
  const now = WET_DAY + 10 * HOUR
  const samples: Array<{ kind: (typeof DEVICE_KINDS)[number]; reading: SimReading }> = DEVICE_KINDS.map(
    (kind) => ({
      kind,
      reading: simulateSeries(deviceOf(kind), { from: now, to: now, seed: 1, firstSeq: 41 })[0]!,
    }),
  )
  const us = Array.from({ length: 50 }, (_, i) => (i + 0.5) / 50)

  it('start from valid readings', () => {
    for (const { kind, reading } of samples)
      expect(rejectionCode(kind, encodeReading(reading), now)).toBe('ok')
  })

  it('malformedJson is always invalid_json', () => {
    for (const { kind, reading } of samples) {
      for (const u of us)
        expect(rejectionCode(kind, malformedJsonPayload(reading, u), now), `u=${u}`).toBe('invalid_json')
    }
  })

  it('schemaViolation is always schema', () => {
    for (const { kind, reading } of samples) {
      for (const u of us)
        expect(rejectionCode(kind, schemaViolationPayload(kind, reading, u), now), `u=${u}`).toBe('schema')
    }
  })

  it('outOfRange is always out_of_range', () => {
    for (const { kind, reading } of samples) {
      for (const u of us)
        expect(rejectionCode(kind, outOfRangePayload(kind, reading, u), now), `u=${u}`).toBe('out_of_range')
    }
  })

  it('clockSkew is future_timestamp ahead of the allowed skew and late data behind', () => {
    for (const { kind, reading } of samples) {
      expect(rejectionCode(kind, clockSkewPayload(reading, 10 * 60_000), reading.ts)).toBe('future_timestamp')
      expect(rejectionCode(kind, clockSkewPayload(reading, 24 * HOUR), reading.ts)).toBe('future_timestamp')
      expect(rejectionCode(kind, clockSkewPayload(reading, -HOUR), reading.ts)).toBe('ok')
    }
  })

  it('oversized is above the configured size and too_large', () => {
    for (const { kind, reading } of samples) {
      const payload = oversizedPayload(reading, 256 * 1024)
      expect(payload.byteLength).toBeGreaterThan(256 * 1024)
      expect(rejectionCode(kind, payload, now)).toBe('too_large')
    }
  })

  it('duplicate resends the identical valid reading', () => {
    for (const { kind, reading } of samples) {
      expect(encodeReading(reading)).toBe(encodeReading({ ...reading, metrics: { ...reading.metrics } }))
      const result = validate(kind, encodeReading(reading), now)
      expect(result.ok && result.readings[0]!.seq).toBe(41)
    }
  })

  it('offline backlogs go out as valid batches within the count and size limits, in order', () => {
    const spec = deviceOf('air-quality')
    const backlog = simulateSeries(spec, {
      from: WET_DAY,
      to: WET_DAY + 2 * DAY,
      seed: 1,
      intervalMs: 60_000,
    })
    expect(backlog.length).toBeGreaterThan(MAX_BATCH_READINGS)
    const chunks = chunkBacklog(backlog)
    expect(chunks.length).toBeGreaterThan(1)
    const seqs: number[] = []
    for (const chunk of chunks) {
      expect(Buffer.byteLength(chunk.payload)).toBeLessThanOrEqual(DEFAULT_MAX_PAYLOAD_BYTES)
      expect(chunk.payload.startsWith('{"v":1,"readings":[')).toBe(true)
      const result = validate(spec.kind, chunk.payload, WET_DAY + 3 * DAY)
      if (!result.ok) throw new Error(result.rejection.message)
      expect(result.readings.length).toBeLessThanOrEqual(MAX_BATCH_READINGS)
      seqs.push(...result.readings.map((r) => r.seq))
    }
    expect(seqs).toEqual(backlog.map((r) => r.seq))
    expect(encodeBatch(backlog.slice(0, 2))).toBe(chunkBacklog(backlog.slice(0, 2))[0]!.payload)
  })

  it('are all off by default', () => {
    const faults = FaultsSchema.parse({})
    expect(faults.disconnect.ratePerMin).toBe(0)
    for (const name of [
      'offline',
      'duplicate',
      'clockSkew',
      'malformedJson',
      'schemaViolation',
      'outOfRange',
      'oversized',
      'flood',
    ] as const) {
      expect(faults[name].rate).toBe(0)
    }
    expect(faults.oversized.bytes).toBe(256 * 1024)
  })
})

describe('SeqSet', () => {
  it('behaves as a set of integers, stored as ranges (property)', () => {
    fc.assert(
      fc.property(fc.array(fc.integer({ min: 0, max: 300 }), { maxLength: 400 }), (values) => {
        const set = new SeqSet()
        for (const v of values) set.add(v)
        const reference = [...new Set(values)].sort((a, b) => a - b)
        expect(set.toArray()).toEqual(reference)
        expect(set.size).toBe(reference.length)
        expect(set.max).toBe(reference.at(-1))
        for (let s = 0; s <= 301; s++) expect(set.has(s)).toBe(reference.includes(s))
        for (const [start, end] of set.ranges()) expect(start).toBeLessThanOrEqual(end)
      }),
    )
  })

  it('keeps in-order seqs in one range', () => {
    const set = new SeqSet()
    for (let s = 0; s < 100_000; s++) set.add(s)
    expect(set.ranges()).toEqual([[0, 99_999]])
    expect(set.missing(99_990, 100_001)).toEqual([100_000, 100_001])
  })
})

describe('LatencyHistogram', () => {
  it('gives percentiles within a few per cent', () => {
    const h = new LatencyHistogram()
    for (let i = 1; i <= 10_000; i++) h.record(i / 10)
    const s = h.summary()
    expect(s.count).toBe(10_000)
    expect(s.p50Ms).toBeGreaterThan(500 * 0.96)
    expect(s.p50Ms).toBeLessThanOrEqual(500)
    expect(s.p99Ms).toBeGreaterThan(990 * 0.96)
    expect(s.maxMs).toBe(1000)
    expect(s.meanMs).toBeCloseTo(500.05, 1)
  })
})

describe('cli arguments', () => {
  const usage = (argv: string[]) => {
    try {
      parseCliArgs(argv)
    } catch (err) {
      if (err instanceof CliUsageError) return err.message
      throw err
    }
    return 'accepted'
  }

  it('rejects bad flags with a clear message', () => {
    expect(usage(['--bogus'])).toMatch(/bogus/)
    expect(usage(['--url', 'mqtt://x'])).toMatch(/--devices <file> or --api <url> is required/)
    expect(usage(['--devices', 'd.json', '--fault', 'dup=0.1'])).toMatch(/unknown fault "dup"/)
    expect(usage(['--devices', 'd.json', '--fault', 'duplicate=2'])).toMatch(/0 to 1/)
    expect(usage(['--devices', 'd.json', '--interval', 'soon'])).toMatch(/--interval must be a number/)
    expect(usage(['--devices', 'd.json', '--qos', '2'])).toMatch(/--qos must be 0 or 1/)
    expect(usage(['--devices', 'd.json', '--kinds', 'river'])).toMatch(/unknown kind "river"/)
    expect(usage(['--devices', 'd.json', '--load', '--duration', '1000'])).toMatch(/--rate/)
    expect(usage(['--devices', 'd.json', '--sim-start', 'yesterday'])).toMatch(/--sim-start/)
  })

  it('parses a simulation with faults', () => {
    const command = parseCliArgs([
      '--devices',
      'd.json',
      '--url',
      'mqtt://10.0.0.5:1883',
      '--interval',
      '5000',
      '--seed',
      '7',
      '--fault',
      'duplicate=0.05',
      '--fault',
      'clock-skew=0.01',
      '--fault',
      'disconnect=0.5',
      '--clock-skew-ms=-3600000',
      '--per-kind',
      '2',
    ])
    expect(command).toMatchObject({
      mode: 'simulate',
      url: 'mqtt://10.0.0.5:1883',
      intervalMs: 5000,
      seed: 7,
      perKind: 2,
      qos: 1,
    })
    if (command.mode !== 'simulate') throw new Error('expected simulate')
    const faults = FaultsSchema.parse(command.faults)
    expect(faults.duplicate.rate).toBe(0.05)
    expect(faults.clockSkew).toEqual({ rate: 0.01, skewMs: -3_600_000 })
    expect(faults.disconnect.ratePerMin).toBe(0.5)
    expect(faults.offline.durationMs).toBe(120_000)
    expect(parseCliArgs(['--print-fleet', '--per-kind', '3'])).toEqual({
      mode: 'print-fleet',
      perKind: 3,
      seed: 1,
      kinds: [...DEVICE_KINDS],
    })
    expect(
      parseCliArgs(['--devices', 'd.json', '--load', '--rate', '2000', '--duration', '10000']),
    ).toMatchObject({
      mode: 'load',
      ratePerSec: 2000,
      durationMs: 10_000,
      payloadKind: 'device',
    })
  })

  it('reads a devices file with only id, kind and secret, and selects per kind', () => {
    const devices = parseDevicesFile(
      JSON.stringify({
        devices: [
          { id: 'bli-river-001', kind: 'river-level', secret: 's1', status: 'active' },
          {
            id: 'bli-river-002',
            kind: 'river-level',
            secret: 's2',
            thresholds: { waspada: 100, siaga: 150, awas: 200 },
          },
          { id: 'lteng-crowd-001', kind: 'crowd-counter', secret: 's3', name: 'Pasar Renteng, pintu utama' },
        ],
      }),
      'devices.json',
    )
    expect(devices[0]).toMatchObject({
      id: 'bli-river-001',
      regency: 'Bangli',
      reportingIntervalMs: 60_000,
      secret: 's1',
    })
    expect(devices[1]!.thresholds).toEqual({ waspada: 100, siaga: 150, awas: 200 })
    expect(selectDevices(devices, ['river-level', 'crowd-counter'], 1).map((d) => d.id)).toEqual([
      'bli-river-001',
      'lteng-crowd-001',
    ])
    expect(() => parseDevicesFile('[{"id":"X","kind":"river-level","secret":"s"}]', 'devices.json')).toThrow(
      /at 0\.id/,
    )
    expect(() => parseDevicesFile('nope', 'devices.json')).toThrow(/not JSON/)
  })

  it('exits 2 with a message on a bad flag', () => {
    const result = spawnSync(process.execPath, ['--import', 'tsx', 'device-sim/cli.ts', '--no-such-flag'], {
      encoding: 'utf8',
      timeout: 30_000,
    })
    expect(result.status).toBe(2)
    expect(result.stderr).toMatch(/no-such-flag/)
    expect(result.stderr).toMatch(/--help/)
  })
})
