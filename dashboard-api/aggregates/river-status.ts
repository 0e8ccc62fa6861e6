/**
 * River alert levels per gauge (BNPB naming, rising severity), against the gauge's own thresholds set at
 * installation. Jakarta's Siaga 4..1 numbering runs the other way; both are shown.
 */

export const RIVER_LEVELS = ['normal', 'waspada', 'siaga', 'awas'] as const
export type RiverLevel = (typeof RIVER_LEVELS)[number]

export const RIVER_LEVEL_LABELS: Readonly<Record<RiverLevel, { bnpb: string; jakarta: string; en: string }>> =
  {
    normal: { bnpb: 'Normal', jakarta: 'Siaga 4', en: 'Normal' },
    waspada: { bnpb: 'Waspada', jakarta: 'Siaga 3', en: 'Alert' },
    siaga: { bnpb: 'Siaga', jakarta: 'Siaga 2', en: 'Standby' },
    awas: { bnpb: 'Awas', jakarta: 'Siaga 1', en: 'Danger' },
  }

export interface RiverThresholds {
  readonly waspada: number
  readonly siaga: number
  readonly awas: number
}

/** The gauge's thresholds from its registry record, or undefined when they are missing or out of order. */
export function riverThresholds(
  t: Readonly<Record<string, number>> | undefined,
): RiverThresholds | undefined {
  if (t === undefined) return undefined
  const { waspada, siaga, awas } = t
  if (waspada === undefined || siaga === undefined || awas === undefined) return undefined
  if (!(waspada <= siaga && siaga <= awas)) return undefined
  return { waspada, siaga, awas }
}

/**
 * Next alert level with hysteresis: a level is entered as soon as the water reaches its threshold, and
 * left only when the water falls `marginCm` below it, so a level hovering at a threshold does not make the
 * wall flicker between two states.
 */
export function nextRiverLevel(
  current: RiverLevel,
  waterLevel: number,
  thresholds: RiverThresholds,
  marginCm: number,
): RiverLevel {
  const order = RIVER_LEVELS
  let raised = 0
  for (let i = 1; i < order.length; i++)
    if (waterLevel >= thresholds[order[i] as keyof RiverThresholds]) raised = i
  const cur = order.indexOf(current)
  if (raised >= cur) return order[raised]!
  // Falling: stay at the highest level at or below the current one whose threshold minus margin is still met.
  for (let i = cur; i > raised; i--) {
    if (waterLevel >= thresholds[order[i] as keyof RiverThresholds] - marginCm) return order[i]!
  }
  return order[raised]!
}

export function riverLevelRank(level: RiverLevel): number {
  return RIVER_LEVELS.indexOf(level)
}
