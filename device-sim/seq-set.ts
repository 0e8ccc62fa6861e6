/**
 * A set of sequence numbers stored as sorted, disjoint, inclusive ranges. Acknowledged seqs of one device
 * arrive almost in order, so a long run costs one range instead of millions of set entries.
 */
export class SeqSet {
  /** Flat [start0, end0, start1, end1, ...], sorted, with gaps of at least one between ranges. */
  private readonly bounds: number[] = []
  private count = 0

  get size(): number {
    return this.count
  }

  /** Highest member, or undefined when empty. */
  get max(): number | undefined {
    return this.bounds.length === 0 ? undefined : this.bounds[this.bounds.length - 1]
  }

  add(seq: number): this {
    const b = this.bounds
    const n = b.length
    // Fast path: the next seq after the last range.
    if (n > 0 && seq === b[n - 1]! + 1) {
      b[n - 1] = seq
      this.count++
      return this
    }
    if (n === 0 || seq > b[n - 1]! + 1) {
      b.push(seq, seq)
      this.count++
      return this
    }
    const i = this.rangeIndexAtOrAfter(seq)
    const ranges = n / 2
    if (i < ranges && b[2 * i]! <= seq) return this
    const joinsPrevious = i > 0 && b[2 * i - 1]! + 1 === seq
    const joinsNext = i < ranges && b[2 * i]! - 1 === seq
    if (joinsPrevious && joinsNext) {
      b[2 * i - 1] = b[2 * i + 1]!
      b.splice(2 * i, 2)
    } else if (joinsPrevious) {
      b[2 * i - 1] = seq
    } else if (joinsNext) {
      b[2 * i] = seq
    } else {
      b.splice(2 * i, 0, seq, seq)
    }
    this.count++
    return this
  }

  has(seq: number): boolean {
    const i = this.rangeIndexAtOrAfter(seq)
    return i < this.bounds.length / 2 && this.bounds[2 * i]! <= seq
  }

  /** Inclusive [start, end] ranges, in order. */
  ranges(): Array<[number, number]> {
    const out: Array<[number, number]> = []
    for (let i = 0; i < this.bounds.length; i += 2) out.push([this.bounds[i]!, this.bounds[i + 1]!])
    return out
  }

  toArray(): number[] {
    const out: number[] = []
    for (let i = 0; i < this.bounds.length; i += 2) {
      for (let s = this.bounds[i]!; s <= this.bounds[i + 1]!; s++) out.push(s)
    }
    return out
  }

  /** Members of [from, to] that are missing: the gaps a consumer should look into. */
  missing(from: number, to: number): number[] {
    const out: number[] = []
    for (let s = from; s <= to; s++) if (!this.has(s)) out.push(s)
    return out
  }

  toJSON(): Array<[number, number]> {
    return this.ranges()
  }

  /** Index of the first range whose end is >= seq (binary search). */
  private rangeIndexAtOrAfter(seq: number): number {
    let lo = 0
    let hi = this.bounds.length / 2
    while (lo < hi) {
      const mid = (lo + hi) >>> 1
      if (this.bounds[2 * mid + 1]! < seq) lo = mid + 1
      else hi = mid
    }
    return lo
  }
}
