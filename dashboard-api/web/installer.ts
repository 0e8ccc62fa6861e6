/**
 * The installer's commissioning page: polls GET /api/v1/devices/:id/commissioning every second with the
 * token the installer typed (kept in this tab's sessionStorage only). Everything from the API is shown with
 * textContent: a rejected payload is arbitrary device input.
 */

interface Reading {
  ts: number
  receivedAt: number
  seq: number
  fields: Record<string, number>
}
interface Commissioning {
  now: number
  device: { id: string; name: string; kind: string; status: string; district: string; regency: string }
  connection: { online: boolean; firstConnectedAt: number | null; lastConnectedAt: number | null }
  firstReading: Reading | null
  latestReading: Reading | null
  rejections: Array<{
    code: string
    message: string
    receivedAt: number
    payload: string
    payloadBytes: number
  }>
}

const $ = <T extends HTMLElement>(id: string) => document.getElementById(id) as T
const tokenInput = $<HTMLInputElement>('token')
const deviceInput = $<HTMLInputElement>('device')
const params = new URLSearchParams(location.search)
deviceInput.value = params.get('device') ?? ''
tokenInput.value = sessionStorage.getItem('installer-token') ?? ''

const time = (ms: number | null) =>
  ms === null ? '—' : `${new Date(ms).toLocaleString('id-ID', { timeZone: 'Asia/Makassar' })} WITA`

function mark(el: HTMLElement, cls: 'ok' | 'bad' | 'wait', text: string) {
  el.className = cls
  el.textContent = text
}

function reading(el: HTMLElement, r: Reading | null) {
  if (r === null) return mark(el, 'wait', 'belum ada / none yet')
  el.className = 'ok'
  el.textContent = `#${r.seq} · ${time(r.receivedAt)} · ${Object.entries(r.fields)
    .map(([k, v]) => `${k}=${v}`)
    .join(', ')}`
}

function render(c: Commissioning) {
  $('name').textContent =
    `${c.device.id} · ${c.device.name} · ${c.device.kind} · ${c.device.district}, ${c.device.regency}`
  mark(
    $('status'),
    c.device.status === 'active' || c.device.status === 'provisioned' ? 'ok' : 'bad',
    c.device.status,
  )
  const conn = c.connection
  if (conn.online) mark($('conn'), 'ok', `terhubung / connected since ${time(conn.lastConnectedAt)}`)
  else if (conn.firstConnectedAt === null) mark($('conn'), 'wait', 'belum pernah terhubung / never connected')
  else mark($('conn'), 'bad', `terputus / offline (last connected ${time(conn.lastConnectedAt)})`)
  reading($('first'), c.firstReading)
  reading($('latest'), c.latestReading)
  const body = $('rejections')
  body.replaceChildren()
  for (const r of c.rejections) {
    const tr = document.createElement('tr')
    const cells = [time(r.receivedAt), r.code, r.message, `${r.payload} (${r.payloadBytes} B)`]
    cells.forEach((text, i) => {
      const td = document.createElement('td')
      if (i === 3) {
        const pre = document.createElement('pre')
        pre.textContent = text
        td.append(pre)
      } else td.textContent = text
      if (i === 1) td.className = 'bad'
      tr.append(td)
    })
    body.append(tr)
  }
  if (c.rejections.length === 0) {
    const tr = document.createElement('tr')
    const td = document.createElement('td')
    td.colSpan = 4
    td.className = 'muted'
    td.textContent = 'tidak ada / none'
    tr.append(td)
    body.append(tr)
  }
}

let timer: number | undefined

async function poll() {
  const id = deviceInput.value.trim()
  const status = $('poll')
  try {
    const res = await fetch(`/api/v1/devices/${encodeURIComponent(id)}/commissioning`, {
      headers: { authorization: `Bearer ${tokenInput.value.trim()}` },
      cache: 'no-store',
    })
    const body = await res.json()
    if (!res.ok)
      mark(status, 'bad', `${res.status} ${body?.error?.code ?? ''}: ${body?.error?.message ?? ''}`)
    else {
      render(body as Commissioning)
      status.className = 'muted'
      status.textContent = `diperbarui / updated ${time(Date.now())}`
    }
  } catch (err) {
    mark(status, 'bad', String(err))
  }
  timer = window.setTimeout(poll, 1000)
}

$<HTMLFormElement>('form').addEventListener('submit', (e) => {
  e.preventDefault()
  sessionStorage.setItem('installer-token', tokenInput.value.trim())
  history.replaceState(null, '', `?device=${encodeURIComponent(deviceInput.value.trim())}`)
  window.clearTimeout(timer)
  void poll()
})
if (deviceInput.value && tokenInput.value) void poll()
