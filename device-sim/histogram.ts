/**
 * A latency histogram with logarithmic buckets (32 per power of two, ~2 % resolution) over microseconds:
 * constant memory however many samples a load run records, and percentiles without sorting.
 */
const SUB_BITS = 5
const SUB = 1 << SUB_BITS
const LINEAR = SUB * 2
const MAX_EXPONENT = 40

function bucketOf(us: number): number {
  if (us < LINEAR) return us
  const exponent = Math.min(MAX_EXPONENT, Math.floor(Math.log2(us)))
  const sub = Math.floor(us / 2 ** (exponent - SUB_BITS)) - SUB
  return LINEAR + (exponent - SUB_BITS - 1) * SUB + Math.min(SUB - 1, sub)
}

function lowerBoundOf(bucket: number): number {
  if (bucket < LINEAR) return bucket
  const exponent = Math.floor((bucket - LINEAR) / SUB) + SUB_BITS + 1
  const sub = (bucket - LINEAR) % SUB
  return (SUB + sub) * 2 ** (exponent - SUB_BITS)
}

export interface LatencySummary {
  readonly count: number
  readonly meanMs: number
  readonly p50Ms: number
  readonly p90Ms: number
  readonly p99Ms: number
  readonly maxMs: number
}

export class LatencyHistogram {
  private readonly counts = new Float64Array(LINEAR + (MAX_EXPONENT - SUB_BITS) * SUB)
  private total = 0
  private sumUs = 0
  private maxUs = 0

  /** Records one sample in milliseconds (fractions welcome). */
  record(ms: number): void {
    const us = Math.max(0, Math.round(ms * 1000))
    this.counts[bucketOf(us)]!++
    this.total++
    this.sumUs += us
    if (us > this.maxUs) this.maxUs = us
  }

  get count(): number {
    return this.total
  }

  /** The q-quantile (0..1) in ms: the lower bound of the bucket holding it, so within ~2 % below. */
  quantile(q: number): number {
    if (this.total === 0) return 0
    const rank = Math.max(1, Math.ceil(q * this.total))
    let seen = 0
    for (let i = 0; i < this.counts.length; i++) {
      seen += this.counts[i]!
      if (seen >= rank) return Math.min(lowerBoundOf(i), this.maxUs) / 1000
    }
    return this.maxUs / 1000
  }

  summary(): LatencySummary {
    return {
      count: this.total,
      meanMs: this.total === 0 ? 0 : this.sumUs / this.total / 1000,
      p50Ms: this.quantile(0.5),
      p90Ms: this.quantile(0.9),
      p99Ms: this.quantile(0.99),
      maxMs: this.maxUs / 1000,
    }
  }
}
