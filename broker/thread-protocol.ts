// The whole contract between the platform thread and the broker thread, in one place. Both sides are
// this repository's own code, so messages are typed rather than validated; nothing from outside crosses
// here unchecked (devices' packets are validated in the broker thread before anything is posted).
import type { Registry } from 'prom-client'
import type { DeviceStatusEvent, RejectedRecord } from '../ingest/events.ts'
import type { DeviceStatus, RegistryChange, ReplicaEntry } from '../ingest/registry.ts'
import type { DurableBatch, SpoolDiskState } from '../ingest/spool.ts'
import type { BrokerAddresses } from './broker.ts'
import type { BrokerConfig } from './config.ts'

export interface BrokerThreadInit {
  readonly broker: BrokerConfig
  readonly ingest: { readonly maxFutureSkewMs: number; readonly maxPayloadBytes: number }
  readonly spool: { readonly dir: string; readonly segmentBytes: number; readonly maxBytes: number }
  readonly logLevel: string
  readonly registry: { readonly keyHex: string; readonly entries: readonly ReplicaEntry[] }
}

export type SerializedMetrics = Awaited<ReturnType<Registry['getMetricsAsJSON']>>

/** Platform thread → broker thread. */
export type ToBrokerThread =
  | { readonly t: 'registry'; readonly change: RegistryChange; readonly entry: ReplicaEntry | undefined }
  | { readonly t: 'commit'; readonly offset: number }
  | { readonly t: 'metrics'; readonly id: number }
  /** Close listeners and connections, finish what was appended; the spool log stays open for commits. */
  | { readonly t: 'stop-broker' }
  | { readonly t: 'close' }

/** Broker thread → platform thread. */
export type FromBrokerThread =
  | {
      readonly t: 'opened'
      readonly position: { readonly checkpoint: number; readonly durable: number }
      readonly diskBytes: number
    }
  | {
      readonly t: 'listening'
      readonly addresses: BrokerAddresses
      /** Kernel ids of the acknowledgement path's threads (this one and the spool's sync thread), Linux. */
      readonly threadIds: readonly number[]
    }
  | { readonly t: 'durable'; readonly batch: DurableBatch }
  | { readonly t: 'disk'; readonly state: SpoolDiskState }
  | { readonly t: 'status'; readonly event: DeviceStatusEvent }
  | { readonly t: 'rejected'; readonly record: RejectedRecord }
  | {
      readonly t: 'set-status'
      readonly deviceId: string
      readonly status: DeviceStatus
      readonly actor: string
    }
  | { readonly t: 'metrics'; readonly id: number; readonly metrics: SerializedMetrics }
  | { readonly t: 'broker-stopped' }
  | { readonly t: 'closed' }
  | { readonly t: 'failed'; readonly message: string; readonly stack?: string }
