import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { runDeviceCli } from '../dashboard-api/device-cli.ts'
import { launchChromium } from './helpers/browser.ts'
import {
  connectDevice,
  eventually,
  publishQos1,
  RIVER_DEVICE,
  startTestPlatform,
  TEST_API_TOKEN,
  type TestPlatform,
} from './helpers/platform.ts'

describe('installer workflow', () => {
  let platform: TestPlatform
  let installerToken: string
  // biome-ignore lint/suspicious/noExplicitAny: answers are checked field by field in each test
  const call = async <T = any>(token: string, method: string, path: string, body?: unknown) => {
    const res = await fetch(`${platform.httpUrl}${path}`, {
      method,
      headers: {
        authorization: `Bearer ${token}`,
        ...(body === undefined ? {} : { 'content-type': 'application/json' }),
      },
      body: body === undefined ? undefined : JSON.stringify(body),
    })
    return { status: res.status, body: (await res.json()) as T }
  }

  beforeAll(async () => {
    platform = await startTestPlatform()
    const created = await platform.api<{ token: string }>('POST', '/api/v1/installers', { name: 'wayan' })
    expect(created.status).toBe(201)
    installerToken = created.body.token
  }, 60_000)
  afterAll(async () => platform?.close())

  it('lets an installer register, update, list, revoke and decommission, audited under their name', async () => {
    expect((await call('wrong-token-0123456789', 'GET', '/api/v1/devices')).status).toBe(401)
    // Installers may not mint installer tokens.
    const forbidden = await call(installerToken, 'POST', '/api/v1/installers', { name: 'made' })
    expect(forbidden).toMatchObject({ status: 403, body: { error: { code: 'forbidden' } } })

    const id = 'dps-river-401'
    const reg = await call(installerToken, 'POST', '/api/v1/devices', { ...RIVER_DEVICE, id })
    expect(reg.status).toBe(201)
    expect(reg.body.secret).toEqual(expect.any(String))
    expect(reg.body.device.createdBy).toBe('wayan')
    const got = await call(installerToken, 'GET', `/api/v1/devices/${id}`)
    expect(JSON.stringify(got.body)).not.toContain(reg.body.secret)

    const bad = await call(installerToken, 'PATCH', `/api/v1/devices/${id}`, { latitude: 123 })
    expect(bad).toMatchObject({ status: 400, body: { error: { code: 'bad_request' } } })
    const patched = await call(installerToken, 'PATCH', `/api/v1/devices/${id}`, { calibrationOffset: 1.5 })
    expect(patched.body.device).toMatchObject({ calibrationOffset: 1.5, updatedBy: 'wayan' })

    const list = await call(installerToken, 'GET', '/api/v1/devices?kind=river-level&q=401')
    expect(list.body.devices.map((d: { id: string }) => d.id)).toEqual([id])
    expect((await call(installerToken, 'GET', '/api/v1/devices?kind=teapot')).status).toBe(400)

    const revoked = await call(installerToken, 'POST', `/api/v1/devices/${id}/revoke`, { reason: 'stolen' })
    expect(revoked.body.device.status).toBe('revoked')
    // Each refusal says what is in the way, with the registry's own code (409, as any conflict).
    const again = await call(installerToken, 'POST', '/api/v1/devices', { ...RIVER_DEVICE, id })
    expect(again).toMatchObject({ status: 409, body: { error: { code: 'device_exists' } } })
    const rotate = await call(installerToken, 'POST', `/api/v1/devices/${id}/rotate`)
    expect(rotate).toMatchObject({ status: 409, body: { error: { code: 'device_revoked' } } })
    expect(
      (await call(installerToken, 'POST', `/api/v1/devices/${id}/decommission`)).body.device.status,
    ).toBe('decommissioned')
    const back = await call(installerToken, 'POST', `/api/v1/devices/${id}/revoke`)
    expect(back).toMatchObject({ status: 409, body: { error: { code: 'invalid_transition' } } })
    const renamed = await call(installerToken, 'PATCH', `/api/v1/devices/${id}`, { name: 'gone' })
    expect(renamed).toMatchObject({ status: 409, body: { error: { code: 'invalid_transition' } } })
    expect((await call(installerToken, 'POST', '/api/v1/devices/no-such-1/revoke')).status).toBe(404)

    const audit = await call(installerToken, 'GET', `/api/v1/devices/${id}/audit`)
    expect(
      audit.body.entries.map((e: { actor: string; action: string }) => `${e.actor} ${e.action}`),
    ).toEqual(['wayan status:decommissioned', 'wayan status:revoked', 'wayan update', 'wayan register'])
    // The reason given is kept with the change.
    expect(audit.body.entries[1].detail).toEqual({ from: 'provisioned', reason: 'stolen' })

    // A revoked installer token stops working at once.
    await platform.api('POST', '/api/v1/installers', { name: 'ketut' }).then(async (r) => {
      const token = (r.body as { token: string }).token
      expect((await call(token, 'GET', '/api/v1/devices')).status).toBe(200)
      const twice = await platform.api('POST', '/api/v1/installers', { name: 'ketut' })
      expect(twice).toMatchObject({ status: 409, body: { error: { code: 'installer_exists' } } })
      expect((await platform.api('DELETE', '/api/v1/installers/ketut')).status).toBe(200)
      expect((await call(token, 'GET', '/api/v1/devices')).status).toBe(401)
    })
  })

  // The router decodes a path before matching it: `%69` reaches the installers route. Token checks that
  // looked at the raw URL's prefix let an anonymous caller mint an installer token this way.
  it.each([
    ['POST', '/api/v1/%69nstallers', { name: 'intruder' }],
    ['GET', '/api/v1/%69nstallers', undefined],
    ['DELETE', '/api/v1/%69nstallers/wayan', undefined],
    ['GET', '/api/v1/%61udit', undefined],
    ['GET', '/api/v1/%64evices', undefined],
    ['GET', `/api/v1/%64evices/${RIVER_DEVICE.id}`, undefined],
    ['GET', `/api/v1/devices/${RIVER_DEVICE.id}/%61udit`, undefined],
    ['GET', '/api/v1/%61larms', undefined],
    ['GET', '/api/v1/%72ejections', undefined],
    ['GET', '/api/v1/%72eadings?kind=river-level&metrics=waterLevel', undefined],
  ])('refuses %s %s without a token, however the path is encoded', async (method, path, body) => {
    const res = await fetch(`${platform.httpUrl}${path}`, {
      method,
      ...(body !== undefined && {
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify(body),
      }),
    })
    expect(res.status).toBe(401)
    if (body !== undefined) {
      // An installer may not mint tokens that way either.
      const asInstaller = await call(installerToken, method, path, body)
      expect(asInstaller.status).toBe(403)
    }
  })

  it('shows a device connecting, its first reading and its rejections within a second', async () => {
    const id = 'dps-river-402'
    const reg = await call(installerToken, 'POST', '/api/v1/devices', { ...RIVER_DEVICE, id })
    type C = {
      connection: { online: boolean; firstConnectedAt: number | null }
      firstReading: { seq: number; fields: Record<string, number> } | null
      rejections: Array<{ code: string; payload: string; payloadBytes: number }>
    }
    const before = await call<C>(installerToken, 'GET', `/api/v1/devices/${id}/commissioning`)
    expect(before.body).toMatchObject({
      connection: { online: false, firstConnectedAt: null },
      firstReading: null,
    })

    const device = await connectDevice(platform.mqttUrl, id, reg.body.secret)
    await eventually(async () => {
      const r = await call<C>(installerToken, 'GET', `/api/v1/devices/${id}/commissioning`)
      return r.body.connection.online ? true : undefined
    }, 1000)

    const long = `{"v":1,"seq":1,"waterLevel":"${'x'.repeat(2000)}"}`
    await publishQos1(device, `devices/${id}/telemetry`, long)
    await publishQos1(device, `devices/${id}/telemetry`, JSON.stringify({ v: 1, seq: 2, waterLevel: 131.5 }))
    await publishQos1(device, `devices/${id}/telemetry`, JSON.stringify({ v: 1, seq: 3, waterLevel: 132 }))
    const seen = await eventually(async () => {
      const r = await call<C>(installerToken, 'GET', `/api/v1/devices/${id}/commissioning`)
      return r.body.firstReading !== null && r.body.rejections.length > 0 ? r.body : undefined
    }, 1000)
    expect(seen.firstReading).toMatchObject({ seq: 2, fields: { waterLevel: 131.5 } })
    expect(seen.rejections[0]?.code).toBe('schema')
    expect(seen.rejections[0]?.payloadBytes).toBe(long.length)
    expect(seen.rejections[0]?.payload.length).toBeLessThan(long.length)
    device.end(true)
  })

  it('runs the same operations from the CLI', async () => {
    const lines: string[] = []
    const env = { API_URL: platform.httpUrl, API_TOKEN: installerToken }
    const code = await runDeviceCli(
      [
        'register',
        '--id',
        'dps-river-403',
        '--kind',
        'river-level',
        '--name',
        'Tukad Ayung',
        '--regency',
        'Kota Denpasar',
        '--district',
        'Denpasar Timur',
        '--lat=-8.65',
        '--lon',
        '115.25',
        '--threshold',
        'waspada=150',
        '--threshold',
        'siaga=200',
        '--threshold',
        'awas=250',
      ],
      env,
      (s) => lines.push(s),
    )
    expect(code).toBe(0)
    const answer = JSON.parse(lines[0]!) as { secret: string; device: { thresholds: unknown } }
    expect(answer.device.thresholds).toEqual({ waspada: 150, siaga: 200, awas: 250 })
    // Levels the river status could not use are refused, naming the one to fix; nothing is changed.
    lines.length = 0
    const partial = ['--threshold', 'waspada=150', '--threshold', 'siaga=200']
    expect(await runDeviceCli(['update', 'dps-river-403', ...partial], env, (s) => lines.push(s))).toBe(1)
    expect(JSON.parse(lines[0]!)).toMatchObject({ error: { code: 'bad_request' } })
    expect(JSON.parse(lines[0]!).error.message).toContain('→ at thresholds.awas')
    // An empty or doubled value is a usage error, not 0 (Number('') is 0: `--lat=` moved the device to 0).
    for (const flags of [
      ['--lat='],
      ['--lon', ' '],
      ['--threshold', 'awas='],
      ['--threshold', 'awas=250=300'],
    ]) {
      lines.length = 0
      expect(
        await runDeviceCli(['update', 'dps-river-403', ...flags], env, (s) => lines.push(s)),
        flags.join(' '),
      ).toBe(2)
      expect(lines[0]).toMatch(/^error: --(lat|lon|threshold) expects/)
    }
    expect(
      (await platform.api<{ device: unknown }>('GET', '/api/v1/devices/dps-river-403')).body.device,
    ).toMatchObject({
      latitude: -8.65,
      longitude: 115.25,
      thresholds: { waspada: 150, siaga: 200, awas: 250 },
    })
    await connectDevice(platform.mqttUrl, 'dps-river-403', answer.secret).then((c) => c.end(true))
    lines.length = 0
    expect(await runDeviceCli(['revoke', 'dps-river-403'], env, (s) => lines.push(s))).toBe(0)
    expect(lines[0]).toContain('"revoked"')
    expect(await runDeviceCli(['get', 'no-such-9'], env, () => undefined)).toBe(1)
    expect(await runDeviceCli(['explode'], env, () => undefined)).toBe(2)
    expect(await runDeviceCli(['list'], { API_URL: platform.httpUrl }, () => undefined)).toBe(2)
  })

  it('serves an installer page that polls the commissioning view', async () => {
    const id = 'dps-river-404'
    const reg = await platform.api<{ secret: string }>('POST', '/api/v1/devices', { ...RIVER_DEVICE, id })
    const browser = await launchChromium()
    try {
      const page = await browser.newPage()
      await page.goto(`${platform.httpUrl}/installer?device=${id}`)
      await page.fill('#token', TEST_API_TOKEN)
      await page.click('button[type=submit]')
      await page.waitForFunction(
        () => document.getElementById('conn')?.textContent?.includes('never'),
        null,
        {
          timeout: 5000,
        },
      )
      const device = await connectDevice(platform.mqttUrl, id, reg.body.secret)
      await publishQos1(device, `devices/${id}/telemetry`, '<script>alert(1)</script>')
      await publishQos1(device, `devices/${id}/telemetry`, JSON.stringify({ v: 1, seq: 7, waterLevel: 99 }))
      await page.waitForFunction(() => document.getElementById('first')?.textContent?.includes('#7'), null, {
        timeout: 5000,
      })
      expect(await page.textContent('#rejections')).toContain('<script>alert(1)</script>')
      expect(await page.textContent('#conn')).toContain('connected')
      device.end(true)
    } finally {
      await browser.close()
    }
  }, 30_000)
})
