import type { PlatformBus } from '../../../ingest/events.ts'
import type { StoredReading } from '../../../ingest/store/types.ts'

export interface ReadingView {
  readonly ts: number
  readonly receivedAt: number
  readonly seq: number
  readonly fields: Readonly<Record<string, number>>
}

export interface CommissioningState {
  online: boolean
  firstConnectedAt: number | null
  lastConnectedAt: number | null
  lastDisconnectedAt: number | null
  /** `birth`/`will` from the device itself, `connect`/`disconnect` from the broker. */
  lastStatusSource: string | null
  firstReading: ReadingView | null
  latestReading: ReadingView | null
  readings: number
}

const view = (r: StoredReading): ReadingView => ({
  ts: r.ts,
  receivedAt: r.receivedAt,
  seq: r.seq,
  fields: r.fields,
})

/**
 * What an installer needs while bringing a device up, fed from the bus: did it connect, what was its first
 * valid reading. Bounded: the oldest tracked device is forgotten past `maxDevices` (the registry and the
 * store still hold everything that matters in the long run).
 */
export class CommissioningTracker {
  private readonly states = new Map<string, CommissioningState>()
  private readonly detach: () => void

  constructor(
    bus: PlatformBus,
    private readonly maxDevices = 20_000,
  ) {
    const onReadings = (readings: readonly StoredReading[]) => {
      for (const r of readings) {
        const s = this.state(r.device)
        s.readings++
        s.firstReading ??= view(r)
        if (s.latestReading === null || r.ts >= s.latestReading.ts) s.latestReading = view(r)
      }
    }
    const onStatus = (e: { deviceId: string; online: boolean; at: number; source: string }) => {
      const s = this.state(e.deviceId)
      s.online = e.online
      s.lastStatusSource = e.source
      if (e.online) {
        s.firstConnectedAt ??= e.at
        s.lastConnectedAt = e.at
      } else s.lastDisconnectedAt = e.at
    }
    bus.on('readings.accepted', onReadings)
    bus.on('device.status', onStatus)
    this.detach = () => {
      bus.off('readings.accepted', onReadings)
      bus.off('device.status', onStatus)
    }
  }

  get(deviceId: string): CommissioningState | undefined {
    return this.states.get(deviceId)
  }

  /** Forget a device (e.g. decommissioned), so a re-registered id starts from a clean sheet. */
  forget(deviceId: string): void {
    this.states.delete(deviceId)
  }

  close(): void {
    this.detach()
  }

  private state(id: string): CommissioningState {
    let s = this.states.get(id)
    if (s === undefined) {
      if (this.states.size >= this.maxDevices) {
        const oldest = this.states.keys().next().value
        if (oldest !== undefined) this.states.delete(oldest)
      }
      s = {
        online: false,
        firstConnectedAt: null,
        lastConnectedAt: null,
        lastDisconnectedAt: null,
        lastStatusSource: null,
        firstReading: null,
        latestReading: null,
        readings: 0,
      }
      this.states.set(id, s)
    }
    return s
  }
}
