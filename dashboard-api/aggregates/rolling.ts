/**
 * Rolling statistics of one metric in constant memory and O(1) work per reading: a ring of 60 one-minute
 * buckets (the 15-minute and 1-hour windows) and a ring of 6 ten-second buckets (the 1-minute window).
 * Windows end at the newest observation time the device reported, not at the wall clock, so a silent
 * device keeps showing the hour before it went quiet (its status says it is stale). A window is bucket
 * aligned: its oldest bucket may be partly outside it, which is fine for a wall display.
 */

const MINUTE = 60_000
const SLOT = 10_000
const MINUTES = 60
const SLOTS = 6

export type WindowName = 'm1' | 'm15' | 'h1'
export const WINDOW_MS: Readonly<Record<WindowName, number>> = {
  m1: MINUTE,
  m15: 15 * MINUTE,
  h1: 60 * MINUTE,
}

export interface WindowStats {
  readonly mean: number
  readonly min: number
  readonly max: number
  readonly count: number
}

/** sum, count, min, max per bucket, and the bucket's index (time / width) so old contents are detected. */
class BucketRing {
  private readonly data: Float64Array
  private readonly index: Float64Array

  constructor(
    private readonly size: number,
    private readonly width: number,
  ) {
    this.data = new Float64Array(size * 4)
    this.index = new Float64Array(size).fill(-1)
  }

  add(ts: number, value: number) {
    const b = Math.floor(ts / this.width)
    const slot = b % this.size
    const o = slot * 4
    if (this.index[slot] !== b) {
      // Older than what the slot holds: a reading from beyond the window's reach, drop it.
      if (this.index[slot]! > b) return
      this.index[slot] = b
      this.data[o] = value
      this.data[o + 1] = 1
      this.data[o + 2] = value
      this.data[o + 3] = value
      return
    }
    this.data[o]! += value
    this.data[o + 1]! += 1
    if (value < this.data[o + 2]!) this.data[o + 2] = value
    if (value > this.data[o + 3]!) this.data[o + 3] = value
  }

  /** Stats over the buckets [end - n + 1, end] of bucket index `end`. */
  stats(endTs: number, n: number): WindowStats | null {
    const end = Math.floor(endTs / this.width)
    let sum = 0
    let count = 0
    let min = Number.POSITIVE_INFINITY
    let max = Number.NEGATIVE_INFINITY
    for (let b = end - n + 1; b <= end; b++) {
      const slot = ((b % this.size) + this.size) % this.size
      if (this.index[slot] !== b) continue
      const o = slot * 4
      sum += this.data[o]!
      count += this.data[o + 1]!
      if (this.data[o + 2]! < min) min = this.data[o + 2]!
      if (this.data[o + 3]! > max) max = this.data[o + 3]!
    }
    return count === 0 ? null : { mean: sum / count, min, max, count }
  }

  /** Count over the `n` buckets up to `endTs`, and the position of the oldest non-empty one (-1: none). */
  coverage(endTs: number, n: number): { count: number; oldest: number } {
    const end = Math.floor(endTs / this.width)
    let count = 0
    let oldest = -1
    for (let b = end - n + 1; b <= end; b++) {
      const slot = ((b % this.size) + this.size) % this.size
      if (this.index[slot] !== b) continue
      if (oldest < 0) oldest = b - (end - n + 1)
      count += this.data[slot * 4 + 1]!
    }
    return { count, oldest }
  }

  /** Mean per bucket for the `n` buckets up to `endTs`, oldest first; null where a bucket is empty. */
  means(endTs: number, n: number): Array<number | null> {
    const end = Math.floor(endTs / this.width)
    const out: Array<number | null> = []
    for (let b = end - n + 1; b <= end; b++) {
      const slot = ((b % this.size) + this.size) % this.size
      out.push(this.index[slot] === b ? this.data[slot * 4]! / this.data[slot * 4 + 1]! : null)
    }
    return out
  }
}

export class RollingMetric {
  private readonly minutes = new BucketRing(MINUTES, MINUTE)
  private readonly slots = new BucketRing(SLOTS, SLOT)

  add(ts: number, value: number) {
    this.minutes.add(ts, value)
    this.slots.add(ts, value)
  }

  window(name: WindowName, endTs: number): WindowStats | null {
    switch (name) {
      case 'm1':
        return this.slots.stats(endTs, SLOTS)
      case 'm15':
        return this.minutes.stats(endTs, 15)
      case 'h1':
        return this.minutes.stats(endTs, MINUTES)
    }
  }

  /**
   * Readings in the hour up to `endTs`, and the minute (0 = oldest of the 60) of the oldest of them, -1
   * when there are none. Allocates no per-minute array: the alarm engine asks for every device every second.
   */
  hourCoverage(endTs: number): { count: number; oldest: number } {
    return this.minutes.coverage(endTs, MINUTES)
  }

  /** The last hour as 60 per-minute means, oldest first (a sparkline). */
  hour(endTs: number): Array<number | null> {
    return this.minutes.means(endTs, MINUTES)
  }

  /**
   * Least-squares slope of the per-minute means over the last `minutes` minutes, in units per hour;
   * null with fewer than two minutes of data.
   */
  slopePerHour(endTs: number, minutes = 15): number | null {
    const means = this.minutes.means(endTs, minutes)
    let n = 0
    let sx = 0
    let sy = 0
    let sxx = 0
    let sxy = 0
    for (let i = 0; i < means.length; i++) {
      const y = means[i]
      if (y === null || y === undefined) continue
      n++
      sx += i
      sy += y
      sxx += i * i
      sxy += i * y
    }
    if (n < 2) return null
    const denom = n * sxx - sx * sx
    if (denom === 0) return null
    return ((n * sxy - sx * sy) / denom) * 60
  }
}
