import { FIXTURE_NOW, type GoldenFixture, goldenFixtures } from './golden-fixtures.ts'
import { type ContractJsonSchema, contractJsonSchemas, type JsonSchemaObject } from './json-schema.ts'
import { DEVICE_KINDS, KIND_SPECS, type MetricSpec } from './kinds.ts'
import {
  COMMAND_NAMES,
  calibratedMetrics,
  DEFAULT_MAX_CONTROL_PAYLOAD_BYTES,
  MAX_REPORT_INTERVAL_S,
  MIN_REPORT_INTERVAL_S,
  STATUS_REASONS,
} from './messages.ts'
import { REJECT_REASONS, type RejectReason } from './reasons.ts'
import {
  CONTRACT_VERSIONS,
  CURRENT_CONTRACT_VERSION,
  MAX_BATCH_READINGS,
  TimestampSchema,
} from './telemetry.ts'
import {
  CHANNELS,
  type Channel,
  DEVICE_ID_PATTERN,
  MAX_TOPIC_LENGTH,
  RESERVED_DEVICE_IDS,
  TOPIC_ROOT,
} from './topics.ts'
import { DEFAULT_MAX_FUTURE_SKEW_MS, DEFAULT_MAX_PAYLOAD_BYTES } from './validate.ts'

/** Where each reason code comes from; a `Record` so that a new code cannot be left undocumented. */
const REASON_SOURCES: Record<RejectReason, string> = {
  invalid_json: 'validators (every channel)',
  schema: 'validators (every channel)',
  out_of_range: 'validators (every channel)',
  unknown_kind: 'validators (telemetry, config)',
  too_large: 'validators (every channel)',
  future_timestamp: 'validators (messages with `ts`)',
  unsupported_version: 'validators (every channel)',
  bad_topic: '`parseTopic`',
  unknown_device: 'ingest (registry lookup)',
  store_refused: 'ingest (time-series store)',
  spool_full: 'ingest (QoS 0 telemetry)',
}

const CHANNEL_MESSAGES: Record<Channel, string> = {
  telemetry: 'readings: one, or a batch',
  status: 'birth message and last will',
  cmdAck: 'acknowledgement of a command',
  config: 'whole device configuration',
  cmd: 'command',
}

function cell(text: string): string {
  return text.replaceAll('|', '\\|').replaceAll('\n', ' ')
}

function table(headers: readonly string[], rows: readonly (readonly string[])[]): string {
  const lines = [`| ${headers.join(' | ')} |`, `|${headers.map(() => ' --- ').join('|')}|`]
  for (const row of rows) lines.push(`| ${row.map(cell).join(' | ')} |`)
  return lines.join('\n')
}

const TS_MIN = TimestampSchema.minValue ?? 0
const TS_MAX = TimestampSchema.maxValue ?? 0

function formatNumber(n: number): string {
  if (n === TS_MIN || n === TS_MAX) return `${n} (${new Date(n).toISOString().slice(0, 10)})`
  return String(n)
}

function metricRange(spec: MetricSpec): string {
  return `${formatNumber(spec.min)} … ${formatNumber(spec.max)}`
}

function rangeOf(json: JsonSchemaObject): string {
  const parts: string[] = []
  const lower =
    typeof json.exclusiveMinimum === 'number'
      ? `> ${formatNumber(json.exclusiveMinimum)}`
      : typeof json.minimum === 'number'
        ? formatNumber(json.minimum)
        : undefined
  const upper = typeof json.maximum === 'number' ? formatNumber(json.maximum) : undefined
  if (lower !== undefined && upper !== undefined)
    parts.push(lower.startsWith('>') ? `${lower}, ≤ ${upper}` : `${lower} … ${upper}`)
  else if (lower !== undefined) parts.push(lower.startsWith('>') ? lower : `≥ ${lower}`)
  else if (upper !== undefined) parts.push(`≤ ${upper}`)
  if (typeof json.minLength === 'number' || typeof json.maxLength === 'number') {
    parts.push(`${json.minLength ?? 0} … ${json.maxLength ?? '∞'} characters`)
  }
  if (typeof json.pattern === 'string') parts.push(`\`${json.pattern}\``)
  return parts.join('; ')
}

function typeOf(json: JsonSchemaObject): string {
  if (json.const !== undefined) return `\`${JSON.stringify(json.const)}\``
  return typeof json.type === 'string' ? json.type : 'any'
}

/** One row per property, nested objects flattened to dotted names, in schema order. */
function fieldRows(json: JsonSchemaObject, prefix = ''): string[][] {
  const properties = (json.properties ?? {}) as Record<string, JsonSchemaObject>
  const required = new Set((json.required ?? []) as string[])
  const rows: string[][] = []
  for (const [name, prop] of Object.entries(properties)) {
    const unit = typeof prop.unit === 'string' ? prop.unit : ''
    const req = required.has(name)
      ? 'yes'
      : prop.default !== undefined
        ? `no (default ${JSON.stringify(prop.default)})`
        : 'no'
    const description = typeof prop.description === 'string' ? prop.description : ''
    rows.push([`\`${prefix}${name}\``, typeOf(prop), unit, rangeOf(prop), req, description])
    if (prop.type === 'object' && prop.properties !== undefined)
      rows.push(...fieldRows(prop, `${prefix}${name}.`))
  }
  return rows
}

const FIELD_HEADERS = ['Field', 'Type', 'Unit', 'Range', 'Required', 'Description'] as const

function schemaNamed(schemas: readonly ContractJsonSchema[], name: string): JsonSchemaObject {
  const found = schemas.find((s) => s.name === name)
  if (found === undefined) throw new Error(`no JSON Schema named ${name}`)
  return found.schema
}

function example(fixtures: readonly GoldenFixture[], file: string): string {
  const fixture = fixtures.find((f) => f.file === file)
  if (fixture === undefined) throw new Error(`no fixture ${file}`)
  return ['```json', fixture.payload, '```'].join('\n')
}

function expectText(f: GoldenFixture): string {
  if (!f.expect.ok) return `rejected: \`${f.expect.code}\``
  return f.expect.readings === undefined ? 'accepted' : `accepted, ${f.expect.readings} reading(s)`
}

function telemetrySection(fixtures: readonly GoldenFixture[]): string[] {
  const out: string[] = []
  out.push('## Telemetry (`devices/<deviceId>/telemetry`, up)', '')
  out.push(
    'A telemetry message holds **one reading** (an object with `seq`, optional `ts` and the metrics) or a ' +
      '**batch** (`{"v": 1, "readings": [ ... ]}`) that a device sends after being offline. Every reading ' +
      'carries its own `seq` and, when the device has a set clock, its own `ts`.',
    '',
  )
  out.push(
    table(
      ['Field', 'Type', 'Range', 'Required', 'Meaning'],
      [
        [
          '`v`',
          'integer',
          CONTRACT_VERSIONS.join(', '),
          'no (default 1)',
          'Contract version; top level only, never inside a batch reading',
        ],
        [
          '`ts`',
          'integer',
          `${formatNumber(TS_MIN)} … ${formatNumber(TS_MAX)}`,
          'no',
          'Observation time in ms since the Unix epoch (UTC). Without it the platform uses its receive time, one millisecond later for each reading of the device that would share it (the rest of a batch, two messages in one millisecond), so that none replaces another. A clock that was never set (1970) is `out_of_range`; more than ' +
            `${DEFAULT_MAX_FUTURE_SKEW_MS / 60_000} minutes ahead of the platform is \`future_timestamp\``,
        ],
        [
          '`seq`',
          'integer',
          `0 … ${Number.MAX_SAFE_INTEGER}`,
          'yes',
          'Per-device counter, +1 per reading, restarting at 0 after a firmware reset; the platform detects duplicates and gaps from it',
        ],
      ],
    ),
    '',
  )
  out.push(
    '- Unknown fields are rejected (`schema`): a misspelled metric must not vanish silently.',
    '- Metrics are JSON numbers; `null`, strings and booleans are `schema` errors. Leave out a metric the device did not measure.',
    '- A number outside the plausible range of the sensor is `out_of_range` (a broken sensor, never an alarm).',
    `- A batch holds 1 to ${MAX_BATCH_READINGS} readings **and** the whole payload must fit in ${DEFAULT_MAX_PAYLOAD_BYTES} bytes. ` +
      'A 1000-reading backlog with four metrics is already larger than that: split backlogs by size as well as count.',
    '- One bad reading rejects the whole batch; the device learns nothing from a rejection, so fix the firmware rather than resending.',
    '',
  )
  for (const kind of DEVICE_KINDS) {
    const spec = KIND_SPECS[kind]
    const metrics: Record<string, MetricSpec> = spec.metrics
    const required: readonly string[] = spec.requireOneOf
    out.push(
      `### \`${kind}\``,
      '',
      `${spec.description}. JSON Schema: \`json-schema/telemetry-${kind}.schema.json\`.`,
      '',
    )
    out.push(
      table(
        ['Metric', 'Unit', 'Range', 'Integer', 'Required', 'Description'],
        Object.entries(metrics).map(([name, m]) => [
          `\`${name}\``,
          m.unit,
          metricRange(m),
          m.integer ? 'yes' : 'no',
          required.includes(name) ? (required.length === 1 ? 'yes' : 'at least one of ★') : 'no',
          m.description,
        ]),
      ),
      '',
    )
    if (required.length > 1)
      out.push(`★ Every reading needs at least one of: ${required.map((n) => `\`${n}\``).join(', ')}.`, '')
    out.push('One reading:', '', example(fixtures, `telemetry-${kind}-valid-single.json`), '')
    out.push('Batch:', '', example(fixtures, `telemetry-${kind}-valid-batch.json`), '')
  }
  return out
}

function messageSection(
  title: string,
  intro: readonly string[],
  schema: JsonSchemaObject,
  examples: string[],
): string[] {
  return [title, '', ...intro, '', table(FIELD_HEADERS, fieldRows(schema)), '', ...examples]
}

/** Renders CONTRACT.md. Deterministic: everything comes from the contracts, nothing from the clock. */
export function renderContractDoc(): string {
  const schemas = contractJsonSchemas()
  const fixtures = goldenFixtures()
  const out: string[] = []

  out.push('# Firmware contract', '')
  out.push(
    '> Generated from `firmware-contracts/` by `scripts/generate-contracts.ts`. Do not edit: change the zod ' +
      'schemas and run `npx tsx scripts/generate-contracts.ts`.',
    '',
  )
  out.push(
    `Contract version **${CURRENT_CONTRACT_VERSION}** (accepted: ${CONTRACT_VERSIONS.join(', ')}). Payloads are UTF-8 JSON objects. ` +
      'Machine-readable forms: one JSON Schema (draft 2020-12) per message in `json-schema/`, and golden ' +
      'fixtures (valid and invalid payloads with the expected answer) in `../fixtures/`.',
    '',
  )

  out.push('## Topics', '')
  out.push('```', `${TOPIC_ROOT}/<deviceId>/<channel>`, '```', '')
  out.push(
    `- \`deviceId\`: 3 to 64 characters of \`a-z\`, \`0-9\` and \`-\`, starting and ending with a letter or digit ` +
      `(pattern \`${DEVICE_ID_PATTERN.source}\`). Lowercase only, so topic, file name, database tag and SQL value agree. ` +
      `Reserved, never valid: ${RESERVED_DEVICE_IDS.map((id) => `\`${id}\``).join(', ')}.`,
    `- A topic is at most ${MAX_TOPIC_LENGTH} characters, has no leading or trailing \`/\`, no empty levels and no wildcards.`,
    '- The topic carries the device id only. Kind, district and location come from the registry, so a device cannot claim to be something it is not.',
    '- Publish telemetry with QoS 1. The PUBACK means the reading is durably stored, or was rejected and recorded with a reason; either way, do not resend it.',
    '- Register the last will (`status` with `"online": false`) when connecting, and publish the birth message (`"online": true`) right after.',
    '- Never set the MQTT retain flag on anything a device publishes (the last will included): the broker refuses retained publishes from devices.',
    '',
  )
  out.push(
    table(
      ['Channel', 'Topic', 'Direction', 'Message'],
      (Object.keys(CHANNELS) as Channel[]).map((c) => [
        `\`${CHANNELS[c].path}\``,
        `\`${TOPIC_ROOT}/<deviceId>/${CHANNELS[c].path}\``,
        CHANNELS[c].direction === 'up'
          ? 'up (device publishes)'
          : 'down (platform publishes, device subscribes)',
        CHANNEL_MESSAGES[c],
      ]),
    ),
    '',
  )

  out.push(...telemetrySection(fixtures))
  out.push(
    '_In the field tables below, `a.b` is field `b` of object `a`; "Required" applies within that object, when it is sent._',
    '',
  )

  out.push(
    ...messageSection(
      '## Status (`devices/<deviceId>/status`, up)',
      [
        'Birth message and last will. The last will is composed when the device connects, so leave `ts` out of it; ' +
          `the platform uses the time the broker published it. Control messages must fit in ${DEFAULT_MAX_CONTROL_PAYLOAD_BYTES} bytes.`,
        '',
        table(
          ['Suggested `reason`', 'Meaning'],
          Object.entries(STATUS_REASONS).map(([token, meaning]) => [`\`${token}\``, meaning]),
        ),
      ],
      schemaNamed(schemas, 'status'),
      [
        'Birth:',
        '',
        example(fixtures, 'status-valid-birth.json'),
        '',
        'Last will:',
        '',
        example(fixtures, 'status-valid-last-will.json'),
        '',
      ],
    ),
  )

  out.push('## Config (`devices/<deviceId>/config`, down)', '')
  out.push(
    'The whole configuration of one device; each message replaces the previous one, so a device can apply it ' +
      `without merging. \`interval\` is ${MIN_REPORT_INTERVAL_S} to ${MAX_REPORT_INTERVAL_S} s. While a threshold is ` +
      'exceeded the device reports every `alertInterval` seconds (never longer than `interval`). Thresholds must ' +
      'increase where they are ordered; calibration offsets are added to the raw value before it is reported ' +
      `and exist only for analog metrics. Answer a config that fails these rules by keeping the previous one.`,
    '',
  )
  for (const kind of DEVICE_KINDS) {
    const calibrated = calibratedMetrics(kind)
    out.push(
      `### \`${kind}\``,
      '',
      `JSON Schema: \`json-schema/config-${kind}.schema.json\`. Calibrated metrics: ${
        calibrated.length > 0 ? calibrated.map((n) => `\`${n}\``).join(', ') : 'none'
      }.`,
      '',
      table(FIELD_HEADERS, fieldRows(schemaNamed(schemas, `config-${kind}`))),
      '',
    )
  }
  out.push('Example (river-level):', '', example(fixtures, 'config-river-level-valid-full.json'), '')

  out.push('## Commands (`devices/<deviceId>/cmd`, down)', '')
  out.push(
    `Commands: ${COMMAND_NAMES.map((n) => `\`${n}\``).join(', ')}. The device answers each on \`cmd/ack\` with the same \`id\`. ` +
      'A device that does not know a command name answers `{"id": ..., "ok": false, "error": "unknown-command"}`. ' +
      'Commands with no arguments may leave out `args`.',
    '',
  )
  const cmd = schemaNamed(schemas, 'cmd')
  for (const variant of (cmd.oneOf ?? []) as JsonSchemaObject[]) {
    out.push(
      `### \`${String(variant.title)}\``,
      '',
      `${String(variant.description)}.`,
      '',
      table(FIELD_HEADERS, fieldRows(variant)),
      '',
    )
  }
  out.push('Example:', '', example(fixtures, 'cmd-valid-set-interval.json'), '')

  out.push(
    ...messageSection(
      '## Command acknowledgement (`devices/<deviceId>/cmd/ack`, up)',
      ['`error` is only allowed when `ok` is false.'],
      schemaNamed(schemas, 'cmd-ack'),
      [
        'Examples:',
        '',
        example(fixtures, 'cmd-ack-valid-done.json'),
        '',
        example(fixtures, 'cmd-ack-valid-failed.json'),
        '',
      ],
    ),
  )

  out.push('## Reason codes', '')
  out.push(
    'A rejected payload is acknowledged, never stored as a reading, and kept (bounded) with one of these codes so ' +
      'an installer can see why. Codes are stable: new ones may be added, existing ones are never renamed or reused.',
    '',
  )
  out.push(
    table(
      ['Code', 'Meaning', 'Raised by'],
      (Object.keys(REJECT_REASONS) as RejectReason[]).map((code) => [
        `\`${code}\``,
        REJECT_REASONS[code],
        REASON_SOURCES[code],
      ]),
    ),
    '',
  )
  out.push(
    'When one payload has several problems, the first check that fails decides: size (`too_large`), kind ' +
      '(`unknown_kind`), UTF-8 and JSON (`invalid_json`), version (`unsupported_version`), fields (`schema`, or ' +
      '`out_of_range` when every problem is a number outside its range), then timestamps (`future_timestamp`).',
    '',
  )

  out.push('## Versioning', '')
  out.push(
    '- Every message has an optional top-level `v`. A payload without `v` is version 1, so firmware written before `v` existed keeps validating unchanged; `"v": 1` means the same.',
    `- The platform accepts version ${CONTRACT_VERSIONS.join(', ')}. Any other value of \`v\` (\`2\`, \`"1"\`, \`null\`) is \`unsupported_version\`.`,
    '- Additive changes (a new kind, a new optional metric, a new command or status reason) keep the version. Because unknown fields are rejected, the platform is upgraded before firmware that sends a new field.',
    '- Breaking changes (renaming or removing a field, changing a unit or a range in a way that rejects old payloads) add a new version; the platform keeps accepting the older ones while such firmware is in the field.',
    '',
  )

  out.push('## Golden fixtures', '')
  out.push(
    'Each file in `../fixtures/` is `{"name", "kind" | "channel", "payload", "expect"}`: `payload` is exactly the ' +
      'text on the wire (UTF-8), `kind` names the device kind (telemetry and config), `channel` the topic channel ' +
      '(every message but telemetry), and `expect` is `{"ok": true, "readings": n}` (telemetry), `{"ok": true}` ' +
      `(other messages) or \`{"ok": false, "code": "<reason>"}\`. Validate them as if received at ${FIXTURE_NOW} ` +
      `(${new Date(FIXTURE_NOW).toISOString()}), with the default limits.`,
    '',
  )
  out.push(
    table(
      ['File', 'Case', 'Expect'],
      fixtures.map((f) => [`\`${f.file}\``, f.name, expectText(f)]),
    ),
    '',
  )
  return `${out.join('\n').trimEnd()}\n`
}
