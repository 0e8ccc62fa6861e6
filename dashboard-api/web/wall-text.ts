import type { IspuPollutant } from '../aggregates/ispu.ts'
import type { RIVER_LEVEL_LABELS } from '../aggregates/river-status.ts'

type RiverLevelNames = (typeof RIVER_LEVEL_LABELS)[keyof typeof RIVER_LEVEL_LABELS]

/*
 * Every word the wall display writes, per language. The page takes its words from here only (numbers,
 * units, pollutant names, device and place names aside), so that the English page shows no Indonesian
 * and the Indonesian page no English; tests/wall-display-text.test.ts holds the page to that.
 */

const id = {
  title: 'Pusat Komando Sensor Kota',
  live: 'TERHUBUNG',
  down: 'TERPUTUS — menyambung ulang…',
  connecting: 'MENYAMBUNG…',
  banner: 'Koneksi ke server terputus: angka di layar mungkin sudah usang',
  updated: (s: string) => `diperbarui ${s} lalu`,
  never: 'belum ada data',
  stale: 'DATA BASI',
  offline: 'LUAR JARINGAN',
  kinds: {
    'river-level': 'Tinggi Muka Air Sungai',
    'rain-gauge': 'Curah Hujan',
    'air-quality': 'Kualitas Udara (ISPU)',
    'crowd-counter': 'Kepadatan Pasar',
  },
  map: 'Peta Sensor',
  alarms: 'Kondisi Aktif',
  noAlarms: 'Tidak ada kondisi aktif',
  people: 'orang',
  inOut: 'masuk/keluar',
  highest: 'tertinggi',
  worst: 'terburuk',
  busiest: 'terpadat',
  wettest: 'terbasah',
  ofCapacity: 'dari kapasitas',
  perHour: 'cm/jam',
  /** A river alert level: BNPB's name and Jakarta's number for the same level. */
  // BNPB's name first: Jakarta's scale runs the other way and reuses "Siaga" for its lower levels, so
  // "Siaga 3" first read as BNPB's Siaga, a level higher than the water was.
  riverLevel: (l: RiverLevelNames, normal: boolean) => (normal ? l.bnpb : `${l.bnpb} (${l.jakarta} DKI)`),
  /** The largest rainfall of one reporting interval within the last hour. */
  rainMax1h: (mm: string) => `maks 1 jam ${mm} mm`,
  seconds: (n: string) => `${n} dtk`,
  minutes: (n: string) => `${n} mnt`,
  hours: (n: string) => `${n} jam`,
  all: 'Semua wilayah',
  alarmText: {
    river: 'Sungai',
    ispu: 'ISPU',
    occupancy: 'Pasar penuh',
    offline: 'Perangkat luar jaringan',
    stale: 'Data basi',
    rise: 'Air naik cepat',
    battery: 'Baterai lemah',
    completeness: 'Data tidak lengkap',
  },
  /** More conditions than the list shows. */
  more: (n: string) => `+${n} lainnya`,
  slaLeft: (t: string) => `SLA ${t}`,
  slaOver: (t: string) => `LEWAT SLA ${t}`,
  acked: (who: string) => `✓ ${who}`,
  cleared: 'selesai',
}

export type WallText = typeof id

const en: WallText = {
  title: 'City Sensor Command Centre',
  live: 'CONNECTED',
  down: 'DISCONNECTED — reconnecting…',
  connecting: 'CONNECTING…',
  banner: 'Lost the connection to the server: the numbers on screen may be out of date',
  updated: (s: string) => `updated ${s} ago`,
  never: 'no data yet',
  stale: 'STALE',
  offline: 'OFFLINE',
  kinds: {
    'river-level': 'River Water Level',
    'rain-gauge': 'Rainfall',
    'air-quality': 'Air Quality (ISPU)',
    'crowd-counter': 'Market Crowding',
  },
  map: 'Sensor Map',
  alarms: 'Active Conditions',
  noAlarms: 'No active conditions',
  people: 'people',
  inOut: 'in/out',
  highest: 'highest',
  worst: 'worst',
  busiest: 'busiest',
  wettest: 'wettest',
  ofCapacity: 'of capacity',
  perHour: 'cm/h',
  riverLevel: (l: RiverLevelNames, normal: boolean) =>
    normal ? l.en : `${l.en} (${l.bnpb}; Jakarta ${l.jakarta})`,
  rainMax1h: (mm: string) => `1 h max ${mm} mm`,
  seconds: (n: string) => `${n} s`,
  minutes: (n: string) => `${n} min`,
  hours: (n: string) => `${n} h`,
  all: 'All areas',
  alarmText: {
    river: 'River',
    ispu: 'ISPU',
    occupancy: 'Market full',
    offline: 'Device offline',
    stale: 'Stale data',
    rise: 'Fast rise',
    battery: 'Battery low',
    completeness: 'Incomplete data',
  },
  more: (n: string) => `+${n} more`,
  slaLeft: (t: string) => `SLA ${t}`,
  slaOver: (t: string) => `SLA OVERDUE ${t}`,
  acked: (who: string) => `✓ ${who}`,
  cleared: 'cleared',
}

export const WALL_TEXT = { id, en } as const satisfies Record<string, WallText>
export type WallLang = keyof typeof WALL_TEXT

/** How a pollutant is written for people; the field names (`pm25`) are for machines. */
export const POLLUTANT_NAMES: Readonly<Record<IspuPollutant, string>> = {
  pm25: 'PM2.5',
  pm10: 'PM10',
  o3: 'O₃',
  co: 'CO',
  no2: 'NO₂',
  so2: 'SO₂',
  hc: 'HC',
}

/** The display name of a pollutant field; an unknown one (a newer server) is shown upper-cased. */
export function pollutantName(field: string): string {
  return POLLUTANT_NAMES[field as IspuPollutant] ?? field.toUpperCase()
}
