import { DEVICE_KINDS, type DeviceKind } from '../../firmware-contracts/index.ts'
import type { Device } from '../../ingest/registry.ts'
import { type DeviceSummary, STALE_AFTER_INTERVALS } from '../protocol.ts'
import type { AlarmPriority } from './config.ts'

/**
 * Alarm rules: each looks at one device's live view (from the aggregator) and says whether its condition
 * holds now, at which level, or that it cannot tell (no data since start: then nothing changes, so a
 * restart never clears an alarm by forgetting). Hysteresis lives here: a rule is told whether its alarm
 * is already active and then uses the lower "clear" bound, so a value wobbling around a threshold keeps
 * one alarm instead of raising and clearing it again. The minimum duration is applied by the engine.
 */

export const ALARM_TYPES = [
  'river',
  'rise',
  'ispu',
  'occupancy',
  'offline',
  'battery',
  'completeness',
] as const
export type AlarmType = (typeof ALARM_TYPES)[number]

/**
 * Defaults of each rule, overridable per device through the registry's `thresholds` (same key). A river's
 * alert levels are the gauge's own `waspada`/`siaga`/`awas` (its hysteresis is RIVER_HYSTERESIS_CM).
 */
export const RULE_DEFAULTS = {
  /** Rate of rise (cm/h over 15 min) that raises a `rise` alarm, and the band below it that clears it. */
  riseCmPerHour: 30,
  riseBandCmPerHour: 10,
  /** ISPU at or above this (Tidak Sehat starts at 101). */
  ispuAlarm: 101,
  ispuBand: 10,
  /** People / capacity at or above this. */
  occupancyAlarmRatio: 1,
  occupancyBandRatio: 0.05,
  /** Battery percentage at or below this. */
  batteryLow: 20,
  batteryBand: 5,
  /** Share of the expected readings received over the last hour below this. */
  completenessMin: 0.8,
  completenessBand: 0.05,
} as const
export type RuleSettingKey = keyof typeof RULE_DEFAULTS

export function setting(device: Device, key: RuleSettingKey): number {
  const v = device.thresholds?.[key]
  return v !== undefined && Number.isFinite(v) ? v : RULE_DEFAULTS[key]
}

export type Observation =
  | { readonly active: false }
  | {
      readonly active: true
      readonly level: string
      readonly priority: AlarmPriority
      readonly value: number | null
    }

/** Readings the aggregator holds for the device's last hour (wall clock). */
export interface HourCoverage {
  readonly count: number
  /** How far back the oldest reading in the hour lies, in ms. */
  readonly spanMs: number
}

export interface RuleInput {
  readonly view: DeviceSummary
  readonly device: Device
  readonly hour: HourCoverage | undefined
  /** How long the engine has run (a device whose status is `unknown` gave no sign in that time). */
  readonly sinceStartMs?: number
}

export interface AlarmRule {
  readonly type: AlarmType
  readonly kinds: readonly DeviceKind[] | 'all'
  /** undefined: cannot tell now (no data), leave the alarm as it is. */
  observe(input: RuleInput, active: boolean): Observation | undefined
}

const OFF: Observation = { active: false }
const hasData = (v: DeviceSummary) => v.latest !== null

const RIVER_PRIORITY: Record<string, AlarmPriority> = { waspada: 'warning', siaga: 'high', awas: 'emergency' }
const ISPU_PRIORITY: Record<string, AlarmPriority> = {
  'tidak-sehat': 'warning',
  'sangat-tidak-sehat': 'high',
  berbahaya: 'emergency',
}

/** At or above `at` raises; an active alarm holds until the value falls below `at - band`. */
function above(value: number, at: number, band: number, active: boolean): boolean {
  return value >= (active ? at - band : at)
}

export const RULES: readonly AlarmRule[] = [
  {
    type: 'river',
    kinds: ['river-level'],
    // The aggregator's river level already has hysteresis (RIVER_HYSTERESIS_CM).
    observe: ({ view }) => {
      if (!view.river) return hasData(view) ? OFF : undefined
      const level = view.river.level
      if (level === 'normal') return OFF
      return { active: true, level, priority: RIVER_PRIORITY[level]!, value: view.river.waterLevel }
    },
  },
  {
    type: 'rise',
    kinds: ['river-level'],
    observe: ({ view, device }, active) => {
      const rise = view.river?.riseCmPerHour
      if (rise === null || rise === undefined) return hasData(view) ? OFF : undefined
      const at = setting(device, 'riseCmPerHour')
      return above(rise, at, setting(device, 'riseBandCmPerHour'), active)
        ? { active: true, level: 'fast-rise', priority: 'high', value: rise }
        : OFF
    },
  },
  {
    type: 'ispu',
    kinds: ['air-quality'],
    observe: ({ view, device }, active) => {
      if (!view.ispu) return hasData(view) ? OFF : undefined
      const { value, category } = view.ispu
      if (!above(value, setting(device, 'ispuAlarm'), setting(device, 'ispuBand'), active)) return OFF
      return { active: true, level: category, priority: ISPU_PRIORITY[category] ?? 'warning', value }
    },
  },
  {
    type: 'occupancy',
    kinds: ['crowd-counter'],
    observe: ({ view, device }, active) => {
      const o = view.occupancy
      if (!o) return hasData(view) ? OFF : undefined
      if (o.ratio === null) return OFF
      const at = setting(device, 'occupancyAlarmRatio')
      if (!above(o.ratio, at, setting(device, 'occupancyBandRatio'), active)) return OFF
      return {
        active: true,
        level: 'over-capacity',
        priority: o.ratio >= at * 1.2 ? 'high' : 'warning',
        value: o.people,
      }
    },
  },
  {
    type: 'offline',
    kinds: 'all',
    observe: ({ view, device, sinceStartMs }) => {
      if (view.status === 'unknown') {
        // No sign since the start (the live state is not kept over a restart). A device in service silent
        // for as long as a reporting one takes to go stale died, maybe while the platform was down: without
        // this its offline alarm would never come.
        const silent =
          device.status === 'active' &&
          sinceStartMs !== undefined &&
          sinceStartMs > STALE_AFTER_INTERVALS * device.reportingIntervalMs
        return silent ? { active: true, level: 'offline', priority: 'technical', value: null } : undefined
      }
      if (view.status === 'online') return OFF
      return { active: true, level: view.status, priority: 'technical', value: null }
    },
  },
  {
    type: 'battery',
    kinds: 'all',
    observe: ({ view, device }, active) => {
      const b = view.latest?.fields.battery
      if (b === undefined) return hasData(view) ? OFF : undefined
      const low = setting(device, 'batteryLow')
      const band = setting(device, 'batteryBand')
      return b <= (active ? low + band : low)
        ? { active: true, level: 'low', priority: 'technical', value: b }
        : OFF
    },
  },
  {
    type: 'completeness',
    kinds: 'all',
    observe: ({ view, device, hour }, active) => {
      // Judged only over a full hour of the device's life, so a device just installed is not "incomplete".
      if (hour === undefined || view.status === 'unknown' || hour.spanMs < 50 * 60_000) return undefined
      const expected = 3_600_000 / device.reportingIntervalMs
      const share = Math.min(1, hour.count / expected)
      const min = setting(device, 'completenessMin')
      const band = setting(device, 'completenessBand')
      return share < (active ? min + band : min)
        ? { active: true, level: 'incomplete', priority: 'technical', value: Math.round(share * 1000) / 1000 }
        : OFF
    },
  },
]

const RULES_BY_KIND = new Map(
  DEVICE_KINDS.map((kind) => [kind, RULES.filter((r) => r.kinds === 'all' || r.kinds.includes(kind))]),
)

/** The rules of a kind: the same array on every call (the engine keys its per-device state by it). */
export function rulesFor(kind: DeviceKind): readonly AlarmRule[] {
  return RULES_BY_KIND.get(kind) ?? []
}

export const PRIORITY_RANK: Readonly<Record<AlarmPriority, number>> = {
  emergency: 0,
  high: 1,
  warning: 2,
  technical: 3,
}

/** The wall's two colours: emergency and high are critical. */
export function severityOf(p: AlarmPriority): 'critical' | 'warning' {
  return p === 'emergency' || p === 'high' ? 'critical' : 'warning'
}
