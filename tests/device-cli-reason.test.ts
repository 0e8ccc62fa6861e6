import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { runDeviceCli } from '../dashboard-api/device-cli.ts'
import { RIVER_DEVICE, startTestPlatform, TEST_API_TOKEN, type TestPlatform } from './helpers/platform.ts'

// The README lets a revoke or decommission carry a reason kept in its audit entry; an installer working from
// the CLI had no way to give one.
describe('device CLI: reasons for revoke and decommission', () => {
  let platform: TestPlatform
  beforeAll(async () => {
    platform = await startTestPlatform()
  }, 60_000)
  afterAll(async () => platform?.close())

  const cli = async (argv: string[]) => {
    const lines: string[] = []
    const code = await runDeviceCli(argv, { API_URL: platform.httpUrl, API_TOKEN: TEST_API_TOKEN }, (s) =>
      lines.push(s),
    )
    return { code, text: lines.join('') }
  }

  it('keeps the reason of a revoke and a decommission in the audit log', async () => {
    const id = 'dps-river-431'
    expect((await platform.api('POST', '/api/v1/devices', { ...RIVER_DEVICE, id })).status).toBe(201)

    expect((await cli(['revoke', id, '--reason', 'kabel putus, diganti minggu depan'])).code).toBe(0)
    expect((await cli(['decommission', id, '--reason=dipindah ke Tukad Ayung'])).code).toBe(0)

    const audit = await platform.api<{ entries: { action: string; detail: { reason?: string } }[] }>(
      'GET',
      `/api/v1/devices/${id}/audit`,
    )
    const reasons = Object.fromEntries(audit.body.entries.map((e) => [e.action, e.detail.reason]))
    expect(reasons['status:revoked']).toBe('kabel putus, diganti minggu depan')
    expect(reasons['status:decommissioned']).toBe('dipindah ke Tukad Ayung')
  })

  it('still revokes without a reason, and refuses a reason it would drop', async () => {
    const id = 'dps-river-432'
    expect((await platform.api('POST', '/api/v1/devices', { ...RIVER_DEVICE, id })).status).toBe(201)
    expect((await cli(['revoke', id])).code).toBe(0)

    for (const argv of [
      ['rotate', id, '--reason', 'x'],
      ['get', id, '--reason', 'x'],
      ['decommission', id, '--reason', '  '],
    ]) {
      const { code, text } = await cli(argv)
      expect(code, argv.join(' ')).toBe(2)
      expect(text).toMatch(/^error: --reason/)
    }
    // Nothing was sent: the device is still revoked, not decommissioned.
    const got = await platform.api<{ device: { status: string } }>('GET', `/api/v1/devices/${id}`)
    expect(got.body.device.status).toBe('revoked')
  })

  it('reminds that a rotated secret is shown only once', async () => {
    const id = 'dps-river-433'
    expect((await platform.api('POST', '/api/v1/devices', { ...RIVER_DEVICE, id })).status).toBe(201)
    const { code, text } = await cli(['rotate', id])
    expect(code).toBe(0)
    expect(text).toContain('"password"')
    expect(text).toContain('shown only this once')
  })
})
