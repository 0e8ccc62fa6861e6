import type { StoredReading } from './types.ts'

/**
 * A value built from a device's tags (its line protocol series, its spool line head, the verdict on its
 * tags), kept per device and built again when the device was re-registered with other tags. Every
 * acknowledged reading needs one, so it is built once per device instead of once per reading. Bounded:
 * past `max` devices it starts over.
 */
export function perDeviceTags<T>(
  build: (reading: StoredReading) => T,
  max = 100_000,
): (reading: StoredReading) => T {
  const cache = new Map<string, { kind: string; district: string; regency: string; value: T }>()
  return (reading) => {
    const cached = cache.get(reading.device)
    // Comparing three short strings is cheaper than building and hashing a composite key for every reading.
    if (
      cached !== undefined &&
      cached.kind === reading.kind &&
      cached.district === reading.district &&
      cached.regency === reading.regency
    ) {
      return cached.value
    }
    const value = build(reading)
    if (cache.size >= max) cache.clear()
    cache.set(reading.device, {
      kind: reading.kind,
      district: reading.district,
      regency: reading.regency,
      value,
    })
    return value
  }
}
