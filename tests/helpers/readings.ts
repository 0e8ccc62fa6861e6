import type { StoredReading } from '../../ingest/store/types.ts'

/** 2026-09-21 22:13:20 WITA: where the readings start, one second apart by seq. */
export const READING_T0 = 1_790_000_000_000

/** A river-level reading of one device, numbered `seq`: the unit of the spool and store writer tests. */
export function riverReading(seq: number): StoredReading {
  return {
    kind: 'river-level',
    device: 'dps-river-001',
    district: 'Denpasar Barat',
    regency: 'Kota Denpasar',
    ts: READING_T0 + seq * 1000,
    receivedAt: READING_T0 + seq * 1000,
    seq,
    fields: { waterLevel: 100 + seq },
  }
}
