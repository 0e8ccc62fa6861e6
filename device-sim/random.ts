/**
 * Deterministic randomness. Signals are pure functions of (seed, device, time), so instead of carrying a
 * PRNG through time they hash their coordinates: the same question always gets the same answer, in any
 * order and from any process.
 */

/** mulberry32: tiny, fast, good enough for simulated sensors (not for anything secret). */
export function mulberry32(seed: number): () => number {
  let a = seed >>> 0
  return () => {
    a = (a + 0x6d2b79f5) >>> 0
    let t = a
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
}

/** FNV-1a over a string, so that device ids and place names can seed streams. */
export function hashString(text: string): number {
  let h = 0x811c9dc5
  for (let i = 0; i < text.length; i++) {
    h ^= text.charCodeAt(i)
    h = Math.imul(h, 0x01000193)
  }
  return h >>> 0
}

/** Mixes integers into one 32-bit hash (murmur3 finaliser per step); inputs may be any safe integers. */
export function hashInts(...values: number[]): number {
  let h = 0x9e3779b9
  for (const value of values) {
    // Split so that millisecond timestamps and day numbers above 2^32 still mix fully.
    const lo = (value % 4294967296) | 0
    const hi = Math.floor(value / 4294967296) | 0
    h = mix(h ^ lo)
    h = mix(h ^ hi)
  }
  return h >>> 0
}

function mix(value: number): number {
  let h = value
  h = Math.imul(h ^ (h >>> 16), 0x85ebca6b)
  h = Math.imul(h ^ (h >>> 13), 0xc2b2ae35)
  return (h ^ (h >>> 16)) >>> 0
}

/** A uniform number in [0, 1) for a point in (seed, stream, ...coordinates) space. */
export function uniformAt(...values: number[]): number {
  return mulberry32(hashInts(...values))()
}

/** Standard normal from two uniforms (Box-Muller); deterministic like `uniformAt`. */
export function normalAt(...values: number[]): number {
  const next = mulberry32(hashInts(...values))
  const u = Math.max(next(), 1e-12)
  const v = next()
  return Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * v)
}

/**
 * Smooth noise in [-1, 1]: random values at knots `periodMs` apart, cosine-interpolated, so a series
 * wanders slowly instead of jumping every sample.
 */
export function smoothNoise(seed: number, stream: number, t: number, periodMs: number): number {
  const x = t / periodMs
  const k = Math.floor(x)
  const f = x - k
  const a = uniformAt(seed, stream, k) * 2 - 1
  const b = uniformAt(seed, stream, k + 1) * 2 - 1
  const w = (1 - Math.cos(Math.PI * f)) / 2
  return a * (1 - w) + b * w
}

export function clamp(value: number, min: number, max: number): number {
  return Math.min(max, Math.max(min, value))
}

export function round(value: number, decimals: number): number {
  const f = 10 ** decimals
  return Math.round(value * f) / f
}
