import { parseArgs } from 'node:util'

const USAGE = `Device registry from the command line, through the REST API (an installer or the platform API token).

  npm run device -- <command> [options]

Commands:
  register --id <id> --kind <kind> --name <name> --regency <r> --district <d> --lat=<n> --lon=<n>
           [--interval-ms <n>] [--notes <text>] [--calibration <n>] [--threshold name=value ...]
  list     [--kind <k>] [--status <s>] [--regency <r>] [--district <d>] [--q <text>]
  get <id> | rotate <id> | commissioning <id> | audit <id>
  revoke <id> [--reason <text>] | decommission <id> [--reason <text>]   (the reason is kept in the audit log)
  update <id> [--name ..] [--regency ..] [--district ..] [--lat ..] [--lon ..] [--interval-ms ..]
              [--notes ..] [--calibration ..] [--threshold name=value ...]

Environment: API_URL (default http://127.0.0.1:8080), API_TOKEN (required).
Prints the API's JSON answer on stdout (notes on stderr); exit code 0 on success, 1 on an API error, 2 on bad usage.`

class UsageError extends Error {}

const num = (v: string | undefined, flag: string) => {
  if (v === undefined) return undefined
  // Number('') and Number(' ') are 0: `--lat=` would have moved a device to latitude 0.
  const n = v.trim() === '' ? Number.NaN : Number(v)
  if (!Number.isFinite(n)) throw new UsageError(`--${flag} expects a number, got ${JSON.stringify(v)}`)
  return n
}

function deviceFields(v: Record<string, string | string[] | boolean | undefined>) {
  const str = (k: string) => (typeof v[k] === 'string' ? (v[k] as string) : undefined)
  const thresholds = (v.threshold as string[] | undefined)?.map((t) => {
    const match = /^([^=]*)=([^=]*)$/.exec(t)
    const name = match?.[1]?.trim()
    if (!name) throw new UsageError(`--threshold expects name=value, got ${JSON.stringify(t)}`)
    return [name, num(match?.[2], 'threshold')!] as const
  })
  const body: Record<string, unknown> = {
    name: str('name'),
    regency: str('regency'),
    district: str('district'),
    latitude: num(str('lat'), 'lat'),
    longitude: num(str('lon'), 'lon'),
    reportingIntervalMs: num(str('interval-ms'), 'interval-ms'),
    notes: str('notes'),
    calibrationOffset: num(str('calibration'), 'calibration'),
    thresholds: thresholds ? Object.fromEntries(thresholds) : undefined,
  }
  return Object.fromEntries(Object.entries(body).filter(([, x]) => x !== undefined))
}

export async function runDeviceCli(
  argv: readonly string[],
  env: Readonly<Record<string, string | undefined>>,
  out: (s: string) => void,
  // Notes for the person at the terminal go apart from the JSON answer, so that `| jq .secret` still parses.
  note: (s: string) => void = out,
): Promise<number> {
  const options = {
    id: { type: 'string' },
    kind: { type: 'string' },
    name: { type: 'string' },
    regency: { type: 'string' },
    district: { type: 'string' },
    lat: { type: 'string' },
    lon: { type: 'string' },
    'interval-ms': { type: 'string' },
    notes: { type: 'string' },
    calibration: { type: 'string' },
    threshold: { type: 'string', multiple: true },
    status: { type: 'string' },
    q: { type: 'string' },
    reason: { type: 'string' },
    help: { type: 'boolean' },
  } as const
  let command: string | undefined
  let request: { method: string; path: string; body?: unknown }
  try {
    const { values, positionals } = parseArgs({
      args: [...argv],
      options,
      allowPositionals: true,
      strict: true,
    })
    command = positionals[0]
    if (values.help || command === undefined) {
      out(`${USAGE}\n`)
      return values.help ? 0 : 2
    }
    const id = positionals[1] ?? values.id
    const path = (suffix = '') => {
      if (!id) throw new UsageError(`${command} needs a device id`)
      return `/api/v1/devices/${encodeURIComponent(id)}${suffix}`
    }
    // Only a revoke or decommission keeps a reason; silently dropping it elsewhere would lose what was typed.
    if (values.reason !== undefined && command !== 'revoke' && command !== 'decommission')
      throw new UsageError('--reason goes only with revoke or decommission')
    switch (command) {
      case 'register':
        request = {
          method: 'POST',
          path: '/api/v1/devices',
          body: { id: values.id, kind: values.kind, ...deviceFields(values) },
        }
        break
      case 'list': {
        const q = new URLSearchParams()
        for (const k of ['kind', 'status', 'regency', 'district', 'q'] as const) {
          const v = values[k]
          if (v !== undefined) q.set(k, v)
        }
        request = { method: 'GET', path: `/api/v1/devices${q.size ? `?${q}` : ''}` }
        break
      }
      case 'get':
        request = { method: 'GET', path: path() }
        break
      case 'update':
        request = { method: 'PATCH', path: path(), body: deviceFields(values) }
        break
      case 'rotate':
        request = { method: 'POST', path: path('/rotate') }
        break
      case 'revoke':
      case 'decommission': {
        const reason = values.reason?.trim()
        if (values.reason !== undefined && !reason) throw new UsageError('--reason expects a text')
        request = { method: 'POST', path: path(`/${command}`), body: reason ? { reason } : undefined }
        break
      }
      case 'commissioning':
      case 'audit':
        request = { method: 'GET', path: path(`/${command}`) }
        break
      default:
        throw new UsageError(`unknown command ${JSON.stringify(command)}`)
    }
    if (!env.API_TOKEN) throw new UsageError('set API_TOKEN to the platform API token or an installer token')
  } catch (err) {
    if (err instanceof UsageError || (err instanceof Error && 'code' in err)) {
      out(`error: ${err.message}\n\n${USAGE}\n`)
      return 2
    }
    throw err
  }
  const base = (env.API_URL ?? 'http://127.0.0.1:8080').replace(/\/$/, '')
  try {
    const res = await fetch(`${base}${request.path}`, {
      method: request.method,
      headers: {
        authorization: `Bearer ${env.API_TOKEN}`,
        ...(request.body === undefined ? {} : { 'content-type': 'application/json' }),
      },
      body: request.body === undefined ? undefined : JSON.stringify(request.body),
      signal: AbortSignal.timeout(15_000),
    })
    const text = await res.text()
    out(`${text}\n`)
    if ((command === 'register' || command === 'rotate') && res.ok)
      note('The secret above is shown only this once: put it on the device now.\n')
    return res.ok ? 0 : 1
  } catch (err) {
    out(`error: cannot reach ${base}: ${err instanceof Error ? err.message : String(err)}\n`)
    return 1
  }
}

if (import.meta.url === `file://${process.argv[1]}`) {
  runDeviceCli(
    process.argv.slice(2),
    process.env,
    (s) => process.stdout.write(s),
    (s) => process.stderr.write(s),
  ).then(
    (code) => {
      process.exitCode = code
    },
    (err) => {
      process.stderr.write(`${String(err)}\n`)
      process.exitCode = 1
    },
  )
}
