/**
 * ISPU (Indeks Standar Pencemar Udara) after PermenLHK P.14/2020, as versioned configuration: a new
 * regulation is a new entry in ISPU_TABLES, and every computed index names the table it came from.
 *
 * The regulation computes ISPU from averages (24 h for particulates, 1 h or 8 h for gases). The wall
 * display computes it from the rolling 1-hour means, so that it moves with the air operators see; the
 * official daily ISPU is for analysts (computed from history, not here).
 */

export const ISPU_POLLUTANTS = ['pm25', 'pm10', 'so2', 'co', 'o3', 'no2', 'hc'] as const
export type IspuPollutant = (typeof ISPU_POLLUTANTS)[number]

export interface IspuTable {
  readonly version: string
  readonly source: string
  /** ISPU values at the break points; the first segment starts at (0 µg/m³, ISPU 0). */
  readonly indexPoints: readonly number[]
  /** Concentration (µg/m³) at each of `indexPoints`, per pollutant. */
  readonly breakPoints: Readonly<Record<IspuPollutant, readonly number[]>>
}

export const ISPU_TABLES = {
  'P.14/2020': {
    version: 'P.14/2020',
    source: 'Peraturan Menteri LHK No. P.14/MENLHK/SETJEN/KUM.1/7/2020, Lampiran',
    indexPoints: [50, 100, 200, 300, 500],
    breakPoints: {
      pm25: [15.5, 55.4, 150.4, 250.4, 500],
      pm10: [50, 150, 350, 420, 500],
      so2: [52, 180, 400, 800, 1200],
      co: [4000, 8000, 15000, 30000, 45000],
      o3: [120, 235, 400, 800, 1000],
      no2: [80, 200, 1130, 2260, 3000],
      hc: [45, 100, 215, 432, 648],
    },
  },
} as const satisfies Record<string, IspuTable>
export type IspuTableVersion = keyof typeof ISPU_TABLES
export const CURRENT_ISPU_TABLE: IspuTableVersion = 'P.14/2020'

export const ISPU_CATEGORIES = ['baik', 'sedang', 'tidak-sehat', 'sangat-tidak-sehat', 'berbahaya'] as const
export type IspuCategory = (typeof ISPU_CATEGORIES)[number]

export const ISPU_CATEGORY_LABELS: Readonly<Record<IspuCategory, { id: string; en: string }>> = {
  baik: { id: 'Baik', en: 'Good' },
  sedang: { id: 'Sedang', en: 'Moderate' },
  'tidak-sehat': { id: 'Tidak Sehat', en: 'Unhealthy' },
  'sangat-tidak-sehat': { id: 'Sangat Tidak Sehat', en: 'Very Unhealthy' },
  berbahaya: { id: 'Berbahaya', en: 'Hazardous' },
}

/** Band of an (integer) ISPU: Baik 0–50, Sedang 51–100, Tidak Sehat 101–200, Sangat Tidak Sehat 201–300. */
export function ispuCategory(ispu: number): IspuCategory {
  if (ispu <= 50) return 'baik'
  if (ispu <= 100) return 'sedang'
  if (ispu <= 200) return 'tidak-sehat'
  if (ispu <= 300) return 'sangat-tidak-sehat'
  return 'berbahaya'
}

/**
 * Sub-index of one pollutant by linear interpolation between break points, rounded to a whole number.
 * Concentrations above the last break point are capped at its index (500): the scale ends there.
 */
export function subIndex(
  pollutant: IspuPollutant,
  concentration: number,
  table: IspuTable = ISPU_TABLES[CURRENT_ISPU_TABLE],
): number {
  const xs = table.breakPoints[pollutant]
  const ys = table.indexPoints
  if (!(concentration > 0)) return 0
  let x0 = 0
  let y0 = 0
  for (let i = 0; i < xs.length; i++) {
    const x1 = xs[i]!
    const y1 = ys[i]!
    if (concentration <= x1) return Math.round(y0 + ((y1 - y0) * (concentration - x0)) / (x1 - x0))
    x0 = x1
    y0 = y1
  }
  return ys[ys.length - 1]!
}

export interface IspuResult {
  readonly value: number
  readonly category: IspuCategory
  /** The pollutant with the highest sub-index. */
  readonly critical: IspuPollutant
  readonly subIndices: Partial<Record<IspuPollutant, number>>
  readonly table: string
}

/** Site ISPU = the highest sub-index over the pollutants measured; null when none is. */
export function computeIspu(
  concentrations: Partial<Record<IspuPollutant, number | undefined>>,
  table: IspuTable = ISPU_TABLES[CURRENT_ISPU_TABLE],
): IspuResult | null {
  const subIndices: Partial<Record<IspuPollutant, number>> = {}
  let best: IspuPollutant | undefined
  for (const p of ISPU_POLLUTANTS) {
    const c = concentrations[p]
    if (c === undefined || !Number.isFinite(c)) continue
    const s = subIndex(p, c, table)
    subIndices[p] = s
    if (best === undefined || s > subIndices[best]!) best = p
  }
  if (best === undefined) return null
  const value = subIndices[best]!
  return { value, category: ispuCategory(value), critical: best, subIndices, table: table.version }
}
