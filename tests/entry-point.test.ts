import type { ChildProcess } from 'node:child_process'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { launchChromium, waitForText } from './helpers/browser.ts'
import { spawnTs } from './helpers/process.ts'

const startMain = (env: Record<string, string>) => spawnTs('platform/main.ts', [], env)

describe('npm start (platform/main.ts)', () => {
  let dataDir: string
  let main: ReturnType<typeof startMain>
  let child: ChildProcess

  beforeAll(() => {
    dataDir = mkdtempSync(join(tmpdir(), 'main-test-'))
  })
  afterAll(() => {
    if (child && child.exitCode === null) child.kill('SIGKILL')
    rmSync(dataDir, { recursive: true, force: true })
  })

  it('starts everything, prints a wall display URL whose page shows live simulated values, and stops gracefully', async () => {
    main = startMain({
      MQTT_HOST: '127.0.0.1',
      MQTT_PORT: '0',
      HTTP_HOST: '127.0.0.1',
      HTTP_PORT: '0',
      DATA_DIR: dataDir,
      SIM_INTERVAL_MS: '1000',
      SIM_DEVICES_PER_KIND: '2',
      LIVE_INTERVAL_MS: '200',
    })
    child = main.child
    const [, wallUrl] = await main.waitFor(/Wall display:\s+(http:\/\/\S+)/)
    expect(main.stdout()).toMatch(/Store:\s+embedded DuckDB store/)
    expect(main.stdout()).toMatch(/Simulator:\s+8 simulated devices/)

    const browser = await launchChromium()
    try {
      const page = await browser.newPage({ viewport: { width: 1920, height: 1080 } })
      await page.goto(wallUrl!)
      await page.waitForSelector('.conn-up', { timeout: 20_000 })
      await page.locator('[data-device="dps-river-001"] [data-value]').waitFor({ timeout: 20_000 })
      const values = () =>
        page
          .locator('[data-device] [data-value]')
          .allInnerTexts()
          .then((a) => a.join(' | '))
      // A marker on window survives only if the page is never reloaded.
      await page.evaluate(() => Object.assign(window, { __noReload: true }))
      const before = await waitForText(values, (t) => /\d/.test(t))
      const after = await waitForText(values, (t) => t !== before)
      expect(after).not.toBe(before)
      expect(await page.evaluate(() => (window as unknown as { __noReload?: boolean }).__noReload)).toBe(true)
      expect(await page.locator('[data-device]').count()).toBe(8)
      await page.screenshot({ path: join(dataDir, 'wall.png') })
    } finally {
      await browser.close()
    }

    main.child.kill('SIGTERM')
    const code = await main.exited
    expect(code).toBe(0)
    expect(main.output()).toMatch(/stopped; every accepted reading is in the store or the spool/)
  })

  it('refuses to start with a bad variable, naming it and what it expects', async () => {
    const bad = startMain({
      MQTT_PORT: 'eighteen-eighty-three',
      INFLUX_URL: 'ftp://nope',
      INFLUX_CONTENT_ENCODING: 'deflate',
      DATA_DIR: dataDir,
    })
    const code = await bad.exited
    expect(code).toBe(78)
    expect(bad.stderr()).toMatch(
      /MQTT_PORT: expected a whole number from 0 to 65535 \(got "eighteen-eighty-three"\)/,
    )
    expect(bad.stderr()).toMatch(/INFLUX_URL: expected a URL starting with http:\/\/ or https:\/\//)
    expect(bad.stderr()).toMatch(/INFLUX_CONTENT_ENCODING: expected auto, gzip or identity/)
    expect(bad.stdout()).not.toMatch(/is running/)
  })
})
