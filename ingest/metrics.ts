import { PerformanceObserver, constants as perfConstants } from 'node:perf_hooks'
import { getHeapSpaceStatistics } from 'node:v8'
import { AggregatorRegistry, Counter, collectDefaultMetrics, Gauge, Histogram, Registry } from 'prom-client'
import { HotHistogram } from './hot-histogram.ts'

/** Metrics of another thread's registry (`getMetricsAsJSON`), merged into this one's exposition. */
export type MetricsSource = () => Promise<Awaited<ReturnType<Registry['getMetricsAsJSON']>>>

/**
 * One registry per platform instance (tests start several platforms in one process, so the global
 * default registry would mix them).
 */
export interface SpoolGaugeSource {
  readonly pendingCount: number
  readonly diskBytes: number
  readonly maxBytes: number
}

/** A thread's time on a CPU and time spent runnable but waiting for one, since it started (Linux `schedstat`). */
export interface ThreadSchedTimes {
  readonly cpuSeconds: number
  /** Run-queue delay: the thread had work and no core. When it grows, the host is oversubscribed. */
  readonly waitSeconds: number
}

const GC_KINDS: Readonly<Record<number, string>> = {
  [perfConstants.NODE_PERFORMANCE_GC_MINOR]: 'scavenge',
  [perfConstants.NODE_PERFORMANCE_GC_MAJOR]: 'mark-compact',
  [perfConstants.NODE_PERFORMANCE_GC_INCREMENTAL]: 'incremental-marking',
  [perfConstants.NODE_PERFORMANCE_GC_WEAKCB]: 'weak-callbacks',
}

export function createMetrics(options: { defaultMetrics?: boolean } = {}) {
  const registry = new Registry()
  let spoolSource: () => SpoolGaugeSource | undefined = () => undefined
  const sources: MetricsSource[] = []
  const acceptedPending = new Map<string, number>()
  if (options.defaultMetrics) collectDefaultMetrics({ register: registry })
  return {
    registry,
    /** Adds another thread's metrics (the broker thread's) to what `exposition` returns. */
    addSource(source: MetricsSource) {
      sources.push(source)
    },
    /** The Prometheus text of this registry and every added source; a metric both have is summed. */
    async exposition(): Promise<string> {
      if (sources.length === 0) return registry.metrics()
      const all = [await registry.getMetricsAsJSON(), ...(await Promise.all(sources.map((s) => s())))]
      // Both threads register the same names (each counts what happens on it); the sum is the platform's.
      return AggregatorRegistry.aggregate(
        all.map((list) => list.map((m) => ({ ...m, aggregator: 'sum' as const }))),
      ).metrics()
    },
    readingsAccepted: new Counter({
      name: 'ingest_readings_accepted_total',
      help: 'Readings validated and durable in the spool',
      labelNames: ['kind'] as const,
      registers: [registry],
      collect() {
        for (const [kind, n] of acceptedPending) this.inc({ kind }, n)
        acceptedPending.clear()
      },
    }),
    /**
     * Counts accepted readings for `ingest_readings_accepted_total`, which adds them at scrape time: this
     * runs for every publish on the broker thread, where the counter's own `inc` hashes and checks its
     * labels each time.
     */
    countAccepted(kind: string, n: number) {
      acceptedPending.set(kind, (acceptedPending.get(kind) ?? 0) + n)
    },
    readingsRejected: new Counter({
      name: 'ingest_readings_rejected_total',
      help: 'Telemetry payloads rejected, by reason code',
      labelNames: ['reason'] as const,
      registers: [registry],
    }),
    readingsStored: new Counter({
      name: 'ingest_readings_stored_total',
      help: 'Readings confirmed by the time-series store',
      registers: [registry],
    }),
    readingsDeadLettered: new Counter({
      name: 'ingest_readings_dead_lettered_total',
      help: 'Readings the store refused, set aside in the dead-letter file',
      registers: [registry],
    }),
    storeWriteErrors: new Counter({
      name: 'ingest_store_write_errors_total',
      help: 'Failed store writes, by retryability',
      labelNames: ['retryable'] as const,
      registers: [registry],
    }),
    writerFaults: new Counter({
      name: 'ingest_writer_faults_total',
      help: 'Store writer steps that failed outside the store (reading the spool back, committing), by step; each is retried',
      labelNames: ['step'] as const,
      registers: [registry],
    }),
    spoolPending: new Gauge({
      name: 'ingest_spool_pending_readings',
      help: 'Readings durable in the spool and not yet confirmed by the store',
      registers: [registry],
      collect() {
        this.set(spoolSource()?.pendingCount ?? 0)
      },
    }),
    spoolBytes: new Gauge({
      name: 'ingest_spool_bytes',
      help: 'Bytes of spool segments on disk',
      registers: [registry],
      collect() {
        this.set(spoolSource()?.diskBytes ?? 0)
      },
    }),
    spoolLimitBytes: new Gauge({
      name: 'ingest_spool_limit_bytes',
      help: 'Spool disk limit; past it devices are slowed down (delayed PUBACK)',
      registers: [registry],
      collect() {
        this.set(spoolSource()?.maxBytes ?? 0)
      },
    }),
    /**
     * Exports the calling thread's scheduler times at every scrape, as the broker thread's (Linux only;
     * nothing is registered where they cannot be read). Collected on the thread that called this.
     */
    observeBrokerThread(read: () => ThreadSchedTimes | undefined) {
      if (read() === undefined) return
      const counter = (name: string, help: string, pick: (t: ThreadSchedTimes) => number) =>
        new Counter({
          name,
          help,
          registers: [registry],
          collect() {
            const times = read()
            if (times === undefined) return
            this.reset()
            this.inc(pick(times))
          },
        })
      counter(
        'broker_thread_cpu_seconds_total',
        'CPU time of the broker thread (MQTT, validation, spool): near one second per second, it is saturated',
        (t) => t.cpuSeconds,
      )
      counter(
        'broker_thread_runqueue_wait_seconds_total',
        'Time the broker thread had work but waited for a CPU: when it grows, the host is oversubscribed and acknowledgements wait',
        (t) => t.waitSeconds,
      )
    },
    /**
     * The calling thread's young generation and garbage-collection pauses, as the broker thread's: every
     * pause holds up the acknowledgements in flight. Returns a function that stops the observation.
     */
    observeBrokerThreadHeap(): () => void {
      new Gauge({
        name: 'broker_thread_young_generation_bytes',
        help: "Memory committed to the broker thread's young generation: one semi-space of PLATFORM_BROKER_SEMI_SPACE_MB until its first scavenge, then two",
        registers: [registry],
        collect() {
          const space = getHeapSpaceStatistics().find((s) => s.space_name === 'new_space')
          this.set(space?.space_size ?? 0)
        },
      })
      const pauses = new Counter({
        name: 'broker_thread_gc_pause_seconds_total',
        help: 'Time the broker thread stood still for garbage collection, by kind (scavenge: young generation)',
        labelNames: ['kind'] as const,
        registers: [registry],
      })
      const observer = new PerformanceObserver((list) => {
        for (const entry of list.getEntries()) {
          const detail = (entry as { detail?: { kind?: number } }).detail
          const kind = GC_KINDS[detail?.kind ?? 0] ?? 'other'
          pauses.inc({ kind }, entry.duration / 1000)
        }
      })
      observer.observe({ entryTypes: ['gc'] })
      return () => observer.disconnect()
    },
    /** Whether mqtt-packet's debug calls were made quiet on the broker thread (broker/quiet-debug.ts). */
    observeMqttPacketQuiet(quiet: boolean): void {
      new Gauge({
        name: 'broker_thread_mqtt_packet_debug_quiet',
        help: "1 when mqtt-packet's debug calls for namespaces that are off do nothing (broker/quiet-debug.ts)",
        registers: [registry],
      }).set(quiet ? 1 : 0)
    },
    /** Lets the spool gauges read the live spool at scrape time (they stay right during a store outage). */
    observeSpool(source: () => SpoolGaugeSource) {
      spoolSource = source
    },
    // Observed once per reading on the broker thread: HotHistogram, not prom-client's Histogram.
    publishToDurableSeconds: new HotHistogram(
      'ingest_publish_to_durable_seconds',
      'QoS 1 telemetry: from the broker handing the publish to ingest until it is durable in the spool',
      [0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2],
      [registry],
    ),
    readingDelaySeconds: new HotHistogram(
      'ingest_reading_delay_seconds',
      "From a reading's own timestamp to its arrival at the broker: the network, the broker's queue, and any offset of the device clock (buffered readings sent after an outage land in the top buckets)",
      [0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2, 5, 30, 300, 3600],
      [registry],
    ),
    spoolCommitSeconds: new Histogram({
      name: 'ingest_spool_group_commit_seconds',
      help: 'Time of one group commit (write + fdatasync) as the broker thread sees it: from handing it over until it learns it is durable',
      buckets: [0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.5],
      registers: [registry],
    }),
    // The disk's own share of the above: a durable PUBACK can be no faster than this, whatever the CPU does.
    spoolSyncSeconds: new Histogram({
      name: 'ingest_spool_fdatasync_seconds',
      help: "Write + fdatasync of one group commit on the thread that makes it durable, less that thread's wait for a CPU (the disk's own time)",
      buckets: [0.00025, 0.0005, 0.001, 0.002, 0.003, 0.005, 0.01, 0.02, 0.05, 0.1, 0.5, 2],
      registers: [registry],
    }),
    // Apart from the disk's time, because on a busy machine it looked like a slow disk: a core, not the disk, to add.
    spoolSyncCpuWaitSeconds: new Histogram({
      name: 'ingest_spool_sync_cpu_wait_seconds',
      help: 'Time the thread that makes a group commit durable was ready to run but waited for a CPU, within its write + fdatasync (Linux)',
      buckets: [0.00025, 0.0005, 0.001, 0.002, 0.003, 0.005, 0.01, 0.02, 0.05, 0.1, 0.5, 2],
      registers: [registry],
    }),
    mqttConnectionsRefused: new Counter({
      name: 'broker_connections_refused_total',
      help: 'MQTT connections refused at CONNECT, by reason',
      labelNames: ['reason'] as const,
      registers: [registry],
    }),
    mqttPublishesRefused: new Counter({
      name: 'broker_publishes_refused_total',
      help: 'MQTT publishes refused by the ACL, by reason',
      labelNames: ['reason'] as const,
      registers: [registry],
    }),
    mqttClients: new Gauge({
      name: 'broker_connected_clients',
      help: 'Connected MQTT clients',
      registers: [registry],
    }),
  }
}
export type PlatformMetrics = ReturnType<typeof createMetrics>
