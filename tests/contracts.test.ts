import { readdirSync, readFileSync } from 'node:fs'
import { join } from 'node:path'
import { describe, expect, it } from 'vitest'
import { z } from 'zod'
import { FIXTURE_CHANNELS, FIXTURE_NOW, fixtureOutcome } from '../firmware-contracts/golden-fixtures.ts'
import {
  CHANNELS,
  type Channel,
  DEFAULT_MAX_PAYLOAD_BYTES,
  DEVICE_KINDS,
  DeviceIdSchema,
  parseTopic,
  REJECT_REASONS,
  type RejectReason,
  topicFor,
  validateCmd,
  validateCmdAck,
  validateConfig,
  validateStatus,
  validateTelemetry,
} from '../firmware-contracts/index.ts'
import {
  FIXTURES_DIR,
  findDrift,
  generateContractFiles,
  JSON_SCHEMA_DIR,
  REGENERATE_COMMAND,
  REPO_ROOT,
} from '../scripts/generate-contracts.ts'

const now = FIXTURE_NOW
const encode = (text: string) => new TextEncoder().encode(text)

// The committed fixture files are what firmware teams consume, so read those rather than the generator.
const FixtureFileSchema = z.strictObject({
  name: z.string().min(1),
  kind: z.string().optional(),
  channel: z.enum(FIXTURE_CHANNELS).optional(),
  payload: z.string(),
  expect: z.union([
    z.strictObject({ ok: z.literal(true), readings: z.number().int().min(1).optional() }),
    z.strictObject({ ok: z.literal(false), code: z.enum(Object.keys(REJECT_REASONS) as [RejectReason]) }),
  ]),
})
type FixtureFile = z.infer<typeof FixtureFileSchema>

const fixtureFiles = readdirSync(join(REPO_ROOT, FIXTURES_DIR))
  .filter((f) => f.endsWith('.json'))
  .sort()
const fixtures = fixtureFiles.map((file) => {
  const parsed = FixtureFileSchema.safeParse(
    JSON.parse(readFileSync(join(REPO_ROOT, FIXTURES_DIR, file), 'utf8')),
  )
  if (!parsed.success) throw new Error(`${FIXTURES_DIR}/${file}: ${z.prettifyError(parsed.error)}`)
  return { file, ...parsed.data }
})

describe('golden fixtures', () => {
  it('exist', () => {
    expect(fixtures.length).toBeGreaterThan(50)
  })

  it.each(fixtures)('$file', (f) => {
    if (f.channel === undefined) expect(f.kind, 'a telemetry fixture names its kind').toBeTypeOf('string')
    if (f.channel === undefined && f.expect.ok) expect(f.expect.readings).toBeGreaterThan(0)
    // As a device sends it (bytes) and as a test harness might pass it (string): both must agree.
    expect(fixtureOutcome(f, encode(f.payload), now)).toEqual(f.expect)
    expect(fixtureOutcome(f, f.payload, now)).toEqual(f.expect)
  })

  it('cover every kind and every message, valid and invalid', () => {
    const groups = new Map<string, { valid: number; invalid: number }>()
    for (const f of fixtures) {
      const group =
        f.channel === undefined
          ? `telemetry ${f.kind}`
          : `${f.channel} ${f.channel === 'config' ? f.kind : ''}`
      const counts = groups.get(group.trim()) ?? { valid: 0, invalid: 0 }
      if (f.expect.ok) counts.valid++
      else counts.invalid++
      groups.set(group.trim(), counts)
    }
    const required = [
      ...DEVICE_KINDS.map((k) => `telemetry ${k}`),
      ...DEVICE_KINDS.map((k) => `config ${k}`),
      'status',
      'cmd',
      'cmd/ack',
    ]
    for (const group of required) {
      expect(groups.get(group)?.valid, `${group}: valid fixtures`).toBeGreaterThan(0)
      expect(groups.get(group)?.invalid, `${group}: invalid fixtures`).toBeGreaterThan(0)
    }
  })

  it('cover every payload reason code', () => {
    const codes = new Set(fixtures.flatMap((f) => (f.expect.ok ? [] : [f.expect.code])))
    const payloadCodes: RejectReason[] = [
      'invalid_json',
      'schema',
      'out_of_range',
      'future_timestamp',
      'unsupported_version',
      'too_large',
      'unknown_kind',
    ]
    for (const code of payloadCodes) expect(codes, code).toContain(code)
  })

  it('cover the schema cases firmware gets wrong', () => {
    const names = fixtures.filter((f) => f.channel === undefined && !f.expect.ok).map((f) => f.file)
    for (const what of ['misspelled-field', 'wrong-type', 'missing-metric', 'empty-batch']) {
      for (const kind of DEVICE_KINDS)
        expect(names).toContain(`telemetry-${kind}-invalid-schema-${what}.json`)
    }
  })
})

describe('generated files', () => {
  it('are byte-identical to what the generator produces now', async () => {
    const drift = await findDrift()
    const report = drift.map(
      (d) =>
        `${d.path} is ${d.problem === 'stale' ? 'no longer generated (stale)' : d.problem === 'missing' ? 'missing' : 'out of date'}`,
    )
    if (report.length > 0) {
      expect.fail(
        `${report.join('\n')}\nThe firmware contracts changed without regenerating: run ${REGENERATE_COMMAND}`,
      )
    }
  })

  it('are deterministic', () => {
    const a = generateContractFiles()
    const b = generateContractFiles()
    expect([...a.keys()]).toEqual([...b.keys()])
    for (const [path, content] of a) expect(b.get(path), path).toBe(content)
  })

  it('include one JSON Schema per kind and message, draft 2020-12, with units', () => {
    const files = generateContractFiles()
    const names = [...files.keys()].filter((p) => p.startsWith(`${JSON_SCHEMA_DIR}/`))
    for (const kind of DEVICE_KINDS) {
      expect(names).toContain(`${JSON_SCHEMA_DIR}/telemetry-${kind}.schema.json`)
      expect(names).toContain(`${JSON_SCHEMA_DIR}/config-${kind}.schema.json`)
    }
    for (const m of ['status', 'cmd', 'cmd-ack'])
      expect(names).toContain(`${JSON_SCHEMA_DIR}/${m}.schema.json`)
    for (const path of names) {
      const schema = JSON.parse(files.get(path)!) as Record<string, unknown>
      expect(schema.$schema, path).toBe('https://json-schema.org/draft/2020-12/schema')
    }
    const river = files.get(`${JSON_SCHEMA_DIR}/telemetry-river-level.schema.json`)!
    expect(river).toContain('"unit": "cm"')
  })

  it('JSON Schemas agree with the validators on every fixture they can judge', async () => {
    let Ajv2020: typeof import('ajv/dist/2020.js').default
    try {
      const mod = await import('ajv/dist/2020.js')
      // ajv is CommonJS: depending on the loader the class is the default export or its `default`.
      Ajv2020 = ((mod.default as unknown as { default?: unknown }).default ?? mod.default) as typeof Ajv2020
    } catch {
      // ajv arrives with fastify; without it this cross-check cannot run, the zod-side tests still do.
      return
    }
    // strictRequired would flag `anyOf: [{required: [...]}]`, standard JSON Schema for "at least one of".
    const ajv = new Ajv2020({ strict: true, strictRequired: false })
    ajv.addKeyword({ keyword: 'unit', schemaType: 'string' })
    const files = generateContractFiles()
    const schemaFor = (f: FixtureFile) => {
      const name =
        f.channel === undefined
          ? `telemetry-${f.kind}`
          : f.channel === 'config'
            ? `config-${f.kind}`
            : f.channel === 'cmd/ack'
              ? 'cmd-ack'
              : f.channel
      const text = files.get(`${JSON_SCHEMA_DIR}/${name}.schema.json`)
      return text === undefined ? undefined : ajv.compile(JSON.parse(text))
    }
    // Cross-field rules (ordered thresholds, alertInterval <= interval) cannot be said in JSON Schema; their
    // descriptions state them instead.
    const refinementOnly = /config-.*-(levels-reversed|thresholds-reversed|alert-interval-longer)\.json$/
    // Size, time and kind are judged outside the schema.
    const undecidable: readonly string[] = ['too_large', 'future_timestamp', 'invalid_json', 'unknown_kind']
    let judged = 0
    for (const f of fixtures) {
      if (!f.expect.ok && undecidable.includes(f.expect.code)) continue
      const validate = schemaFor(f)
      if (validate === undefined) continue
      const valid = validate(JSON.parse(f.payload))
      const expected = refinementOnly.test(f.file) ? true : f.expect.ok
      expect(valid, `${f.file}: ${ajv.errorsText(validate.errors)}`).toBe(expected)
      judged++
    }
    expect(judged).toBeGreaterThan(50)
  })
})

describe('versioning', () => {
  // Firmware in the field predates `v`: its payloads must keep validating exactly as `"v": 1` ones do.
  it.each(DEVICE_KINDS)('%s telemetry validates without v and with v: 1', (kind) => {
    const valid = fixtures.find((f) => f.file === `telemetry-${kind}-valid-v1-without-v.json`)!
    const payload = JSON.parse(valid.payload) as Record<string, unknown>
    expect(payload.v).toBeUndefined()
    const without = validateTelemetry(kind, valid.payload, { now })
    const withV = validateTelemetry(kind, JSON.stringify({ v: 1, ...payload }), { now })
    expect(without.ok).toBe(true)
    expect(withV).toEqual(without)
    const batch = JSON.stringify({ readings: [payload] })
    expect(validateTelemetry(kind, batch, { now })).toEqual(without)
    expect(validateTelemetry(kind, JSON.stringify({ v: 1, readings: [payload] }), { now })).toEqual(without)
  })

  it('control messages validate without v and with v: 1', () => {
    const cases: [(p: string) => { ok: boolean }, Record<string, unknown>][] = [
      [(p) => validateStatus(p, { now }), { online: true }],
      [(p) => validateCmdAck(p, { now }), { id: 'c-1', ok: true }],
      [(p) => validateCmd(p, { now }), { id: 'c-1', name: 'ping' }],
      [(p) => validateConfig('river-level', p, { now }), { interval: 300 }],
    ]
    for (const [validate, payload] of cases) {
      const without = validate(JSON.stringify(payload))
      expect(without).toMatchObject({ ok: true, value: { ...payload, v: 1 } })
      expect(validate(JSON.stringify({ v: 1, ...payload }))).toEqual(without)
    }
  })

  it.each([2, 0, '1', null, 1.5, [1], { major: 1 }])('v: %j is unsupported_version', (v) => {
    const payload = JSON.stringify({ v, seq: 1, waterLevel: 10 })
    expect(validateTelemetry('river-level', payload, { now })).toMatchObject({
      ok: false,
      rejection: { code: 'unsupported_version' },
    })
    expect(validateStatus(JSON.stringify({ v, online: true }), { now })).toMatchObject({
      ok: false,
      rejection: { code: 'unsupported_version' },
    })
  })
})

describe('validators: hardening', () => {
  it('describe a deeply nested v without overflowing the stack', () => {
    const deep = `${'['.repeat(20_000)}${']'.repeat(20_000)}`
    const r = validateTelemetry('river-level', `{"v":${deep},"seq":1,"waterLevel":1}`, { now })
    expect(r).toMatchObject({ ok: false, rejection: { code: 'unsupported_version' } })
    expect(validateCmdAck(`{"v":${'['.repeat(1500)}${']'.repeat(1500)}}`, { now })).toMatchObject({
      ok: false,
    })
  })

  it('treat numbers beyond double or safe-integer range as out_of_range', () => {
    const big = (json: string) => validateTelemetry('river-level', json, { now })
    expect(big('{"seq":1,"waterLevel":1e400}')).toMatchObject({
      ok: false,
      rejection: { code: 'out_of_range' },
    })
    expect(big('{"seq":1,"waterLevel":-1e400}')).toMatchObject({
      ok: false,
      rejection: { code: 'out_of_range' },
    })
    expect(big('{"seq":9007199254740993,"waterLevel":1}')).toMatchObject({
      ok: false,
      rejection: { code: 'out_of_range' },
    })
    expect(big('{"readings":[{"seq":1,"waterLevel":1e400}]}')).toMatchObject({
      ok: false,
      rejection: { code: 'out_of_range' },
    })
  })

  it('keep mistyped values as schema errors', () => {
    const r = validateTelemetry('crowd-counter', '{"seq":1,"peopleIn":1.5}', { now })
    expect(r).toMatchObject({ ok: false, rejection: { code: 'schema' } })
  })

  it('accept a UTF-8 byte order mark the same way for bytes and strings', () => {
    const text = '\uFEFF{"seq":1,"waterLevel":12}'
    expect(validateTelemetry('river-level', text, { now }).ok).toBe(true)
    expect(validateTelemetry('river-level', encode(text), { now }).ok).toBe(true)
  })

  it('answer invalid_json for payloads that are neither bytes nor strings', () => {
    for (const payload of [null, undefined, 42, {}, [1, 2]]) {
      const r = validateTelemetry('river-level', payload as unknown as string, { now })
      expect(r).toMatchObject({ ok: false, rejection: { code: 'invalid_json' } })
      expect(validateStatus(payload as unknown as string, { now })).toMatchObject({ ok: false })
    }
  })

  it('check size before kind, and count UTF-8 bytes, not characters', () => {
    const big = `{"seq":1,"waterLevel":1,"x":"${'é'.repeat(40_000)}"}`
    expect(big.length).toBeLessThan(DEFAULT_MAX_PAYLOAD_BYTES)
    expect(validateTelemetry('water-meter', big, { now })).toMatchObject({
      ok: false,
      rejection: { code: 'too_large' },
    })
    expect(validateTelemetry('water-meter', '{}', { now })).toMatchObject({
      ok: false,
      rejection: { code: 'unknown_kind' },
    })
  })

  it('reject unknown kinds that are Object.prototype members', () => {
    for (const kind of ['__proto__', 'constructor', 'toString', 'hasOwnProperty']) {
      expect(validateTelemetry(kind, '{"seq":1}', { now })).toMatchObject({
        ok: false,
        rejection: { code: 'unknown_kind' },
      })
      expect(validateConfig(kind, '{"interval":60}', { now })).toMatchObject({
        ok: false,
        rejection: { code: 'unknown_kind' },
      })
    }
  })

  it('give a readable message with the failing path', () => {
    const r = validateConfig(
      'river-level',
      '{"interval":300,"thresholds":{"waspada":400,"siaga":320,"awas":250}}',
      {
        now,
      },
    )
    expect(r.ok).toBe(false)
    if (!r.ok) expect(r.rejection.message).toMatch(/waspada < siaga < awas[\s\S]*thresholds/)
  })
})

describe('parseTopic', () => {
  const valid: [string, string, Channel][] = [
    ['devices/awlr-tukad-badung-01/telemetry', 'awlr-tukad-badung-01', 'telemetry'],
    ['devices/abc/status', 'abc', 'status'],
    ['devices/abc/cmd/ack', 'abc', 'cmdAck'],
    ['devices/abc/config', 'abc', 'config'],
    ['devices/abc/cmd', 'abc', 'cmd'],
    ['devices/0-0/telemetry', '0-0', 'telemetry'],
    [`devices/${'a'.repeat(64)}/telemetry`, 'a'.repeat(64), 'telemetry'],
    ['devices/constructors/telemetry', 'constructors', 'telemetry'],
  ]
  it.each(valid)('%s', (topic, deviceId, channel) => {
    expect(parseTopic(topic)).toEqual({ ok: true, deviceId, channel })
    expect(topicFor(deviceId, channel)).toBe(topic)
  })

  const invalid: [string, unknown][] = [
    ['wrong root', 'device/abc/telemetry'],
    ['root in capitals', 'Devices/abc/telemetry'],
    ['leading slash', '/devices/abc/telemetry'],
    ['$SYS topic', '$SYS/broker/uptime'],
    ['no channel', 'devices/abc'],
    ['root only', 'devices/'],
    ['empty device id', 'devices//telemetry'],
    ['empty channel', 'devices/abc/'],
    ['empty level inside channel', 'devices/abc//telemetry'],
    ['empty level in cmd/ack', 'devices/abc/cmd//ack'],
    ['trailing slash', 'devices/abc/telemetry/'],
    ['cmd/ack with trailing slash', 'devices/abc/cmd/ack/'],
    ['unknown channel', 'devices/abc/events'],
    ['channel in capitals', 'devices/abc/Telemetry'],
    ['ack without cmd', 'devices/abc/ack'],
    ['cmd/ack/extra', 'devices/abc/cmd/ack/extra'],
    ['id __proto__', 'devices/__proto__/telemetry'],
    ['id constructor', 'devices/constructor/telemetry'],
    ['id prototype', 'devices/prototype/status'],
    ['id in capitals', 'devices/ABC-01/telemetry'],
    ['id with one capital', 'devices/awlr-Tukad-01/telemetry'],
    ['id too long (65)', `devices/${'a'.repeat(65)}/telemetry`],
    ['id too short (2)', 'devices/ab/telemetry'],
    ['id starting with -', 'devices/-abc/telemetry'],
    ['id ending with -', 'devices/abc-/telemetry'],
    ['id with underscore', 'devices/abc_01/telemetry'],
    ['id with a dot', 'devices/abc.01/telemetry'],
    ['id wildcard +', 'devices/+/telemetry'],
    ['id wildcard #', 'devices/#'],
    ['id with a space', 'devices/ab c/telemetry'],
    ['id with NUL', 'devices/abc\u0000/telemetry'],
    ['id with non-ASCII', 'devices/sungai-ayung-ü/telemetry'],
    ['id with a trailing newline', 'devices/abc\n/telemetry'],
    ['topic over 256 characters', `devices/abc/telemetry${'x'.repeat(240)}`],
    ['empty string', ''],
    ['number', 42],
    ['null', null],
    ['undefined', undefined],
    ['object', { toString: () => 'devices/abc/telemetry' }],
    ['Buffer', Buffer.from('devices/abc/telemetry')],
    ['array', ['devices', 'abc', 'telemetry']],
  ]
  it.each(invalid)('rejects %s', (_label, topic) => {
    const r = parseTopic(topic)
    expect(r.ok).toBe(false)
    if (!r.ok) {
      expect(r.code).toBe('bad_topic')
      expect(r.message).toBeTypeOf('string')
    }
  })

  it('agrees with DeviceIdSchema on reserved ids', () => {
    for (const id of ['constructor', 'prototype', '__proto__'])
      expect(DeviceIdSchema.safeParse(id).success).toBe(false)
    expect(DeviceIdSchema.safeParse('constructor-01').success).toBe(true)
  })

  it('knows every channel', () => {
    for (const channel of Object.keys(CHANNELS) as Channel[]) {
      expect(parseTopic(topicFor('abc', channel))).toEqual({ ok: true, deviceId: 'abc', channel })
    }
  })
})
