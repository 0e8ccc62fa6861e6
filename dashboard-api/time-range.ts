import { z } from 'zod'

const RELATIVE = /^-(\d{1,6})(s|m|h|d|w)$/
const UNIT_MS = { s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000, w: 604_800_000 } as const

/**
 * A point in time as analysts type it: epoch milliseconds, an ISO 8601 date-time, or relative to now
 * (`-15m`, `-1h`, `-7d`). Anything else is a 400, never a guess.
 */
export function timeParam(now: number) {
  return z.string().transform((value, ctx) => {
    const rel = RELATIVE.exec(value)
    if (rel) return now - Number(rel[1]) * UNIT_MS[rel[2] as keyof typeof UNIT_MS]
    if (/^\d{1,15}$/.test(value)) return Number(value)
    if (/^\d{4}-\d{2}-\d{2}(T[\d:.]+(Z|[+-]\d{2}:?\d{2})?)?$/.test(value)) {
      const t = Date.parse(value)
      if (Number.isFinite(t)) return t
    }
    ctx.addIssue({
      code: 'custom',
      message: 'expected epoch ms, an ISO 8601 time, or a relative time like -1h',
    })
    return z.NEVER
  })
}
