import type { DeviceKind } from '../../firmware-contracts/index.ts'
import type { DeviceStatusEvent, PlatformBus } from '../../ingest/events.ts'
import type { Device, DeviceRegistry, RegistryChange } from '../../ingest/registry.ts'
import type { StoredReading } from '../../ingest/store/types.ts'
import {
  type Alarm,
  type DeviceLive,
  type DeviceLiveStatus,
  type DeviceSummary,
  type LatestReading,
  type MetricWindows,
  STALE_AFTER_INTERVALS,
} from '../protocol.ts'
import { type AlarmCondition, conditionsOf, sortAlarms } from './alarms.ts'
import { computeIspu, ISPU_POLLUTANTS, type IspuPollutant } from './ispu.ts'
import { computeOccupancy } from './occupancy.ts'
import { nextRiverLevel, RIVER_LEVEL_LABELS, type RiverLevel, riverThresholds } from './river-status.ts'
import { RollingMetric, type WindowStats } from './rolling.ts'

/** The number a tile and its sparkline show for each kind. */
export const MAIN_METRIC: Readonly<Record<DeviceKind, string>> = {
  'river-level': 'waterLevel',
  'rain-gauge': 'rainfall',
  'air-quality': 'pm25',
  'crowd-counter': 'occupancy',
}

const NO_ALARMS: readonly Alarm[] = Object.freeze([])

/** Housekeeping metrics have no windows on the wall. */
const NO_WINDOWS = new Set(['battery', 'rssi'])
/** Metrics a device may report: bounds the per-device maps against odd registries. */
const MAX_METRICS = 16

/** Alarms raised by the rule engine (dashboard-api/alarms), shown on the stream instead of derived ones. */
export interface RuleAlarmSource {
  /** Open rule alarms in the protocol's shape; the same array until the list changes. */
  alarms(): readonly Alarm[]
  /** True once after the list changed since the last call. */
  takeChanged(): boolean
}

export interface AggregatorOptions {
  /** A river level is left only when the water falls this far below its threshold. */
  readonly riverHysteresisCm: number
}

export const DEFAULT_AGGREGATOR_OPTIONS: AggregatorOptions = { riverHysteresisCm: 5 }

interface DeviceState {
  online: boolean
  lastSeen: number | null
  lastReadingAt: number | null
  latest: LatestReading | null
  readonly metrics: Map<string, RollingMetric>
  riverLevel: RiverLevel
  /** Status as last published, to notice time-driven changes (online -> stale). */
  status: DeviceLiveStatus
}

/**
 * A device's view as JSON, serialised once per change and shared by every client that sees it, beside
 * the summary that alarms and rollups read. The windows and the sparkline live only in the JSON: they are
 * most of a view's objects, and a cached view outlives the young generation (it stays until the device's
 * next change), so each one kept as objects would be copied and promoted by the platform thread's
 * scavenges: 1,718 bytes a cached view instead of 2,906.
 */
export interface CachedView {
  readonly view: DeviceSummary
  readonly json: string
}

export interface RefreshResult {
  readonly views: readonly CachedView[]
  /** Ids of devices whose view disappeared (decommissioned). */
  readonly removed: readonly string[]
  readonly alarmsChanged: boolean
}

function round(v: number): number {
  return Math.round(v * 100) / 100
}

function tuple(s: WindowStats | null): [number, number, number] | null {
  return s === null ? null : [round(s.mean), round(s.min), round(s.max)]
}

/**
 * Live aggregates of every device, fed from the bus. Per reading it only updates constant-size ring
 * buffers and marks the device as changed (the listener runs on the ingest path, after the spool commit);
 * views, derived indicators, alarms and rollups are computed by `refresh()` on the live stream's timer,
 * once per changed device, not per reading and not per client.
 *
 * A late reading (older `ts` than the newest seen) goes into the windows but never replaces `latest`.
 */
export class Aggregator {
  private readonly states = new Map<string, DeviceState>()
  private changed = new Set<string>()
  private readonly cache = new Map<string, CachedView>()
  private readonly alarmMap = new Map<string, Alarm>()
  private readonly detach: () => void
  private readonly options: AggregatorOptions
  private ruleAlarms: RuleAlarmSource | undefined
  /**
   * The stream's alarm list, kept until a derived alarm or the rule list changes: a city with thousands of
   * devices offline would otherwise merge and sort thousands of alarms on every tick.
   */
  private alarmsCache: { rule: readonly Alarm[]; list: readonly Alarm[] } | undefined

  constructor(
    private readonly registry: DeviceRegistry,
    bus: PlatformBus,
    options: Partial<AggregatorOptions> = {},
  ) {
    this.options = { ...DEFAULT_AGGREGATOR_OPTIONS, ...options }
    const onReadings = (readings: readonly StoredReading[]) => {
      for (const r of readings) this.onReading(r)
    }
    const onStatus = (e: DeviceStatusEvent) => this.onStatus(e)
    // A view shows registry fields (name, district, thresholds) and leaves when the device is
    // decommissioned; a device that sends nothing more, such as one decommissioned while offline, is
    // marked by nothing else, so its old view stayed on the wall with its offline condition.
    const onRegistryChange = (c: RegistryChange) => {
      // An id registered again is another device: nothing of the one before may show as its own.
      if (c.action === 'register') this.states.delete(c.device.id)
      this.changed.add(c.device.id)
    }
    bus.on('readings.accepted', onReadings)
    bus.on('device.status', onStatus)
    registry.on('changed', onRegistryChange)
    this.detach = () => {
      bus.off('readings.accepted', onReadings)
      bus.off('device.status', onStatus)
      registry.off('changed', onRegistryChange)
    }
  }

  private state(id: string): DeviceState {
    let s = this.states.get(id)
    if (s === undefined) {
      s = {
        online: false,
        lastSeen: null,
        lastReadingAt: null,
        latest: null,
        metrics: new Map(),
        riverLevel: 'normal',
        status: 'unknown',
      }
      this.states.set(id, s)
    }
    return s
  }

  private onStatus(e: DeviceStatusEvent) {
    const s = this.state(e.deviceId)
    s.online = e.online
    if (e.online) s.lastSeen = Math.max(s.lastSeen ?? 0, e.at)
    this.changed.add(e.deviceId)
  }

  private onReading(r: StoredReading) {
    const s = this.state(r.device)
    s.lastSeen = Math.max(s.lastSeen ?? 0, r.receivedAt)
    s.lastReadingAt = Math.max(s.lastReadingAt ?? 0, r.receivedAt)
    s.online = true
    for (const name in r.fields) {
      const value = r.fields[name]!
      let m = s.metrics.get(name)
      if (m === undefined) {
        if (s.metrics.size >= MAX_METRICS) continue
        m = new RollingMetric()
        s.metrics.set(name, m)
      }
      m.add(r.ts, value)
    }
    if (s.latest === null || r.ts >= s.latest.ts) {
      s.latest = { ts: r.ts, receivedAt: r.receivedAt, seq: r.seq, fields: r.fields }
      // Hysteresis is a state machine over the readings in observation order, so it steps here.
      const level = r.fields.waterLevel
      if (r.kind === 'river-level' && level !== undefined) {
        const t = riverThresholds(this.registry.get(r.device)?.thresholds)
        if (t) s.riverLevel = nextRiverLevel(s.riverLevel, level, t, this.options.riverHysteresisCm)
      }
    }
    this.changed.add(r.device)
  }

  private statusOf(d: Device, s: DeviceState | undefined, now: number): DeviceLiveStatus {
    if (s === undefined || s.lastSeen === null) return s?.online ? 'online' : 'unknown'
    if (!s.online) return 'offline'
    const since = s.lastReadingAt ?? s.lastSeen
    return now - since > STALE_AFTER_INTERVALS * d.reportingIntervalMs ? 'stale' : 'online'
  }

  /** The device's current view, or undefined for unknown and decommissioned devices. */
  view(id: string, now = Date.now()): DeviceLive | undefined {
    const d = this.registry.get(id)
    if (d === undefined || d.status === 'decommissioned') return undefined
    const s = this.states.get(id)
    const status = this.statusOf(d, s, now)
    const windows: Record<string, MetricWindows> = {}
    let spark: DeviceLive['spark'] = null
    let ispu: DeviceLive['ispu'] = null
    let river: DeviceLive['river'] = null
    let occupancy: DeviceLive['occupancy'] = null
    const latest = s?.latest ?? null
    if (s !== undefined && latest !== null) {
      const end = latest.ts
      for (const [name, m] of s.metrics) {
        if (NO_WINDOWS.has(name)) continue
        windows[name] = {
          m1: tuple(m.window('m1', end)),
          m15: tuple(m.window('m15', end)),
          h1: tuple(m.window('h1', end)),
        }
      }
      const main = s.metrics.get(MAIN_METRIC[d.kind])
      if (main) {
        spark = {
          metric: MAIN_METRIC[d.kind],
          points: main.hour(end).map((v) => (v === null ? null : round(v))),
        }
      }
      if (d.kind === 'air-quality') {
        const means: Partial<Record<IspuPollutant, number>> = {}
        for (const p of ISPU_POLLUTANTS) {
          const w = s.metrics.get(p)?.window('h1', end)
          if (w) means[p] = w.mean
        }
        const r = computeIspu(means)
        if (r) ispu = { ...r, subIndices: r.subIndices as Record<string, number>, basis: 'mean-1h' }
      } else if (d.kind === 'river-level') {
        const t = riverThresholds(d.thresholds)
        const level = latest.fields.waterLevel
        if (t && level !== undefined) {
          const rise = s.metrics.get('waterLevel')?.slopePerHour(end) ?? null
          river = {
            level: s.riverLevel,
            jakarta: RIVER_LEVEL_LABELS[s.riverLevel].jakarta,
            waterLevel: level,
            riseCmPerHour: rise === null ? null : round(rise),
            thresholds: t,
          }
        }
      } else if (d.kind === 'crowd-counter') {
        occupancy = computeOccupancy(latest.fields.occupancy, d.thresholds)
        if (occupancy?.ratio != null) occupancy = { ...occupancy, ratio: round(occupancy.ratio) }
      }
    }
    return {
      id: d.id,
      kind: d.kind,
      name: d.name,
      regency: d.regency,
      district: d.district,
      latitude: d.latitude,
      longitude: d.longitude,
      reportingIntervalMs: d.reportingIntervalMs,
      ...(d.thresholds === undefined ? {} : { thresholds: d.thresholds }),
      online: s?.online ?? false,
      status,
      lastSeen: s?.lastSeen ?? null,
      lastReadingAt: s?.lastReadingAt ?? null,
      latest,
      windows,
      spark,
      ispu,
      river,
      occupancy,
    }
  }

  private rebuild(id: string, now: number): CachedView | undefined {
    const view = this.view(id, now)
    if (view === undefined) {
      // Gone from the registry or decommissioned: its state would be swept (and reported removed) on
      // every refresh for as long as the platform runs.
      this.cache.delete(id)
      this.states.delete(id)
      return undefined
    }
    const s = this.states.get(id)
    if (s) s.status = view.status
    const json = JSON.stringify(view)
    const { windows: _windows, spark: _spark, ...summary } = view
    const cached: CachedView = { view: summary, json }
    this.cache.set(id, cached)
    return cached
  }

  /**
   * Brings views and alarms up to date: devices that reported, and devices whose status changed with the
   * passing of time (stale). O(devices) for the status sweep, plus the work for changed devices.
   */
  refresh(now = Date.now(), options: { budget?: number; sweep?: boolean } = {}): RefreshResult {
    if (options.sweep !== false) {
      for (const [id, s] of this.states) {
        if (s.status === 'unknown' && s.lastSeen === null) continue
        const d = this.registry.get(id)
        if (d !== undefined && this.statusOf(d, s, now) !== s.status) this.changed.add(id)
      }
    }
    // With a budget, only that many devices are rebuilt now; the rest stay marked for the next call.
    let ids: Iterable<string> = this.changed
    if (options.budget === undefined || this.changed.size <= options.budget) {
      this.changed = new Set()
    } else {
      const slice: string[] = []
      for (const id of this.changed) {
        if (slice.length >= options.budget) break
        slice.push(id)
      }
      for (const id of slice) this.changed.delete(id)
      ids = slice
    }
    const views: CachedView[] = []
    const removed: string[] = []
    let alarmsChanged = false
    for (const id of ids) {
      const v = this.rebuild(id, now)
      if (v) views.push(v)
      else removed.push(id)
      if (this.updateAlarms(id, v ? conditionsOf(v.view) : [], now)) alarmsChanged = true
    }
    if (this.ruleAlarms?.takeChanged()) alarmsChanged = true
    return { views, removed, alarmsChanged }
  }

  /**
   * Publishes rule alarms on the stream. A rule alarm replaces the derived condition of the same device and
   * type (an `offline` rule alarm also covers `stale`); derived conditions without a rule alarm stay.
   */
  /** Devices marked as changed and not yet rebuilt by `refresh`. */
  get pendingChanges(): number {
    return this.changed.size
  }

  setRuleAlarms(source: RuleAlarmSource | undefined) {
    this.ruleAlarms = source
    this.alarmsCache = undefined
  }

  /**
   * Readings of the device's main metric over the last hour of wall-clock time, and how far back the
   * oldest of them lies: the rule engine's completeness check. Undefined for a device never heard from.
   */
  hourCoverage(id: string, now = Date.now()): { count: number; spanMs: number } | undefined {
    const d = this.registry.get(id)
    const m = d === undefined ? undefined : this.states.get(id)?.metrics.get(MAIN_METRIC[d.kind])
    if (m === undefined) return undefined
    const { count, oldest } = m.hourCoverage(now)
    return { count, spanMs: oldest < 0 ? 0 : (60 - oldest) * 60_000 }
  }

  private updateAlarms(deviceId: string, conditions: AlarmCondition[], now: number): boolean {
    let changed = false
    const keep = new Set<string>()
    for (const c of conditions) {
      const id = `${deviceId}:${c.key}`
      keep.add(id)
      const prev = this.alarmMap.get(id)
      const { key: _key, ...rest } = c
      const next: Alarm = { id, source: 'derived', ...rest, since: prev?.since ?? now }
      if (
        prev === undefined ||
        prev.level !== next.level ||
        prev.severity !== next.severity ||
        prev.value !== next.value ||
        prev.name !== next.name ||
        // A device moved to another district or regency: its condition goes to that wall.
        prev.district !== next.district ||
        prev.regency !== next.regency ||
        prev.kind !== next.kind
      ) {
        this.alarmMap.set(id, next)
        this.alarmsCache = undefined
        changed = true
      }
    }
    for (const type of ['river', 'ispu', 'occupancy', 'offline', 'stale']) {
      const id = `${deviceId}:${type}`
      if (!keep.has(id) && this.alarmMap.delete(id)) {
        this.alarmsCache = undefined
        changed = true
      }
    }
    return changed
  }

  /** Every registered device's view (cached when it exists), registry order. */
  all(now = Date.now()): CachedView[] {
    const out: CachedView[] = []
    for (const d of this.registry.list()) {
      const v = this.cache.get(d.id) ?? this.rebuild(d.id, now)
      if (v) out.push(v)
    }
    return out
  }

  /** Active alarms, most severe first: the same array until one of them changes. */
  alarms(): readonly Alarm[] {
    const rule = this.ruleAlarms?.alarms() ?? NO_ALARMS
    if (this.alarmsCache?.rule === rule) return this.alarmsCache.list
    const list = this.mergeAlarms(rule)
    this.alarmsCache = { rule, list }
    return list
  }

  private mergeAlarms(rule: readonly Alarm[]): Alarm[] {
    if (rule.length === 0) return sortAlarms([...this.alarmMap.values()])
    const covered = new Set<string>()
    for (const a of rule) {
      covered.add(`${a.deviceId}:${a.type}`)
      if (a.type === 'offline') covered.add(`${a.deviceId}:stale`)
    }
    const derived = [...this.alarmMap.values()].filter((a) => !covered.has(`${a.deviceId}:${a.type}`))
    return sortAlarms([...rule, ...derived])
  }

  get deviceCount() {
    return this.states.size
  }

  close() {
    this.detach()
  }
}
