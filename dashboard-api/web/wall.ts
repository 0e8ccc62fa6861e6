import type { DeviceKind } from '../../firmware-contracts/kinds.ts'
import { type DeviceLive, LIVE_PATH, type Scope, ServerMessageSchema } from '../protocol.ts'

const params = new URLSearchParams(location.search)
const lang = params.get('lang') === 'en' ? 'en' : 'id'

const TEXT = {
  id: {
    title: 'Pusat Komando Sensor Kota',
    live: 'TERHUBUNG',
    down: 'TERPUTUS — menyambung ulang…',
    updated: (s: string) => `diperbarui ${s} lalu`,
    never: 'belum ada data',
    stale: 'DATA BASI',
    offline: 'LUAR JARINGAN',
    kinds: {
      'river-level': 'Tinggi Muka Air Sungai',
      'rain-gauge': 'Curah Hujan',
      'air-quality': 'Kualitas Udara',
      'crowd-counter': 'Kepadatan Pasar',
    },
    people: 'orang',
    inOut: 'masuk/keluar',
  },
  en: {
    title: 'City Sensor Command Centre',
    live: 'CONNECTED',
    down: 'DISCONNECTED — reconnecting…',
    updated: (s: string) => `updated ${s} ago`,
    never: 'no data yet',
    stale: 'STALE',
    offline: 'OFFLINE',
    kinds: {
      'river-level': 'River Water Level',
      'rain-gauge': 'Rainfall',
      'air-quality': 'Air Quality',
      'crowd-counter': 'Market Crowding',
    },
    people: 'people',
    inOut: 'in/out',
  },
}[lang]

const KIND_ORDER: DeviceKind[] = ['river-level', 'rain-gauge', 'air-quality', 'crowd-counter']
const RIVER_LEVELS = ['awas', 'siaga', 'waspada'] as const

const devices = new Map<string, DeviceLive>()
let lastMessageAt = 0
let serverSkew = 0

function scopeFromParams(): Scope {
  const list = (name: string) => params.get(name)?.split(',').filter(Boolean)
  const scope: Scope = {}
  const regency = list('regency')
  const district = list('district')
  const kind = list('kind')?.filter((k): k is DeviceKind => (KIND_ORDER as string[]).includes(k))
  if (regency) scope.regency = regency
  if (district) scope.district = district
  if (kind) scope.kind = kind
  return scope
}

function ago(ms: number): string {
  const s = Math.max(0, Math.round(ms / 1000))
  if (s < 60) return lang === 'id' ? `${s} dtk` : `${s} s`
  const m = Math.round(s / 60)
  if (m < 60) return lang === 'id' ? `${m} mnt` : `${m} min`
  return lang === 'id' ? `${Math.round(m / 60)} jam` : `${Math.round(m / 60)} h`
}

function fmt(value: number | undefined, digits = 0): string {
  return value === undefined
    ? '–'
    : value.toLocaleString(lang === 'id' ? 'id-ID' : 'en-GB', { maximumFractionDigits: digits })
}

function mainValue(d: DeviceLive): { value: string; unit: string; extra: string; level?: string } {
  const f = d.latest?.fields ?? {}
  switch (d.kind) {
    case 'river-level': {
      const t = d.thresholds ?? {}
      const level = RIVER_LEVELS.find((l) => t[l] !== undefined && (f.waterLevel ?? -Infinity) >= t[l]!)
      return {
        value: fmt(f.waterLevel),
        unit: 'cm',
        extra: f.flow === undefined ? '' : `${fmt(f.flow, 1)} m³/s`,
        level,
      }
    }
    case 'rain-gauge':
      return { value: fmt(f.rainfall, 1), unit: 'mm', extra: '' }
    case 'air-quality':
      return {
        value: fmt(f.pm25),
        unit: 'µg/m³ PM2.5',
        extra: `PM10 ${fmt(f.pm10)} · ${fmt(f.temperature, 1)} °C · ${fmt(f.relativeHumidity)}%`,
      }
    case 'crowd-counter':
      return {
        value: fmt(f.occupancy),
        unit: TEXT.people,
        extra: `${TEXT.inOut} ${fmt(f.peopleIn)}/${fmt(f.peopleOut)}`,
      }
  }
}

function render() {
  const now = Date.now() + serverSkew
  const root = document.getElementById('kinds')!
  const sections: string[] = []
  for (const kind of KIND_ORDER) {
    const list = [...devices.values()]
      .filter((d) => d.kind === kind)
      .sort((a, b) => a.name.localeCompare(b.name))
    if (list.length === 0) continue
    const tiles = list.map((d) => {
      const v = mainValue(d)
      const stale = d.lastSeen === null || now - d.lastSeen > 3 * d.reportingIntervalMs
      const cls = ['tile', !d.online ? 'offline' : stale ? 'stale' : '', v.level ? `level-${v.level}` : '']
      const badge = !d.online
        ? `<span class="status badge-stale">${TEXT.offline}</span>`
        : stale
          ? `<span class="status badge-stale">${TEXT.stale}</span>`
          : v.level
            ? `<span class="status badge-level">${v.level.toUpperCase()}</span>`
            : ''
      const age = d.latest ? TEXT.updated(ago(now - d.latest.receivedAt)) : TEXT.never
      return `<div class="${cls.join(' ')}" data-device="${esc(d.id)}">
        <div class="name">${esc(d.name)}</div>
        <div class="place">${esc(d.district)}, ${esc(d.regency)}</div>
        <div class="value" data-value>${v.value}<span class="unit">${esc(v.unit)}</span></div>
        <div class="extra">${esc(v.extra)}</div>
        <div class="extra">${age}</div>${badge}
      </div>`
    })
    sections.push(`<section><h2>${TEXT.kinds[kind]}</h2><div class="tiles">${tiles.join('')}</div></section>`)
  }
  root.innerHTML = sections.join('')
  document.getElementById('age')!.textContent = lastMessageAt
    ? TEXT.updated(ago(Date.now() - lastMessageAt))
    : ''
  document.getElementById('clock')!.textContent = `${new Date(now).toLocaleTimeString(
    lang === 'id' ? 'id-ID' : 'en-GB',
    {
      timeZone: 'Asia/Makassar',
      hour: '2-digit',
      minute: '2-digit',
      second: '2-digit',
    },
  )} WITA`
}

function esc(s: string): string {
  return s.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`)
}

function setConnected(up: boolean) {
  const el = document.getElementById('conn')!
  el.textContent = up ? TEXT.live : TEXT.down
  el.className = `conn ${up ? 'conn-up' : 'conn-down'}`
}

let backoff = 500
function connect() {
  const url = new URL(LIVE_PATH, location.href)
  url.protocol = location.protocol === 'https:' ? 'wss:' : 'ws:'
  const token = params.get('token')
  if (token) url.searchParams.set('token', token)
  const ws = new WebSocket(url)
  ws.onopen = () => {
    backoff = 500
    setConnected(true)
    ws.send(JSON.stringify({ v: 1, type: 'subscribe', scope: scopeFromParams() }))
  }
  ws.onmessage = (ev) => {
    const parsed = ServerMessageSchema.safeParse(JSON.parse(String(ev.data)))
    if (!parsed.success) return
    const msg = parsed.data
    lastMessageAt = Date.now()
    if (msg.type === 'snapshot') {
      devices.clear()
      for (const d of msg.devices) devices.set(d.id, d)
    } else if (msg.type === 'delta') {
      for (const d of msg.devices) devices.set(d.id, d)
    }
    if ('now' in msg) serverSkew = msg.now - Date.now()
    render()
  }
  ws.onclose = () => {
    setConnected(false)
    // Back off with jitter so that a room of displays does not reconnect in lockstep after a restart.
    setTimeout(connect, backoff * (0.5 + Math.random()))
    backoff = Math.min(backoff * 2, 15_000)
  }
}

document.getElementById('title')!.textContent = TEXT.title
document.documentElement.lang = lang
setConnected(false)
connect()
setInterval(render, 1000)
