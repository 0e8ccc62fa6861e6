import type { Alarm, DeviceSummary } from '../protocol.ts'

export type AlarmCondition = Omit<Alarm, 'since' | 'id' | 'source'> & { readonly key: string }

/**
 * Active conditions of one device, derived from its aggregates: river at Waspada or above, ISPU at Tidak
 * Sehat or worse, a market at or over capacity, a device offline or stale. A device never heard from is
 * not an alarm (it may not be installed yet).
 */
export function conditionsOf(d: DeviceSummary): AlarmCondition[] {
  const base = { deviceId: d.id, kind: d.kind, name: d.name, regency: d.regency, district: d.district }
  const out: AlarmCondition[] = []
  if (d.status === 'offline' || d.status === 'stale') {
    out.push({ ...base, key: d.status, type: d.status, severity: 'warning', level: d.status, value: null })
  }
  if (d.river && d.river.level !== 'normal') {
    out.push({
      ...base,
      key: 'river',
      type: 'river',
      severity: d.river.level === 'waspada' ? 'warning' : 'critical',
      level: d.river.level,
      value: d.river.waterLevel,
    })
  }
  if (d.ispu && d.ispu.value > 100) {
    out.push({
      ...base,
      key: 'ispu',
      type: 'ispu',
      severity: d.ispu.value > 200 ? 'critical' : 'warning',
      level: d.ispu.category,
      value: d.ispu.value,
    })
  }
  if (d.occupancy?.ratio != null && d.occupancy.ratio >= 1) {
    out.push({
      ...base,
      key: 'occupancy',
      type: 'occupancy',
      severity: d.occupancy.ratio >= 1.2 ? 'critical' : 'warning',
      level: 'over-capacity',
      value: d.occupancy.people,
    })
  }
  return out
}

const SEVERITY_RANK = { critical: 0, warning: 1 } as const

/** Most severe first, then the oldest. */
export function sortAlarms(alarms: Alarm[]): Alarm[] {
  return alarms.sort(
    (a, b) =>
      SEVERITY_RANK[a.severity] - SEVERITY_RANK[b.severity] || a.since - b.since || (a.id < b.id ? -1 : 1),
  )
}
