import { z } from 'zod'
import { type DeviceKind, isDeviceKind } from './kinds.ts'
import { classifyZodError, decodeJsonObject, describeValue, payloadSizeRejection } from './payload.ts'
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

function reject(code: Rejection['code'], message: string): ValidationResult {
  return { ok: false, rejection: { code, message } }
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
export function validateTelemetry(
  kind: DeviceKind | string,
  payload: Uint8Array | string,
  opts: ValidateOptions,
): ValidationResult {
  const tooLarge = payloadSizeRejection(payload, opts.maxPayloadBytes ?? DEFAULT_MAX_PAYLOAD_BYTES)
  if (tooLarge) return { ok: false, rejection: tooLarge }
  if (!isDeviceKind(kind)) return reject('unknown_kind', `no contract for device kind ${describeValue(kind)}`)

  const decoded = decodeJsonObject(payload, opts.maxPayloadBytes ?? DEFAULT_MAX_PAYLOAD_BYTES, 'telemetry')
  if (!decoded.ok) return decoded
  const parsed = decoded.value

  const schemas = TELEMETRY_SCHEMAS[kind]
  const isBatch = 'readings' in parsed
  const result = isBatch ? schemas.batch.safeParse(parsed) : schemas.single.safeParse(parsed)
  if (!result.success) {
    const more = isBatch ? ` (a batch holds 1 to ${MAX_BATCH_READINGS} readings)` : ''
    return reject(classifyZodError(result.error, parsed), z.prettifyError(result.error) + more)
  }
  const raws = (
    isBatch ? (result.data as { readings: Record<string, unknown>[] }).readings : [result.data]
  ) as Record<string, unknown>[]
  const readings = raws.map(toReading)

  const limit = opts.now + (opts.maxFutureSkewMs ?? DEFAULT_MAX_FUTURE_SKEW_MS)
  for (const r of readings) {
    if (r.ts !== undefined && r.ts > limit) {
      return reject('future_timestamp', `reading seq ${r.seq} is stamped ${r.ts - opts.now} ms in the future`)
    }
  }
  return { ok: true, readings }
}
