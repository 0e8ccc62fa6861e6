import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { type Device, DeviceRegistry, type NewDevice } from '../ingest/registry.ts'
import { RIVER_DEVICE } from './helpers/platform.ts'

/** A registry call's failure, whether its input check throws at once or its promise rejects. */
async function failure(call: () => Promise<unknown>): Promise<Error> {
  try {
    await call()
  } catch (err) {
    return err as Error
  }
  throw new Error('expected the registry to refuse this')
}

describe('registry input checks on every path (not only the REST route)', () => {
  let dir: string
  let registry: DeviceRegistry
  let stored: Device

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'registry-validation-'))
    registry = await DeviceRegistry.open({ path: join(dir, 'r.duckdb'), key: Buffer.alloc(32, 5) })
    stored = (await registry.register({ ...RIVER_DEVICE }, 'test')).device
  })
  afterAll(async () => {
    await registry?.close()
    rmSync(dir, { recursive: true, force: true })
  })

  describe('district and regency (tags of every reading)', () => {
    // The stores refuse every reading of a device tagged with such a name, so none of its data would be kept.
    it.each([
      ['district', 'Denpasar Barat\\', 'has a backslash before'],
      ['district', 'Denpasar\\ Barat', 'has a backslash before'],
      ['district', 'Denpasar\nBarat', 'contains a control character'],
      ['regency', 'Kota\u0000Denpasar', 'contains a control character'],
      ['regency', 'Kota \ud800', 'is not well-formed Unicode'],
    ] as const)(
      'refuses %s %j when called directly, as the simulator and tools do',
      async (field, value, why) => {
        const id = 'tag-river-001'
        const registered = await failure(() =>
          registry.register({ ...RIVER_DEVICE, id, [field]: value } as NewDevice, 'simulator'),
        )
        expect(registered.message).toContain(why)
        expect(registered.message).toContain(field)
        expect(registry.get(id)).toBeUndefined()

        const updated = await failure(() => registry.update(RIVER_DEVICE.id, { [field]: value }, 'tool'))
        expect(updated.message).toContain(why)
        expect(registry.get(RIVER_DEVICE.id)).toEqual(stored)
      },
    )

    it('still takes names with a backslash inside a word, accents and spaces around them (trimmed)', async () => {
      const { device } = await registry.register(
        { ...RIVER_DEVICE, id: 'tag-river-002', district: '  Kuta\\Utara ', regency: 'Kabupatén Badung' },
        'test',
      )
      expect(device).toMatchObject({ district: 'Kuta\\Utara', regency: 'Kabupatén Badung' })
    })
  })
})
