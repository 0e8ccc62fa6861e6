import type { Influxd } from './influxd.ts'

interface Series {
  tags?: Record<string, string>
  columns: string[]
  values: unknown[][]
}

/**
 * Every stored seq per device of one measurement, read with InfluxQL straight from InfluxDB: the tests
 * check what the store holds, not what the platform says it holds.
 */
export async function storedSeqsByDevice(
  influx: Influxd,
  measurement: string,
  db = 'city',
): Promise<Map<string, number[]>> {
  const res = await influx.query(`SELECT "seq" FROM "${measurement}" GROUP BY "device"`, db)
  if (res.status !== 200) throw new Error(`query failed: ${res.status} ${res.text.slice(0, 300)}`)
  const body = res.json as { results: Array<{ series?: Series[]; error?: string }> }
  const result = body.results[0]
  if (result?.error) throw new Error(result.error)
  const out = new Map<string, number[]>()
  for (const s of result?.series ?? []) {
    const col = s.columns.indexOf('seq')
    out.set(
      s.tags?.device ?? '',
      s.values.map((v) => Number(v[col])),
    )
  }
  return out
}

/** Seqs acknowledged but missing from the store, and seqs stored more than once, per device. */
export function compareAcked(
  acked: Readonly<Record<string, { toArray(): number[] }>>,
  stored: Map<string, number[]>,
): { missing: Record<string, number[]>; duplicated: Record<string, number[]>; ackedTotal: number } {
  const missing: Record<string, number[]> = {}
  const duplicated: Record<string, number[]> = {}
  let ackedTotal = 0
  for (const [device, set] of Object.entries(acked)) {
    const seqs = set.toArray()
    ackedTotal += seqs.length
    const have = stored.get(device) ?? []
    const counts = new Map<number, number>()
    for (const s of have) counts.set(s, (counts.get(s) ?? 0) + 1)
    const miss = seqs.filter((s) => !counts.has(s))
    if (miss.length > 0) missing[device] = miss.slice(0, 20)
    const dup = [...counts].filter(([, n]) => n > 1).map(([s]) => s)
    if (dup.length > 0) duplicated[device] = dup.slice(0, 20)
  }
  return { missing, duplicated, ackedTotal }
}
