// The broker thread: MQTT, the per-publish hooks, validation and the spool log, and nothing else, so that
// a store batch, a live tick, an alarm pass or a garbage collection on the platform thread never delays a
// device's PUBACK. Started by `startBrokerThread`; talks to it only through thread-protocol.ts.
import { parentPort, workerData } from 'node:worker_threads'
import { pino } from 'pino'
import { PlatformBus } from '../ingest/events.ts'
import { Ingest } from '../ingest/ingest.ts'
import { createMetrics } from '../ingest/metrics.ts'
import { RegistryReplica } from '../ingest/registry-replica.ts'
import { SpoolLog } from '../ingest/spool.ts'
import { createBroker, type PlatformBroker } from './broker.ts'
import { mqttPacketQuiet } from './quiet-mqtt-packet.ts'
import { currentThreadId, readThreadSchedTimes } from './thread-priority.ts'
import type { BrokerThreadInit, FromBrokerThread, ToBrokerThread } from './thread-protocol.ts'

const port = parentPort
if (port === null) throw new Error('broker/thread.ts runs as a worker thread (startBrokerThread)')
const init = workerData as BrokerThreadInit
const post = (message: FromBrokerThread) => port.postMessage(message)

// Straight to stdout's file descriptor: a worker's process.stdout is relayed through the platform thread.
const log = pino({ level: init.logLevel, base: undefined }, pino.destination({ dest: 1, sync: false }))
const metrics = createMetrics()
// startBrokerThread loads quiet-mqtt-packet.ts before this module; it says whether that was in time.
if (!mqttPacketQuiet) log.warn('mqtt-packet was loaded before its debug calls could be made quiet')
metrics.observeMqttPacketQuiet(mqttPacketQuiet)
metrics.observeBrokerThread(() => readThreadSchedTimes())
metrics.observeBrokerThreadHeap()
const bus = new PlatformBus()
bus.on('device.status', (event) => post({ t: 'status', event }))
bus.on('reading.rejected', (record) => post({ t: 'rejected', record }))

const registry = new RegistryReplica(
  Buffer.from(init.registry.keyHex, 'hex'),
  init.registry.entries,
  (deviceId, status, actor) => post({ t: 'set-status', deviceId, status, actor }),
)

let spool: SpoolLog | undefined
let broker: PlatformBroker | undefined

port.on('message', (message: ToBrokerThread) => {
  switch (message.t) {
    case 'registry':
      registry.apply(message.change, message.entry)
      return
    case 'commit':
      spool?.commit(message.offset)
      return
    case 'metrics':
      void metrics.registry.getMetricsAsJSON().then((m) => post({ t: 'metrics', id: message.id, metrics: m }))
      return
    case 'stop-broker':
      void (async () => {
        await broker?.stop()
        await spool?.flushed()
        post({ t: 'broker-stopped' })
      })()
      return
    case 'close':
      void (async () => {
        await spool?.close()
        post({ t: 'closed' })
        port.close()
      })()
      return
  }
})

try {
  spool = SpoolLog.open({
    ...init.spool,
    ioThread: true,
    onCommit: (seconds, _readings, times) => {
      metrics.spoolCommitSeconds.observe(seconds)
      metrics.spoolSyncSeconds.observe(times.diskSeconds)
      metrics.spoolSyncCpuWaitSeconds.observe(times.cpuWaitSeconds)
    },
  })
  spool.onDurable = (batch) => post({ t: 'durable', batch })
  spool.onDiskState = (state) => post({ t: 'disk', state })
  post({ t: 'opened', position: spool.position, diskBytes: spool.diskBytes })
  const ingest = new Ingest(init.ingest, { spool, bus, metrics, log })
  broker = await createBroker(init.broker, { registry, ingest, bus, metrics, log })
  const addresses = await broker.start()
  const threadIds = [currentThreadId(), await spool.ioThreadId()].filter((t) => t !== undefined)
  post({ t: 'listening', addresses, threadIds })
} catch (err) {
  const e = err instanceof Error ? err : new Error(String(err))
  post({ t: 'failed', message: e.message, ...(e.stack !== undefined && { stack: e.stack }) })
}
