import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import type { DeviceLive, ServerMessage } from '../dashboard-api/protocol.ts'
import { eventually, openLive, startTestPlatform, type TestPlatform } from './helpers/platform.ts'

/**
 * What a display holds after the messages it got, applied as the wall page applies them: a snapshot
 * replaces every device, a delta upserts the devices it carries.
 */
function held(messages: readonly ServerMessage[]): Map<string, DeviceLive> {
  const devices = new Map<string, DeviceLive>()
  for (const m of messages) {
    if (m.type === 'snapshot') devices.clear()
    if (m.type === 'snapshot' || m.type === 'delta') for (const d of m.devices) devices.set(d.id, d)
  }
  return devices
}

const BASE = {
  kind: 'rain-gauge',
  regency: 'Kota Denpasar',
  latitude: -8.65,
  longitude: 115.21,
  reportingIntervalMs: 60_000,
} as const

describe('live stream: devices that leave a display scope (real ws clients)', () => {
  let platform: TestPlatform

  beforeAll(async () => {
    platform = await startTestPlatform({ env: { LIVE_INTERVAL_MS: '100' } })
    for (const [id, district] of [
      ['dps-rain-701', 'Denpasar Barat'],
      ['dps-rain-702', 'Denpasar Barat'],
      ['dps-rain-703', 'Denpasar Selatan'],
    ] as const) {
      await platform.registry.register({ ...BASE, id, name: `Rain ${id}`, district }, 'test')
    }
  })
  afterAll(async () => {
    await platform?.close()
  })

  it('a device moved to another district or decommissioned leaves the displays that showed it', async () => {
    const barat = await openLive(platform.httpUrl)
    const everything = await openLive(platform.httpUrl)
    const utara = await openLive(platform.httpUrl)
    try {
      const subscribe = async (live: Awaited<ReturnType<typeof openLive>>, scope: object, want: string[]) => {
        live.ws.send(JSON.stringify({ v: 1, type: 'subscribe', scope }))
        await eventually(async () => {
          const ids = [...held(live.messages).keys()].sort()
          return JSON.stringify(ids) === JSON.stringify(want) ? true : undefined
        })
      }
      await subscribe(barat, { district: ['Denpasar Barat'] }, ['dps-rain-701', 'dps-rain-702'])
      await subscribe(everything, {}, ['dps-rain-701', 'dps-rain-702', 'dps-rain-703'])
      await subscribe(utara, { district: ['Denpasar Utara'] }, [])

      await platform.registry.update('dps-rain-701', { district: 'Denpasar Utara' }, 'test')
      // The display of its new district gets it; the one of its old district must drop it.
      await eventually(async () => (held(utara.messages).has('dps-rain-701') ? true : undefined))
      await eventually(async () => (held(barat.messages).has('dps-rain-701') ? undefined : true))
      expect([...held(barat.messages).keys()]).toEqual(['dps-rain-702'])
      expect(held(everything.messages).get('dps-rain-701')?.district).toBe('Denpasar Utara')

      await platform.registry.setStatus('dps-rain-702', 'decommissioned', 'test')
      await eventually(async () => (held(barat.messages).size === 0 ? true : undefined))
      await eventually(async () => (held(everything.messages).has('dps-rain-702') ? undefined : true))
      expect([...held(everything.messages).keys()].sort()).toEqual(['dps-rain-701', 'dps-rain-703'])
      // The display of the district the moved device went to keeps it.
      expect([...held(utara.messages).keys()]).toEqual(['dps-rain-701'])
    } finally {
      barat.close()
      everything.close()
      utara.close()
    }
  })
})
