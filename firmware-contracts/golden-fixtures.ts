import { DEVICE_KINDS, type DeviceKind, KIND_SPECS } from './kinds.ts'
import { validateCmd, validateCmdAck, validateConfig, validateStatus } from './messages.ts'
import type { RejectReason } from './reasons.ts'
import { DEFAULT_MAX_PAYLOAD_BYTES, validateTelemetry } from './validate.ts'

/**
 * 2025-06-01 10:00 WITA. Fixtures carry fixed timestamps so that they never expire; validate them as if
 * received at this instant (it decides `future_timestamp`).
 */
export const FIXTURE_NOW = Date.UTC(2025, 5, 1, 2, 0, 0)

/** Channels of fixtures other than telemetry, spelled as in the topic (`devices/<id>/<channel>`). */
export const FIXTURE_CHANNELS = ['status', 'config', 'cmd', 'cmd/ack'] as const
export type FixtureChannel = (typeof FIXTURE_CHANNELS)[number]

export type FixtureExpect =
  | { readonly ok: true; readonly readings?: number }
  | { readonly ok: false; readonly code: RejectReason }

export interface GoldenFixture {
  /** File name under `firmware-contracts/fixtures/`. */
  readonly file: string
  readonly name: string
  /** Set for telemetry (which has no `channel`) and for config. */
  readonly kind?: string
  /** Set for every message but telemetry. */
  readonly channel?: FixtureChannel
  /** Exactly the bytes on the wire, as UTF-8 text. */
  readonly payload: string
  readonly expect: FixtureExpect
}

/** The JSON written for a fixture; `file` is its name, not part of its content. */
export function fixtureFileContent(fixture: GoldenFixture): string {
  const { name, kind, channel, payload, expect } = fixture
  const body =
    channel === undefined ? { name, kind, payload, expect } : { name, channel, kind, payload, expect }
  return `${JSON.stringify(body, null, 2)}\n`
}

/** What the platform's validators answer for a fixture, in the shape of its `expect`. */
export function fixtureOutcome(
  fixture: Pick<GoldenFixture, 'kind' | 'channel'>,
  payload: Uint8Array | string,
  now = FIXTURE_NOW,
): FixtureExpect {
  const opts = { now }
  const kind = fixture.kind ?? ''
  if (fixture.channel === undefined) {
    const r = validateTelemetry(kind, payload, opts)
    return r.ok ? { ok: true, readings: r.readings.length } : { ok: false, code: r.rejection.code }
  }
  const r =
    fixture.channel === 'status'
      ? validateStatus(payload, opts)
      : fixture.channel === 'config'
        ? validateConfig(kind, payload, opts)
        : fixture.channel === 'cmd'
          ? validateCmd(payload, opts)
          : validateCmdAck(payload, opts)
  return r.ok ? { ok: true } : { ok: false, code: r.rejection.code }
}

const MINUTE = 60_000

// Plausible values from the field, one full reading per kind.
const SAMPLE_READINGS: Record<DeviceKind, Record<string, number>> = {
  'river-level': { waterLevel: 142.5, flow: 12.4, battery: 87, rssi: -71 },
  'rain-gauge': { rainfall: 3.2, battery: 64, rssi: -88 },
  'air-quality': {
    pm25: 18.4,
    pm10: 41,
    o3: 62.5,
    co: 830,
    no2: 21.7,
    so2: 9.3,
    hc: 12,
    temperature: 29.6,
    relativeHumidity: 78,
    battery: 100,
    rssi: -65,
  },
  'crowd-counter': { peopleIn: 184, peopleOut: 161, occupancy: 412, battery: 92, rssi: -59 },
}

// Misspellings seen in real firmware: case slips and snake_case habits.
const MISSPELLED: Record<DeviceKind, string> = {
  'river-level': 'waterlevel',
  'rain-gauge': 'rainFall',
  'air-quality': 'pm2_5',
  'crowd-counter': 'people_in',
}

function primaryMetric(kind: DeviceKind): string {
  return KIND_SPECS[kind].requireOneOf[0]!
}

function telemetryFixtures(kind: DeviceKind): GoldenFixture[] {
  const sample = SAMPLE_READINGS[kind]
  const primary = primaryMetric(kind)
  const value = sample[primary]!
  const max = (KIND_SPECS[kind].metrics as Record<string, { max: number }>)[primary]!.max
  const ts = FIXTURE_NOW - MINUTE
  const prefix = `telemetry-${kind}`
  const valid = (what: string, name: string, payload: unknown, readings: number): GoldenFixture => ({
    file: `${prefix}-valid-${what}.json`,
    name: `${kind}: ${name}`,
    kind,
    payload: typeof payload === 'string' ? payload : JSON.stringify(payload),
    expect: { ok: true, readings },
  })
  const invalid = (what: string, name: string, payload: unknown, code: RejectReason): GoldenFixture => ({
    file: `${prefix}-invalid-${what}.json`,
    name: `${kind}: ${name}`,
    kind,
    payload: typeof payload === 'string' ? payload : JSON.stringify(payload),
    expect: { ok: false, code },
  })
  const batch = [15, 10, 5].map((minutesAgo, i) => ({
    ts: FIXTURE_NOW - minutesAgo * MINUTE,
    seq: 1040 + i,
    ...sample,
    [primary]: value + i,
  }))
  const required: readonly string[] = KIND_SPECS[kind].requireOneOf
  const housekeeping = Object.fromEntries(Object.entries(sample).filter(([name]) => !required.includes(name)))
  const full = { v: 1, ts, seq: 1043, ...sample }

  const fixtures = [
    valid('single', 'one reading with every metric', full, 1),
    valid('v1-without-v', 'first firmware: no v, no ts, one metric', { seq: 7, [primary]: value }, 1),
    valid('v1-explicit', 'the same with v: 1', { v: 1, seq: 7, [primary]: value }, 1),
    valid('batch', 'backlog of three readings after an outage', { v: 1, readings: batch }, 3),
    invalid(
      'json-truncated',
      'payload cut short (MQTT buffer too small)',
      JSON.stringify(full).slice(0, 40),
      'invalid_json',
    ),
    invalid(
      'schema-misspelled-field',
      `misspelled field ${MISSPELLED[kind]}`,
      { ts, seq: 1043, [MISSPELLED[kind]]: value },
      'schema',
    ),
    invalid(
      'schema-wrong-type',
      `${primary} sent as a string`,
      { ts, seq: 1043, [primary]: String(value) },
      'schema',
    ),
    invalid(
      'schema-missing-metric',
      'only battery and rssi, no measurement',
      { ts, seq: 1043, ...housekeeping },
      'schema',
    ),
    invalid('schema-missing-seq', 'no seq', { ts, [primary]: value }, 'schema'),
    invalid('schema-empty-batch', 'batch without readings', { v: 1, readings: [] }, 'schema'),
    invalid(
      'schema-bare-array',
      'batch sent as a bare array instead of {"readings": [...]}',
      batch,
      'schema',
    ),
    invalid(
      'out-of-range',
      `${primary} beyond the sensor's range`,
      { ts, seq: 1043, [primary]: Math.round(max * 1.5) },
      'out_of_range',
    ),
    invalid(
      'out-of-range-rtc-unset',
      'clock never set: timestamp in 1970',
      { ts: 3_600_000, seq: 1043, [primary]: value },
      'out_of_range',
    ),
    invalid(
      'future-timestamp',
      'clock an hour fast',
      { ts: FIXTURE_NOW + 60 * MINUTE, seq: 1043, [primary]: value },
      'future_timestamp',
    ),
    invalid(
      'unsupported-version',
      'contract version 2',
      { v: 2, ts, seq: 1043, [primary]: value },
      'unsupported_version',
    ),
  ]
  if (kind === 'river-level') {
    fixtures.push(
      invalid(
        'out-of-range-overflow',
        'number too large for a double (1e999)',
        `{"seq":1043,"${primary}":1e999}`,
        'out_of_range',
      ),
    )
  }
  if (kind === 'crowd-counter') {
    fixtures.push(
      invalid('schema-fractional-count', 'fractional people count', { seq: 1043, peopleIn: 3.5 }, 'schema'),
    )
  }
  return fixtures
}

function tooLargeBatch(): GoldenFixture {
  // 1000 readings is the batch maximum, yet with four metrics it is over 64 KiB: both limits apply.
  const readings = Array.from({ length: 1000 }, (_, i) => ({
    ts: FIXTURE_NOW - (1000 - i) * MINUTE,
    seq: 20_000 + i,
    waterLevel: 120 + (i % 50) / 2,
    battery: 87 - Math.floor(i / 100),
    rssi: -71,
  }))
  const payload = JSON.stringify({ v: 1, readings })
  if (payload.length <= DEFAULT_MAX_PAYLOAD_BYTES) throw new Error('too_large fixture is not too large')
  return {
    file: 'telemetry-river-level-invalid-too-large.json',
    name: `river-level: 1000-reading backlog of ${payload.length} bytes, over the ${DEFAULT_MAX_PAYLOAD_BYTES}-byte limit`,
    kind: 'river-level',
    payload,
    expect: { ok: false, code: 'too_large' },
  }
}

function messageFixtures(
  channel: FixtureChannel,
  prefix: string,
  kind: string | undefined,
  cases: readonly (readonly [what: string, name: string, payload: unknown, expect: true | RejectReason])[],
): GoldenFixture[] {
  return cases.map(([what, name, payload, expect]) => ({
    file: `${prefix}-${expect === true ? 'valid' : 'invalid'}-${what}.json`,
    name: `${prefix}: ${name}`,
    channel,
    ...(kind === undefined ? {} : { kind }),
    payload: typeof payload === 'string' ? payload : JSON.stringify(payload),
    expect: expect === true ? { ok: true } : { ok: false, code: expect },
  }))
}

function statusFixtures(): GoldenFixture[] {
  const ts = FIXTURE_NOW - MINUTE
  return messageFixtures('status', 'status', undefined, [
    [
      'birth',
      'birth message after power-on',
      { v: 1, online: true, firmware: '1.4.2', ts, reason: 'power-on' },
      true,
    ],
    [
      'last-will',
      'last will, composed at connect time (no ts)',
      { online: false, reason: 'connection-lost' },
      true,
    ],
    ['v1-without-v', 'first firmware: only online', { online: true }, true],
    [
      'prerelease-firmware',
      'pre-release firmware with build metadata',
      { online: true, firmware: 'v2.0.0-rc.1+esp32' },
      true,
    ],
    ['json-truncated', 'payload cut short', '{"online":true,"firmw', 'invalid_json'],
    ['schema-missing-online', 'no online flag', { firmware: '1.4.2', ts }, 'schema'],
    ['schema-online-string', 'online sent as the string "true"', { online: 'true' }, 'schema'],
    [
      'schema-bad-firmware',
      'firmware version without a patch number',
      { online: true, firmware: '1.4' },
      'schema',
    ],
    ['schema-unknown-field', 'unknown field uptime', { online: true, uptime: 3600 }, 'schema'],
    [
      'out-of-range-rtc-unset',
      'clock never set: timestamp in 1970',
      { online: true, ts: 3_600_000 },
      'out_of_range',
    ],
    [
      'future-timestamp',
      'clock an hour fast',
      { online: true, ts: FIXTURE_NOW + 60 * MINUTE },
      'future_timestamp',
    ],
    ['unsupported-version', 'contract version 2', { v: 2, online: true }, 'unsupported_version'],
    [
      'too-large',
      'crash log stuffed into the birth message',
      { online: true, reason: 'watchdog', log: 'E (1234) wifi: beacon timeout\n'.repeat(160) },
      'too_large',
    ],
  ])
}

function configFixtures(): GoldenFixture[] {
  const river = messageFixtures('config', 'config-river-level', 'river-level', [
    [
      'full',
      'alert levels, fast reporting on alert, gauge offset',
      {
        v: 1,
        interval: 300,
        alertInterval: 60,
        thresholds: { waspada: 250, siaga: 320, awas: 400, riseRate: 30 },
        calibration: { waterLevel: -12.5 },
      },
      true,
    ],
    ['interval-only', 'only the reporting interval', { interval: 600 }, true],
    [
      'schema-levels-reversed',
      'alert levels in Jakarta order (Siaga 1 highest) put under BNPB names',
      { interval: 300, thresholds: { waspada: 400, siaga: 320, awas: 250 } },
      'schema',
    ],
    [
      'schema-alert-interval-longer',
      'alertInterval longer than interval',
      { interval: 60, alertInterval: 300 },
      'schema',
    ],
    [
      'schema-missing-level',
      'awas level missing',
      { interval: 300, thresholds: { waspada: 250, siaga: 320 } },
      'schema',
    ],
    ['out-of-range-interval', 'interval of 5 s', { interval: 5 }, 'out_of_range'],
    ['unsupported-version', 'contract version 2', { v: 2, interval: 300 }, 'unsupported_version'],
  ])
  const rain = messageFixtures('config', 'config-rain-gauge', 'rain-gauge', [
    [
      'full',
      'BMKG hourly categories',
      { interval: 600, alertInterval: 60, thresholds: { heavy: 10, veryHeavy: 20 } },
      true,
    ],
    [
      'schema-thresholds-reversed',
      'heavy above veryHeavy',
      { interval: 600, thresholds: { heavy: 20, veryHeavy: 10 } },
      'schema',
    ],
    ['out-of-range-interval', 'interval of two days', { interval: 172_800 }, 'out_of_range'],
  ])
  const air = messageFixtures('config', 'config-air-quality', 'air-quality', [
    [
      'full',
      'PM thresholds at the ISPU 100 break points, sensor offsets',
      {
        interval: 900,
        alertInterval: 300,
        thresholds: { pm25: 55.4, pm10: 150 },
        calibration: { temperature: -0.8, relativeHumidity: 2.5 },
      },
      true,
    ],
    [
      'schema-unknown-pollutant',
      'threshold named pm2_5',
      { interval: 900, thresholds: { pm2_5: 55.4 } },
      'schema',
    ],
    [
      'out-of-range-threshold',
      'negative threshold',
      { interval: 900, thresholds: { pm25: -5 } },
      'out_of_range',
    ],
  ])
  const crowd = messageFixtures('config', 'config-crowd-counter', 'crowd-counter', [
    ['full', 'busy and full occupancy', { interval: 60, thresholds: { busy: 600, full: 900 } }, true],
    [
      'schema-calibration',
      'counts take no calibration',
      { interval: 60, calibration: { occupancy: 3 } },
      'schema',
    ],
    [
      'schema-thresholds-reversed',
      'busy above full',
      { interval: 60, thresholds: { busy: 900, full: 600 } },
      'schema',
    ],
  ])
  return [...river, ...rain, ...air, ...crowd]
}

function cmdFixtures(): GoldenFixture[] {
  const ts = FIXTURE_NOW - MINUTE
  return messageFixtures('cmd', 'cmd', undefined, [
    ['reboot', 'reboot', { v: 1, id: 'c-20250601-0001', name: 'reboot', ts }, true],
    ['ping', 'ping without args', { id: 'c-20250601-0002', name: 'ping' }, true],
    [
      'set-interval',
      'report every 30 s for 15 minutes while commissioning',
      { id: 'c-20250601-0003', name: 'set-interval', args: { interval: 30, duration: 900 }, ts },
      true,
    ],
    [
      'sync-time',
      'set the clock',
      { id: 'c-20250601-0004', name: 'sync-time', args: { now: FIXTURE_NOW } },
      true,
    ],
    [
      'schema-unknown-name',
      'unknown command factory-reset',
      { id: 'c-20250601-0005', name: 'factory-reset' },
      'schema',
    ],
    [
      'schema-missing-args',
      'set-interval without args',
      { id: 'c-20250601-0006', name: 'set-interval' },
      'schema',
    ],
    ['schema-bad-id', 'id with spaces', { id: 'reboot now', name: 'reboot' }, 'schema'],
    [
      'out-of-range-interval',
      'set-interval of 1 s',
      { id: 'c-20250601-0007', name: 'set-interval', args: { interval: 1 } },
      'out_of_range',
    ],
  ])
}

function cmdAckFixtures(): GoldenFixture[] {
  const ts = FIXTURE_NOW - MINUTE
  return messageFixtures('cmd/ack', 'cmd-ack', undefined, [
    ['done', 'command carried out', { v: 1, id: 'c-20250601-0003', ok: true, ts }, true],
    ['failed', 'command refused', { id: 'c-20250601-0005', ok: false, error: 'unknown-command', ts }, true],
    ['v1-without-v', 'first firmware: id and ok only', { id: 'c-20250601-0002', ok: true }, true],
    ['json-truncated', 'payload cut short', '{"id":"c-20250601-0003","ok":tr', 'invalid_json'],
    ['schema-missing-id', 'no id', { ok: true, ts }, 'schema'],
    ['schema-ok-string', 'ok sent as the string "true"', { id: 'c-20250601-0003', ok: 'true' }, 'schema'],
    [
      'schema-error-when-ok',
      'error together with ok: true',
      { id: 'c-20250601-0003', ok: true, error: 'late' },
      'schema',
    ],
    [
      'future-timestamp',
      'clock an hour fast',
      { id: 'c-20250601-0003', ok: true, ts: FIXTURE_NOW + 60 * MINUTE },
      'future_timestamp',
    ],
    [
      'unsupported-version',
      'contract version 2',
      { v: 2, id: 'c-20250601-0003', ok: true },
      'unsupported_version',
    ],
  ])
}

/** Every golden fixture, sorted by file name. Deterministic: no clock, no randomness. */
export function goldenFixtures(): GoldenFixture[] {
  const all = [
    ...DEVICE_KINDS.flatMap(telemetryFixtures),
    tooLargeBatch(),
    {
      file: 'telemetry-invalid-unknown-kind.json',
      name: 'water-meter: a kind without a contract',
      kind: 'water-meter',
      payload: JSON.stringify({ seq: 3, volume: 12.5 }),
      expect: { ok: false, code: 'unknown_kind' },
    } satisfies GoldenFixture,
    ...statusFixtures(),
    ...configFixtures(),
    ...cmdFixtures(),
    ...cmdAckFixtures(),
  ]
  return all.sort((a, b) => (a.file < b.file ? -1 : a.file > b.file ? 1 : 0))
}
