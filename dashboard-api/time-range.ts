import { z } from 'zod'
import { DEFAULT_TIME_ZONE, parseTime, QueryError, TIME_ZONES } from '../ingest/query/index.ts'

/**
 * A point in time as analysts type it, read as the analyst API reads it: epoch milliseconds, an ISO 8601
 * date or date-time (without a zone: WITA, so that the answer does not depend on the server's TZ), `now`,
 * or relative to now (`-15m`, `-1h`, `-7d`). Anything else, or an instant no store can hold, is a 400.
 */
export function timeParam(now: number) {
  return z.string().transform((value, ctx) => {
    try {
      return parseTime(value, now, 'time', TIME_ZONES[DEFAULT_TIME_ZONE])
    } catch (err) {
      if (!(err instanceof QueryError)) throw err
      ctx.addIssue({
        code: 'custom',
        message:
          'expected epoch ms, an ISO 8601 time (WITA without a zone), now, or a relative time like -1h',
      })
      return z.NEVER
    }
  })
}
