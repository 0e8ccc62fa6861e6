/** Stable error codes of the analyst query API, on top of the REST API's own (`dashboard-api/errors.ts`). */
export const QUERY_ERROR_CODES = {
  bad_request: 'The query is malformed or a parameter is invalid',
  not_found: 'No such device',
  query_too_large: 'The answer would exceed QUERY_MAX_POINTS values',
  query_timeout: 'The store did not answer within QUERY_TIMEOUT_MS',
  store_unavailable: 'The time-series store did not answer; try again',
} as const
export type QueryErrorCode = keyof typeof QUERY_ERROR_CODES

export class QueryError extends Error {
  override readonly name = 'QueryError'
  constructor(
    readonly statusCode: number,
    readonly code: QueryErrorCode,
    message: string = QUERY_ERROR_CODES[code],
    options?: ErrorOptions,
  ) {
    super(message, options)
  }
}
