import type { Alarm, DeviceLive, Rollup } from '../protocol.ts'
import { riverLevelRank } from './river-status.ts'

type Group = Rollup['group']

function emptyRollup(group: Group, key: string, regency?: string): Rollup {
  return {
    group,
    key,
    ...(regency === undefined ? {} : { regency }),
    devices: 0,
    online: 0,
    stale: 0,
    offline: 0,
    worstIspu: null,
    highestRiver: null,
    busiestMarket: null,
    alarms: 0,
  }
}

function addTo(r: Rollup, d: DeviceLive) {
  r.devices++
  if (d.status === 'online') r.online++
  else if (d.status === 'stale') r.stale++
  else if (d.status === 'offline') r.offline++
  // Stale numbers do not make a district look better or worse than it is: only fresh data ranks.
  if (d.status !== 'online') return
  if (d.ispu && (r.worstIspu === null || d.ispu.value > r.worstIspu.value)) {
    r.worstIspu = {
      deviceId: d.id,
      value: d.ispu.value,
      category: d.ispu.category,
      critical: d.ispu.critical,
    }
  }
  if (d.river) {
    const h = r.highestRiver
    const rank = riverLevelRank(d.river.level)
    if (
      h === null ||
      rank > riverLevelRank(h.level) ||
      (rank === riverLevelRank(h.level) && d.river.waterLevel > h.waterLevel)
    ) {
      r.highestRiver = {
        deviceId: d.id,
        level: d.river.level,
        waterLevel: d.river.waterLevel,
        riseCmPerHour: d.river.riseCmPerHour,
      }
    }
  }
  if (d.occupancy) {
    const b = r.busiestMarket
    const score = d.occupancy.ratio ?? -1
    if (
      b === null ||
      score > (b.ratio ?? -1) ||
      (score === (b.ratio ?? -1) && d.occupancy.people > b.people)
    ) {
      r.busiestMarket = { deviceId: d.id, ...d.occupancy }
    }
  }
}

/**
 * Rollups per district, per regency and per kind of the given devices: worst ISPU, highest river status,
 * busiest market, device counts by status and the number of active alarms. Sorted by group, then key.
 */
export function computeRollups(devices: Iterable<DeviceLive>, alarms: Iterable<Alarm> = []): Rollup[] {
  const groups = new Map<string, Rollup>()
  const get = (group: Group, key: string, regency?: string) => {
    const id = `${group}\u0000${regency ?? ''}\u0000${key}`
    let r = groups.get(id)
    if (r === undefined) {
      r = emptyRollup(group, key, regency)
      groups.set(id, r)
    }
    return r
  }
  for (const d of devices) {
    addTo(get('district', d.district, d.regency), d)
    addTo(get('regency', d.regency), d)
    addTo(get('kind', d.kind), d)
  }
  for (const a of alarms) {
    for (const [group, key, regency] of [
      ['district', a.district, a.regency],
      ['regency', a.regency, undefined],
      ['kind', a.kind, undefined],
    ] as const) {
      const r = groups.get(`${group}\u0000${regency ?? ''}\u0000${key}`)
      if (r) r.alarms++
    }
  }
  const order: Record<Group, number> = { regency: 0, district: 1, kind: 2 }
  return [...groups.values()].sort(
    (a, b) => order[a.group] - order[b.group] || (a.key < b.key ? -1 : a.key > b.key ? 1 : 0),
  )
}
