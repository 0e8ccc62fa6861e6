import { EventEmitter } from 'node:events'
import {
  type Device,
  type DeviceStatus,
  type RegistryChange,
  type ReplicaEntry,
  verifySecret,
} from './registry.ts'

/** What the broker needs of the device registry: the registry itself, or a replica in another thread. */
export interface DeviceDirectory {
  get(id: string): Device | undefined
  verify(id: string, secret: Uint8Array | string | undefined): Device | undefined
  setStatus(id: string, status: DeviceStatus, actor: string): Promise<unknown>
  on(event: 'changed', listener: (change: RegistryChange) => void): unknown
  off(event: 'changed', listener: (change: RegistryChange) => void): unknown
}

/**
 * A read replica of the device registry for the broker thread: the same synchronous `get`/`verify` the
 * broker calls on every CONNECT and publish, kept current by the registry's change events. Writes (a
 * provisioned device going active on its first connection) are handed to the owner of the registry.
 */
export class RegistryReplica
  extends EventEmitter<{ changed: [change: RegistryChange] }>
  implements DeviceDirectory
{
  private readonly cache = new Map<string, { device: Device; secretHash: Buffer }>()

  constructor(
    private readonly key: Buffer,
    entries: readonly ReplicaEntry[],
    private readonly requestStatus: (id: string, status: DeviceStatus, actor: string) => void,
  ) {
    super()
    for (const e of entries)
      this.cache.set(e.device.id, { device: e.device, secretHash: Buffer.from(e.secretHash, 'base64') })
  }

  /** A change made by the registry: update the copy, then tell listeners (the broker disconnects revoked devices). */
  apply(change: RegistryChange, entry: ReplicaEntry | undefined): void {
    if (entry)
      this.cache.set(entry.device.id, {
        device: entry.device,
        secretHash: Buffer.from(entry.secretHash, 'base64'),
      })
    this.emit('changed', change)
  }

  get(id: string): Device | undefined {
    return this.cache.get(id)?.device
  }

  get size(): number {
    return this.cache.size
  }

  verify(id: string, secret: Uint8Array | string | undefined): Device | undefined {
    return verifySecret(this.key, this.cache.get(id), secret)
  }

  setStatus(id: string, status: DeviceStatus, actor: string): Promise<unknown> {
    this.requestStatus(id, status, actor)
    return Promise.resolve()
  }
}
