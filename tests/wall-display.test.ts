import { mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import type { Browser } from 'playwright-core'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { startWallDemo, type WallDemo } from '../scripts/screenshot-wall.ts'
import { launchChromium, waitForText } from './helpers/browser.ts'

describe('wall display in headless Chromium against the platform with the simulator', () => {
  let demo: WallDemo
  let browser: Browser
  let outDir: string

  beforeAll(async () => {
    outDir = mkdtempSync(join(tmpdir(), 'wall-shot-'))
    demo = await startWallDemo({ perKind: 2 })
    browser = await launchChromium()
  })
  afterAll(async () => {
    await browser?.close()
    await demo?.stop()
    rmSync(outDir, { recursive: true, force: true })
  })

  it('shows map, key numbers, sparklines, alarms and tiles; values change without reload; stale data is plain', async () => {
    const page = await browser.newPage({ viewport: { width: 1920, height: 1080 } })
    await page.goto(demo.wallUrl)
    await page.waitForSelector('.conn-up', { timeout: 20_000 })
    await page.locator('[data-device] [data-value]').first().waitFor({ timeout: 20_000 })
    await page.evaluate(() => Object.assign(window, { __noReload: true }))

    expect(await page.locator('[data-device]').count()).toBe(8)
    expect(await page.locator('#map [data-map]').count()).toBe(8)
    expect(await page.locator('#map text').allTextContents()).toEqual(
      expect.arrayContaining(['Denpasar Barat']),
    )
    expect(await page.locator('#summary [data-kind]').count()).toBe(4)
    // The hour of history makes a sparkline per summary card.
    expect(await page.locator('#summary .spark polyline').count()).toBeGreaterThanOrEqual(4)
    expect(await page.locator('#age').innerText()).toMatch(/diperbarui \d+ dtk lalu/)
    expect(await page.locator('#clock').innerText()).toMatch(/WITA$/)

    // The silent gauge turns stale (3 reporting intervals without a reading) and says so.
    const stale = page.locator(`[data-device="${demo.staleDeviceId}"]`)
    await page
      .locator(`[data-device="${demo.staleDeviceId}"][data-status="stale"]`)
      .waitFor({ timeout: 20_000 })
    expect(await stale.innerText()).toContain('DATA BASI')
    await page.locator(`[data-alarm="${demo.staleDeviceId}:stale"]`).waitFor({ timeout: 5000 })

    const values = () =>
      page
        .locator('[data-device] [data-value]')
        .allInnerTexts()
        .then((a) => a.join(' | '))
    const before = await values()
    const after = await waitForText(values, (t) => t !== before)
    expect(after).not.toBe(before)
    expect(await page.evaluate(() => (window as unknown as { __noReload?: boolean }).__noReload)).toBe(true)

    const path = join(outDir, 'wall.png')
    await page.screenshot({ path })
    // A PNG of the full 1920×1080 page.
    const png = readFileSync(path)
    expect(png.subarray(1, 4).toString()).toBe('PNG')
    expect(png.readUInt32BE(16)).toBe(1920)
    expect(png.readUInt32BE(20)).toBe(1080)
    await page.close()
  })

  it('speaks English by parameter and shows only the kinds and regency asked for', async () => {
    const page = await browser.newPage({ viewport: { width: 1920, height: 1080 } })
    await page.goto(
      `${demo.wallUrl}?lang=en&kind=air-quality,crowd-counter&regency=Kota%20Denpasar&view=overview`,
    )
    await page.waitForSelector('.conn-up', { timeout: 20_000 })
    expect(await page.locator('#conn').innerText()).toBe('CONNECTED')
    await page.locator('#map [data-map]').first().waitFor({ timeout: 20_000 })
    const kinds = await page
      .locator('#summary [data-kind]')
      .evaluateAll((els) => els.map((e) => e.getAttribute('data-kind')))
    expect(kinds.sort()).toEqual(['air-quality', 'crowd-counter'])
    const ids = await page
      .locator('#map [data-map]')
      .evaluateAll((els) => els.map((e) => e.getAttribute('data-map')))
    expect(ids.length).toBeGreaterThan(0)
    expect(ids.every((id) => /^dps-(air|crowd)-/.test(id ?? ''))).toBe(true)
    // The overview view hides the device tiles.
    expect(await page.locator('.panel-devices').isVisible()).toBe(false)
    expect(await page.locator('html').getAttribute('lang')).toBe('en')
    await page.close()
  })
})
