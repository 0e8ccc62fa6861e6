/** Market crowding: people inside against the market's capacity (`thresholds.capacity` in the registry). */

export interface Occupancy {
  readonly people: number
  readonly capacity: number | null
  /** people / capacity; null when the capacity is unknown. */
  readonly ratio: number | null
}

/** At or above this share of capacity a market shows as an active condition on the wall. */
export const OCCUPANCY_ALARM_RATIO = 1

export function computeOccupancy(
  people: number | undefined,
  thresholds: Readonly<Record<string, number>> | undefined,
): Occupancy | null {
  if (people === undefined || !Number.isFinite(people)) return null
  const capacity = thresholds?.capacity
  const valid = capacity !== undefined && capacity > 0 ? capacity : null
  return { people, capacity: valid, ratio: valid === null ? null : people / valid }
}
