/**
 * Real places in the four pilot regencies. Coordinates are approximate (a few hundred metres): good for a
 * wall-display map, not for surveying. Names and districts (kecamatan) are the ones operators use.
 */

export const REGENCIES = {
  'Kota Denpasar': { code: 'dps', province: 'Bali', stormChanceFactor: 1, urban: true },
  Jembrana: { code: 'jbr', province: 'Bali', stormChanceFactor: 0.9, urban: false },
  Bangli: { code: 'bli', province: 'Bali', stormChanceFactor: 1.2, urban: false },
  // South-central Lombok lies in the rain shadow of Rinjani and is markedly drier than Bali.
  'Lombok Tengah': { code: 'lteng', province: 'Nusa Tenggara Barat', stormChanceFactor: 0.75, urban: false },
} as const
export type RegencyName = keyof typeof REGENCIES
export const REGENCY_NAMES = Object.keys(REGENCIES) as RegencyName[]

/** Short kind names used inside device ids, e.g. `dps-river-001`. */
export const KIND_ID_PARTS = {
  'river-level': 'river',
  'rain-gauge': 'rain',
  'air-quality': 'air',
  'crowd-counter': 'crowd',
} as const

export interface Place {
  readonly name: string
  readonly regency: RegencyName
  readonly district: string
  readonly latitude: number
  readonly longitude: number
}

export interface RiverAlertLevels {
  /** Alert levels in cm above gauge zero (BNPB naming, rising severity). */
  readonly waspada: number
  readonly siaga: number
  readonly awas: number
}

export interface RiverGaugePlace extends Place {
  readonly river: string
  readonly thresholds: RiverAlertLevels
  /** Where the rain that raises this gauge falls, when that is upstream in another regency. */
  readonly catchment?: RegencyName
  /** Hours from rain to the peak at this gauge: short for urban channels, long for big catchments. */
  readonly lagHours: number
}

export interface MarketPlace extends Place {
  /** People inside at a normal morning peak (all entrances together). */
  readonly capacity: number
  /** Opening and closing hour, WITA. Traditional markets start before dawn. */
  readonly opensAt: number
  readonly closesAt: number
}

/**
 * River gauges. Tukad Badung runs north-south through the middle of Denpasar to the Smart River Walk at
 * Pulau Moyo (Pedungan); Tukad Ayung forms the city's eastern edge down to Padang Galak.
 */
export const RIVER_GAUGES: readonly RiverGaugePlace[] = [
  {
    name: 'Tukad Badung, Jembatan Gatot Subroto',
    river: 'Tukad Badung',
    regency: 'Kota Denpasar',
    district: 'Denpasar Utara',
    latitude: -8.6338,
    longitude: 115.2071,
    thresholds: { waspada: 150, siaga: 200, awas: 250 },
    lagHours: 1.2,
  },
  {
    name: 'Tukad Badung, Pasar Badung - Kumbasari',
    river: 'Tukad Badung',
    regency: 'Kota Denpasar',
    district: 'Denpasar Barat',
    latitude: -8.6559,
    longitude: 115.2116,
    thresholds: { waspada: 160, siaga: 210, awas: 260 },
    lagHours: 1.5,
  },
  {
    name: 'Tukad Badung, Jembatan Jl. Diponegoro',
    river: 'Tukad Badung',
    regency: 'Kota Denpasar',
    district: 'Denpasar Selatan',
    latitude: -8.6735,
    longitude: 115.2102,
    thresholds: { waspada: 170, siaga: 225, awas: 280 },
    lagHours: 1.8,
  },
  {
    name: 'Tukad Badung River Walk, Pulau Moyo',
    river: 'Tukad Badung',
    regency: 'Kota Denpasar',
    district: 'Denpasar Selatan',
    latitude: -8.6921,
    longitude: 115.2093,
    thresholds: { waspada: 180, siaga: 240, awas: 300 },
    lagHours: 2.0,
  },
  {
    name: 'Tukad Ayung, Kesiman Kertalangu',
    river: 'Tukad Ayung',
    // Tukad Ayung drains the highlands up to Kintamani: Denpasar's own showers matter less than Bangli's.
    catchment: 'Bangli',
    regency: 'Kota Denpasar',
    district: 'Denpasar Timur',
    latitude: -8.6347,
    longitude: 115.2598,
    thresholds: { waspada: 220, siaga: 300, awas: 380 },
    lagHours: 3.5,
  },
  {
    name: 'Tukad Ayung, Padang Galak',
    river: 'Tukad Ayung',
    catchment: 'Bangli',
    regency: 'Kota Denpasar',
    district: 'Denpasar Timur',
    latitude: -8.6548,
    longitude: 115.2668,
    thresholds: { waspada: 230, siaga: 310, awas: 400 },
    lagHours: 4.0,
  },
  {
    name: 'Tukad Ijo Gading, Negara',
    river: 'Tukad Ijo Gading',
    regency: 'Jembrana',
    district: 'Negara',
    latitude: -8.3596,
    longitude: 114.6168,
    thresholds: { waspada: 200, siaga: 270, awas: 340 },
    lagHours: 2.5,
  },
  {
    name: 'Tukad Melangit, Kayubihi',
    river: 'Tukad Melangit',
    regency: 'Bangli',
    district: 'Bangli',
    latitude: -8.4421,
    longitude: 115.3702,
    thresholds: { waspada: 190, siaga: 260, awas: 330 },
    lagHours: 2.0,
  },
  {
    name: 'Sungai Tiwugalih, Praya',
    river: 'Sungai Tiwugalih',
    regency: 'Lombok Tengah',
    district: 'Praya',
    latitude: -8.7046,
    longitude: 116.2781,
    thresholds: { waspada: 160, siaga: 220, awas: 280 },
    lagHours: 2.0,
  },
]

export const RAIN_STATIONS: readonly Place[] = [
  {
    name: 'Pos hujan Peguyangan',
    regency: 'Kota Denpasar',
    district: 'Denpasar Utara',
    latitude: -8.6155,
    longitude: 115.2118,
  },
  {
    name: 'Pos hujan Sanur',
    regency: 'Kota Denpasar',
    district: 'Denpasar Selatan',
    latitude: -8.6805,
    longitude: 115.2575,
  },
  {
    name: 'Pos hujan Negara',
    regency: 'Jembrana',
    district: 'Negara',
    latitude: -8.3612,
    longitude: 114.6232,
  },
  {
    name: 'Pos hujan Kintamani',
    regency: 'Bangli',
    district: 'Kintamani',
    latitude: -8.2548,
    longitude: 115.3242,
  },
  { name: 'Pos hujan Bangli', regency: 'Bangli', district: 'Bangli', latitude: -8.4539, longitude: 115.3551 },
  {
    name: 'Pos hujan Praya',
    regency: 'Lombok Tengah',
    district: 'Praya',
    latitude: -8.7121,
    longitude: 116.2702,
  },
]

export const AIR_STATIONS: readonly Place[] = [
  {
    name: 'AQMS Lapangan Puputan Badung',
    regency: 'Kota Denpasar',
    district: 'Denpasar Barat',
    latitude: -8.6566,
    longitude: 115.2163,
  },
  {
    name: 'AQMS Niti Mandala Renon',
    regency: 'Kota Denpasar',
    district: 'Denpasar Selatan',
    latitude: -8.6726,
    longitude: 115.2336,
  },
  {
    name: 'AQMS Terminal Ubung',
    regency: 'Kota Denpasar',
    district: 'Denpasar Utara',
    latitude: -8.6296,
    longitude: 115.1996,
  },
  { name: 'AQMS Negara', regency: 'Jembrana', district: 'Negara', latitude: -8.3571, longitude: 114.6183 },
  { name: 'AQMS Bangli', regency: 'Bangli', district: 'Bangli', latitude: -8.4553, longitude: 115.3561 },
  { name: 'AQMS Praya', regency: 'Lombok Tengah', district: 'Praya', latitude: -8.7087, longitude: 116.2722 },
]

/** Heritage markets. Pasar Badung and Pasar Kumbasari face each other across Tukad Badung. */
export const MARKETS: readonly MarketPlace[] = [
  {
    name: 'Pasar Badung',
    regency: 'Kota Denpasar',
    district: 'Denpasar Barat',
    latitude: -8.6556,
    longitude: 115.2124,
    capacity: 2400,
    opensAt: 4,
    closesAt: 18,
  },
  {
    name: 'Pasar Kumbasari',
    regency: 'Kota Denpasar',
    district: 'Denpasar Barat',
    latitude: -8.6561,
    longitude: 115.2109,
    capacity: 1200,
    opensAt: 4,
    closesAt: 18,
  },
  {
    name: 'Pasar Kreneng',
    regency: 'Kota Denpasar',
    district: 'Denpasar Utara',
    latitude: -8.6478,
    longitude: 115.2246,
    capacity: 1500,
    opensAt: 4,
    closesAt: 18,
  },
  {
    name: 'Pasar Bangli',
    regency: 'Bangli',
    district: 'Bangli',
    latitude: -8.4548,
    longitude: 115.3547,
    capacity: 900,
    opensAt: 4,
    closesAt: 17,
  },
  {
    name: 'Pasar Negara',
    regency: 'Jembrana',
    district: 'Negara',
    latitude: -8.3583,
    longitude: 114.6206,
    capacity: 1000,
    opensAt: 4,
    closesAt: 17,
  },
  {
    name: 'Pasar Renteng',
    regency: 'Lombok Tengah',
    district: 'Praya',
    latitude: -8.7079,
    longitude: 116.2743,
    capacity: 1300,
    opensAt: 5,
    closesAt: 17,
  },
]

/** Highland districts are cooler; the lapse rate is about 0.6 °C per 100 m. */
export const DISTRICT_TEMPERATURE_OFFSET: Readonly<Record<string, number>> = {
  Kintamani: -7,
  Bangli: -2.5,
  Susut: -2,
  Tembuku: -2,
}

export function regencyByName(name: string): RegencyName | undefined {
  return Object.hasOwn(REGENCIES, name) ? (name as RegencyName) : undefined
}

export function regencyByCode(code: string): RegencyName | undefined {
  return REGENCY_NAMES.find((name) => REGENCIES[name].code === code)
}

/** The market a counter stands in, from its name (counters are named "<market>, <entrance>"). */
export function marketByName(name: string): MarketPlace | undefined {
  return MARKETS.find(
    (m) => name === m.name || name.startsWith(`${m.name},`) || name.startsWith(`${m.name} `),
  )
}

/** The gauge site a device stands at, from its name (extra gauges are named "<site> #2", ...). */
export function riverGaugeByName(name: string): RiverGaugePlace | undefined {
  return RIVER_GAUGES.find((g) => name === g.name || name.startsWith(`${g.name} `))
}
