import type { DeviceKind } from '../../firmware-contracts/kinds.ts'
import { ISPU_CATEGORY_LABELS, type IspuCategory } from '../aggregates/ispu.ts'
import { RIVER_LEVEL_LABELS, type RiverLevel } from '../aggregates/river-status.ts'
import {
  type Alarm,
  type DeviceLive,
  LIVE_PATH,
  LIVE_PROTOCOL_VERSION,
  type Rollup,
  type Scope,
  ServerMessageSchema,
} from '../protocol.ts'
import { pollutantName, WALL_TEXT } from './wall-text.ts'

/*
 * The command-centre wall display: no interaction, readable from across the room. URL parameters:
 * `lang=en`, `regency=`, `district=`, `kind=` (comma-separated), `device=`, `token=` (display token),
 * `view=all|overview|devices`, `rotate=<seconds>` (cycle overview and devices).
 */

const params = new URLSearchParams(location.search)
const lang = params.get('lang') === 'en' ? 'en' : 'id'
const locale = lang === 'id' ? 'id-ID' : 'en-GB'

const TEXT = WALL_TEXT[lang]

const KIND_ORDER: DeviceKind[] = ['river-level', 'air-quality', 'crowd-counter', 'rain-gauge']
type Severity = 'ok' | 'warning' | 'alert' | 'critical' | 'stale'

const devices = new Map<string, DeviceLive>()
let rollups: Rollup[] = []
let alarms: Alarm[] = []
let lastMessageAt = 0
let serverSkew = 0
let connected = false

function list(name: string): string[] | undefined {
  const v = params.get(name) ?? (name === 'kind' ? params.get('kinds') : null)
  const items = v
    ?.split(',')
    .map((s) => s.trim())
    .filter(Boolean)
  return items && items.length > 0 ? items : undefined
}

function scopeFromParams(): Scope {
  const scope: Scope = {}
  const regency = list('regency')
  const district = list('district')
  const device = list('device')
  const kind = list('kind')?.filter((k): k is DeviceKind => (KIND_ORDER as string[]).includes(k))
  if (regency) scope.regency = regency
  if (district) scope.district = district
  if (kind && kind.length > 0) scope.kind = kind
  if (device) scope.device = device
  return scope
}

function ago(ms: number): string {
  const s = Math.max(0, Math.round(ms / 1000))
  if (s < 60) return TEXT.seconds(fmt(s))
  const m = Math.round(s / 60)
  if (m < 60) return TEXT.minutes(fmt(m))
  return TEXT.hours(fmt(Math.round(m / 60)))
}

function fmt(value: number | undefined | null, digits = 0): string {
  return value === undefined || value === null
    ? '–'
    : value.toLocaleString(locale, { maximumFractionDigits: digits, minimumFractionDigits: digits })
}

function esc(s: string): string {
  return s.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`)
}

function riverLabel(level: RiverLevel): string {
  return TEXT.riverLevel(RIVER_LEVEL_LABELS[level], level === 'normal')
}

/** Rate of rise; below 10 cm/h with a decimal, so that a slow fall never reads as "▼ 0". */
function riseText(cmPerHour: number): string {
  const digits = Math.abs(cmPerHour) < 10 ? 1 : 0
  const shown = Number(cmPerHour.toFixed(digits))
  const arrow = shown > 0 ? '▲ ' : shown < 0 ? '▼ ' : ''
  return `${arrow}${fmt(Math.abs(shown), digits)} ${TEXT.perHour}`
}

function ispuLabel(category: string): string {
  return ISPU_CATEGORY_LABELS[category as IspuCategory]?.[lang] ?? category
}

function isStale(d: DeviceLive): boolean {
  return d.status === 'stale' || d.status === 'offline' || d.status === 'unknown'
}

function severityOf(d: DeviceLive): Severity {
  if (isStale(d)) return 'stale'
  if (d.river)
    return ({ normal: 'ok', waspada: 'warning', siaga: 'alert', awas: 'critical' } as const)[d.river.level]
  if (d.ispu)
    return d.ispu.value > 200
      ? 'critical'
      : d.ispu.value > 100
        ? 'alert'
        : d.ispu.value > 50
          ? 'warning'
          : 'ok'
  if (d.occupancy?.ratio != null)
    return d.occupancy.ratio >= 1.2
      ? 'critical'
      : d.occupancy.ratio >= 1
        ? 'alert'
        : d.occupancy.ratio >= 0.85
          ? 'warning'
          : 'ok'
  return 'ok'
}

const SEVERITY_COLOUR: Record<Severity, string> = {
  ok: '#2ecc71',
  warning: '#f5c518',
  alert: '#ff8c1a',
  critical: '#ff4d4d',
  stale: '#5d6d7e',
}

function sparkline(points: ReadonlyArray<number | null> | undefined): string {
  if (!points || points.every((p) => p === null)) return '<svg class="spark" viewBox="0 0 120 30"></svg>'
  const values = points.filter((p): p is number => p !== null)
  let min = Math.min(...values)
  let max = Math.max(...values)
  if (max - min < 1e-9) {
    min -= 1
    max += 1
  }
  const segments: string[] = []
  let current: string[] = []
  points.forEach((p, i) => {
    if (p === null) {
      if (current.length > 0) segments.push(current.join(' '))
      current = []
      return
    }
    const x = (i / Math.max(1, points.length - 1)) * 120
    const y = 28 - ((p - min) / (max - min)) * 26
    current.push(`${x.toFixed(1)},${y.toFixed(1)}`)
    // A minute with no neighbour would be a line of no length, which draws nothing (as after a start).
    if (points[i - 1] == null && points[i + 1] == null)
      current.push(`${(x - 0.6).toFixed(1)},${y.toFixed(1)}`)
  })
  if (current.length > 0) segments.push(current.join(' '))
  return `<svg class="spark" viewBox="0 0 120 30" preserveAspectRatio="none">${segments
    .map((s) => `<polyline points="${s}" vector-effect="non-scaling-stroke"/>`)
    .join('')}</svg>`
}

function mainValue(d: DeviceLive): { value: string; unit: string; extra: string; badge?: string } {
  const f = d.latest?.fields ?? {}
  switch (d.kind) {
    case 'river-level': {
      const rise = d.river?.riseCmPerHour
      return {
        value: fmt(f.waterLevel),
        unit: 'cm',
        extra: [rise == null ? '' : riseText(rise), f.flow === undefined ? '' : `${fmt(f.flow, 1)} m³/s`]
          .filter(Boolean)
          .join(' · '),
        badge: d.river && d.river.level !== 'normal' ? riverLabel(d.river.level) : undefined,
      }
    }
    case 'rain-gauge':
      return {
        value: fmt(f.rainfall, 1),
        unit: 'mm',
        extra: TEXT.rainMax1h(fmt(d.windows.rainfall?.h1?.[2], 1)),
      }
    case 'air-quality':
      return {
        value: fmt(d.ispu?.value),
        unit: 'ISPU',
        // The critical pollutant with its own concentration: the one that sets the ISPU.
        extra: d.ispu
          ? `${ispuLabel(d.ispu.category)} · ${pollutantName(d.ispu.critical)} ${fmt(f[d.ispu.critical])} µg/m³`
          : `${pollutantName('pm25')} ${fmt(f.pm25)} µg/m³`,
      }
    case 'crowd-counter':
      return {
        value: fmt(f.occupancy),
        unit: TEXT.people,
        extra: [
          d.occupancy?.ratio == null ? '' : `${fmt(d.occupancy.ratio * 100)}% ${TEXT.ofCapacity}`,
          `${TEXT.inOut} ${fmt(f.peopleIn)}/${fmt(f.peopleOut)}`,
        ]
          .filter(Boolean)
          .join(' · '),
      }
  }
}

function renderDevices(now: number, inView: DeviceLive[]) {
  const sections: string[] = []
  for (const kind of KIND_ORDER) {
    const list = inView.filter((d) => d.kind === kind).sort((a, b) => a.name.localeCompare(b.name))
    if (list.length === 0) continue
    const tiles = list.map((d) => {
      const v = mainValue(d)
      const sev = severityOf(d)
      const cls = ['tile', d.status === 'offline' ? 'offline' : isStale(d) ? 'stale' : '', `sev-${sev}`]
      const badge =
        d.status === 'offline'
          ? `<span class="status badge-stale">${TEXT.offline}</span>`
          : isStale(d)
            ? `<span class="status badge-stale">${d.latest ? TEXT.stale : TEXT.never}</span>`
            : v.badge
              ? `<span class="status badge-${sev}">${esc(v.badge)}</span>`
              : ''
      const age = d.latest ? TEXT.updated(ago(now - d.latest.receivedAt)) : TEXT.never
      return `<div class="${cls.join(' ')}" data-device="${esc(d.id)}" data-status="${d.status}">
        <div class="name">${esc(d.name)}</div>
        <div class="extra">${esc(d.district)}, ${esc(d.regency)}</div>
        <div class="value" data-value>${v.value}<wbr><span class="unit">${esc(v.unit)}</span>${badge}</div>
        <div class="extra">${esc(v.extra)}</div>
        <div class="extra" data-age>${age}</div>
      </div>`
    })
    sections.push(`<div><h3>${TEXT.kinds[kind]}</h3><div class="tiles">${tiles.join('')}</div></div>`)
  }
  document.getElementById('kinds')!.innerHTML = sections.join('')
}

function card(
  kind: DeviceKind,
  qualifier: string,
  body: {
    big: string
    unit: string
    sub: string
    where: string
    sev: Severity
    spark?: ReadonlyArray<number | null>
    stale: boolean
  },
) {
  return `<div class="card sev-${body.sev}${body.stale ? ' stale' : ''}" data-kind="${kind}">
    <div class="label">${TEXT.kinds[kind]} · ${qualifier}</div>
    <div class="big" data-key>${body.big}<span class="unit">${esc(body.unit)}</span></div>
    <div class="sub">${body.stale ? TEXT.stale : esc(body.sub)}</div>
    <div class="where">${esc(body.where)}</div>
    ${sparkline(body.spark)}
  </div>`
}

function renderSummary(inView: DeviceLive[]) {
  const kindRollup = (k: DeviceKind) => rollups.find((r) => r.group === 'kind' && r.key === k)
  const cards: string[] = []
  for (const kind of KIND_ORDER) {
    const ofKind = inView.filter((d) => d.kind === kind)
    if (ofKind.length === 0) continue
    const r = kindRollup(kind)
    const allStale = ofKind.every(isStale)
    if (kind === 'river-level') {
      const h = r?.highestRiver
      const d = h ? devices.get(h.deviceId) : undefined
      cards.push(
        card(kind, TEXT.highest, {
          big: fmt(h?.waterLevel),
          unit: 'cm',
          sub: h
            ? `${riverLabel(h.level)}${h.riseCmPerHour == null ? '' : ` · ${riseText(h.riseCmPerHour)}`}`
            : '–',
          where: d ? `${d.name}` : '',
          sev: d ? severityOf(d) : 'stale',
          spark: d?.spark?.points,
          stale: allStale,
        }),
      )
    } else if (kind === 'air-quality') {
      const w = r?.worstIspu
      const d = w ? devices.get(w.deviceId) : undefined
      cards.push(
        card(kind, TEXT.worst, {
          big: fmt(w?.value),
          unit: 'ISPU',
          sub: w ? `${ispuLabel(w.category)} · ${pollutantName(w.critical)}` : '–',
          where: d ? d.name : '',
          sev: d ? severityOf(d) : 'stale',
          spark: d?.spark?.points,
          stale: allStale,
        }),
      )
    } else if (kind === 'crowd-counter') {
      const b = r?.busiestMarket
      const d = b ? devices.get(b.deviceId) : undefined
      cards.push(
        card(kind, TEXT.busiest, {
          big: fmt(b?.people),
          unit: TEXT.people,
          sub: b?.ratio == null ? '–' : `${fmt(b.ratio * 100)}% ${TEXT.ofCapacity}`,
          where: d ? d.name : '',
          sev: d ? severityOf(d) : 'stale',
          spark: d?.spark?.points,
          stale: allStale,
        }),
      )
    } else {
      const fresh = ofKind.filter((d) => !isStale(d) && d.latest)
      const d = fresh.sort(
        (a, b) => (b.windows.rainfall?.h1?.[0] ?? 0) - (a.windows.rainfall?.h1?.[0] ?? 0),
      )[0]
      cards.push(
        card(kind, TEXT.wettest, {
          big: fmt(d?.latest?.fields.rainfall, 1),
          unit: 'mm',
          sub: d ? TEXT.rainMax1h(fmt(d.windows.rainfall?.h1?.[2], 1)) : '–',
          where: d ? d.name : '',
          sev: d ? 'ok' : 'stale',
          spark: d?.spark?.points,
          stale: allStale,
        }),
      )
    }
  }
  const summary = document.getElementById('summary')!
  summary.innerHTML = cards.join('')
  // A key number wider than its card (four digits and a long unit on a small screen) is scaled to fit.
  for (const big of summary.querySelectorAll<HTMLElement>('.big')) {
    if (big.scrollWidth > big.clientWidth && big.clientWidth > 0) {
      const px = Number.parseFloat(getComputedStyle(big).fontSize)
      big.style.fontSize = `${Math.floor((px * big.clientWidth * 0.97) / big.scrollWidth)}px`
    }
  }
}

interface Box {
  x0: number
  y0: number
  x1: number
  y1: number
}

const overlaps = (a: Box, b: Box) => a.x0 < b.x1 && b.x0 < a.x1 && a.y0 < b.y1 && b.y0 < a.y1

/** Map text sizes in drawing units; the drawing is about as wide as the panel, so about CSS px. */
const MAP_LABEL = 15
const MAP_REGENCY = 17

/**
 * Box of a one-line label whose anchor is at (x, y). DejaVu Sans averages under 0.6 em a character, so
 * 0.62 em keeps the estimate on the safe side without measuring text on every render.
 */
function labelBox(text: string, size: number, x: number, y: number, anchor: 'start' | 'middle' | 'end'): Box {
  const w = text.length * size * 0.62
  const x0 = anchor === 'start' ? x : anchor === 'end' ? x - w : x - w / 2
  return { x0, y0: y - size * 0.85, x1: x0 + w, y1: y + size * 0.3 }
}

/** Columns for n panels in a W×H drawing: the layout whose panels are the largest squares. */
function mapColumns(n: number, W: number, H: number): number {
  let best = 1
  let bestSide = 0
  for (let cols = 1; cols <= n; cols++) {
    const side = Math.min(W / cols, H / Math.ceil(n / cols))
    if (side > bestSide + 1e-9) {
      best = cols
      bestSide = side
    }
  }
  return best
}

/**
 * Widths of the panels in a row: by weight (a regency with more districts gets more room, one site needs
 * little), but never narrower than the panel's heading while the row has room for all headings.
 */
function rowWidths(cells: ReadonlyArray<{ weight: number; min: number }>, W: number): number[] {
  const widths = cells.map(() => 0)
  const fixed = cells.map(() => false)
  if (cells.reduce((s, c) => s + c.min, 0) > W) {
    const total = cells.reduce((s, c) => s + c.weight, 0)
    return cells.map((c) => (W * c.weight) / total)
  }
  // Each pass fixes at least one more panel at its minimum, so at most one pass per panel.
  for (let pass = 0; pass <= cells.length; pass++) {
    const free = W - cells.reduce((s, c, i) => s + (fixed[i] ? c.min : 0), 0)
    const total = cells.reduce((s, c, i) => s + (fixed[i] ? 0 : c.weight), 0)
    let changed = false
    cells.forEach((c, i) => {
      widths[i] = fixed[i] ? c.min : (free * c.weight) / total
      if (!fixed[i] && widths[i]! < c.min) {
        fixed[i] = true
        changed = true
      }
    })
    if (!changed) break
  }
  return widths
}

/**
 * One regency in its box: devices to scale (true aspect, never closer than ~1 km), one label per district
 * placed where it hides no other label, or left out when there is no such place.
 */
function mapRegion(
  devs: DeviceLive[],
  cell: { x: number; y: number; w: number; h: number },
  heading: string | undefined,
): string {
  const pad = 26
  const top = cell.y + (heading === undefined ? 0 : MAP_REGENCY + 12)
  const inner = { x0: cell.x + pad, y0: top + pad, x1: cell.x + cell.w - pad, y1: cell.y + cell.h - pad }
  const minLat = Math.min(...devs.map((d) => d.latitude))
  const maxLat = Math.max(...devs.map((d) => d.latitude))
  const minLon = Math.min(...devs.map((d) => d.longitude))
  const maxLon = Math.max(...devs.map((d) => d.longitude))
  const kx = Math.cos((((minLat + maxLat) / 2) * Math.PI) / 180)
  const spanX = Math.max((maxLon - minLon) * kx, 0.01)
  const spanY = Math.max(maxLat - minLat, 0.01)
  const scale = Math.max(0, Math.min((inner.x1 - inner.x0) / spanX, (inner.y1 - inner.y0) / spanY))
  const midX = (inner.x0 + inner.x1) / 2
  const midY = (inner.y0 + inner.y1) / 2
  const px = (lon: number) => midX + (lon - (minLon + maxLon) / 2) * kx * scale
  const py = (lat: number) => midY - (lat - (minLat + maxLat) / 2) * scale
  const order: Severity[] = ['stale', 'ok', 'warning', 'alert', 'critical']
  const placed = devs
    .map((d) => {
      const sev = severityOf(d)
      return {
        d,
        sev,
        x: px(d.longitude),
        y: py(d.latitude),
        r: sev === 'critical' ? 11 : sev === 'alert' || sev === 'warning' ? 9 : 7,
      }
    })
    .sort((a, b) => order.indexOf(a.sev) - order.indexOf(b.sev))
  const parts: string[] = []
  const taken: Box[] = []
  if (heading !== undefined) {
    parts.push(
      `<rect class="map-cell" x="${(cell.x + 2).toFixed(1)}" y="${(cell.y + 2).toFixed(1)}" width="${(cell.w - 4).toFixed(1)}" height="${(cell.h - 4).toFixed(1)}" rx="6"/>`,
    )
    const hx = cell.x + cell.w / 2
    const hy = cell.y + MAP_REGENCY + 6
    parts.push(
      `<text class="map-regency" x="${hx.toFixed(1)}" y="${hy.toFixed(1)}" text-anchor="middle">${esc(heading)}</text>`,
    )
    taken.push(labelBox(heading, MAP_REGENCY, hx, hy, 'middle'))
  }
  // Regions as soft hulls: one circle per device, merged visually by the fill.
  for (const p of placed)
    parts.push(`<circle class="map-land" cx="${p.x.toFixed(1)}" cy="${p.y.toFixed(1)}" r="22"/>`)
  for (const p of placed)
    parts.push(
      `<circle class="dot" data-map="${esc(p.d.id)}" cx="${p.x.toFixed(1)}" cy="${p.y.toFixed(1)}" r="${p.r}" fill="${SEVERITY_COLOUR[p.sev]}"><title>${esc(p.d.name)}</title></circle>`,
    )
  const dots: Box[] = placed.map((p) => ({ x0: p.x - p.r, y0: p.y - p.r, x1: p.x + p.r, y1: p.y + p.r }))
  const districts = new Map<string, typeof placed>()
  for (const p of placed) districts.set(p.d.district, [...(districts.get(p.d.district) ?? []), p])
  const bounds = { x0: cell.x + 4, y0: top, x1: cell.x + cell.w - 4, y1: cell.y + cell.h - 4 }
  const inside = (b: Box) => b.x0 >= bounds.x0 && b.x1 <= bounds.x1 && b.y0 >= bounds.y0 && b.y1 <= bounds.y1
  // The districts with most devices choose first.
  const byCount = [...districts].sort((a, b) => b[1].length - a[1].length || a[0].localeCompare(b[0]))
  for (const [name, ps] of byCount) {
    const x0 = Math.min(...ps.map((p) => p.x - p.r))
    const x1 = Math.max(...ps.map((p) => p.x + p.r))
    const y0 = Math.min(...ps.map((p) => p.y - p.r))
    const y1 = Math.max(...ps.map((p) => p.y + p.r))
    const cx = (x0 + x1) / 2
    const cy = (y0 + y1) / 2
    const s = MAP_LABEL
    const candidates: Array<[number, number, 'start' | 'middle' | 'end']> = [
      [cx, y1 + s + 2, 'middle'],
      [cx, y0 - 6, 'middle'],
      [x1 + 6, cy + s * 0.3, 'start'],
      [x0 - 6, cy + s * 0.3, 'end'],
      [cx, y1 + 2 * s + 6, 'middle'],
      [cx, y0 - s - 10, 'middle'],
      [x1 + 6, cy + s * 1.5, 'start'],
      [x0 - 6, cy + s * 1.5, 'end'],
      [x1 + 6, cy - s * 0.9, 'start'],
      [x0 - 6, cy - s * 0.9, 'end'],
      // Then next to any one of the district's devices.
      ...ps.flatMap(
        (p): Array<[number, number, 'start' | 'middle' | 'end']> => [
          [p.x, p.y + p.r + s + 2, 'middle'],
          [p.x, p.y - p.r - 6, 'middle'],
          [p.x + p.r + 6, p.y + s * 0.3, 'start'],
          [p.x - p.r - 6, p.y + s * 0.3, 'end'],
        ],
      ),
    ]
    const fits = (avoidDots: boolean) => {
      for (const [x, y, anchor] of candidates) {
        let b = labelBox(name, s, x, y, anchor)
        // A centred label near the edge slides inwards rather than giving up its place.
        let ax = x
        if (anchor === 'middle') {
          const shift = b.x0 < bounds.x0 ? bounds.x0 - b.x0 : b.x1 > bounds.x1 ? bounds.x1 - b.x1 : 0
          ax += shift
          b = { ...b, x0: b.x0 + shift, x1: b.x1 + shift }
        }
        if (!inside(b) || taken.some((t) => overlaps(t, b))) continue
        if (avoidDots && dots.some((t) => overlaps(t, b))) continue
        return { x: ax, y, anchor, b }
      }
      return undefined
    }
    const spot = fits(true) ?? fits(false)
    if (!spot) continue
    taken.push(spot.b)
    parts.push(
      `<text class="map-label" x="${spot.x.toFixed(1)}" y="${spot.y.toFixed(1)}" text-anchor="${spot.anchor}">${esc(name)}</text>`,
    )
  }
  return parts.join('')
}

/**
 * The map: one panel per regency, west to east, each to its own scale. Regencies lie tens of kilometres
 * apart and a city's sensors within a few, so on one common scale a city shrinks to a blot of dots and
 * overlapping names.
 */
function renderMap(inView: DeviceLive[]) {
  const el = document.getElementById('map')!
  if (inView.length === 0) {
    el.innerHTML = ''
    return
  }
  // The drawing takes the shape of its panel, so that it fills it at any screen size.
  const W = 640
  const H =
    el.clientWidth > 0 && el.clientHeight > 0
      ? Math.min(1600, Math.max(160, Math.round((W * el.clientHeight) / el.clientWidth)))
      : 330
  const byRegency = new Map<string, DeviceLive[]>()
  for (const d of inView) byRegency.set(d.regency, [...(byRegency.get(d.regency) ?? []), d])
  const meanLon = (ds: DeviceLive[]) => ds.reduce((s, d) => s + d.longitude, 0) / ds.length
  const regions = [...byRegency].sort((a, b) => meanLon(a[1]) - meanLon(b[1]))
  const cols = mapColumns(regions.length, W, H)
  const rows = Math.ceil(regions.length / cols)
  const h = H / rows
  const drawn: string[] = []
  for (let row = 0; row < rows; row++) {
    const inRow = regions.slice(row * cols, row * cols + cols)
    const widths = rowWidths(
      inRow.map(([name, ds]) => ({
        weight: 1 + new Set(ds.map((d) => d.district)).size,
        min: regions.length > 1 ? labelBox(name, MAP_REGENCY, 0, 0, 'start').x1 + 16 : 0,
      })),
      W,
    )
    let x = 0
    inRow.forEach(([name, ds], i) => {
      const w = widths[i]!
      drawn.push(mapRegion(ds, { x, y: row * h, w, h }, regions.length > 1 ? name : undefined))
      x += w
    })
  }
  el.innerHTML = `<svg viewBox="0 0 ${W} ${H}" role="img" aria-label="${esc(TEXT.map)}">${drawn.join('')}</svg>`
}

function renderAlarms(now: number) {
  const el = document.getElementById('alarms')!
  if (alarms.length === 0) {
    el.innerHTML = `<li class="none">${TEXT.noAlarms}</li>`
    return
  }
  const rows = alarms.slice(0, 14).map((a) => {
    let what: string = TEXT.alarmText[a.type]
    if (a.type === 'river') what += ` ${riverLabel(a.level as RiverLevel)} · ${fmt(a.value)} cm`
    else if (a.type === 'ispu') what += ` ${fmt(a.value)} ${ispuLabel(a.level)}`
    else if (a.type === 'occupancy') what += ` · ${fmt(a.value)} ${TEXT.people}`
    let cls: string = a.type === 'stale' || a.type === 'offline' ? 'sev-stale' : a.severity
    // Rule alarms: time left to acknowledge (SLA), who acknowledged, or that the condition has ended.
    let status = ago(now - a.since)
    if (a.state === 'acknowledged' || (a.state === 'cleared' && a.acknowledgedBy))
      status = TEXT.acked(a.acknowledgedBy ?? '')
    else if (a.state === 'cleared') status = TEXT.cleared
    else if (a.state === 'raised' && a.slaDueAt != null) {
      const left = a.slaDueAt - now
      status = left >= 0 ? TEXT.slaLeft(ago(left)) : TEXT.slaOver(ago(-left))
      if (left < 0) cls = 'critical'
    }
    return `<li class="${cls}" data-alarm="${esc(a.id)}" data-state="${esc(a.state ?? 'active')}"><span class="what">${esc(what)}</span><span>${esc(a.name)}</span><span class="since">${esc(status)}</span></li>`
  })
  if (alarms.length > 14) rows.push(`<li class="more">${esc(TEXT.more(fmt(alarms.length - 14)))}</li>`)
  el.innerHTML = rows.join('')
}

/** Tile sizes to try, largest first: a wall has no scroll bar, so a tile below the edge is never seen. */
const FIT_STEPS = [1, 0.92, 0.85, 0.78, 0.72, 0.66, 0.6]
let fitStep = 0

/** Shrinks the device tiles until they fit their panel and grows them back when there is room again. */
function fitDevices() {
  const panel = document.querySelector<HTMLElement>('.panel-devices')!
  const kinds = document.getElementById('kinds')!
  if (panel.clientHeight === 0) return
  const apply = (i: number) => kinds.style.setProperty('--fit', String(FIT_STEPS[i]))
  const over = () => kinds.scrollHeight > panel.clientHeight + 1 || kinds.scrollWidth > panel.clientWidth + 1
  apply(fitStep)
  while (over() && fitStep < FIT_STEPS.length - 1) apply(++fitStep)
  while (fitStep > 0) {
    apply(fitStep - 1)
    if (over()) {
      apply(fitStep)
      break
    }
    fitStep--
  }
}

function render() {
  const now = Date.now() + serverSkew
  const inView = [...devices.values()]
  renderDevices(now, inView)
  fitDevices()
  renderSummary(inView)
  renderMap(inView)
  renderAlarms(now)
  document.getElementById('age')!.textContent = lastMessageAt
    ? TEXT.updated(ago(Date.now() - lastMessageAt))
    : ''
  document.getElementById('clock')!.textContent = `${new Date(now).toLocaleTimeString(locale, {
    timeZone: 'Asia/Makassar',
    hour: '2-digit',
    minute: '2-digit',
    second: '2-digit',
  })} WITA`
  const banner = document.getElementById('banner')!
  banner.hidden = connected || lastMessageAt === 0
  banner.textContent = TEXT.banner
}

let renderQueued = false
function scheduleRender() {
  if (renderQueued) return
  renderQueued = true
  requestAnimationFrame(() => {
    renderQueued = false
    render()
  })
}

function setConnected(up: boolean) {
  connected = up
  const el = document.getElementById('conn')!
  el.textContent = up ? TEXT.live : TEXT.down
  el.className = `conn ${up ? 'conn-up' : 'conn-down'}`
}

let backoff = 500
function connect() {
  const url = new URL(LIVE_PATH, location.href)
  url.protocol = location.protocol === 'https:' ? 'wss:' : 'ws:'
  url.search = ''
  const token = params.get('token')
  if (token) url.searchParams.set('token', token)
  const ws = new WebSocket(url)
  ws.onopen = () => {
    backoff = 500
    setConnected(true)
    ws.send(JSON.stringify({ v: LIVE_PROTOCOL_VERSION, type: 'subscribe', scope: scopeFromParams() }))
  }
  ws.onmessage = (ev) => {
    let raw: unknown
    try {
      raw = JSON.parse(String(ev.data))
    } catch {
      return
    }
    const parsed = ServerMessageSchema.safeParse(raw)
    if (!parsed.success) return
    const msg = parsed.data
    lastMessageAt = Date.now()
    if (msg.type === 'snapshot') {
      devices.clear()
      for (const d of msg.devices) devices.set(d.id, d)
      rollups = msg.rollups
      alarms = msg.alarms
    } else if (msg.type === 'delta') {
      for (const d of msg.devices) devices.set(d.id, d)
      if (msg.rollups) rollups = msg.rollups
      if (msg.alarms) alarms = msg.alarms
    }
    if ('now' in msg) serverSkew = msg.now - Date.now()
    scheduleRender()
  }
  ws.onclose = () => {
    setConnected(false)
    scheduleRender()
    // Back off with jitter so that a room of displays does not reconnect in lockstep after a restart.
    setTimeout(connect, backoff * (0.5 + Math.random()))
    backoff = Math.min(backoff * 2, 15_000)
  }
}

function setupViews() {
  const view = params.get('view')
  const rotate = Number(params.get('rotate'))
  const views = ['overview', 'devices'] as const
  if (Number.isFinite(rotate) && rotate >= 5) {
    let i = 0
    document.body.className = `view-${views[0]}`
    setInterval(() => {
      i = (i + 1) % views.length
      document.body.className = `view-${views[i]}`
    }, rotate * 1000)
  } else if (view === 'overview' || view === 'devices') {
    document.body.className = `view-${view}`
  }
}

function describeScope(): string {
  const s = scopeFromParams()
  const parts = [
    ...(s.regency ?? []),
    ...(s.district ?? []),
    ...(s.kind ?? []).map((k) => TEXT.kinds[k]),
    ...(s.device ?? []),
  ]
  return parts.length === 0 ? TEXT.all : parts.join(' · ')
}

document.title = TEXT.title
document.getElementById('title')!.textContent = TEXT.title
document.getElementById('scope')!.textContent = describeScope()
document.getElementById('h-map')!.textContent = TEXT.map
document.getElementById('h-alarms')!.textContent = TEXT.alarms
document.documentElement.lang = lang
setupViews()
const conn = document.getElementById('conn')!
conn.textContent = TEXT.connecting
conn.className = 'conn conn-down'
connect()
setInterval(render, 1000)
