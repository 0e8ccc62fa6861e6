import { z } from 'zod'
import {
  DEVICE_KINDS,
  DeviceIdSchema,
  type DeviceKind,
  DeviceKindSchema,
} from '../firmware-contracts/index.ts'
import {
  AIR_STATIONS,
  KIND_ID_PARTS,
  MARKETS,
  type Place,
  RAIN_STATIONS,
  REGENCIES,
  RIVER_GAUGES,
  type RiverAlertLevels,
} from './places.ts'
import { hashString, round as roundTo, uniformAt } from './random.ts'

/**
 * One simulated device as the registry knows it. The shape matches the registry's new-device record, so a
 * fleet can be registered as is and the platform hands back a secret per id.
 */
export const SimDeviceSpecSchema = z.object({
  id: DeviceIdSchema,
  kind: DeviceKindSchema,
  name: z.string().min(1).max(120),
  regency: z.string().min(1).max(80),
  district: z.string().min(1).max(80),
  latitude: z.number().min(-90).max(90),
  longitude: z.number().min(-180).max(180),
  reportingIntervalMs: z.number().int().min(1000).max(86_400_000),
  thresholds: z.record(z.string(), z.number()).optional(),
})
export type SimDeviceSpec = z.infer<typeof SimDeviceSpecSchema>

export const SimDeviceWithSecretSchema = SimDeviceSpecSchema.extend({ secret: z.string().min(1).max(512) })
export type SimDeviceWithSecret = z.infer<typeof SimDeviceWithSecretSchema>

/**
 * Reporting intervals a field team would configure: rivers and crowds change within minutes, rain is
 * accumulated per 5 minutes, air-quality stations average over 5 minutes.
 */
export const DEFAULT_REPORTING_INTERVAL_MS = {
  'river-level': 60_000,
  'rain-gauge': 300_000,
  'air-quality': 300_000,
  'crowd-counter': 60_000,
} as const satisfies Record<DeviceKind, number>

export const DefineFleetOptionsSchema = z.object({
  perKind: z.number().int().min(0).max(100_000),
  seed: z.number().int().default(1),
  kinds: z
    .array(DeviceKindSchema)
    .min(1)
    .default([...DEVICE_KINDS]),
})
export type DefineFleetOptions = z.input<typeof DefineFleetOptionsSchema>

const ENTRANCES = ['pintu utama', 'pintu utara', 'pintu selatan', 'pintu timur', 'pintu barat'] as const

interface Slot {
  readonly place: Place
  readonly name: string
  /** River alert levels, or a market's capacity (people inside at a normal peak) for its counters. */
  readonly thresholds?: RiverAlertLevels | { readonly capacity: number }
  /** 0 for the first device at a site, 1 for the second, ... */
  readonly round: number
}

/** The n-th device of a kind: sites are used round-robin, later rounds sit next to the first ones. */
function slotFor(kind: DeviceKind, index: number): Slot {
  switch (kind) {
    case 'river-level': {
      const place = RIVER_GAUGES[index % RIVER_GAUGES.length]!
      const round = Math.floor(index / RIVER_GAUGES.length)
      const name = round === 0 ? place.name : `${place.name} #${round + 1}`
      return { place, name, thresholds: place.thresholds, round }
    }
    case 'rain-gauge': {
      const place = RAIN_STATIONS[index % RAIN_STATIONS.length]!
      const round = Math.floor(index / RAIN_STATIONS.length)
      return { place, name: round === 0 ? place.name : `${place.name} #${round + 1}`, round }
    }
    case 'air-quality': {
      const place = AIR_STATIONS[index % AIR_STATIONS.length]!
      const round = Math.floor(index / AIR_STATIONS.length)
      return { place, name: round === 0 ? place.name : `${place.name} #${round + 1}`, round }
    }
    case 'crowd-counter': {
      const place = MARKETS[index % MARKETS.length]!
      const round = Math.floor(index / MARKETS.length)
      const entrance = ENTRANCES[round % ENTRANCES.length]!
      const lap = Math.floor(round / ENTRANCES.length)
      return {
        place,
        name: `${place.name}, ${entrance}${lap === 0 ? '' : ` ${lap + 1}`}`,
        thresholds: { capacity: place.capacity },
        round,
      }
    }
  }
}

/**
 * Deterministic device definitions: the same options always give the same ids, names and positions, so
 * tests, benchmarks and a registered fleet agree. Ids read `<regency>-<kind>-<nnn>`, e.g. `dps-river-001`,
 * numbered per regency and kind.
 */
export function defineFleet(options: DefineFleetOptions): SimDeviceSpec[] {
  const { perKind, seed, kinds } = DefineFleetOptionsSchema.parse(options)
  const devices: SimDeviceSpec[] = []
  const counters = new Map<string, number>()
  for (const kind of kinds) {
    for (let i = 0; i < perKind; i++) {
      const slot = slotFor(kind, i)
      const regency = REGENCIES[slot.place.regency]
      const prefix = `${regency.code}-${KIND_ID_PARTS[kind]}`
      const n = (counters.get(prefix) ?? 0) + 1
      counters.set(prefix, n)
      const id = `${prefix}-${String(n).padStart(3, '0')}`
      // The first device at a site sits within ~40 m of it; extra ones spread up to ~300 m around it,
      // except market entrances, which stay around the market building.
      const spread = slot.round === 0 ? 0.0004 : kind === 'crowd-counter' ? 0.0008 : 0.003
      const h = hashString(id)
      const latitude = roundTo(slot.place.latitude + (uniformAt(seed, h, 1) * 2 - 1) * spread, 6)
      const longitude = roundTo(slot.place.longitude + (uniformAt(seed, h, 2) * 2 - 1) * spread, 6)
      const spec: SimDeviceSpec = {
        id,
        kind,
        name: slot.name,
        regency: slot.place.regency,
        district: slot.place.district,
        latitude,
        longitude,
        reportingIntervalMs: DEFAULT_REPORTING_INTERVAL_MS[kind],
      }
      if (slot.thresholds !== undefined) spec.thresholds = { ...slot.thresholds }
      devices.push(spec)
    }
  }
  return devices
}
