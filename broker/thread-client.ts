import { createRequire } from 'node:module'
import { pathToFileURL } from 'node:url'
import { setFlagsFromString } from 'node:v8'
import { Worker } from 'node:worker_threads'
import type { Logger } from 'pino'
import type { PlatformBus } from '../ingest/events.ts'
import type { DeviceRegistry, RegistryChange } from '../ingest/registry.ts'
import { SpoolFeed } from '../ingest/spool.ts'
import type { BrokerAddresses } from './broker.ts'
import type {
  BrokerThreadInit,
  FromBrokerThread,
  SerializedMetrics,
  ToBrokerThread,
} from './thread-protocol.ts'

export interface BrokerThreadOptions {
  readonly init: Omit<BrokerThreadInit, 'registry'> & { readonly registryKey: Buffer }
  /** Memory window of the spool feed (readings kept in memory for the store writer). */
  readonly maxMemoryReadings: number
  /**
   * Size of each of the broker thread's two young-generation semi-spaces, MiB; 0 leaves V8's default
   * (it starts at 1 MiB and grows to 16 MiB at most).
   */
  readonly semiSpaceMb?: number
}

export interface BrokerThreadDeps {
  readonly registry: DeviceRegistry
  readonly bus: PlatformBus
  readonly log: Logger
  /** The broker thread died or could not start: the platform can no longer take readings. */
  readonly onFailure: (err: Error) => void
}

export interface BrokerThread {
  readonly addresses: BrokerAddresses
  /** Kernel ids of the threads on the acknowledgement path (empty where the OS gives none). */
  readonly threadIds: readonly number[]
  /** The platform thread's half of the spool: what the store writer and the live views read. */
  readonly feed: SpoolFeed
  /** The broker thread's own metrics, for /metrics. */
  metrics(): Promise<SerializedMetrics>
  /** Closes the MQTT listeners and connections; resolves once every accepted reading is in the feed. */
  stopBroker(): Promise<void>
  /** Closes the spool log (after the writer's last commit) and ends the thread. */
  close(): Promise<void>
}

// The worker runs TypeScript like the rest of the platform: register tsx's loader in it before importing.
const TSX_API = pathToFileURL(
  createRequire(import.meta.url)
    .resolve('tsx/esm/api')
    .replace(/\.cjs$/, '.mjs'),
).href
const ENTRY = new URL('./thread.ts', import.meta.url).href
// Evaluated on its own before the entry: within one module graph a CommonJS dependency (mqtt-packet, through
// Aedes) may be loaded while the graph is linked, before any module of it runs.
const QUIET = new URL('./quiet-mqtt-packet.ts', import.meta.url).href

/**
 * Source for a `Worker` with `eval: true` that registers tsx's loader in the new thread and then imports
 * the given TypeScript modules (URLs), one after the other.
 */
export function tsWorkerSource(...modules: readonly string[]): string {
  const imports = modules.map((m) => `.then(() => import(${JSON.stringify(m)}))`).join('')
  return `import(${JSON.stringify(TSX_API)}).then((m) => m.register())${imports}`
}

/** The value of a V8 size flag as the process was started with it (command line or NODE_OPTIONS); 0: unset. */
function startupFlag(name: string): number {
  const args = [...process.execArgv, ...(process.env.NODE_OPTIONS ?? '').split(/\s+/)]
  let value = 0
  for (const arg of args) {
    const [flag, v] = arg.replaceAll('_', '-').split('=')
    if (flag === `--${name}` && v !== undefined && /^\d+$/.test(v)) value = Number(v)
  }
  return value
}

/**
 * Creates a worker whose V8 heap has young-generation semi-spaces of `mb` MiB each. Every reading the
 * broker thread takes lives there until its commit is on disk, so with V8's default (at most 16 MiB) the
 * thread scavenged 20 times a second at 30,000 readings/s and promoted most of what was in flight.
 * Node gives a worker a maximum young generation (`resourceLimits`) but no minimum, and V8 grows the space
 * only after scavenges that it would rather avoid; so the size flags are set while V8 creates this
 * isolate (it reads them then) and put back once the worker runs, leaving every other isolate as it was.
 */
function workerWithSemiSpace(mb: number, create: () => Worker): Worker {
  if (mb <= 0) return create()
  const flags = ['min-semi-space-size', 'max-semi-space-size'] as const
  const restore = flags.map((name) => `--${name}=${startupFlag(name)}`)
  // Max first: V8 caps the minimum at the maximum.
  setFlagsFromString(`--max-semi-space-size=${Math.max(mb, startupFlag('max-semi-space-size'))}`)
  setFlagsFromString(`--min-semi-space-size=${mb}`)
  let worker: Worker
  try {
    worker = create()
  } catch (err) {
    for (const flag of restore) setFlagsFromString(flag)
    throw err
  }
  const putBack = () => {
    for (const flag of restore) setFlagsFromString(flag)
  }
  worker.once('online', putBack)
  worker.once('exit', putBack)
  return worker
}

/**
 * Starts the broker thread (MQTT, validation, spool log) and returns once it listens. Readings it makes
 * durable arrive here in batches and go to the spool feed; registry changes go there; what the store
 * confirmed goes back as spool commits.
 */
export async function startBrokerThread(
  options: BrokerThreadOptions,
  deps: BrokerThreadDeps,
): Promise<BrokerThread> {
  const { registryKey, ...init } = options.init
  const workerData: BrokerThreadInit = {
    ...init,
    registry: { keyHex: registryKey.toString('hex'), entries: deps.registry.replicaEntries() },
  }
  const worker = workerWithSemiSpace(
    options.semiSpaceMb ?? 0,
    () =>
      new Worker(tsWorkerSource(QUIET, ENTRY), {
        eval: true,
        workerData,
        // tsx is registered above; a CPU profile (--cpu-prof) covers this thread too.
        execArgv: process.execArgv.filter((a) => a.startsWith('--cpu-prof')),
        stdout: false,
        stderr: false,
      }),
  )
  const send = (message: ToBrokerThread) => worker.postMessage(message)

  // Registry changes made after the snapshot above reach the thread in order, before any later message.
  const onChange = (change: RegistryChange) =>
    send({ t: 'registry', change, entry: deps.registry.replicaEntry(change.device.id) })
  deps.registry.on('changed', onChange)

  let feed: SpoolFeed | undefined
  let closed = false
  const metricsRequests = new Map<number, (m: SerializedMetrics) => void>()
  let nextMetricsId = 1
  const once = new Map<string, () => void>()
  const waitFor = (t: 'broker-stopped' | 'closed') => new Promise<void>((resolve) => once.set(t, resolve))

  let started: (l: { addresses: BrokerAddresses; threadIds: readonly number[] }) => void = () => undefined
  let failedToStart: (err: Error) => void = () => undefined
  const listening = new Promise<{ addresses: BrokerAddresses; threadIds: readonly number[] }>(
    (resolve, reject) => {
      started = resolve
      failedToStart = reject
    },
  )
  let isListening = false
  const fail = (err: Error) => {
    if (closed) return
    closed = true
    deps.registry.off('changed', onChange)
    if (!isListening) failedToStart(err)
    else deps.onFailure(err)
  }

  worker.on('message', (message: FromBrokerThread) => {
    switch (message.t) {
      case 'opened':
        feed = new SpoolFeed(
          {
            dir: init.spool.dir,
            maxMemoryReadings: options.maxMemoryReadings,
            maxBytes: init.spool.maxBytes,
          },
          { ...message.position, diskBytes: message.diskBytes },
          (offset) => send({ t: 'commit', offset }),
        )
        return
      case 'listening':
        isListening = true
        started(message)
        return
      case 'durable':
        feed?.receive(message.batch)
        return
      case 'disk':
        feed?.updateDisk(message.state)
        return
      case 'status':
        deps.bus.emit('device.status', message.event)
        return
      case 'rejected':
        deps.bus.emit('reading.rejected', message.record)
        return
      case 'set-status':
        deps.registry
          .setStatus(message.deviceId, message.status, message.actor)
          .catch((err: Error) =>
            deps.log.warn({ err: err.message, deviceId: message.deviceId }, 'status change failed'),
          )
        return
      case 'metrics':
        metricsRequests.get(message.id)?.(message.metrics)
        metricsRequests.delete(message.id)
        return
      case 'broker-stopped':
      case 'closed':
        once.get(message.t)?.()
        once.delete(message.t)
        return
      case 'failed': {
        const err = new Error(`broker thread: ${message.message}`)
        if (message.stack) err.stack = message.stack
        fail(err)
        return
      }
    }
  })
  worker.on('error', (err) => fail(err))
  worker.on('exit', (code) => {
    for (const resolve of once.values()) resolve()
    once.clear()
    for (const resolve of metricsRequests.values()) resolve([])
    metricsRequests.clear()
    fail(new Error(`broker thread exited (code ${code})`))
  })

  let addresses: BrokerAddresses
  let threadIds: readonly number[]
  try {
    ;({ addresses, threadIds } = await listening)
  } catch (err) {
    await worker.terminate()
    throw err
  }
  const readyFeed = feed
  if (readyFeed === undefined) throw new Error('broker thread listened before opening its spool')

  return {
    addresses,
    threadIds,
    feed: readyFeed,
    metrics: () =>
      closed
        ? Promise.resolve([])
        : new Promise((resolve) => {
            const id = nextMetricsId++
            metricsRequests.set(id, resolve)
            send({ t: 'metrics', id })
          }),
    stopBroker: async () => {
      if (closed) return
      const done = waitFor('broker-stopped')
      send({ t: 'stop-broker' })
      await done
    },
    close: async () => {
      if (closed) return
      deps.registry.off('changed', onChange)
      const done = waitFor('closed')
      send({ t: 'close' })
      await done
      closed = true
      await worker.terminate()
    },
  }
}
