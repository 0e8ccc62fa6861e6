import { randomBytes } from 'node:crypto'
import { mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterEach, describe, expect, it } from 'vitest'
import { DeviceRegistry, RegistryError } from '../ingest/registry.ts'
import { RIVER_DEVICE } from './helpers/platform.ts'

const KEY = randomBytes(32)

describe('device registry', () => {
  const dirs: string[] = []
  const open = async (dir = mkdtempSync(join(tmpdir(), 'registry-'))) => {
    if (!dirs.includes(dir)) dirs.push(dir)
    return { dir, registry: await DeviceRegistry.open({ path: join(dir, 'r.duckdb'), key: KEY }) }
  }
  afterEach(() => {
    for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true })
  })

  it('issues a random secret of 128+ bits once and keeps only its keyed hash', async () => {
    const { dir, registry } = await open()
    const { device, secret } = await registry.register({ ...RIVER_DEVICE }, 'alice')
    expect(Buffer.from(secret, 'base64url').length * 8).toBeGreaterThanOrEqual(128)
    expect(device.status).toBe('provisioned')
    expect(device.calibrationOffset).toBe(0)
    expect(registry.verify(device.id, secret)?.id).toBe(device.id)
    expect(registry.verify(device.id, `${secret}x`)).toBeUndefined()
    expect(registry.verify(device.id, undefined)).toBeUndefined()
    const other = await registry.register({ ...RIVER_DEVICE, id: 'dps-river-902' }, 'alice')
    expect(other.secret).not.toBe(secret)
    await registry.close()
    const bytes = readFileSync(join(dir, 'r.duckdb'))
    expect(bytes.includes(Buffer.from(secret))).toBe(false)
  })

  // A change and its audit entry commit together: apart, a failed audit insert left a rotated secret on
  // disk while the cache (and so the broker) still took the old one, and a registered row that every retry
  // refused as a duplicate.
  it('changes nothing, on disk or in memory, when the audit entry cannot be written', async () => {
    const { dir, registry } = await open()
    const { secret } = await registry.register({ ...RIVER_DEVICE }, 'alice')
    const db = (registry as unknown as { db: { run(sql: string): Promise<unknown> } }).db
    await db.run('ALTER TABLE audit_log RENAME TO audit_log_away')
    await expect(registry.rotateSecret(RIVER_DEVICE.id, 'alice')).rejects.toThrow()
    await expect(registry.register({ ...RIVER_DEVICE, id: 'dps-river-903' }, 'alice')).rejects.toThrow()
    await expect(registry.update(RIVER_DEVICE.id, { name: 'renamed' }, 'alice')).rejects.toThrow()
    expect(registry.verify(RIVER_DEVICE.id, secret)?.name).toBe(RIVER_DEVICE.name)
    await db.run('ALTER TABLE audit_log_away RENAME TO audit_log')
    // The device that failed to register can be registered now, not refused as a duplicate.
    await registry.register({ ...RIVER_DEVICE, id: 'dps-river-903' }, 'alice')
    await registry.close()

    const { registry: reopened } = await open(dir)
    expect(reopened.verify(RIVER_DEVICE.id, secret)?.name).toBe(RIVER_DEVICE.name)
    await reopened.close()
  })

  it('rotates, updates, filters, enforces status transitions and audits every change', async () => {
    const { dir, registry } = await open()
    const { secret } = await registry.register({ ...RIVER_DEVICE }, 'alice')
    await registry.register(
      {
        ...RIVER_DEVICE,
        id: 'lbt-rain-001',
        kind: 'rain-gauge',
        name: 'Praya rain gauge',
        regency: 'Lombok Tengah',
        district: 'Praya',
        // A rain gauge has no alert levels: the river's would be refused.
        thresholds: { batteryLow: 15 },
      },
      'bob',
    )
    await expect(registry.register({ ...RIVER_DEVICE }, 'alice')).rejects.toMatchObject({
      code: 'device_exists',
    })
    expect(() => registry.register({ ...RIVER_DEVICE, id: 'internal-x' }, 'alice')).toThrow()

    const rotated = await registry.rotateSecret(RIVER_DEVICE.id, 'alice')
    expect(registry.verify(RIVER_DEVICE.id, secret)).toBeUndefined()
    expect(registry.verify(RIVER_DEVICE.id, rotated.secret)).toBeDefined()

    const updated = await registry.update(
      RIVER_DEVICE.id,
      { calibrationOffset: -2.5, thresholds: { waspada: 160, siaga: 210, awas: 260 }, notes: 'pole moved' },
      'carol',
    )
    expect(updated).toMatchObject({ calibrationOffset: -2.5, updatedBy: 'carol', notes: 'pole moved' })

    expect(registry.list({ kind: 'rain-gauge' }).map((d) => d.id)).toEqual(['lbt-rain-001'])
    expect(registry.list({ regency: 'kota denpasar' }).map((d) => d.id)).toEqual([RIVER_DEVICE.id])
    expect(registry.list({ q: 'badung' }).map((d) => d.id)).toEqual([RIVER_DEVICE.id])
    expect(registry.list({ status: 'revoked' })).toEqual([])

    await registry.setStatus(RIVER_DEVICE.id, 'revoked', 'dave')
    expect(registry.verify(RIVER_DEVICE.id, rotated.secret)).toBeUndefined()
    await expect(registry.rotateSecret(RIVER_DEVICE.id, 'dave')).rejects.toBeInstanceOf(RegistryError)
    await expect(registry.setStatus(RIVER_DEVICE.id, 'active', 'dave')).rejects.toMatchObject({
      code: 'invalid_transition',
    })
    await registry.setStatus(RIVER_DEVICE.id, 'decommissioned', 'dave')
    await expect(registry.update(RIVER_DEVICE.id, { name: 'x' }, 'dave')).rejects.toMatchObject({
      code: 'invalid_transition',
    })

    const audit = await registry.auditLog({ deviceId: RIVER_DEVICE.id })
    expect(audit.map((a) => [a.actor, a.action])).toEqual([
      ['dave', 'status:decommissioned'],
      ['dave', 'status:revoked'],
      ['carol', 'update'],
      ['alice', 'rotate-secret'],
      ['alice', 'register'],
    ])
    expect(audit[2]?.detail).toMatchObject({ calibrationOffset: { from: 0, to: -2.5 } })
    await registry.close()

    // Everything survives a restart.
    const again = await open(dir)
    expect(again.registry.get(RIVER_DEVICE.id)).toMatchObject({
      status: 'decommissioned',
      calibrationOffset: -2.5,
      thresholds: { waspada: 160, siaga: 210, awas: 260 },
    })
    // A decommissioned id can be registered anew (how a revoked device comes back): a new row and secret,
    // the old history kept. A live one cannot.
    await expect(
      again.registry.register({ ...RIVER_DEVICE, id: 'dps-river-904' }, 'erin'),
    ).resolves.toBeDefined()
    await expect(
      again.registry.register({ ...RIVER_DEVICE, id: 'dps-river-904' }, 'erin'),
    ).rejects.toMatchObject({
      code: 'device_exists',
    })
    const back = await again.registry.register({ ...RIVER_DEVICE }, 'erin')
    expect(back.device).toMatchObject({ status: 'provisioned', createdBy: 'erin', calibrationOffset: 0 })
    expect(again.registry.verify(RIVER_DEVICE.id, back.secret)?.id).toBe(RIVER_DEVICE.id)
    const history = await again.registry.auditLog({ deviceId: RIVER_DEVICE.id })
    expect(history.map((a) => a.action).slice(0, 2)).toEqual(['register', 'status:decommissioned'])
    expect(history[0]?.detail).toEqual({ kind: RIVER_DEVICE.kind, replaces: 'decommissioned' })
    await again.registry.close()
    const third = await open(dir)
    expect(third.registry.verify(RIVER_DEVICE.id, back.secret)?.status).toBe('provisioned')
    await third.registry.close()
  })

  it('issues named installer tokens, verifies them and revokes them', async () => {
    const { dir, registry } = await open()
    const { token } = await registry.createInstallerToken('wayan', 'admin')
    expect(registry.verifyInstallerToken(token)).toBe('wayan')
    expect(registry.verifyInstallerToken(`${token}x`)).toBeUndefined()
    await expect(registry.createInstallerToken('wayan', 'admin')).rejects.toMatchObject({
      code: 'installer_exists',
    })
    expect(() => registry.createInstallerToken('admin', 'admin')).toThrow()
    await registry.close()
    const again = await open(dir)
    expect(again.registry.verifyInstallerToken(token)).toBe('wayan')
    await again.registry.revokeInstallerToken('wayan', 'admin')
    expect(again.registry.verifyInstallerToken(token)).toBeUndefined()
    await again.registry.close()
  })

  it('tells listeners about changes (the broker disconnects on them)', async () => {
    const { registry } = await open()
    const seen: string[] = []
    registry.on('changed', (c) => seen.push(`${c.action}:${c.device.status}`))
    await registry.register({ ...RIVER_DEVICE }, 'a')
    await registry.rotateSecret(RIVER_DEVICE.id, 'a')
    await registry.setStatus(RIVER_DEVICE.id, 'revoked', 'a')
    expect(seen).toEqual(['register:provisioned', 'rotate-secret:provisioned', 'status:revoked'])
    await registry.close()
  })

  it('activates a whole fleet on first connection in a few transactions, each request answered on its own', async () => {
    const { dir, registry } = await open()
    const ids = Array.from({ length: 200 }, (_, i) => `mtr-counter-${String(i).padStart(3, '0')}`)
    for (const id of ids)
      await registry.register({ ...RIVER_DEVICE, id, name: `Pasar counter ${id}` }, 'installer-made')
    await registry.setStatus(ids[0]!, 'revoked', 'admin')
    const db = (registry as unknown as { db: { run: (sql: string, ...rest: unknown[]) => Promise<unknown> } })
      .db
    const run = db.run.bind(db)
    const statements: string[] = []
    db.run = (sql, ...rest) => {
      statements.push(sql.split(' ')[0]!)
      return run(sql, ...rest)
    }
    const changed: string[] = []
    registry.on('changed', (c) => changed.push(`${c.device.id}:${c.device.status}`))
    // As the broker does when every device connects at once, plus what can go wrong among them.
    const results = await Promise.allSettled([
      ...ids.map((id) => registry.setStatus(id, 'active', 'broker')),
      registry.setStatus('mtr-counter-999', 'active', 'broker'),
      registry.setStatus(ids[1]!, 'active', 'broker'),
      registry.setStatus(ids[2]!, 'decommissioned', 'admin'),
    ])
    // A few transactions of a few statements each, not an UPDATE and an INSERT per device.
    expect(statements.filter((s) => s === 'BEGIN').length).toBeGreaterThanOrEqual(1)
    expect(statements.length).toBeLessThanOrEqual(15)
    // The revoked device cannot become active; an unknown device is not found; the rest are active.
    expect(results[0]).toMatchObject({ status: 'rejected', reason: { code: 'invalid_transition' } })
    expect(results[200]).toMatchObject({ status: 'rejected', reason: { code: 'device_not_found' } })
    for (const r of [...results.slice(1, 200), results[201]])
      expect(r).toMatchObject({ status: 'fulfilled', value: { status: 'active', updatedBy: 'broker' } })
    // Asked twice in one batch: active, then decommissioned, both audited in order.
    expect(results[202]).toMatchObject({ status: 'fulfilled', value: { status: 'decommissioned' } })
    expect(registry.get(ids[2]!)?.status).toBe('decommissioned')
    expect(changed).toHaveLength(200)
    expect(changed.filter((c) => c.startsWith(`${ids[2]}:`))).toEqual([
      `${ids[2]}:active`,
      `${ids[2]}:decommissioned`,
    ])
    const trail = await registry.auditLog({ deviceId: ids[2]!, limit: 10 })
    expect(trail.map((e) => e.action).sort()).toEqual(['register', 'status:active', 'status:decommissioned'])
    await registry.close()

    const { registry: again } = await open(dir)
    expect(again.list().filter((d) => d.status === 'active')).toHaveLength(198)
    expect(again.get(ids[0]!)?.status).toBe('revoked')
    expect(again.get(ids[2]!)?.status).toBe('decommissioned')
    expect((await again.auditLog({ limit: 1000 })).filter((e) => e.action === 'status:active')).toHaveLength(
      199,
    )
    await again.close()
  }, 60_000)
})
