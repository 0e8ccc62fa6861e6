import type { z } from 'zod'
import type { Rejection } from './reasons.ts'
import { CONTRACT_VERSIONS } from './telemetry.ts'

/** Shared first steps of every validator: size, UTF-8, JSON, object, version. Never throws. */
export type DecodedPayload =
  | { readonly ok: true; readonly value: Record<string, unknown> }
  | { readonly ok: false; readonly rejection: Rejection }

const decoder = new TextDecoder('utf-8', { fatal: true })

function fail(code: Rejection['code'], message: string): DecodedPayload {
  return { ok: false, rejection: { code, message } }
}

/**
 * UTF-8 length without `Buffer`, so the contracts also load in a browser bundle. Lone surrogates count 3
 * bytes, as `Buffer.byteLength` counts them (they encode as U+FFFD).
 */
export function utf8ByteLength(text: string): number {
  let bytes = 0
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i)
    if (c < 0x80) bytes += 1
    else if (c < 0x800) bytes += 2
    else if (c >= 0xd800 && c <= 0xdbff && i + 1 < text.length) {
      const next = text.charCodeAt(i + 1)
      if (next >= 0xdc00 && next <= 0xdfff) {
        bytes += 4
        i++
      } else bytes += 3
    } else bytes += 3
  }
  return bytes
}

/**
 * A short, safe rendering of an arbitrary parsed JSON value for messages. `JSON.stringify` is not safe here:
 * a deeply nested value that `JSON.parse` accepted can overflow the stack when stringified.
 */
export function describeValue(value: unknown): string {
  if (value === null) return 'null'
  if (Array.isArray(value)) return 'an array'
  switch (typeof value) {
    case 'string':
      return JSON.stringify(value.slice(0, 64))
    case 'number':
    case 'boolean':
      return String(value)
    case 'object':
      return 'an object'
    default:
      return typeof value
  }
}

/** Size check alone, for callers that must answer `too_large` before anything else (as telemetry does). */
export function payloadSizeRejection(payload: unknown, maxBytes: number): Rejection | undefined {
  if (typeof payload === 'string') {
    if (payload.length <= maxBytes / 3) return undefined
    const size = utf8ByteLength(payload)
    return size > maxBytes
      ? { code: 'too_large', message: `payload is ${size} bytes; the limit is ${maxBytes}` }
      : undefined
  }
  if (payload instanceof Uint8Array && payload.byteLength > maxBytes) {
    return { code: 'too_large', message: `payload is ${payload.byteLength} bytes; the limit is ${maxBytes}` }
  }
  return undefined
}

/**
 * Decodes a payload into a JSON object and checks its contract version. `what` names the message in
 * rejection messages ("telemetry", "status", ...).
 */
export function decodeJsonObject(payload: unknown, maxBytes: number, what: string): DecodedPayload {
  const tooLarge = payloadSizeRejection(payload, maxBytes)
  if (tooLarge) return { ok: false, rejection: tooLarge }
  let text: string
  if (typeof payload === 'string') {
    // TextDecoder drops a leading BOM from bytes; strings get the same treatment so both forms agree.
    text = payload.charCodeAt(0) === 0xfeff ? payload.slice(1) : payload
  } else if (payload instanceof Uint8Array) {
    try {
      text = decoder.decode(payload)
    } catch (err) {
      return fail('invalid_json', err instanceof Error ? err.message.slice(0, 200) : 'not UTF-8')
    }
  } else {
    return fail('invalid_json', 'payload must be bytes or a string')
  }

  let parsed: unknown
  try {
    parsed = JSON.parse(text)
  } catch (err) {
    return fail('invalid_json', err instanceof Error ? err.message.slice(0, 200) : 'not JSON')
  }
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) {
    return fail('schema', `${what} must be a JSON object`)
  }
  const version = (parsed as { v?: unknown }).v
  if (version !== undefined && !(CONTRACT_VERSIONS as readonly unknown[]).includes(version)) {
    return fail(
      'unsupported_version',
      `contract version ${describeValue(version)} is not supported; use ${CONTRACT_VERSIONS.join(' or ')}`,
    )
  }
  return { ok: true, value: parsed as Record<string, unknown> }
}

function valueAt(root: unknown, path: readonly PropertyKey[]): unknown {
  let current = root
  for (const key of path) {
    if (typeof current !== 'object' || current === null || !Object.hasOwn(current, key)) return undefined
    current = (current as Record<PropertyKey, unknown>)[key]
  }
  return current
}

function isRangeIssue(issue: z.core.$ZodIssue, input: unknown): boolean {
  if (issue.code === 'too_big' || issue.code === 'too_small') {
    // `int` is the safe-integer bound zod adds to `.int()`; beyond it a counter is out of range, not mistyped.
    return issue.origin === 'number' || issue.origin === 'int'
  }
  if (issue.code === 'invalid_type' && (issue.expected === 'number' || issue.expected === 'int')) {
    // JSON.parse turns 1e400 into Infinity: a number, only far too big.
    const value = valueAt(input, issue.path)
    return typeof value === 'number' && !Number.isFinite(value)
  }
  return false
}

/** Range violations are a sensor fault, shape violations a firmware fault: installers fix them differently. */
export function classifyZodError(error: z.ZodError, input: unknown): Rejection['code'] {
  const leafIssues = error.issues.flatMap((i) =>
    i.code === 'invalid_union' ? i.errors.flat() : i.code === 'invalid_element' ? i.issues : [i],
  )
  return leafIssues.length > 0 && leafIssues.every((i) => isRangeIssue(i, input)) ? 'out_of_range' : 'schema'
}
