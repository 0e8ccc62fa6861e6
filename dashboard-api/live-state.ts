import type { PlatformBus } from '../ingest/events.ts'
import type { DeviceRegistry } from '../ingest/registry.ts'
import type { StoredReading } from '../ingest/store/types.ts'
import type { DeviceLive } from './protocol.ts'

interface DeviceState {
  online: boolean
  lastSeen: number | null
  latest: DeviceLive['latest']
}

/**
 * The latest state of every device, fed from the bus. A late reading (older `ts` than the newest one seen)
 * never replaces the newer value. Changed device ids collect in a set that the stream drains per tick, so
 * ingest never waits on any socket.
 */
export class LiveState {
  private readonly states = new Map<string, DeviceState>()
  private changed = new Set<string>()
  private readonly detach: () => void

  constructor(
    private readonly registry: DeviceRegistry,
    bus: PlatformBus,
  ) {
    const onReadings = (readings: readonly StoredReading[]) => {
      for (const r of readings) this.onReading(r)
    }
    const onStatus = (e: { deviceId: string; online: boolean; at: number }) => {
      const s = this.state(e.deviceId)
      s.online = e.online
      if (e.online) s.lastSeen = Math.max(s.lastSeen ?? 0, e.at)
      this.changed.add(e.deviceId)
    }
    bus.on('readings.accepted', onReadings)
    bus.on('device.status', onStatus)
    this.detach = () => {
      bus.off('readings.accepted', onReadings)
      bus.off('device.status', onStatus)
    }
  }

  private state(id: string): DeviceState {
    let s = this.states.get(id)
    if (s === undefined) {
      s = { online: false, lastSeen: null, latest: null }
      this.states.set(id, s)
    }
    return s
  }

  private onReading(r: StoredReading) {
    const s = this.state(r.device)
    s.lastSeen = Math.max(s.lastSeen ?? 0, r.receivedAt)
    s.online = true
    if (s.latest === null || r.ts >= s.latest.ts) {
      s.latest = { ts: r.ts, receivedAt: r.receivedAt, seq: r.seq, fields: r.fields }
    }
    this.changed.add(r.device)
  }

  /** Device ids changed since the last call. */
  drainChanged(): Set<string> {
    const out = this.changed
    this.changed = new Set()
    return out
  }

  view(id: string): DeviceLive | undefined {
    const d = this.registry.get(id)
    if (d === undefined || d.status === 'decommissioned') return undefined
    const s = this.states.get(id)
    return {
      id: d.id,
      kind: d.kind,
      name: d.name,
      regency: d.regency,
      district: d.district,
      latitude: d.latitude,
      longitude: d.longitude,
      reportingIntervalMs: d.reportingIntervalMs,
      thresholds: d.thresholds,
      online: s?.online ?? false,
      lastSeen: s?.lastSeen ?? null,
      latest: s?.latest ?? null,
    }
  }

  all(): DeviceLive[] {
    const out: DeviceLive[] = []
    for (const d of this.registry.list()) {
      const v = this.view(d.id)
      if (v) out.push(v)
    }
    return out
  }

  close() {
    this.detach()
  }
}
