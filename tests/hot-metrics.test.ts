import fc from 'fast-check'
import { AggregatorRegistry, Histogram, Registry } from 'prom-client'
import { describe, expect, it } from 'vitest'
import { HotHistogram } from '../ingest/hot-histogram.ts'
import { createMetrics } from '../ingest/metrics.ts'

const BUCKETS = [0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2]

/** The same observations through prom-client's Histogram and through HotHistogram, one registry each. */
function both(values: readonly number[], buckets = BUCKETS) {
  const theirs = new Registry()
  const ours = new Registry()
  const h = new Histogram({ name: 'x_seconds', help: 'help "text"\\', buckets, registers: [theirs] })
  const hot = new HotHistogram('x_seconds', 'help "text"\\', buckets, [ours])
  for (const v of values) {
    h.observe(v)
    hot.observe(v)
  }
  return { theirs, ours, hot }
}

// Values on the bounds, just beside them, zero, and anything finite and non-negative (timings).
const value = fc.oneof(
  fc.constantFrom(...BUCKETS, 0),
  fc.constantFrom(...BUCKETS).map((b) => b * (1 + Number.EPSILON)),
  fc.double({ min: 0, max: 1e6, noNaN: true }),
)

describe('HotHistogram', () => {
  it('exports exactly what prom-client’s Histogram exports for the same observations', async () => {
    await fc.assert(
      fc.asyncProperty(fc.array(value, { maxLength: 200 }), async (values) => {
        const { theirs, ours } = both(values)
        expect(await ours.metrics()).toBe(await theirs.metrics())
      }),
      { numRuns: 300 },
    )
  })

  it('sums across threads as prom-client does (the broker thread’s registry merged into the platform’s)', async () => {
    await fc.assert(
      fc.asyncProperty(fc.array(value), fc.array(value), async (a, b) => {
        const x = both(a)
        const y = both(b)
        const merge = async (r1: Registry, r2: Registry) =>
          AggregatorRegistry.aggregate([await r1.getMetricsAsJSON(), await r2.getMetricsAsJSON()]).metrics()
        expect(await merge(x.ours, y.ours)).toBe(await merge(x.theirs, y.theirs))
      }),
      { numRuns: 100 },
    )
  })

  it('refuses buckets out of order or not finite, and ignores values that are not finite', async () => {
    const { theirs, ours, hot } = both([0.3, 5, 0.001], [0.1, 1, 2])
    expect(await ours.metrics()).toBe(await theirs.metrics())
    hot.observe(Number.NaN)
    hot.observe(Number.POSITIVE_INFINITY)
    expect(await ours.metrics()).toBe(await theirs.metrics())
    for (const buckets of [[], [1, 1], [2, 1], [1, Number.POSITIVE_INFINITY], [Number.NaN]]) {
      expect(() => new HotHistogram('y', 'y', buckets, [])).toThrow('finite numbers in increasing order')
    }
    hot.reset()
    expect(await ours.metrics()).toBe(await both([], [0.1, 1, 2]).theirs.metrics())
  })

  it('is what the platform exports for its per-reading histograms', async () => {
    const metrics = createMetrics()
    metrics.publishToDurableSeconds.observe(0.003)
    metrics.readingDelaySeconds.observe(42)
    const text = await metrics.registry.metrics()
    expect(text).toContain('ingest_publish_to_durable_seconds_bucket{le="0.005"} 1')
    expect(text).toContain('ingest_publish_to_durable_seconds_bucket{le="0.002"} 0')
    expect(text).toContain('ingest_reading_delay_seconds_bucket{le="300"} 1')
    expect(text).toContain('ingest_reading_delay_seconds_sum 42')
    expect(text).toContain('# TYPE ingest_reading_delay_seconds histogram')
  })

  it('adds accepted readings to their counter at every scrape, per kind, and never twice', async () => {
    const metrics = createMetrics()
    metrics.countAccepted('river-level', 3)
    metrics.countAccepted('rain-gauge', 1)
    metrics.countAccepted('river-level', 2)
    const first = await metrics.registry.metrics()
    expect(first).toContain('ingest_readings_accepted_total{kind="river-level"} 5')
    expect(first).toContain('ingest_readings_accepted_total{kind="rain-gauge"} 1')
    metrics.countAccepted('rain-gauge', 4)
    const second = await metrics.registry.metrics()
    expect(second).toContain('ingest_readings_accepted_total{kind="river-level"} 5')
    expect(second).toContain('ingest_readings_accepted_total{kind="rain-gauge"} 5')
  })
})
