import mqtt from 'mqtt'
import type { Browser, Page } from 'playwright-core'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { ISPU_CATEGORY_LABELS } from '../dashboard-api/aggregates/ispu.ts'
import { RIVER_LEVEL_LABELS } from '../dashboard-api/aggregates/river-status.ts'
import { POLLUTANT_NAMES, WALL_TEXT, type WallLang } from '../dashboard-api/web/wall-text.ts'
import { startWallDemo, type WallDemo } from '../scripts/screenshot-wall.ts'
import { launchChromium } from './helpers/browser.ts'

/*
 * What an operator reads on the wall, in headless Chromium against the platform with the simulated fleet
 * of `npm start` (3 devices per kind, Kota Denpasar and Jembrana): each language shows only its own words,
 * pollutants carry their proper names, the map's names can be read, and nothing falls off the screen.
 */

const UNITS = ['cm', 'mm', 'µg/m³', 'm³/s', 'ISPU', 'WITA', 'SLA']
const SEPARATORS = /[\s·,:;()—…✓+%▲▼]+/

/** Words of a text, numbers and dashes left out. */
function words(text: string): string[] {
  return text.split(SEPARATORS).filter((w) => w !== '' && !/^[\d.,/–-]+$/.test(w))
}

/** Every word of one language's table, with its formats filled in. */
function tableWords(lang: WallLang): Set<string> {
  const out = new Set<string>()
  const walk = (v: unknown) => {
    if (typeof v === 'string') for (const w of words(v)) out.add(w)
    else if (typeof v === 'function') {
      // Formats take a number (as text) or, for river levels, a level's names.
      const filled = v.length === 2 ? v(RIVER_LEVEL_LABELS.waspada, false) : v('1')
      for (const w of words(String(filled))) out.add(w)
    } else if (v && typeof v === 'object') for (const x of Object.values(v)) walk(x)
  }
  walk(WALL_TEXT[lang])
  return out
}

/** The words a language may show: its table, its ISPU bands and river levels, units, pollutant names. */
function allowedWords(lang: WallLang): Set<string> {
  const out = tableWords(lang)
  for (const l of Object.values(ISPU_CATEGORY_LABELS)) for (const w of words(l[lang])) out.add(w)
  // River levels are BNPB's and Jakarta's names in both languages, with the English one besides.
  for (const l of Object.values(RIVER_LEVEL_LABELS))
    for (const w of words(`${l.bnpb} ${l.jakarta}${lang === 'en' ? ` ${l.en}` : ''}`)) out.add(w)
  for (const w of [...UNITS, ...Object.values(POLLUTANT_NAMES)]) out.add(w)
  return out
}

describe('wall display: words, pollutant names, map labels and fit, in headless Chromium', () => {
  let demo: WallDemo
  let browser: Browser
  let properNames: string[]
  let districts: string[]

  beforeAll(async () => {
    demo = await startWallDemo({ perKind: 3 })
    browser = await launchChromium()
    const devices = demo.platform.registry.list()
    // Device and place names are what they are in either language (`Pasar Badung`, `Pos hujan Sanur`).
    properNames = [...new Set(devices.flatMap((d) => [d.name, d.district, d.regency]))].sort(
      (a, b) => b.length - a.length,
    )
    districts = [...new Set(devices.map((d) => d.district))].sort()
  })
  afterAll(async () => {
    await browser?.close()
    await demo?.stop()
  })

  async function openWall(query: string, width: number, height: number): Promise<Page> {
    const page = await browser.newPage({ viewport: { width, height } })
    await page.goto(`${demo.wallUrl}${query}`)
    await page.waitForSelector('.conn-up', { timeout: 20_000 })
    // The silent gauge turns stale: its tile, its condition and the stale wording are on screen.
    await page
      .locator(`[data-device="${demo.staleDeviceId}"][data-status="stale"]`)
      .waitFor({ timeout: 30_000 })
    await page.locator('[data-alarm]').first().waitFor({ timeout: 10_000 })
    await page.locator('[data-kind="air-quality"] .sub').filter({ hasText: '·' }).waitFor({ timeout: 20_000 })
    return page
  }

  /** All text the page shows or announces, device and place names taken out. */
  async function pageText(page: Page): Promise<string> {
    // Text as written (innerText would upper-case headings and run a number into its unit).
    let text = await page.evaluate(() => {
      const nodes: string[] = []
      const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT)
      for (let n = walker.nextNode(); n; n = walker.nextNode()) nodes.push(n.textContent ?? '')
      return [
        document.title,
        ...nodes,
        ...[...document.querySelectorAll('[aria-label]')].map((e) => e.getAttribute('aria-label') ?? ''),
      ].join('\n')
    })
    for (const name of properNames) text = text.split(name).join(' ')
    return text
  }

  for (const lang of ['en', 'id'] as const) {
    const other = lang === 'en' ? 'id' : 'en'
    it(`the ${lang === 'en' ? 'English' : 'Indonesian'} page shows only its own words and names pollutants properly`, async () => {
      const page = await openWall(lang === 'en' ? '?lang=en' : '', 1920, 1080)
      const seen = words(await pageText(page))
      expect(seen.length).toBeGreaterThan(50)
      const allowed = allowedWords(lang)
      expect([...new Set(seen.filter((w) => !allowed.has(w)))]).toEqual([])
      // And in particular none of the other language's own words (those its table does not share).
      const foreign = [...tableWords(other)].filter((w) => !allowed.has(w))
      expect(foreign.length).toBeGreaterThan(10)
      expect([...new Set(seen.filter((w) => foreign.includes(w)))]).toEqual([])
      expect(await page.title()).toBe(WALL_TEXT[lang].title)

      // The critical pollutant by its name (PM2.5, O₃ …), never by its field name (pm25 → PM25).
      const names = Object.values(POLLUTANT_NAMES).map((n) => n.replace('.', '\\.'))
      const named = new RegExp(`· (${names.join('|')})( |$)`)
      const airTexts = [
        await page.locator('[data-kind="air-quality"] .sub').innerText(),
        ...(await page.locator('[data-device*="-air-"]').allInnerTexts()),
      ]
      for (const t of airTexts) {
        expect(t).toMatch(named)
        expect(t).not.toMatch(/\b(PM25|NO2|SO2|O3)\b/)
      }
      await page.close()
    })
  }

  for (const [width, height] of [
    [1920, 1080],
    [1280, 720],
  ] as const) {
    it(`at ${width}×${height} the map's names can be read and nothing is cut off`, async () => {
      const page = await openWall('', width, height)
      await page.waitForTimeout(1500)

      // Every district with devices has its name on the map, no two names overlap, and they are not tiny.
      // In one evaluation: the map is drawn anew every second.
      const labels = await page.evaluate(() =>
        [...document.querySelectorAll('#map text')].map((e) => {
          const r = e.getBoundingClientRect()
          const ctm = (e as SVGGraphicsElement).getScreenCTM()
          return {
            text: e.textContent ?? '',
            box: { x0: r.left, y0: r.top, x1: r.right, y1: r.bottom },
            px: (ctm?.a ?? 0) * Number.parseFloat(getComputedStyle(e).fontSize),
          }
        }),
      )
      expect(labels.map((l) => l.text)).toEqual(expect.arrayContaining(districts))
      const overlapping: string[] = []
      for (let i = 0; i < labels.length; i++)
        for (let j = i + 1; j < labels.length; j++) {
          const a = labels[i]!.box
          const b = labels[j]!.box
          if (a.x0 < b.x1 && b.x0 < a.x1 && a.y0 < b.y1 && b.y0 < a.y1)
            overlapping.push(`${labels[i]!.text} / ${labels[j]!.text}`)
        }
      expect(overlapping).toEqual([])
      // Nor does a name lie across a device's dot (one hides the other).
      const covered = await page.evaluate(() => {
        const out: string[] = []
        const dots = [...document.querySelectorAll('#map [data-map]')].map((d) => d.getBoundingClientRect())
        for (const t of document.querySelectorAll('#map text')) {
          const r = t.getBoundingClientRect()
          // The glyphs' own box: SVG text boxes carry the font's full line height.
          const a = { x0: r.left, x1: r.right, y0: r.top + r.height * 0.15, y1: r.bottom - r.height * 0.15 }
          if (dots.some((d) => a.x0 < d.right && d.left < a.x1 && a.y0 < d.bottom && d.top < a.y1))
            out.push(t.textContent ?? '')
        }
        return out
      })
      expect(covered).toEqual([])
      const minPx = width >= 1920 ? 14 : 10
      for (const l of labels) expect(l.px, l.text).toBeGreaterThanOrEqual(minPx)

      // Every device tile and key-number card is whole on the screen, and no device name is cut short.
      const cut = await page.evaluate(() => {
        const out: string[] = []
        const panel = document.querySelector('.panel-devices')!.getBoundingClientRect()
        for (const el of document.querySelectorAll<HTMLElement>('[data-device]')) {
          const r = el.getBoundingClientRect()
          if (r.bottom > Math.min(panel.bottom, innerHeight) + 1 || r.right > innerWidth + 1)
            out.push(`tile ${el.dataset.device} below or beyond the edge`)
          for (const line of el.querySelectorAll<HTMLElement>('.value, .extra'))
            if (line.scrollWidth > line.clientWidth + 1)
              out.push(`tile ${el.dataset.device}: ${line.innerText} cut`)
          const name = el.querySelector<HTMLElement>('.name')!
          if (name.scrollHeight > name.clientHeight + 1 || name.scrollWidth > name.clientWidth + 1)
            out.push(`name of ${el.dataset.device} cut: ${name.innerText}`)
        }
        for (const el of document.querySelectorAll<HTMLElement>('#summary [data-kind]')) {
          const r = el.getBoundingClientRect()
          if (r.right > innerWidth + 1 || r.bottom > innerHeight + 1) out.push(`card ${el.dataset.kind} cut`)
          for (const line of el.querySelectorAll<HTMLElement>('.label, .big, .sub'))
            if (line.scrollWidth > line.clientWidth + 1)
              out.push(`card ${el.dataset.kind}: ${line.innerText} cut`)
        }
        return out
      })
      expect(cut).toEqual([])
      expect(await page.locator('[data-device]').count()).toBe(12)
      await page.close()
    })
  }

  // Last, as it adds stations (in a regency of their own) to the demo's registry.
  it('names the critical pollutant properly whichever it is (PM2.5, NO₂, O₃), with its concentration', async () => {
    const stations = [
      { id: 'tst-air-001', fields: { pm25: 80, no2: 20, o3: 30 }, name: 'PM2.5' },
      { id: 'tst-air-002', fields: { pm25: 5, no2: 150, o3: 30 }, name: 'NO₂' },
      { id: 'tst-air-003', fields: { pm25: 5, no2: 20, o3: 200 }, name: 'O₃' },
    ]
    // Connected while the page looks: a device that has left shows as offline, its values struck through.
    const clients: mqtt.MqttClient[] = []
    for (const [i, st] of stations.entries()) {
      const { secret } = await demo.platform.registry.register(
        {
          id: st.id,
          kind: 'air-quality',
          name: `Stasiun uji ${i + 1}`,
          regency: 'Lombok Tengah',
          district: 'Praya',
          latitude: -8.7 - i * 0.01,
          longitude: 116.27 + i * 0.01,
          reportingIntervalMs: 60_000,
        },
        'test',
      )
      const client = await mqtt.connectAsync(demo.platform.mqttUrl, {
        clientId: st.id,
        username: st.id,
        password: secret,
        reconnectPeriod: 0,
      })
      const now = Date.now()
      const readings = [0, 1, 2].map((k) => ({ ts: now - (2 - k) * 60_000, seq: k + 1, ...st.fields }))
      await client.publishAsync(`devices/${st.id}/telemetry`, JSON.stringify({ v: 1, readings }), { qos: 1 })
      clients.push(client)
    }
    try {
      for (const lang of ['en', 'id'] as const) {
        const page = await browser.newPage({ viewport: { width: 1920, height: 1080 } })
        await page.goto(`${demo.wallUrl}?regency=Lombok%20Tengah${lang === 'en' ? '&lang=en' : ''}`)
        await page.waitForSelector('.conn-up', { timeout: 20_000 })
        for (const st of stations) {
          const tile = page.locator(`[data-device="${st.id}"]`)
          await tile.locator('[data-value]').filter({ hasText: /\d/ }).waitFor({ timeout: 20_000 })
          const conc = st.fields[st.name === 'PM2.5' ? 'pm25' : st.name === 'NO₂' ? 'no2' : 'o3']
          expect(await tile.innerText()).toContain(` · ${st.name} ${conc} µg/m³`)
        }
        // The worst station is the PM2.5 one (ISPU above 100).
        const worst = ISPU_CATEGORY_LABELS['tidak-sehat'][lang]
        expect(await page.locator('[data-kind="air-quality"] .sub').innerText()).toBe(`${worst} · PM2.5`)
        const text = await page.locator('body').innerText()
        expect(text).not.toMatch(/\b(PM25|NO2|O3)\b/)
        await page.close()
      }
    } finally {
      await Promise.all(clients.map((c) => c.endAsync()))
    }
  })
})

describe('wall display: river levels', () => {
  it("name BNPB's level first and Jakarta's number after it, in both languages", () => {
    // Jakarta's scale reuses "Siaga" for lower levels: first, "Siaga 3" read as BNPB's higher Siaga.
    expect(WALL_TEXT.id.riverLevel(RIVER_LEVEL_LABELS.waspada, false)).toBe('Waspada (Siaga 3 DKI)')
    expect(WALL_TEXT.id.riverLevel(RIVER_LEVEL_LABELS.awas, false)).toBe('Awas (Siaga 1 DKI)')
    expect(WALL_TEXT.en.riverLevel(RIVER_LEVEL_LABELS.siaga, false)).toMatch(
      /^\S+ \(Siaga; Jakarta Siaga 2\)$/,
    )
  })
})
