/**
 * The installer's page: register a device, see its MQTT credentials once, watch its commissioning (polling
 * GET /api/v1/devices/:id/commissioning every second) and rotate its secret, all through the REST API with
 * the token the installer typed. The token is kept in this tab's sessionStorage only: never in the URL
 * (which browsers keep in history and servers log) and never on the console. Credentials live in the DOM
 * until hidden. Everything from the API is shown with textContent: a rejected payload is arbitrary device
 * input.
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
interface Endpoint {
  host: string
  port: number
  url: string
}
interface BrokerInfo {
  actor: string
  mqtt: Endpoint
  mqttTls?: Endpoint
  mqttWs?: Endpoint
}
interface Credentials {
  device: { id: string }
  secret: string
  mqtt: { clientId: string; username: string; password: string }
}
/** An answer of the API that is not 2xx, or no answer at all (status 0). */
interface ApiError {
  status: number
  code: string
  message: string
}
type ApiResult<T> = { ok: true; body: T } | { ok: false; error: ApiError }

const TOKEN_KEY = 'installer-token'

const $ = <T extends HTMLElement = HTMLElement>(id: string) => document.getElementById(id) as T
const tokenInput = $<HTMLInputElement>('token')
const deviceInput = $<HTMLInputElement>('device')
const registerForm = $<HTMLFormElement>('register')
const kindSelect = $<HTMLSelectElement>('r-kind')

const time = (ms: number | null) =>
  ms === null ? '—' : `${new Date(ms).toLocaleString('id-ID', { timeZone: 'Asia/Makassar' })} WITA`

function mark(el: HTMLElement, cls: 'ok' | 'bad' | 'wait' | 'muted', text: string) {
  el.className = cls
  el.textContent = text
}

const token = () => tokenInput.value.trim()

async function api<T>(method: string, path: string, body?: unknown): Promise<ApiResult<T>> {
  let res: Response
  try {
    res = await fetch(path, {
      method,
      headers: {
        authorization: `Bearer ${token()}`,
        ...(body === undefined ? {} : { 'content-type': 'application/json' }),
      },
      body: body === undefined ? undefined : JSON.stringify(body),
      cache: 'no-store',
    })
  } catch (err) {
    return { ok: false, error: { status: 0, code: 'network', message: String(err) } }
  }
  const text = await res.text()
  let parsed: unknown
  try {
    parsed = text ? JSON.parse(text) : undefined
  } catch {
    parsed = undefined
  }
  if (res.ok) return { ok: true, body: parsed as T }
  const error = (parsed as { error?: { code?: unknown; message?: unknown } } | undefined)?.error
  return {
    ok: false,
    error: {
      status: res.status,
      code: typeof error?.code === 'string' ? error.code : `http_${res.status}`,
      message: typeof error?.message === 'string' ? error.message : text.slice(0, 300) || res.statusText,
    },
  }
}

/** What a failed call means to an installer, first in Bahasa Indonesia. */
function explain(e: ApiError): string {
  if (e.status === 0) return 'Tidak terhubung ke platform / cannot reach the platform'
  if (e.code === 'unauthorized')
    return 'Token ditolak: periksa token installer / token refused: check the token'
  if (e.code === 'forbidden') return 'Token ini tidak boleh melakukan ini / this token may not do this'
  if (e.code === 'not_found') return 'Tidak ditemukan / not found'
  if (e.code === 'device_exists')
    return 'Id ini sudah terdaftar: pilih id lain, atau pantau perangkat itu / this id is already registered: choose another, or watch that device'
  if (e.code === 'device_revoked')
    return 'Perangkat sudah dicabut atau dinonaktifkan / the device is revoked or decommissioned'
  if (e.code === 'invalid_transition')
    return 'Status perangkat tidak mengizinkan ini / the device’s status does not allow this'
  if (e.code === 'conflict') return 'Bentrok dengan keadaan perangkat / conflicts with the device’s state'
  if (e.code === 'bad_request') return 'Isian tidak valid / invalid input'
  return 'Gagal / failed'
}

/**
 * The API's validation message is zod's pretty print: `✖ <message>` lines, each followed by `  → at <path>`
 * when the issue belongs to a field. Split back into issues so each can stand beside its field; the whole
 * message is shown as well, so nothing is lost if the format changes.
 */
function issuesOf(message: string): Array<{ path: string | null; message: string }> {
  const issues: Array<{ path: string | null; message: string }> = []
  for (const line of message.split('\n')) {
    const at = /^\s*→ at (.+)$/.exec(line)
    const last = issues[issues.length - 1]
    if (at?.[1] !== undefined && last !== undefined && last.path === null) last.path = at[1].trim()
    else if (line.startsWith('✖ ')) issues.push({ path: null, message: line.slice(2).trim() })
  }
  return issues
}

/** `thresholds["a b"]` and `thresholds.capacity` to `thresholds.a b` / `thresholds.capacity`. */
const normalPath = (path: string) => path.replace(/\["(.*?)"\]/g, '.$1').replace(/\[(\d+)\]/g, '.$1')

function errorBox(box: HTMLElement, e: ApiError, unplaced: readonly string[] = []) {
  box.replaceChildren()
  const head = document.createElement('div')
  const code = document.createElement('strong')
  code.className = 'error-code'
  code.textContent = `${e.status || '—'} ${e.code}`
  head.append(code, ` · ${explain(e)}`)
  const msg = document.createElement('pre')
  msg.className = 'error-message'
  msg.textContent = e.message
  box.append(head, msg)
  if (unplaced.length > 0) {
    const ul = document.createElement('ul')
    for (const text of unplaced) {
      const li = document.createElement('li')
      li.textContent = text
      ul.append(li)
    }
    box.append(ul)
  }
}

// --- token and broker -------------------------------------------------------------------------------------

let broker: BrokerInfo | undefined

async function loadBroker(): Promise<void> {
  const status = $('token-status')
  if (!token()) {
    mark(status, 'bad', 'Isi token installer dulu / enter the installer token first')
    return
  }
  const r = await api<BrokerInfo>('GET', '/api/v1/installer/broker')
  if (r.ok) {
    broker = r.body
    mark(status, 'ok', `Masuk sebagai / signed in as ${r.body.actor}`)
    $('who').textContent = `${r.body.actor} · ${r.body.mqtt.url}`
  } else {
    broker = undefined
    $('who').textContent = ''
    mark(status, 'bad', `${r.error.status || '—'} ${r.error.code}: ${explain(r.error)} (${r.error.message})`)
  }
}

function saveToken() {
  if (token()) sessionStorage.setItem(TOKEN_KEY, token())
}

$<HTMLFormElement>('token-form').addEventListener('submit', (e) => {
  e.preventDefault()
  saveToken()
  void loadBroker()
  // Opened from a link to one device: the token is all that was missing.
  const id = deviceInput.value.trim()
  if (id && watching !== id) watch(id)
})
$('token-forget').addEventListener('click', () => {
  sessionStorage.removeItem(TOKEN_KEY)
  tokenInput.value = ''
  broker = undefined
  stopWatching()
  hideCredentials()
  $('who').textContent = ''
  mark($('token-status'), 'muted', 'Token dihapus dari tab ini / token removed from this tab')
})

// --- registration -----------------------------------------------------------------------------------------

function showKind() {
  for (const el of registerForm.querySelectorAll<HTMLElement>('[data-kind]'))
    el.hidden = el.dataset.kind !== kindSelect.value
}
kindSelect.addEventListener('change', showKind)

function clearFieldErrors() {
  for (const el of registerForm.querySelectorAll<HTMLElement>('.invalid')) el.classList.remove('invalid')
  for (const el of registerForm.querySelectorAll<HTMLElement>('.field-error')) el.textContent = ''
  $('register-error').replaceChildren()
}

/** Puts a message beside the field of `path`; false when no visible field shows that path. */
function fieldError(path: string, message: string): boolean {
  const visible = (el: HTMLElement) => el.closest('[hidden]') === null
  const candidates = [...registerForm.querySelectorAll<HTMLElement>('[data-field]')].filter(visible)
  const exact = candidates.find((el) => el.dataset.field === path && el.tagName === 'LABEL')
  const top = path.split('.')[0] ?? path
  const target =
    exact ??
    candidates.find((el) => el.dataset.field === path) ??
    candidates.find((el) => el.dataset.field === top)
  if (target === undefined) return false
  target.classList.add('invalid')
  const slot =
    target.tagName === 'FIELDSET'
      ? target.querySelector<HTMLElement>('[data-error-for]')
      : target.querySelector<HTMLElement>(':scope > .field-error')
  if (slot === null) return false
  slot.textContent = slot.textContent ? `${slot.textContent}; ${message}` : message
  return true
}

const numberInput = (id: string) => $<HTMLInputElement>(id)

/** A number field's value, undefined when empty; NaN when the browser holds text that is not a number. */
function numberOf(input: HTMLInputElement): number | undefined {
  if (input.validity.badInput) return Number.NaN
  const v = input.value.trim()
  return v === '' ? undefined : Number(v)
}

/**
 * The request body, exactly as POST /api/v1/devices takes it (NewDeviceSchema): empty fields are left out so
 * the API itself says which required ones are missing. Only what the API cannot know is checked here: text
 * that is not a number, and river levels out of order (the platform would accept them and then show no
 * river status at all).
 */
function registrationBody(): { body: Record<string, unknown>; problems: Array<[string, string]> } {
  const problems: Array<[string, string]> = []
  const body: Record<string, unknown> = {}
  const text = (key: string, id: string) => {
    const v = $<HTMLInputElement>(id).value.trim()
    if (v !== '') body[key] = v
  }
  const num = (key: string, id: string, scale = 1) => {
    const v = numberOf(numberInput(id))
    if (v === undefined) return
    if (Number.isNaN(v)) problems.push([key, 'bukan angka / not a number'])
    else body[key] = Math.round(v * scale * 1e9) / 1e9
  }
  text('id', 'r-id')
  body.kind = kindSelect.value
  text('name', 'r-name')
  text('regency', 'r-regency')
  text('district', 'r-district')
  num('latitude', 'r-lat')
  num('longitude', 'r-lon')
  num('reportingIntervalMs', 'r-interval', 1000)
  const notes = $<HTMLTextAreaElement>('r-notes').value.trim()
  if (notes !== '') body.notes = notes
  const kindBox = registerForm.querySelector<HTMLElement>(`fieldset[data-kind="${kindSelect.value}"]`)
  const thresholds: Record<string, number> = {}
  for (const input of kindBox?.querySelectorAll<HTMLInputElement>('input[data-threshold]') ?? []) {
    const key = input.dataset.threshold ?? ''
    const v = numberOf(input)
    if (v === undefined) continue
    if (Number.isNaN(v)) problems.push([`thresholds.${key}`, 'bukan angka / not a number'])
    else thresholds[key] = v
  }
  if (kindSelect.value === 'river-level') {
    num('calibrationOffset', 'r-calibration')
    const given = ['waspada', 'siaga', 'awas'].filter((k) => thresholds[k] !== undefined)
    const { waspada = 0, siaga = 0, awas = 0 } = thresholds
    if (given.length > 0 && given.length < 3)
      problems.push(['thresholds', 'isi ketiganya atau kosongkan / fill in all three or none'])
    else if (given.length === 3 && !(waspada <= siaga && siaga <= awas))
      problems.push(['thresholds', 'harus Waspada ≤ Siaga ≤ Awas / must be Waspada ≤ Siaga ≤ Awas'])
  }
  if (Object.keys(thresholds).length > 0) body.thresholds = thresholds
  return { body, problems }
}

registerForm.addEventListener('submit', async (e) => {
  e.preventDefault()
  clearFieldErrors()
  const status = $('r-status')
  if (!token()) {
    mark(status, 'bad', 'Isi token installer dulu / enter the installer token first')
    tokenInput.focus()
    return
  }
  saveToken()
  const { body, problems } = registrationBody()
  if (problems.length > 0) {
    for (const [path, message] of problems) fieldError(path, message)
    mark(
      status,
      'bad',
      'Periksa isian yang ditandai / check the marked fields (pemeriksaan halaman / page check)',
    )
    return
  }
  const submit = $<HTMLButtonElement>('r-submit')
  submit.disabled = true
  mark(status, 'wait', 'Mendaftarkan… / registering…')
  const r = await api<Credentials>('POST', '/api/v1/devices', body)
  submit.disabled = false
  if (!r.ok) {
    const unplaced: string[] = []
    for (const issue of r.error.code === 'bad_request' ? issuesOf(r.error.message) : []) {
      if (issue.path === null || !fieldError(normalPath(issue.path), issue.message))
        unplaced.push(issue.path === null ? issue.message : `${issue.path}: ${issue.message}`)
    }
    errorBox($('register-error'), r.error, unplaced)
    const id = typeof body.id === 'string' ? body.id : ''
    if (r.error.status === 409 && id) {
      const button = document.createElement('button')
      button.type = 'button'
      button.className = 'small secondary'
      button.textContent = `Pantau ${id} / watch it`
      button.addEventListener('click', () => watch(id))
      $('register-error').append(button)
    }
    mark(status, 'bad', `${r.error.status || '—'} ${r.error.code}`)
    return
  }
  mark(status, 'ok', `Terdaftar / registered: ${r.body.device.id}`)
  if (broker === undefined) await loadBroker()
  showCredentials(r.body, 'register')
  // The next device is usually of the same kind at the same place: keep those, clear what is its own.
  for (const id of ['r-id', 'r-name', 'r-lat', 'r-lon', 'r-notes', 'r-calibration'])
    $<HTMLInputElement>(id).value = ''
  for (const input of registerForm.querySelectorAll<HTMLInputElement>('input[data-threshold]'))
    input.value = ''
  $<HTMLDetailsElement>('register-box').open = false
  watch(r.body.device.id)
  $('creds').scrollIntoView({ block: 'start' })
})

$('r-locate').addEventListener('click', () => {
  const status = $('r-locate-status')
  // Browsers give positions to https pages (and localhost) only.
  if (!window.isSecureContext || !('geolocation' in navigator)) {
    mark(status, 'bad', 'Lokasi hanya lewat https: isi manual / location needs https: type it in')
    return
  }
  mark(status, 'wait', 'Mencari lokasi… / locating…')
  navigator.geolocation.getCurrentPosition(
    (pos) => {
      numberInput('r-lat').value = pos.coords.latitude.toFixed(6)
      numberInput('r-lon').value = pos.coords.longitude.toFixed(6)
      mark(status, 'ok', `± ${Math.round(pos.coords.accuracy)} m`)
    },
    (err) => mark(status, 'bad', `Lokasi tidak didapat / no location: ${err.message || err.code}`),
    { enableHighAccuracy: true, timeout: 20_000 },
  )
})

// --- credentials, shown once ------------------------------------------------------------------------------

function showCredentials(c: Credentials, why: 'register' | 'rotate') {
  $('c-title').textContent =
    why === 'register' ? `Kredensial MQTT ${c.device.id}` : `Kata sandi baru ${c.device.id}`
  $('c-title-en').textContent =
    why === 'register' ? '/ MQTT credentials' : '/ new password (the old one no longer works)'
  const unknown = 'tidak diketahui / unknown'
  $('c-url').textContent = broker?.mqtt.url ?? unknown
  $('c-host').textContent = broker?.mqtt.host ?? unknown
  $('c-port').textContent = broker === undefined ? unknown : String(broker.mqtt.port)
  $('c-tls').textContent = broker?.mqttTls?.url ?? ''
  $('c-ws').textContent = broker?.mqttWs?.url ?? ''
  for (const el of document.querySelectorAll<HTMLElement>('.c-extra')) el.hidden = !broker?.mqttTls
  for (const el of document.querySelectorAll<HTMLElement>('.c-extra-ws')) el.hidden = !broker?.mqttWs
  $('c-client').textContent = c.mqtt.clientId
  $('c-username').textContent = c.mqtt.username
  $('c-password').textContent = c.mqtt.password
  $('c-topic').textContent = `devices/${c.device.id}/telemetry`
  $('c-copied').textContent = ''
  $('creds').hidden = false
}

function hideCredentials() {
  for (const id of ['c-url', 'c-host', 'c-port', 'c-tls', 'c-ws', 'c-client', 'c-username', 'c-password'])
    $(id).textContent = ''
  $('creds').hidden = true
}
$('c-hide').addEventListener('click', hideCredentials)

/** The clipboard API needs a secure context; a dashboard on plain http over the LAN falls back to execCommand. */
async function copy(text: string): Promise<boolean> {
  try {
    if (navigator.clipboard && window.isSecureContext) {
      await navigator.clipboard.writeText(text)
      return true
    }
  } catch {
    // fall through to the old way
  }
  const area = document.createElement('textarea')
  area.value = text
  area.setAttribute('readonly', '')
  area.style.position = 'fixed'
  area.style.opacity = '0'
  document.body.append(area)
  area.select()
  let done = false
  try {
    done = document.execCommand('copy')
  } catch {
    done = false
  }
  area.remove()
  return done
}

async function copied(text: string, what: string) {
  const ok = await copy(text)
  mark(
    $('c-copied'),
    ok ? 'ok' : 'bad',
    ok ? `Tersalin / copied: ${what}` : 'Salin manual: ketuk teksnya / copy by hand: tap the text',
  )
}

for (const button of document.querySelectorAll<HTMLButtonElement>('[data-copy]')) {
  button.addEventListener('click', () => {
    const id = button.dataset.copy ?? ''
    void copied($(id).textContent ?? '', id.replace('c-', ''))
  })
}
$('c-copy-all').addEventListener('click', () => {
  const lines = [
    `broker: ${$('c-url').textContent}`,
    `host: ${$('c-host').textContent}`,
    `port: ${$('c-port').textContent}`,
    ...($('c-tls').textContent ? [`tls: ${$('c-tls').textContent}`] : []),
    ...($('c-ws').textContent ? [`websocket: ${$('c-ws').textContent}`] : []),
    `client id: ${$('c-client').textContent}`,
    `username: ${$('c-username').textContent}`,
    `password: ${$('c-password').textContent}`,
    `topic: ${$('c-topic').textContent}`,
  ]
  void copied(lines.join('\n'), 'semua / all')
})

// --- rotation ---------------------------------------------------------------------------------------------

const rotateButton = $<HTMLButtonElement>('rotate')
rotateButton.addEventListener('click', () => {
  $('rotate-error').replaceChildren()
  $('rotate-confirm').hidden = false
})
$('rotate-no').addEventListener('click', () => {
  $('rotate-confirm').hidden = true
})
$('rotate-yes').addEventListener('click', async () => {
  $('rotate-confirm').hidden = true
  const id = watching
  if (id === undefined) return
  rotateButton.disabled = true
  const r = await api<Credentials>('POST', `/api/v1/devices/${encodeURIComponent(id)}/rotate`)
  rotateButton.disabled = false
  if (!r.ok) {
    errorBox($('rotate-error'), r.error)
    return
  }
  if (broker === undefined) await loadBroker()
  showCredentials(r.body, 'rotate')
  $('creds').scrollIntoView({ block: 'start' })
})

// --- commissioning ----------------------------------------------------------------------------------------

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
  rotateButton.disabled = !(c.device.status === 'active' || c.device.status === 'provisioned')
  const conn = c.connection
  if (conn.online) mark($('conn'), 'ok', `terhubung / connected since ${time(conn.lastConnectedAt)}`)
  else if (conn.firstConnectedAt === null)
    mark($('conn'), 'wait', 'belum pernah terhubung / never connected: nyalakan perangkat / power it on')
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

function clearStatus() {
  for (const id of ['name', 'status', 'conn', 'first', 'latest']) mark($(id), 'muted', '—')
  $('rejections').replaceChildren()
  rotateButton.disabled = true
  $('rotate-confirm').hidden = true
  $('rotate-error').replaceChildren()
}

let watching: string | undefined
let timer: number | undefined
/** Bumped on every new watch, so the answer of an earlier device's poll is dropped. */
let generation = 0

function stopWatching() {
  window.clearTimeout(timer)
  generation++
  watching = undefined
}

/** Errors that polling again cannot fix: stop and say why. */
const FINAL = new Set([400, 401, 403, 404])

async function poll(id: string, gen: number) {
  const status = $('poll')
  const r = await api<Commissioning>('GET', `/api/v1/devices/${encodeURIComponent(id)}/commissioning`)
  if (gen !== generation) return
  if (r.ok) {
    render(r.body)
    mark(status, 'muted', `diperbarui / updated ${time(Date.now())}`)
  } else {
    mark(status, 'bad', `${r.error.status || '—'} ${r.error.code}: ${explain(r.error)} (${r.error.message})`)
    if (FINAL.has(r.error.status)) {
      watching = undefined
      return
    }
  }
  timer = window.setTimeout(() => void poll(id, gen), 1000)
}

function watch(id: string) {
  stopWatching()
  clearStatus()
  deviceInput.value = id
  if (!token()) {
    mark($('poll'), 'bad', 'Isi token installer dulu / enter the installer token first')
    return
  }
  if (!id) {
    mark($('poll'), 'bad', 'Isi ID perangkat / enter a device id')
    return
  }
  watching = id
  // The device id may go into the address (it is no secret, and a reload keeps watching); the token never.
  history.replaceState(null, '', `?device=${encodeURIComponent(id)}`)
  mark($('poll'), 'wait', 'memuat… / loading…')
  void poll(id, generation)
}

$<HTMLFormElement>('watch').addEventListener('submit', (e) => {
  e.preventDefault()
  saveToken()
  watch(deviceInput.value.trim())
})

// --- start ------------------------------------------------------------------------------------------------

tokenInput.value = sessionStorage.getItem(TOKEN_KEY) ?? ''
const initialDevice = new URLSearchParams(location.search).get('device') ?? ''
deviceInput.value = initialDevice
showKind()
// Someone who came to watch a device has it registered already.
if (initialDevice) $<HTMLDetailsElement>('register-box').open = false
if (tokenInput.value) {
  void loadBroker()
  if (initialDevice) watch(initialDevice)
}
