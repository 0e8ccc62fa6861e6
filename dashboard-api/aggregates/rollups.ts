import type { Alarm, DeviceSummary, Rollup } from '../protocol.ts'
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

function addTo(r: Rollup, d: DeviceSummary) {
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
export function computeRollups(devices: Iterable<DeviceSummary>, alarms: Iterable<Alarm> = []): Rollup[] {
  // Nested maps on the devices' own strings: runs over the whole fleet on every live tick, where a
  // composite string key per device and group would cost an allocation and a hash each.
  const districts = new Map<string, Map<string, Rollup>>()
  const regencies = new Map<string, Rollup>()
  const kinds = new Map<string, Rollup>()
  const out: Rollup[] = []
  const district = (regency: string, key: string, create: boolean) => {
    let inRegency = districts.get(regency)
    if (inRegency === undefined) {
      if (!create) return undefined
      inRegency = new Map()
      districts.set(regency, inRegency)
    }
    let r = inRegency.get(key)
    if (r === undefined && create) {
      r = emptyRollup('district', key, regency)
      inRegency.set(key, r)
      out.push(r)
    }
    return r
  }
  const single = (map: Map<string, Rollup>, group: Group, key: string, create: boolean) => {
    let r = map.get(key)
    if (r === undefined && create) {
      r = emptyRollup(group, key)
      map.set(key, r)
      out.push(r)
    }
    return r
  }
  for (const d of devices) {
    addTo(district(d.regency, d.district, true)!, d)
    addTo(single(regencies, 'regency', d.regency, true)!, d)
    addTo(single(kinds, 'kind', d.kind, true)!, d)
  }
  for (const a of alarms) {
    const rd = district(a.regency, a.district, false)
    if (rd) rd.alarms++
    const rr = single(regencies, 'regency', a.regency, false)
    if (rr) rr.alarms++
    const rk = single(kinds, 'kind', a.kind, false)
    if (rk) rk.alarms++
  }
  const order: Record<Group, number> = { regency: 0, district: 1, kind: 2 }
  return out.sort((a, b) => order[a.group] - order[b.group] || (a.key < b.key ? -1 : a.key > b.key ? 1 : 0))
}
