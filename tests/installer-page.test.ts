import type { Browser, Page } from 'playwright-core'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { launchChromium } from './helpers/browser.ts'
import { connectDevice, publishQos1, startTestPlatform, type TestPlatform } from './helpers/platform.ts'

/**
 * The installer page as an installer uses it on a phone: token, registration form, credentials shown once,
 * a real device connecting with what the page showed, its first reading on the same page, the API's errors
 * beside the fields, and a secret rotated from the page.
 */
describe('installer page', () => {
  let platform: TestPlatform
  let browser: Browser
  let installerToken: string

  beforeAll(async () => {
    platform = await startTestPlatform()
    const created = await platform.api<{ token: string }>('POST', '/api/v1/installers', { name: 'wayan' })
    expect(created.status).toBe(201)
    installerToken = created.body.token
    browser = await launchChromium()
  }, 60_000)
  afterAll(async () => {
    await browser?.close()
    await platform?.close()
  })

  const text = async (page: Page, selector: string) => ((await page.textContent(selector)) ?? '').trim()
  const waitText = (page: Page, selector: string, part: string) =>
    page.waitForFunction(
      ([s, p]) => document.querySelector(s as string)?.textContent?.includes(p as string) === true,
      [selector, part],
      { timeout: 10_000 },
    )

  async function fillRiver(page: Page, id: string, district: string | undefined) {
    await page.fill('#r-id', id)
    await page.selectOption('#r-kind', 'river-level')
    await page.fill('#r-name', 'Tukad Badung — Jl. Gajah Mada')
    await page.fill('#r-regency', 'Kota Denpasar')
    await page.fill('#r-district', district ?? '')
    await page.fill('#r-lat', '-8.6562')
    await page.fill('#r-lon', '115.2118')
    await page.fill('#r-t-waspada', '150')
    await page.fill('#r-t-siaga', '200')
    await page.fill('#r-t-awas', '250')
  }

  async function openPage(width: number, height: number) {
    const page = await browser.newPage({ viewport: { width, height } })
    const console: string[] = []
    page.on('console', (m) => console.push(m.text()))
    await page.goto(`${platform.httpUrl}/installer`)
    await page.fill('#token', installerToken)
    await page.click('#token-save')
    await waitText(page, '#token-status', 'wayan')
    return { page, console }
  }

  it('registers a device, shows its credentials once, and watches it connect and report', async () => {
    const { page, console } = await openPage(390, 844)
    const id = 'dps-river-611'

    // A missing district: the API's code, and its message beside the district field.
    await fillRiver(page, id, undefined)
    await page.click('#r-submit')
    await waitText(page, '#register-error', 'bad_request')
    expect(await text(page, '#register-error .error-code')).toBe('400 bad_request')
    expect(await text(page, 'label[data-field="district"] .field-error')).toMatch(/expected string/)
    expect(await text(page, 'label[data-field="regency"] .field-error')).toBe('')
    expect(await page.isVisible('#creds')).toBe(false)
    expect((await platform.api('GET', `/api/v1/devices/${id}`)).status).toBe(404)

    await page.fill('#r-district', 'Denpasar Barat')
    await page.click('#r-submit')
    await page.waitForSelector('#creds', { state: 'visible', timeout: 10_000 })
    expect(await text(page, '#register-error')).toBe('')
    const password = await text(page, '#c-password')
    expect(password.length).toBeGreaterThanOrEqual(20)
    expect(await text(page, '#c-client')).toBe(id)
    expect(await text(page, '#c-username')).toBe(id)
    expect(await text(page, '#c-topic')).toBe(`devices/${id}/telemetry`)
    const brokerUrl = await text(page, '#c-url')
    expect(brokerUrl).toBe(platform.mqttUrl)
    expect(await text(page, '#c-port')).toBe(new URL(platform.mqttUrl).port)
    expect(await text(page, '#c-host')).toBe(new URL(platform.mqttUrl).hostname)
    const registered = await platform.api<{ device: Record<string, unknown> }>('GET', `/api/v1/devices/${id}`)
    expect(registered.body.device).toMatchObject({
      kind: 'river-level',
      district: 'Denpasar Barat',
      latitude: -8.6562,
      longitude: 115.2118,
      reportingIntervalMs: 60_000,
      thresholds: { waspada: 150, siaga: 200, awas: 250 },
      createdBy: 'wayan',
      status: 'provisioned',
    })

    // Straight on to commissioning, on the same page.
    expect(await page.inputValue('#device')).toBe(id)
    await waitText(page, '#conn', 'never connected')
    const device = await connectDevice(brokerUrl, id, password)
    await waitText(page, '#conn', 'connected since')
    await publishQos1(device, `devices/${id}/telemetry`, JSON.stringify({ v: 1, seq: 1, waterLevel: 131.5 }))
    await waitText(page, '#first', '#1')
    expect(await text(page, '#first')).toContain('waterLevel=131.5')
    device.end(true)

    // The token went nowhere but the Authorization header and this tab's storage.
    expect(page.url()).toBe(`${platform.httpUrl}/installer?device=${id}`)
    expect(console.join('\n')).not.toContain(installerToken)
    expect(await page.evaluate(() => sessionStorage.getItem('installer-token'))).toBe(installerToken)
    expect(await page.evaluate(() => localStorage.length)).toBe(0)

    // The credentials go when the installer says they are saved.
    await page.click('#c-hide')
    expect(await page.isVisible('#creds')).toBe(false)
    expect(await page.content()).not.toContain(password)

    // No sideways scrolling on the phone.
    expect(await page.evaluate(() => document.documentElement.scrollWidth)).toBeLessThanOrEqual(390)
    await page.close()
  }, 60_000)

  it('shows the API error of a duplicate id and refuses river levels out of order before sending', async () => {
    const { page } = await openPage(1366, 900)
    const id = 'dps-river-612'
    await fillRiver(page, id, 'Denpasar Selatan')
    await page.click('#r-submit')
    await page.waitForSelector('#creds', { state: 'visible', timeout: 10_000 })

    await page.click('#register-box > summary')
    await fillRiver(page, id, 'Denpasar Selatan')
    await page.click('#r-submit')
    await waitText(page, '#register-error', 'device_exists')
    expect(await text(page, '#register-error .error-code')).toBe('409 device_exists')
    expect(await text(page, '#register-error')).toContain('this id is already registered')
    expect(await text(page, '#register-error .error-message')).toContain('already registered')

    // Waspada above Siaga: the platform would take it and then show the gauge without a river status.
    await fillRiver(page, 'dps-river-613', 'Denpasar Selatan')
    await page.fill('#r-t-waspada', '220')
    await page.click('#r-submit')
    await waitText(page, '#r-status', 'page check')
    expect(await text(page, 'fieldset[data-kind="river-level"] [data-error-for="thresholds"]')).toContain(
      'Waspada ≤ Siaga ≤ Awas',
    )
    expect((await platform.api('GET', '/api/v1/devices/dps-river-613')).status).toBe(404)

    // A market counter sends its capacity, and nothing of the river's fields.
    await page.fill('#r-id', 'dps-market-614')
    await page.selectOption('#r-kind', 'crowd-counter')
    await page.fill('#r-t-capacity', '800')
    await page.click('#r-submit')
    await waitText(page, '#c-title', 'dps-market-614')
    const market = await platform.api<{ device: Record<string, unknown> }>(
      'GET',
      '/api/v1/devices/dps-market-614',
    )
    expect(market.body.device.thresholds).toEqual({ capacity: 800 })
    expect(market.body.device.calibrationOffset).toBe(0)

    expect(await page.evaluate(() => document.documentElement.scrollWidth)).toBeLessThanOrEqual(1366)
    await page.close()
  }, 60_000)

  it('rotates a device secret from the page: the new one shown once works, the old one stops', async () => {
    const { page } = await openPage(390, 844)
    const id = 'dps-river-615'
    await fillRiver(page, id, 'Denpasar Utara')
    await page.click('#r-submit')
    await page.waitForSelector('#creds', { state: 'visible', timeout: 10_000 })
    const first = await text(page, '#c-password')
    await page.click('#c-hide')

    await page.click('#rotate')
    await page.click('#rotate-yes')
    await page.waitForSelector('#creds', { state: 'visible', timeout: 10_000 })
    const second = await text(page, '#c-password')
    expect(second).not.toBe(first)
    expect(await text(page, '#c-title')).toContain(id)
    await expect(connectDevice(platform.mqttUrl, id, first)).rejects.toThrow()
    await connectDevice(platform.mqttUrl, id, second).then((c) => c.end(true))

    // Decommissioned while the installer was confirming: the API's answer, on the page.
    await page.click('#rotate')
    expect((await platform.api('POST', `/api/v1/devices/${id}/decommission`)).status).toBe(200)
    await page.click('#rotate-yes')
    await waitText(page, '#rotate-error', 'device_revoked')
    expect(await text(page, '#rotate-error .error-code')).toBe('409 device_revoked')
    expect(await text(page, '#rotate-error')).toContain('the device is revoked or decommissioned')
    await page.close()
  }, 60_000)

  it('tells an installer token where devices connect, and nobody without one', async () => {
    const res = await fetch(`${platform.httpUrl}/api/v1/installer/broker`, {
      headers: { authorization: `Bearer ${installerToken}` },
    })
    const { hostname, port } = new URL(platform.mqttUrl)
    expect(await res.json()).toEqual({
      actor: 'wayan',
      mqtt: { host: hostname, port: Number(port), url: platform.mqttUrl },
    })
    expect((await fetch(`${platform.httpUrl}/api/v1/installer/broker`)).status).toBe(401)
    expect((await fetch(`${platform.httpUrl}/api/v1/%69nstaller/broker`)).status).toBe(401)
  })
})
