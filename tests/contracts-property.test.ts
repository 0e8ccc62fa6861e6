import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import {
  CHANNELS,
  type Channel,
  COMMAND_NAMES,
  DEVICE_KINDS,
  DeviceIdSchema,
  type DeviceKind,
  KIND_SPECS,
  type MetricSpec,
  parseTopic,
  REJECT_REASONS,
  STATUS_REASONS,
  TimestampSchema,
  topicFor,
  validateCmd,
  validateCmdAck,
  validateConfig,
  validateStatus,
  validateTelemetry,
} from '../firmware-contracts/index.ts'

const NOW = Date.UTC(2025, 5, 1, 2, 0, 0)
const TS_MIN = TimestampSchema.minValue!
const RUNS = 2_000

// ---------------------------------------------------------------------------------------------------------
// Hostile input

const hugeNumbers = fc.constantFrom(
  '1e400',
  '-1e400',
  '1e308',
  '-1e-400',
  '9007199254740993',
  '123456789012345678901234567890',
  '-0',
  '0.0000000000000000000000001',
  '1E+2',
)

/** `{"a":{"a":...}}` or `[[[...]]]`, up to 25,000 levels: enough to overflow any recursive walk. */
const deepJson = fc
  .record({ depth: fc.integer({ min: 1, max: 25_000 }), shape: fc.constantFrom('array', 'object', 'mixed') })
  .map(({ depth, shape }) => {
    if (shape === 'array') return `${'['.repeat(depth)}${']'.repeat(depth)}`
    if (shape === 'object') return `${'{"a":'.repeat(depth)}1${'}'.repeat(depth)}`
    return `${'[{"a":'.repeat(depth)}1${'}]'.repeat(depth)}`
  })

const jsonFragment = fc.oneof(
  hugeNumbers,
  deepJson,
  fc.json({ maxDepth: 4 }),
  fc.constantFrom('null', 'true', '"x"', '[]', '{}', '"__proto__"', '{"__proto__":{"polluted":1}}'),
)

const fieldNames = fc.oneof(
  fc.constantFrom('v', 'ts', 'seq', 'readings', 'online', 'id', 'ok', 'error', 'name', 'args', 'interval'),
  fc.constantFrom('__proto__', 'constructor', 'prototype', 'toString', 'waterLevel', 'pm25', 'peopleIn'),
  fc.string({ maxLength: 12 }),
)

/** Objects whose fields hold hostile fragments, spliced as text so that huge numbers stay huge. */
const hostileObject = fc
  .array(fc.tuple(fieldNames, jsonFragment), { maxLength: 6 })
  .map((entries) => `{${entries.map(([k, v]) => `${JSON.stringify(k)}:${v}`).join(',')}}`)

const hostileBatch = fc
  .array(hostileObject, { maxLength: 5 })
  .map((readings) => `{"v":1,"readings":[${readings.join(',')}]}`)

const allCodeUnits = fc.string({
  unit: fc.integer({ min: 0, max: 0xffff }).map((c) => String.fromCharCode(c)),
})

const hostileText = fc.oneof(
  fc.string(),
  fc.string({ unit: 'binary' }),
  allCodeUnits,
  fc.json(),
  jsonFragment,
  hostileObject,
  hostileBatch,
  // A valid-looking prefix with hostile tail, and a BOM in front of anything.
  hostileObject.map((o) => `{"seq":1,"waterLevel":12,${o.slice(1)}`),
  fc.string().map((s) => `\uFEFF${s}`),
)

const hostilePayload: fc.Arbitrary<Uint8Array | string> = fc.oneof(
  hostileText,
  hostileText.map((t) => new TextEncoder().encode(t)),
  fc.uint8Array({ maxLength: 512 }),
  // Invalid UTF-8 in front of otherwise valid JSON.
  fc.uint8Array({ minLength: 1, maxLength: 4 }).map((b) => new Uint8Array([0xc3, 0x28, ...b])),
)

// Callers in JavaScript can pass anything at all.
const anyValue = fc.anything({
  withBigInt: true,
  withTypedArray: true,
  withMap: true,
  withSet: true,
  withDate: true,
})

const hostileKind = fc.oneof(
  fc.constantFrom<string>(...DEVICE_KINDS),
  fc.constantFrom('', '__proto__', 'constructor', 'toString', 'River-Level', 'river-level '),
  fc.string(),
)

const options = fc.record(
  {
    now: fc.oneof(fc.constant(NOW), fc.integer({ min: 0, max: 2 ** 45 })),
    maxPayloadBytes: fc.integer({ min: 0, max: 70_000 }),
    maxFutureSkewMs: fc.integer({ min: 0, max: 86_400_000 }),
  },
  { requiredKeys: ['now'] },
)

/** Every answer is a result: ok with data, or a rejection with a known reason code and a message. */
function expectResult(r: { ok: boolean; rejection?: { code: string; message: string } }): void {
  expect(typeof r.ok).toBe('boolean')
  if (!r.ok) {
    expect(Object.keys(REJECT_REASONS)).toContain(r.rejection?.code)
    expect(typeof r.rejection?.message).toBe('string')
  }
}

describe('validators never throw', () => {
  it('validateTelemetry on hostile payloads', () => {
    fc.assert(
      fc.property(hostileKind, hostilePayload, options, (kind, payload, opts) => {
        expectResult(validateTelemetry(kind, payload, opts))
      }),
      { numRuns: RUNS },
    )
  })

  it('validateTelemetry on hostile payloads of every kind, default limits', () => {
    fc.assert(
      fc.property(fc.constantFrom(...DEVICE_KINDS), hostilePayload, (kind, payload) => {
        expectResult(validateTelemetry(kind, payload, { now: NOW }))
      }),
      { numRuns: RUNS },
    )
  })

  it('validateTelemetry on values that are not payloads at all', () => {
    fc.assert(
      fc.property(anyValue, anyValue, (kind, payload) => {
        expectResult(validateTelemetry(kind as string, payload as string, { now: NOW }))
      }),
      { numRuns: RUNS },
    )
  })

  it('validateStatus', () => {
    fc.assert(
      fc.property(fc.oneof(hostilePayload, anyValue), options, (payload, opts) => {
        expectResult(validateStatus(payload as string, opts))
      }),
      { numRuns: RUNS },
    )
  })

  it('validateCmdAck', () => {
    fc.assert(
      fc.property(fc.oneof(hostilePayload, anyValue), options, (payload, opts) => {
        expectResult(validateCmdAck(payload as string, opts))
      }),
      { numRuns: RUNS },
    )
  })

  it('validateConfig and validateCmd', () => {
    fc.assert(
      fc.property(hostileKind, fc.oneof(hostilePayload, anyValue), options, (kind, payload, opts) => {
        expectResult(validateConfig(kind, payload as string, opts))
        expectResult(validateCmd(payload as string, opts))
      }),
      { numRuns: RUNS },
    )
  })
})

// ---------------------------------------------------------------------------------------------------------
// parseTopic

const channelPaths = Object.values(CHANNELS).map((c) => c.path)
// The lookahead of DEVICE_ID_PATTERN is beyond fast-check's regex support: generate, then drop reserved ids.
const deviceId = fc
  .stringMatching(/^[a-z0-9][a-z0-9-]{1,62}[a-z0-9]$/)
  .filter((id) => id !== 'constructor' && id !== 'prototype')

const topicLike = fc
  .tuple(
    fc.oneof(fc.constant('devices'), fc.constantFrom('Devices', 'device', '', '$SYS', '#', '+'), fc.string()),
    fc.oneof(deviceId, fc.string(), allCodeUnits, fc.constantFrom('__proto__', 'constructor', '+', '#', '')),
    fc.oneof(
      fc.constantFrom(...channelPaths),
      fc.string(),
      fc.constantFrom('cmd/', 'cmd//ack', '/telemetry', ''),
    ),
  )
  .map((parts) => parts.join('/'))

describe('parseTopic', () => {
  it('never throws, and every topic it accepts round-trips through topicFor', () => {
    fc.assert(
      fc.property(
        fc.oneof(topicLike, fc.string(), fc.string({ unit: 'binary' }), allCodeUnits, anyValue),
        (topic) => {
          const r = parseTopic(topic)
          if (r.ok) {
            expect(topicFor(r.deviceId, r.channel)).toBe(topic)
            expect(DeviceIdSchema.safeParse(r.deviceId).success).toBe(true)
          } else {
            expect(r.code).toBe('bad_topic')
          }
        },
      ),
      { numRuns: RUNS },
    )
  })

  it('accepts every valid device id on every channel', () => {
    fc.assert(
      fc.property(deviceId, fc.constantFrom(...(Object.keys(CHANNELS) as Channel[])), (id, channel) => {
        expect(parseTopic(topicFor(id, channel))).toEqual({ ok: true, deviceId: id, channel })
      }),
      { numRuns: RUNS },
    )
  })
})

// ---------------------------------------------------------------------------------------------------------
// Valid readings from KIND_SPECS

function metricValue(spec: MetricSpec): fc.Arbitrary<number> {
  if (spec.integer) return fc.integer({ min: spec.min, max: spec.max })
  // JSON has no -0: a device's -0 arrives as 0, so generate what can be sent.
  return fc
    .double({ min: spec.min, max: spec.max, noNaN: true, noDefaultInfinity: true })
    .map((x) => (x === 0 ? 0 : x))
}

function metricsOf(kind: DeviceKind): fc.Arbitrary<Record<string, number>> {
  const metrics: Record<string, MetricSpec> = KIND_SPECS[kind].metrics
  const arbs = Object.fromEntries(Object.entries(metrics).map(([name, spec]) => [name, metricValue(spec)]))
  // Force one of the required metrics, leave every other metric optional.
  return fc
    .constantFrom(...KIND_SPECS[kind].requireOneOf)
    .chain(
      (required) => fc.record(arbs, { requiredKeys: [required] }) as fc.Arbitrary<Record<string, number>>,
    )
}

interface GeneratedReading {
  ts: number | undefined
  seq: number
  metrics: Record<string, number>
}

function readingOf(kind: DeviceKind): fc.Arbitrary<GeneratedReading> {
  return fc.record({
    ts: fc.option(fc.integer({ min: TS_MIN, max: NOW }), { nil: undefined }),
    seq: fc.maxSafeNat(),
    metrics: metricsOf(kind),
  })
}

function wire(r: GeneratedReading): Record<string, unknown> {
  return { ...(r.ts === undefined ? {} : { ts: r.ts }), seq: r.seq, ...r.metrics }
}

const version = fc.constantFrom<{ v?: 1 }>({}, { v: 1 })

describe('valid readings validate and round-trip', () => {
  for (const kind of DEVICE_KINDS) {
    it(`${kind}: single`, () => {
      fc.assert(
        fc.property(readingOf(kind), version, fc.boolean(), (reading, v, asBytes) => {
          const text = JSON.stringify({ ...v, ...wire(reading) })
          const r = validateTelemetry(kind, asBytes ? new TextEncoder().encode(text) : text, { now: NOW })
          if (!r.ok) expect.fail(`${text}: ${r.rejection.code} ${r.rejection.message}`)
          expect(r.readings).toHaveLength(1)
          expect(r.readings[0]!.fields).toEqual(reading.metrics)
          expect(r.readings[0]!.ts).toBe(reading.ts)
          expect(r.readings[0]!.seq).toBe(reading.seq)
        }),
        { numRuns: RUNS },
      )
    })

    it(`${kind}: batch`, () => {
      fc.assert(
        fc.property(fc.array(readingOf(kind), { minLength: 1, maxLength: 25 }), version, (readings, v) => {
          const text = JSON.stringify({ ...v, readings: readings.map(wire) })
          const r = validateTelemetry(kind, text, { now: NOW })
          if (!r.ok) expect.fail(`${text}: ${r.rejection.code} ${r.rejection.message}`)
          expect(r.readings.map((x) => ({ ts: x.ts, seq: x.seq, metrics: x.fields }))).toEqual(readings)
        }),
        { numRuns: RUNS / 4 },
      )
    })

    it(`${kind}: one metric pushed past its range is out_of_range`, () => {
      const metrics: Record<string, MetricSpec> = KIND_SPECS[kind].metrics
      fc.assert(
        fc.property(
          readingOf(kind),
          fc.constantFrom(...Object.keys(metrics)),
          fc.boolean(),
          fc.integer({ min: 1, max: 10 ** 6 }),
          (reading, name, above, by) => {
            const spec = metrics[name]!
            const bad = above ? spec.max + by : spec.min - by
            const text = JSON.stringify(wire({ ...reading, metrics: { ...reading.metrics, [name]: bad } }))
            const r = validateTelemetry(kind, text, { now: NOW })
            expect(r.ok ? 'ok' : r.rejection.code, text).toBe('out_of_range')
          },
        ),
        { numRuns: RUNS / 4 },
      )
    })
  }
})

// ---------------------------------------------------------------------------------------------------------
// Valid control messages

const firmware = fc
  .tuple(
    fc.nat(999),
    fc.nat(999),
    fc.nat(999),
    fc.option(fc.constantFrom('-rc.1', '-beta', '+esp32'), { nil: '' }),
  )
  .map(([a, b, c, tail]) => `${a}.${b}.${c}${tail}`)

describe('valid control messages validate and round-trip', () => {
  it('status', () => {
    const status = fc.record(
      {
        online: fc.boolean(),
        firmware,
        ts: fc.integer({ min: TS_MIN, max: NOW }),
        reason: fc.constantFrom(...Object.keys(STATUS_REASONS)),
      },
      { requiredKeys: ['online'] },
    )
    fc.assert(
      fc.property(status, version, (s, v) => {
        const r = validateStatus(JSON.stringify({ ...v, ...s }), { now: NOW })
        if (!r.ok) expect.fail(`${JSON.stringify(s)}: ${r.rejection.message}`)
        expect(r.value).toEqual({ v: 1, ...s })
      }),
      { numRuns: RUNS },
    )
  })

  it('cmd/ack', () => {
    const ack = fc.oneof(
      fc.record({ id: fc.stringMatching(/^[A-Za-z0-9_-]{1,64}$/), ok: fc.constant(true) }),
      fc.record(
        {
          id: fc.stringMatching(/^[A-Za-z0-9_-]{1,64}$/),
          ok: fc.constant(false),
          error: fc.string({ minLength: 1, maxLength: 200 }),
        },
        { requiredKeys: ['id', 'ok'] },
      ),
    )
    fc.assert(
      fc.property(
        ack,
        fc.option(fc.integer({ min: TS_MIN, max: NOW }), { nil: undefined }),
        version,
        (a, ts, v) => {
          const message = { ...v, ...a, ...(ts === undefined ? {} : { ts }) }
          const r = validateCmdAck(JSON.stringify(message), { now: NOW })
          if (!r.ok) expect.fail(`${JSON.stringify(message)}: ${r.rejection.message}`)
          expect(r.value).toEqual({ v: 1, ...message })
        },
      ),
      { numRuns: RUNS },
    )
  })

  it('cmd', () => {
    const cmd = fc.record({
      id: fc.stringMatching(/^[A-Za-z0-9_-]{1,64}$/),
      name: fc.constantFrom(...COMMAND_NAMES),
      interval: fc.integer({ min: 10, max: 86_400 }),
    })
    fc.assert(
      fc.property(cmd, ({ id, name, interval }) => {
        const args =
          name === 'set-interval'
            ? { args: { interval } }
            : name === 'sync-time'
              ? { args: { now: NOW } }
              : {}
        const r = validateCmd(JSON.stringify({ id, name, ...args }), { now: NOW })
        expect(r.ok).toBe(true)
      }),
      { numRuns: RUNS / 4 },
    )
  })
})
