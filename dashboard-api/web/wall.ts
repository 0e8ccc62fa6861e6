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

/*
 * The command-centre wall display: no interaction, readable from across the room. URL parameters:
 * `lang=en`, `regency=`, `district=`, `kind=` (comma-separated), `device=`, `token=` (display token),
 * `view=all|overview|devices`, `rotate=<seconds>` (cycle overview and devices).
 */

const params = new URLSearchParams(location.search)
const lang = params.get('lang') === 'en' ? 'en' : 'id'
const locale = lang === 'id' ? 'id-ID' : 'en-GB'

const TEXT = {
  id: {
    title: 'Pusat Komando Sensor Kota',
    live: 'TERHUBUNG',
    down: 'TERPUTUS — menyambung ulang…',
    banner: 'Koneksi ke server terputus: angka di layar mungkin sudah usang',
    updated: (s: string) => `diperbarui ${s} lalu`,
    never: 'belum ada data',
    stale: 'DATA BASI',
    offline: 'LUAR JARINGAN',
    kinds: {
      'river-level': 'Tinggi Muka Air Sungai',
      'rain-gauge': 'Curah Hujan',
      'air-quality': 'Kualitas Udara (ISPU)',
      'crowd-counter': 'Kepadatan Pasar',
    },
    map: 'Peta Sensor',
    alarms: 'Kondisi Aktif',
    noAlarms: 'Tidak ada kondisi aktif',
    people: 'orang',
    inOut: 'masuk/keluar',
    highest: 'tertinggi',
    worst: 'terburuk',
    busiest: 'terpadat',
    wettest: 'terbasah',
    ofCapacity: 'dari kapasitas',
    rise: 'naik',
    perHour: 'cm/jam',
    all: 'Semua wilayah',
    alarmText: {
      river: 'Sungai',
      ispu: 'ISPU',
      occupancy: 'Pasar penuh',
      offline: 'Perangkat luar jaringan',
      stale: 'Data basi',
      rise: 'Air naik cepat',
      battery: 'Baterai lemah',
      completeness: 'Data tidak lengkap',
    },
    slaLeft: (t: string) => `SLA ${t}`,
    slaOver: (t: string) => `LEWAT SLA ${t}`,
    acked: (who: string) => `✓ ${who}`,
    cleared: 'selesai',
    critical: 'kritis',
  },
  en: {
    title: 'City Sensor Command Centre',
    live: 'CONNECTED',
    down: 'DISCONNECTED — reconnecting…',
    banner: 'Lost the connection to the server: the numbers on screen may be out of date',
    updated: (s: string) => `updated ${s} ago`,
    never: 'no data yet',
    stale: 'STALE',
    offline: 'OFFLINE',
    kinds: {
      'river-level': 'River Water Level',
      'rain-gauge': 'Rainfall',
      'air-quality': 'Air Quality (ISPU)',
      'crowd-counter': 'Market Crowding',
    },
    map: 'Sensor Map',
    alarms: 'Active Conditions',
    noAlarms: 'No active conditions',
    people: 'people',
    inOut: 'in/out',
    highest: 'highest',
    worst: 'worst',
    busiest: 'busiest',
    wettest: 'wettest',
    ofCapacity: 'of capacity',
    rise: 'rising',
    perHour: 'cm/h',
    all: 'All areas',
    alarmText: {
      river: 'River',
      ispu: 'ISPU',
      occupancy: 'Market full',
      offline: 'Device offline',
      stale: 'Stale data',
      rise: 'Fast rise',
      battery: 'Battery low',
      completeness: 'Incomplete data',
    },
    slaLeft: (t: string) => `SLA ${t}`,
    slaOver: (t: string) => `SLA OVERDUE ${t}`,
    acked: (who: string) => `✓ ${who}`,
    cleared: 'cleared',
    critical: 'critical',
  },
}[lang]

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
  if (s < 60) return lang === 'id' ? `${s} dtk` : `${s} s`
  const m = Math.round(s / 60)
  if (m < 60) return lang === 'id' ? `${m} mnt` : `${m} min`
  return lang === 'id' ? `${Math.round(m / 60)} jam` : `${Math.round(m / 60)} h`
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
  const l = RIVER_LEVEL_LABELS[level]
  if (level === 'normal') return lang === 'id' ? 'Normal' : 'Normal'
  return lang === 'id' ? `${l.jakarta} / ${l.bnpb}` : `${l.en} (${l.bnpb} / ${l.jakarta})`
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
        extra: [
          rise == null ? '' : `${rise >= 0 ? '▲' : '▼'} ${fmt(Math.abs(rise))} ${TEXT.perHour}`,
          f.flow === undefined ? '' : `${fmt(f.flow, 1)} m³/s`,
        ]
          .filter(Boolean)
          .join(' · '),
        badge: d.river && d.river.level !== 'normal' ? riverLabel(d.river.level) : undefined,
      }
    }
    case 'rain-gauge':
      return {
        value: fmt(f.rainfall, 1),
        unit: 'mm',
        extra: `1 j: ${fmt(d.windows.rainfall?.h1?.[2], 1)} mm maks`,
      }
    case 'air-quality':
      return {
        value: fmt(d.ispu?.value),
        unit: 'ISPU',
        extra: d.ispu
          ? `${ispuLabel(d.ispu.category)} · ${d.ispu.critical.toUpperCase()} · PM2.5 ${fmt(f.pm25)} µg/m³`
          : `PM2.5 ${fmt(f.pm25)} µg/m³`,
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
        <div class="value" data-value>${v.value}<span class="unit">${esc(v.unit)}</span>${badge}</div>
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
            ? `${riverLabel(h.level)}${h.riseCmPerHour == null ? '' : ` · ${h.riseCmPerHour >= 0 ? '▲' : '▼'} ${fmt(Math.abs(h.riseCmPerHour))} ${TEXT.perHour}`}`
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
          sub: w ? `${ispuLabel(w.category)} · ${w.critical.toUpperCase()}` : '–',
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
          sub: d ? `1 j maks ${fmt(d.windows.rainfall?.h1?.[2], 1)} mm` : '–',
          where: d ? d.name : '',
          sev: d ? 'ok' : 'stale',
          spark: d?.spark?.points,
          stale: allStale,
        }),
      )
    }
  }
  document.getElementById('summary')!.innerHTML = cards.join('')
}

function renderMap(inView: DeviceLive[]) {
  const el = document.getElementById('map')!
  if (inView.length === 0) {
    el.innerHTML = ''
    return
  }
  const W = 640
  const H = 330
  const pad = 40
  const minLat = Math.min(...inView.map((d) => d.latitude))
  const maxLat = Math.max(...inView.map((d) => d.latitude))
  const minLon = Math.min(...inView.map((d) => d.longitude))
  const maxLon = Math.max(...inView.map((d) => d.longitude))
  const midLat = (minLat + maxLat) / 2
  const kx = Math.cos((midLat * Math.PI) / 180)
  // Keep the aspect ratio true to the ground and never zoom in closer than ~1 km.
  const spanX = Math.max((maxLon - minLon) * kx, 0.01)
  const spanY = Math.max(maxLat - minLat, 0.01)
  const scale = Math.min((W - 2 * pad) / spanX, (H - 2 * pad) / spanY)
  const cx = (minLon + maxLon) / 2
  const cy = (minLat + maxLat) / 2
  const px = (lon: number) => W / 2 + (lon - cx) * kx * scale
  const py = (lat: number) => H / 2 - (lat - cy) * scale
  // Regions as soft hulls: one circle per device, merged visually by the fill.
  const land = inView
    .map(
      (d) =>
        `<circle class="map-land" cx="${px(d.longitude).toFixed(1)}" cy="${py(d.latitude).toFixed(1)}" r="26"/>`,
    )
    .join('')
  const districts = new Map<string, { lat: number; lon: number; n: number; regency: string }>()
  const regencies = new Map<string, { lat: number; lon: number; n: number }>()
  for (const d of inView) {
    const k = `${d.regency}|${d.district}`
    const e = districts.get(k) ?? { lat: 0, lon: 0, n: 0, regency: d.regency }
    e.lat += d.latitude
    e.lon += d.longitude
    e.n++
    districts.set(k, e)
    const r = regencies.get(d.regency) ?? { lat: 0, lon: 0, n: 0 }
    r.lat = Math.max(r.lat === 0 ? -90 : r.lat, d.latitude)
    r.lon += d.longitude
    r.n++
    regencies.set(d.regency, r)
  }
  const labels = [...districts].map(([k, e]) => {
    const name = k.split('|')[1]!
    return `<text class="map-label" x="${px(e.lon / e.n).toFixed(1)}" y="${(py(e.lat / e.n) + 22).toFixed(1)}" text-anchor="middle">${esc(name)}</text>`
  })
  const regencyLabels =
    regencies.size > 1
      ? [...regencies].map(
          ([name, r]) =>
            `<text class="map-regency" x="${px(r.lon / r.n).toFixed(1)}" y="${(py(r.lat) - 30).toFixed(1)}" text-anchor="middle">${esc(name)}</text>`,
        )
      : []
  const order: Severity[] = ['stale', 'ok', 'warning', 'alert', 'critical']
  const dots = [...inView]
    .sort((a, b) => order.indexOf(severityOf(a)) - order.indexOf(severityOf(b)))
    .map((d) => {
      const sev = severityOf(d)
      const r = sev === 'critical' ? 11 : sev === 'alert' || sev === 'warning' ? 9 : 7
      return `<circle class="dot" data-map="${esc(d.id)}" cx="${px(d.longitude).toFixed(1)}" cy="${py(d.latitude).toFixed(1)}" r="${r}" fill="${SEVERITY_COLOUR[sev]}"><title>${esc(d.name)}</title></circle>`
    })
  el.innerHTML = `<svg viewBox="0 0 ${W} ${H}" role="img" aria-label="${TEXT.map}">${land}${labels.join('')}${regencyLabels.join('')}${dots.join('')}</svg>`
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
  if (alarms.length > 14) rows.push(`<li class="none">+${alarms.length - 14}</li>`)
  el.innerHTML = rows.join('')
}

function render() {
  const now = Date.now() + serverSkew
  const inView = [...devices.values()]
  renderDevices(now, inView)
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

document.getElementById('title')!.textContent = TEXT.title
document.getElementById('scope')!.textContent = describeScope()
document.getElementById('h-map')!.textContent = TEXT.map
document.getElementById('h-alarms')!.textContent = TEXT.alarms
document.documentElement.lang = lang
setupViews()
setConnected(false)
connect()
setInterval(render, 1000)
