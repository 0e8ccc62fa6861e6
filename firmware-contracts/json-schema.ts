import { z } from 'zod'
import { DEVICE_KINDS, KIND_SPECS } from './kinds.ts'
import { CmdAckSchema, CONFIG_SCHEMAS, CommandSchema, StatusSchema } from './messages.ts'
import { TELEMETRY_SCHEMAS } from './telemetry.ts'

export type JsonSchemaObject = Record<string, unknown>

export interface ContractJsonSchema {
  /** File stem, e.g. `telemetry-river-level` (written as `<name>.schema.json`). */
  readonly name: string
  readonly schema: JsonSchemaObject
}

export const JSON_SCHEMA_COMMENT =
  'Generated from firmware-contracts/ by scripts/generate-contracts.ts; edit the zod schemas, not this file'

/**
 * Rules zod expresses as refinements are invisible to `z.toJSONSchema`; the ones JSON Schema can state are
 * added here so that firmware teams validating with a JSON Schema tool get the same answer.
 */
function refinementsAsJsonSchema(): Map<z.core.$ZodType, (json: JsonSchemaObject) => void> {
  const extras = new Map<z.core.$ZodType, (json: JsonSchemaObject) => void>()
  for (const kind of DEVICE_KINDS) {
    const oneOf = KIND_SPECS[kind].requireOneOf
    const needMetric = (json: JsonSchemaObject) => {
      if (oneOf.length === 1) json.required = [...((json.required as string[] | undefined) ?? []), oneOf[0]]
      else json.anyOf = oneOf.map((name) => ({ required: [name] }))
    }
    extras.set(TELEMETRY_SCHEMAS[kind].single, needMetric)
    extras.set(TELEMETRY_SCHEMAS[kind].reading, needMetric)
  }
  extras.set(CmdAckSchema, (json) => {
    json.if = { properties: { ok: { const: true } }, required: ['ok'] }
    // biome-ignore lint/suspicious/noThenProperty: a JSON Schema keyword on plain data, never awaited
    json.then = { properties: { error: false } }
  })
  return extras
}

function toJsonSchema(
  schema: z.ZodType,
  extras: ReturnType<typeof refinementsAsJsonSchema>,
): JsonSchemaObject {
  const generated = z.toJSONSchema(schema, {
    target: 'draft-2020-12',
    // What a device sends: defaults (such as `v`) make a field optional, not required.
    io: 'input',
    unrepresentable: 'throw',
    reused: 'inline',
    override: (ctx) => extras.get(ctx.zodSchema)?.(ctx.jsonSchema as JsonSchemaObject),
  }) as JsonSchemaObject
  const { $schema, ...rest } = generated
  return { $schema, $comment: JSON_SCHEMA_COMMENT, ...rest }
}

/** One JSON Schema (draft 2020-12) per message and kind, in a stable order. */
export function contractJsonSchemas(): ContractJsonSchema[] {
  const extras = refinementsAsJsonSchema()
  const out: ContractJsonSchema[] = []
  for (const kind of DEVICE_KINDS) {
    const { single, batch } = TELEMETRY_SCHEMAS[kind]
    const telemetry = z.union([single, batch]).meta({
      title: `${kind} telemetry`,
      description: `${KIND_SPECS[kind].description}. Published on devices/<deviceId>/telemetry: one reading or a batch.`,
    })
    out.push({ name: `telemetry-${kind}`, schema: toJsonSchema(telemetry, extras) })
  }
  out.push({ name: 'status', schema: toJsonSchema(StatusSchema, extras) })
  for (const kind of DEVICE_KINDS) {
    out.push({ name: `config-${kind}`, schema: toJsonSchema(CONFIG_SCHEMAS[kind], extras) })
  }
  out.push({ name: 'cmd', schema: toJsonSchema(CommandSchema, extras) })
  out.push({ name: 'cmd-ack', schema: toJsonSchema(CmdAckSchema, extras) })
  return out
}
