import { randomBytes } from 'node:crypto'
import { closeSync, fsyncSync, mkdirSync, openSync, readFileSync, renameSync, writeSync } from 'node:fs'
import { dirname, join } from 'node:path'
import type { Logger } from 'pino'
import { startBrokerThread } from '../broker/thread-client.ts'
import { lowerBackgroundPriority, v8PlatformThreadIds } from '../broker/thread-priority.ts'
import { ALARMS_DEFAULTS, AlarmEngine, AlarmStore, WebhookDispatcher } from '../dashboard-api/alarms/index.ts'
import { buildApp, DashboardEnvSchema, LiveState } from '../dashboard-api/index.ts'
import { IngestEnvSchema } from '../ingest/config.ts'
import { PlatformBus } from '../ingest/events.ts'
import { createMetrics } from '../ingest/metrics.ts'
import { DeviceRegistry } from '../ingest/registry.ts'
import { RejectionLog } from '../ingest/rejections.ts'
import type { SpoolFeed } from '../ingest/spool.ts'
import { StoreUnavailableError, type TimeSeriesStore } from '../ingest/store/types.ts'
import { createStore } from '../ingest/store-factory.ts'
import { StoreWriter } from '../ingest/writer.ts'
import type { PlatformConfig } from './config.ts'
import { type SimulatedFleet, startSimulatedFleet } from './sim-fleet.ts'

export interface Platform {
  readonly mqttUrl: string
  /** MQTT over WebSocket (`ws://…/mqtt`) when MQTT_WS_PORT is set. */
  readonly mqttWsUrl?: string
  /** MQTT over TLS (`mqtts://…`) when MQTT_TLS_PORT is set. */
  readonly mqttTlsUrl?: string
  readonly httpUrl: string
  readonly wallUrl: string
  readonly apiToken: string
  readonly store: TimeSeriesStore
  readonly registry: DeviceRegistry
  readonly bus: PlatformBus
  /** The platform thread's half of the spool (pending readings, drain). */
  readonly spool: SpoolFeed
  readonly fleet: SimulatedFleet | undefined
  readonly metrics: ReturnType<typeof createMetrics>
  readonly rejections: RejectionLog
  /** Kernel ids of the acknowledgement path's threads, left at normal priority (Linux; else empty). */
  readonly ackThreadIds: readonly number[]
  /** Graceful stop: refuse new connections, flush what was accepted to the store, close everything. */
  stop(options?: { flushTimeoutMs?: number }): Promise<void>
}

/**
 * A secret kept in the data directory, created on first start (mode 0600). One that is there and cannot be
 * used stops the start, naming the file: made again, a registry key would lock out every registered device.
 */
function fileSecret(
  path: string,
  make: () => string,
  valid: { test(v: string): boolean; expected: string },
): string {
  let existing: string | undefined
  try {
    existing = readFileSync(path, 'utf8').trim()
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err
  }
  if (existing !== undefined) {
    // An empty file is no sign of a first start: a power cut can leave one (an older version wrote it
    // without a sync), and a new key would lock out every device registered with the old one.
    if (existing.length === 0)
      throw new Error(`${path} is empty: restore it from a backup, or remove it to create a new one`)
    if (!valid.test(existing)) throw new Error(`${path}: expected ${valid.expected}; fix or remove the file`)
    return existing
  }
  const value = make()
  writeDurably(path, `${value}\n`)
  return value
}

/** Whole or not at all, through a power cut: a synced temporary file renamed over, then the directory synced. */
function writeDurably(path: string, text: string): void {
  const tmp = `${path}.tmp-${process.pid}`
  const fd = openSync(tmp, 'w', 0o600)
  try {
    writeSync(fd, text)
    fsyncSync(fd)
  } finally {
    closeSync(fd)
  }
  renameSync(tmp, path)
  const dir = openSync(dirname(path), 'r')
  try {
    fsyncSync(dir)
  } finally {
    closeSync(dir)
  }
}

/**
 * InfluxDB did not answer `/ping`: not started yet (it came up after the platform, after a power cut) or
 * its host is down. That is an outage like any other, which the spool rides out; a store that answers and
 * cannot be prepared (credentials, retention policy) is a configuration error instead.
 */
function isUnreachable(store: TimeSeriesStore, err: unknown): err is Error {
  return store.kind === 'influxdb' && err instanceof StoreUnavailableError
}

function urlHost(host: string) {
  return host === '0.0.0.0' || host === '::' ? '127.0.0.1' : host
}

/**
 * Starts broker, ingest, store writer, dashboard API and (optionally) the simulated fleet in this
 * process. Configuration must already be validated (`loadPlatformConfig`).
 */
export async function startPlatform(
  config: PlatformConfig,
  log: Logger,
  options: {
    /**
     * The broker thread died, or InfluxDB came back but refused to be prepared: the platform no longer
     * takes or stores readings. The entry point exits on it.
     */
    onFatal?: (err: Error) => void
  } = {},
): Promise<Platform> {
  const { dataDir } = config.ingest
  mkdirSync(dataDir, { recursive: true })
  const registryKey = Buffer.from(
    config.ingest.registryKeyHex ??
      fileSecret(join(dataDir, 'registry.key'), () => randomBytes(32).toString('hex'), {
        test: (v) => IngestEnvSchema.shape.REGISTRY_KEY.unwrap().safeParse(v).success,
        expected: 'at least 32 hexadecimal characters (as REGISTRY_KEY)',
      }),
    'hex',
  )
  const apiToken =
    config.dashboard.apiToken ??
    fileSecret(join(dataDir, 'api-token'), () => randomBytes(24).toString('base64url'), {
      test: (v) => DashboardEnvSchema.shape.API_TOKEN.unwrap().safeParse(v).success,
      expected: 'at least 16 characters (as API_TOKEN)',
    })

  const bus = new PlatformBus()
  const metrics = createMetrics({ defaultMetrics: true })
  const rejections = new RejectionLog()
  // Validation rejections come from the broker thread, store refusals from the writer.
  bus.on('reading.rejected', (r) => rejections.record(r))

  const registry = await DeviceRegistry.open({ path: join(dataDir, 'registry.duckdb'), key: registryKey })
  const store = createStore(config.ingest, log)
  const cleanup: Array<() => Promise<unknown> | unknown> = [() => registry.close()]
  let storeDown: { message: string; at: number; retryable: true } | undefined
  try {
    try {
      await store.init()
    } catch (err) {
      if (!isUnreachable(store, err)) throw err
      storeDown = { message: err.message, at: Date.now(), retryable: true }
      log.warn({ err: err.message }, 'InfluxDB is not reachable; readings are spooled until it answers')
    }
    cleanup.unshift(() => store.close())
    const live = new LiveState(registry, bus, config.dashboard.aggregates)
    const alarmsConfig = config.dashboard.alarms ?? ALARMS_DEFAULTS
    const alarmStore = await AlarmStore.open(join(dataDir, 'alarms.duckdb'))
    cleanup.unshift(() => alarmStore.close())
    const alarms = new AlarmEngine(alarmsConfig, {
      store: alarmStore,
      live,
      registry,
      webhooks: new WebhookDispatcher(alarmsConfig.webhooks, alarmStore, log),
      log,
    })
    // The broker, validation and the spool log run on their own thread: nothing the rest of the platform
    // does (store batches, live ticks, alarms, API requests, garbage collection) delays a device's PUBACK.
    const broker = await startBrokerThread(
      {
        init: {
          broker: config.broker,
          ingest: {
            maxFutureSkewMs: config.ingest.maxFutureSkewMs,
            maxPayloadBytes: config.ingest.maxPayloadBytes,
          },
          spool: {
            dir: join(dataDir, 'spool'),
            segmentBytes: config.ingest.spool.segmentBytes,
            maxBytes: config.ingest.spool.maxBytes,
          },
          logLevel: log.level,
          registryKey,
        },
        maxMemoryReadings: config.ingest.spool.maxMemoryReadings,
        semiSpaceMb: config.brokerSemiSpaceMb,
      },
      {
        registry,
        bus,
        log,
        onFailure: (err) => {
          log.fatal({ err }, 'broker thread failed; readings are no longer taken')
          options.onFatal?.(err)
        },
      },
    )
    cleanup.unshift(() => broker.close())
    // A store batch, a live tick or an analyst's query waits for a core, not a device's PUBACK. The broker
    // thread's garbage collection runs on V8's threads, so they keep their priority too.
    const kept = [...broker.threadIds, ...v8PlatformThreadIds()]
    const priority =
      config.backgroundNice > 0
        ? lowerBackgroundPriority({ nice: config.backgroundNice, keep: kept, sweepMs: 10_000 })
        : undefined
    cleanup.unshift(() => priority?.stop())
    log.debug({ lowered: priority?.lowered ?? 0, kept }, 'background threads lowered')
    const spool = broker.feed
    spool.onReadings((readings) => bus.emit('readings.accepted', readings))
    metrics.addSource(() => broker.metrics())
    metrics.observeSpool(() => spool)
    if (spool.pendingCount > 0)
      log.info({ readings: spool.pendingCount }, 'replaying spooled readings into the store')
    const writer = new StoreWriter(
      spool,
      store,
      {
        ...config.ingest.writer,
        retryInitialMs: 200,
        retryMaxMs: 10_000,
        deadLetterPath: join(dataDir, 'spool', 'dead-letter.ndjson'),
      },
      { log, metrics, bus },
    )
    let stopping = false
    let storeRetry: NodeJS.Timeout | undefined
    // The writer starts only once the store is prepared: InfluxDB 1.x would refuse (404) every write to a
    // database not created yet, and the writer would set those readings aside as refused.
    const prepareStoreLater = (delayMs: number) => {
      storeRetry = setTimeout(async () => {
        try {
          await store.init()
        } catch (err) {
          if (stopping) return
          if (!isUnreachable(store, err)) {
            const error = err instanceof Error ? err : new Error(String(err))
            log.fatal({ err: error }, 'InfluxDB answers but could not be prepared; readings are not stored')
            options.onFatal?.(error)
            return
          }
          const next = Math.min(delayMs * 2, 30_000)
          storeDown = { message: err.message, at: Date.now(), retryable: true }
          log.warn(
            { err: err.message, retryInMs: next },
            'InfluxDB still not reachable; readings stay in the spool',
          )
          prepareStoreLater(next)
          return
        }
        if (stopping) return
        storeDown = undefined
        log.info({ pending: spool.pendingCount }, 'InfluxDB is reachable; storing the spooled readings')
        writer.start()
      }, delayMs)
    }
    if (storeDown === undefined) writer.start()
    else prepareStoreLater(1000)
    cleanup.unshift(() => {
      stopping = true
      clearTimeout(storeRetry)
      return writer.stop()
    })

    const mqtt = broker.addresses

    const app = await buildApp(
      { ...config.dashboard, apiToken },
      {
        registry,
        store,
        live,
        rejections,
        metrics,
        bus,
        ingestStatus: () => (storeDown ? { ...writer.status, lastError: storeDown } : writer.status),
        log,
        alarms,
        mqtt,
      },
    )
    await app.listen({ host: config.dashboard.host, port: config.dashboard.port })
    cleanup.unshift(() => app.close())
    // Alarms left open by the last run are loaded first, then re-evaluated from the aggregator's state.
    await alarms.start()
    cleanup.unshift(() => alarms.stop())
    const address = app.server.address()
    const httpPort = typeof address === 'object' && address ? address.port : config.dashboard.port
    const httpUrl = `http://${urlHost(config.dashboard.host)}:${httpPort}`
    const mqttUrl = `mqtt://${urlHost(mqtt.host)}:${mqtt.port}`

    let fleet: SimulatedFleet | undefined
    if (config.sim.enabled) {
      fleet = await startSimulatedFleet({ registry, mqttUrl, ...config.sim, log })
      cleanup.unshift(() => fleet?.stop())
    }

    const stop = async (options: { flushTimeoutMs?: number } = {}) => {
      // Order matters: devices first (no new readings), then the broker (pending acks finish), then drain.
      await fleet?.stop()
      await broker.stopBroker()
      stopping = true
      clearTimeout(storeRetry)
      // With the store never reached there is no writer to wait for.
      const drained =
        storeDown === undefined
          ? await spool.whenDrained(options.flushTimeoutMs ?? 10_000)
          : spool.pendingCount === 0
      if (!drained) {
        log.warn(
          { pending: spool.pendingCount },
          'store did not take everything in time; kept in the spool for the next start',
        )
        // A store that does not answer would hold the writer's write in flight until its own timeout, and
        // the stop past the supervisor's patience. Closing the store aborts that write; what it carried was
        // never committed, so it stays in the spool.
        await store.close()
        // The abort reaches the writer through promise callbacks only: let them run before it is stopped.
        await new Promise<void>((resolve) => setImmediate(resolve))
      }
      await writer.stop()
      await alarms.stop()
      await app.close()
      live.close()
      await alarmStore.close()
      await broker.close()
      priority?.stop()
      await store.close()
      await registry.close()
    }

    return {
      mqttUrl,
      ...(mqtt.wsPort !== undefined && { mqttWsUrl: `ws://${urlHost(mqtt.host)}:${mqtt.wsPort}/mqtt` }),
      ...(mqtt.tlsPort !== undefined && { mqttTlsUrl: `mqtts://${urlHost(mqtt.host)}:${mqtt.tlsPort}` }),
      httpUrl,
      wallUrl: `${httpUrl}/${config.dashboard.displayToken ? `?token=${encodeURIComponent(config.dashboard.displayToken)}` : ''}`,
      apiToken,
      store,
      registry,
      bus,
      spool,
      fleet,
      metrics,
      rejections,
      ackThreadIds: broker.threadIds,
      stop,
    }
  } catch (err) {
    for (const fn of cleanup)
      await Promise.resolve()
        .then(fn)
        .catch(() => undefined)
    throw err
  }
}
