import { timingSafeEqual } from 'node:crypto'

/** Stable error codes of the REST API; clients key on them. */
export const API_ERROR_CODES = {
  bad_request: 'The request is malformed or a parameter is invalid',
  invalid_json: 'The request body is not valid JSON',
  unauthorized: 'A valid bearer token is required',
  forbidden: 'The origin or token may not use this endpoint',
  not_found: 'No such resource',
  conflict: 'The resource already exists or is in a conflicting state',
  // The device registry's own refusals (409), more telling to an installer than `conflict`.
  device_exists: 'A device with this id is registered and not decommissioned',
  device_revoked: 'The device is revoked or decommissioned',
  invalid_transition: "The device's status does not allow this change",
  installer_exists: 'This installer already has a token',
  payload_too_large: 'The request body is too large',
  comment_required: 'A non-empty comment is required',
  store_unavailable: 'The time-series store did not answer; try again',
  too_many_displays: 'The live stream has as many displays connected as it allows; try again later',
  internal: 'Internal error',
} as const
export type ApiErrorCode = keyof typeof API_ERROR_CODES

export class HttpError extends Error {
  override readonly name = 'HttpError'
  constructor(
    readonly statusCode: number,
    readonly code: ApiErrorCode,
    message: string = API_ERROR_CODES[code],
  ) {
    super(message)
  }
}

export function tokenMatches(given: string | undefined, expected: string): boolean {
  if (given === undefined) return false
  const a = Buffer.from(given)
  const b = Buffer.from(expected)
  return a.length === b.length && timingSafeEqual(a, b)
}

/**
 * The token of an `Authorization: Bearer <token>` header. The scheme is case-insensitive (RFC 9110
 * 11.1) and spaces around the token are not part of it; every route reads the header through here, so
 * no route takes a header that another refuses.
 */
export function bearerToken(header: string | undefined): string | undefined {
  const match = header === undefined ? null : /^bearer[ \t]+(.*)$/i.exec(header)
  const token = match?.[1]?.trim()
  return token === undefined || token === '' ? undefined : token
}
