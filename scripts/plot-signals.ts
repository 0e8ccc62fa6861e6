import { mkdirSync } from 'node:fs'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import {
  defineFleet,
  localDay,
  localMidnight,
  rainEventsOn,
  riverThresholds,
  type SimDeviceSpec,
  simulateSeries,
} from '../device-sim/index.ts'
import type { DeviceKind } from '../firmware-contracts/index.ts'
import { launchChromium } from '../tests/helpers/browser.ts'

/*
 * `npm run docs:signals`: one local (WITA) day of the simulator's signals for a few devices of each kind,
 * drawn as SVG and rendered to PNG in headless Chromium, into docs/signals-<kind>.png. The pictures let a
 * reader judge at a glance whether the simulated river, rain, PM2.5 and market curves look like real ones.
 */

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..')
const OUT_DIR = join(ROOT, 'docs')
const SEED = 20261123
const HOUR = 3_600_000
const STEP_MS = 5 * 60_000
const DEVICES_PER_KIND = 3

const WIDTH = 960
const PANEL_HEIGHT = 230
const MARGIN = { left: 64, right: 120, top: 34, bottom: 34 }
const COLOURS = ['#1f6fb4', '#d9480f', '#2b8a3e'] as const

interface Line {
  readonly value: number
  readonly label: string
  readonly colour: string
}

interface Panel {
  readonly title: string
  readonly unit: string
  readonly colour: string
  readonly points: ReadonlyArray<readonly [number, number]>
  readonly bars: boolean
  readonly lines: readonly Line[]
}

interface KindChart {
  readonly kind: DeviceKind
  readonly metric: string
  readonly unit: string
  readonly heading: string
  readonly bars?: boolean
  readonly lines?: (spec: SimDeviceSpec) => Line[]
}

const CHARTS: readonly KindChart[] = [
  {
    kind: 'river-level',
    metric: 'waterLevel',
    unit: 'cm above gauge zero',
    heading: 'River level',
    lines: (spec) => {
      const t = riverThresholds(spec)
      return [
        { value: t.waspada, label: `Waspada ${t.waspada}`, colour: '#e0a800' },
        { value: t.siaga, label: `Siaga ${t.siaga}`, colour: '#e8590c' },
        { value: t.awas, label: `Awas ${t.awas}`, colour: '#c92a2a' },
      ]
    },
  },
  { kind: 'rain-gauge', metric: 'rainfall', unit: 'mm per 5 min', heading: 'Rainfall', bars: true },
  {
    kind: 'air-quality',
    metric: 'pm25',
    unit: 'PM2.5 µg/m³',
    heading: 'PM2.5',
    // ISPU break points (PermenLHK P.14/2020): Baik up to 15.5, Sedang up to 55.4 µg/m³.
    lines: () => [
      { value: 15.5, label: 'ISPU 50 (Baik)', colour: '#2b8a3e' },
      { value: 55.4, label: 'ISPU 100 (Sedang)', colour: '#e0a800' },
    ],
  },
  { kind: 'crowd-counter', metric: 'occupancy', unit: 'people inside', heading: 'Market occupancy' },
]

/** A wet-season weekday with an ordinary afternoon storm over Denpasar: what operators watch for. */
function pickDay(): number {
  const first = localDay(Date.UTC(2025, 0, 6))
  for (let day = first; day < first + 60; day++) {
    const weekday = new Date(localMidnight(day) + 12 * HOUR).getUTCDay()
    if (weekday === 0 || weekday === 6) continue
    const events = rainEventsOn('Kota Denpasar', day, SEED)
    const total = events.reduce((sum, e) => sum + (e.peakMmPerHour * e.durationMs) / HOUR / 2, 0)
    if (total >= 30 && total <= 80) return day
  }
  return first
}

function niceStep(range: number): number {
  const raw = range / 5
  const power = 10 ** Math.floor(Math.log10(raw))
  const unit = raw / power
  return (unit <= 1 ? 1 : unit <= 2 ? 2 : unit <= 5 ? 5 : 10) * power
}

const escapeXml = (s: string) => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;')
const fmt = (v: number) => (Math.abs(v) >= 100 || Number.isInteger(v) ? String(Math.round(v)) : v.toFixed(1))

function panelSvg(panel: Panel, top: number): string {
  const w = WIDTH - MARGIN.left - MARGIN.right
  const h = PANEL_HEIGHT - MARGIN.top - MARGIN.bottom
  const values = [...panel.points.map((p) => p[1]), ...panel.lines.map((l) => l.value)]
  const max = Math.max(1, ...values) * 1.08
  const step = niceStep(max)
  const yMax = Math.ceil(max / step) * step
  const x = (hour: number) => MARGIN.left + (hour / 24) * w
  const y = (v: number) => top + MARGIN.top + h - (v / yMax) * h
  const parts: string[] = []
  parts.push(
    `<text x="${MARGIN.left}" y="${top + 20}" class="title">${escapeXml(panel.title)}</text>`,
    `<text x="${14}" y="${top + MARGIN.top + h / 2}" class="unit" transform="rotate(-90 14 ${top + MARGIN.top + h / 2})">${escapeXml(panel.unit)}</text>`,
  )
  for (let v = 0; v <= yMax + 1e-9; v += step) {
    parts.push(
      `<line x1="${MARGIN.left}" x2="${MARGIN.left + w}" y1="${y(v)}" y2="${y(v)}" class="grid"/>`,
      `<text x="${MARGIN.left - 6}" y="${y(v) + 4}" class="tick" text-anchor="end">${fmt(v)}</text>`,
    )
  }
  for (let hour = 0; hour <= 24; hour += 3) {
    parts.push(
      `<line x1="${x(hour)}" x2="${x(hour)}" y1="${top + MARGIN.top}" y2="${top + MARGIN.top + h}" class="grid"/>`,
      `<text x="${x(hour)}" y="${top + MARGIN.top + h + 16}" class="tick" text-anchor="middle">${String(hour).padStart(2, '0')}:00</text>`,
    )
  }
  parts.push(
    `<text x="${MARGIN.left + w}" y="${top + MARGIN.top + h + 30}" class="tick" text-anchor="end">WITA (UTC+8)</text>`,
  )
  for (const line of panel.lines) {
    parts.push(
      `<line x1="${MARGIN.left}" x2="${MARGIN.left + w}" y1="${y(line.value)}" y2="${y(line.value)}" stroke="${line.colour}" stroke-dasharray="6 4" stroke-width="1.5"/>`,
      `<text x="${MARGIN.left + w + 6}" y="${y(line.value) + 4}" class="tick" fill="${line.colour}">${escapeXml(line.label)}</text>`,
    )
  }
  if (panel.bars) {
    const barW = Math.max(1, (w / (24 * 12)) * 0.85)
    for (const [hour, v] of panel.points) {
      if (v <= 0) continue
      parts.push(
        `<rect x="${x(hour)}" y="${y(v)}" width="${barW}" height="${y(0) - y(v)}" fill="${panel.colour}"/>`,
      )
    }
  } else {
    const d = panel.points.map(
      ([hour, v], i) => `${i === 0 ? 'M' : 'L'}${x(hour).toFixed(1)},${y(v).toFixed(1)}`,
    )
    parts.push(`<path d="${d.join(' ')}" fill="none" stroke="${panel.colour}" stroke-width="2"/>`)
  }
  parts.push(
    `<rect x="${MARGIN.left}" y="${top + MARGIN.top}" width="${w}" height="${h}" fill="none" stroke="#868e96"/>`,
  )
  return parts.join('\n')
}

function chartSvg(heading: string, panels: readonly Panel[]): string {
  const height = 40 + panels.length * PANEL_HEIGHT
  return `<svg xmlns="http://www.w3.org/2000/svg" width="${WIDTH}" height="${height}" viewBox="0 0 ${WIDTH} ${height}">
<style>
  text { font-family: 'DejaVu Sans', sans-serif; fill: #212529; }
  .heading { font-size: 18px; font-weight: bold; }
  .title { font-size: 14px; font-weight: bold; }
  .unit { font-size: 12px; text-anchor: middle; }
  .tick { font-size: 11px; }
  .grid { stroke: #e9ecef; }
</style>
<rect width="100%" height="100%" fill="#fff"/>
<text x="${MARGIN.left}" y="26" class="heading">${escapeXml(heading)}</text>
${panels.map((p, i) => panelSvg(p, 40 + i * PANEL_HEIGHT)).join('\n')}
</svg>`
}

async function main(): Promise<void> {
  const day = pickDay()
  const from = localMidnight(day)
  const to = from + 24 * HOUR - STEP_MS
  const date = new Date(from + 8 * HOUR).toISOString().slice(0, 10)
  mkdirSync(OUT_DIR, { recursive: true })
  const browser = await launchChromium()
  try {
    const page = await browser.newPage({ deviceScaleFactor: 1 })
    for (const chart of CHARTS) {
      // One device per river (or market, station): the first gauges all sit on Tukad Badung.
      const seen = new Set<string>()
      const specs = defineFleet({ perKind: 40, seed: SEED, kinds: [chart.kind] })
        .filter((spec) => {
          const place = spec.name.split(',')[0]!
          if (seen.has(place)) return false
          seen.add(place)
          return true
        })
        .slice(0, DEVICES_PER_KIND)
      const panels = specs.map((spec, i): Panel => {
        // Start two days early so that state (a market's occupancy, a river's recession) is settled.
        const series = simulateSeries(spec, {
          from: from - 2 * 24 * HOUR,
          to,
          seed: SEED,
          intervalMs: STEP_MS,
        })
        const points = series
          .filter((r) => r.ts >= from)
          .map((r) => [(r.ts - from) / HOUR, r.metrics[chart.metric] ?? 0] as const)
        return {
          title: `${spec.name} (${spec.id}, ${spec.regency})`,
          unit: chart.unit,
          colour: COLOURS[i % COLOURS.length]!,
          points,
          bars: chart.bars === true,
          lines: chart.lines?.(spec) ?? [],
        }
      })
      const svg = chartSvg(`${chart.heading}, ${date} (simulated, seed ${SEED})`, panels)
      await page.setContent(`<!doctype html><html><body style="margin:0">${svg}</body></html>`)
      const file = join(OUT_DIR, `signals-${chart.kind}.png`)
      await page.locator('svg').screenshot({ path: file })
      process.stdout.write(`wrote ${file}\n`)
    }
  } finally {
    await browser.close()
  }
}

main().catch((err: unknown) => {
  process.stderr.write(`docs:signals: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`)
  process.exit(1)
})
