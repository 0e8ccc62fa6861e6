import { z } from 'zod'
import { type DeviceKind, isDeviceKind } from './kinds.ts'
import type { Rejection } from './reasons.ts'
import { MAX_BATCH_READINGS, type Reading, TELEMETRY_SCHEMAS } from './telemetry.ts'

export interface ValidateOptions {
  /** Server receive time, ms since epoch. */
  readonly now: number
  /** Readings stamped further ahead than this are rejected (`future_timestamp`). */
  readonly maxFutureSkewMs?: number
  /** Payloads larger than this are rejected without parsing (`too_large`). */
  readonly maxPayloadBytes?: number
}

export const DEFAULT_MAX_FUTURE_SKEW_MS = 5 * 60_000
export const DEFAULT_MAX_PAYLOAD_BYTES = 64 * 1024

export type ValidationResult =
  | { readonly ok: true; readonly readings: readonly Reading[] }
  | { readonly ok: false; readonly rejection: Rejection }

const decoder = new TextDecoder('utf-8', { fatal: true })

function reject(code: Rejection['code'], message: string): ValidationResult {
  return { ok: false, rejection: { code, message } }
}

/** Range violations are a sensor fault, shape violations a firmware fault: installers fix them differently. */
function classify(error: z.ZodError): Rejection['code'] {
  const leafIssues = error.issues.flatMap((i) =>
    i.code === 'invalid_union' ? i.errors.flat() : i.code === 'invalid_element' ? i.issues : [i],
  )
  const numericRange = leafIssues.every(
    (i) => (i.code === 'too_big' || i.code === 'too_small') && i.origin === 'number',
  )
  return leafIssues.length > 0 && numericRange ? 'out_of_range' : 'schema'
}

function toReading(raw: Record<string, unknown>): Reading {
  const fields: Record<string, number> = {}
  for (const key in raw) {
    if (key === 'ts' || key === 'seq' || key === 'v') continue
    const value = raw[key]
    if (typeof value === 'number') fields[key] = value
  }
  return { ts: raw.ts as number | undefined, seq: raw.seq as number, fields }
}

/**
 * Validates one telemetry payload against the contract of the device's kind. Never throws: every
 * input, however broken, yields either readings or a rejection with a stable reason code.
 */
export function validateTelemetry(kind: DeviceKind | string, payload: Uint8Array | string, opts: ValidateOptions): ValidationResult {
  const maxBytes = opts.maxPayloadBytes ?? DEFAULT_MAX_PAYLOAD_BYTES
  const size = typeof payload === 'string' ? Buffer.byteLength(payload) : payload.byteLength
  if (size > maxBytes) return reject('too_large', `payload is ${size} bytes; the limit is ${maxBytes}`)
  if (!isDeviceKind(kind)) return reject('unknown_kind', `no contract for device kind "${String(kind).slice(0, 64)}"`)

  let parsed: unknown
  try {
    parsed = JSON.parse(typeof payload === 'string' ? payload : decoder.decode(payload))
  } catch (err) {
    return reject('invalid_json', err instanceof Error ? err.message.slice(0, 200) : 'not JSON')
  }
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) {
    return reject('schema', 'telemetry must be a JSON object')
  }
  const version = (parsed as { v?: unknown }).v
  if (version !== undefined && version !== 1) {
    return reject('unsupported_version', `contract version ${JSON.stringify(version).slice(0, 20)} is not supported; use 1`)
  }

  const schemas = TELEMETRY_SCHEMAS[kind]
  const isBatch = 'readings' in parsed
  const result = isBatch ? schemas.batch.safeParse(parsed) : schemas.single.safeParse(parsed)
  if (!result.success) {
    const more = isBatch ? ` (a batch holds 1 to ${MAX_BATCH_READINGS} readings)` : ''
    return reject(classify(result.error), z.prettifyError(result.error) + more)
  }
  const raws = (isBatch ? (result.data as { readings: Record<string, unknown>[] }).readings : [result.data]) as Record<
    string,
    unknown
  >[]
  const readings = raws.map(toReading)

  const limit = opts.now + (opts.maxFutureSkewMs ?? DEFAULT_MAX_FUTURE_SKEW_MS)
  for (const r of readings) {
    if (r.ts !== undefined && r.ts > limit) {
      return reject('future_timestamp', `reading seq ${r.seq} is stamped ${r.ts - opts.now} ms in the future`)
    }
  }
  return { ok: true, readings }
}
