// A spool log on a thread of its own, as the broker thread runs it: it appends readings as fast as its event
// loop turns, posts each durable batch as text, and applies the commits it is sent (deleting confirmed
// segments) whenever they arrive.
import { parentPort, workerData } from 'node:worker_threads'
import { type DurableBatch, SpoolLog } from '../../ingest/spool.ts'

export interface SpoolLogWorkerData {
  readonly dir: string
  readonly total: number
}

export type SpoolLogWorkerMessage =
  | { readonly t: 'opened'; readonly start: { checkpoint: number; durable: number; diskBytes: number } }
  | { readonly t: 'durable'; readonly batch: DurableBatch }

const { dir, total } = workerData as SpoolLogWorkerData
const port = parentPort!
const post = (m: SpoolLogWorkerMessage) => port.postMessage(m)
// Small segments: a new one every few hundred readings, so the feed crosses hundreds of segment ends.
const log = SpoolLog.open({ dir, segmentBytes: 65_536, maxBytes: 1e12, ioThread: true })
log.onDurable = (batch) => post({ t: 'durable', batch })
port.on('message', (offset: number) => log.commit(offset))
post({ t: 'opened', start: { ...log.position, diskBytes: log.diskBytes } })

let seq = 0
function burst() {
  for (let i = 0; i < 50 && seq < total; i++, seq++) {
    log.appendWith(
      [
        {
          kind: 'river-level',
          device: `dps-river-${seq % 50}`,
          district: 'Denpasar Barat',
          regency: 'Kota Denpasar',
          ts: 1_790_000_000_000 + seq,
          receivedAt: 1_790_000_000_000 + seq,
          seq,
          fields: { waterLevel: 100 + (seq % 7) },
        },
      ],
      () => undefined,
    )
  }
  if (seq < total) setImmediate(burst)
}
burst()
