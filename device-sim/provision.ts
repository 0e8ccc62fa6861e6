import { z } from 'zod'
import type { SimDeviceSpec, SimDeviceWithSecret } from './fleet.ts'
import type { SimLogger } from './simulator.ts'

/*
 * Provisioning through the platform's REST API, as an installer would: register each device, or rotate
 * the secret of one that is already registered (a secret is shown only once, so a restarted simulator
 * cannot learn the old one). Used by `npm run sim -- --api <url>`, e.g. in docker-compose.
 */

/** The platform answered, but not as provisioning needs (auth, validation, server error): exit 1. */
export class ProvisionError extends Error {
  override readonly name = 'ProvisionError'
}

export const ProvisionOptionsSchema = z.object({
  api: z.url({ protocol: /^https?$/, error: 'api: an http(s) URL such as http://platform:8080' }),
  token: z.string().min(1, 'API token is empty'),
  /** How long to keep retrying while the platform is not reachable yet (a container that is still starting). */
  waitMs: z.number().int().min(0).max(600_000).default(30_000),
  requestTimeoutMs: z.number().int().min(100).max(600_000).default(10_000),
  concurrency: z.number().int().min(1).max(64).default(8),
})
export type ProvisionOptions = z.input<typeof ProvisionOptionsSchema>

const SecretAnswerSchema = z.object({ secret: z.string().min(1).max(512) })
const ErrorAnswerSchema = z.object({ error: z.object({ code: z.string(), message: z.string().optional() }) })

export interface ProvisionResult {
  readonly devices: SimDeviceWithSecret[]
  readonly registered: number
  readonly rotated: number
  /** Registered devices the platform would not rotate (revoked or decommissioned): left out of the run. */
  readonly skipped: ReadonlyArray<{ readonly id: string; readonly reason: string }>
}

interface Answer {
  readonly status: number
  readonly body: unknown
}

function describe(answer: Answer): string {
  const parsed = ErrorAnswerSchema.safeParse(answer.body)
  return parsed.success
    ? `${answer.status} ${parsed.data.error.code}${parsed.data.error.message ? `: ${parsed.data.error.message}` : ''}`
    : `HTTP ${answer.status}`
}

/** Registers or rotates every device; resolves with each one's secret. Throws ProvisionError on API failures. */
export async function provisionFleet(
  specs: readonly SimDeviceSpec[],
  input: ProvisionOptions,
  log: SimLogger = () => {},
): Promise<ProvisionResult> {
  const options = ProvisionOptionsSchema.parse(input)
  const base = options.api.replace(/\/+$/, '')
  const deadline = Date.now() + options.waitMs

  const request = async (method: string, path: string, body?: unknown): Promise<Answer> => {
    for (let attempt = 0; ; attempt++) {
      try {
        const res = await fetch(`${base}${path}`, {
          method,
          headers: {
            authorization: `Bearer ${options.token}`,
            ...(body === undefined ? {} : { 'content-type': 'application/json' }),
          },
          body: body === undefined ? undefined : JSON.stringify(body),
          signal: AbortSignal.timeout(options.requestTimeoutMs),
        })
        const text = await res.text()
        let json: unknown
        try {
          json = text === '' ? undefined : JSON.parse(text)
        } catch {
          json = undefined
        }
        // 503: the platform is up but not ready (store starting); worth waiting for like a refused connection.
        if (res.status !== 503 || Date.now() >= deadline) return { status: res.status, body: json }
      } catch (err) {
        if (Date.now() >= deadline) {
          const cause = err instanceof Error ? ((err.cause as Error | undefined)?.message ?? err.message) : ''
          throw new ProvisionError(`cannot reach the platform API at ${base}: ${cause || String(err)}`)
        }
      }
      const delay = Math.min(2000, 100 * 2 ** attempt)
      if (attempt === 0) log('info', `platform API at ${base} not ready; retrying`, {})
      await new Promise((resolve) => setTimeout(resolve, Math.min(delay, Math.max(0, deadline - Date.now()))))
    }
  }

  const secretOf = (answer: Answer, what: string): string => {
    const parsed = SecretAnswerSchema.safeParse(answer.body)
    if (!parsed.success) throw new ProvisionError(`${what}: the answer holds no secret`)
    return parsed.data.secret
  }

  let registered = 0
  let rotated = 0
  const skipped: Array<{ id: string; reason: string }> = []
  const secrets = new Map<string, string>()

  const provisionOne = async (spec: SimDeviceSpec) => {
    const created = await request('POST', '/api/v1/devices', spec)
    if (created.status === 201) {
      secrets.set(spec.id, secretOf(created, `register ${spec.id}`))
      registered++
      return
    }
    if (created.status === 401 || created.status === 403) {
      throw new ProvisionError(`the platform refused the API token (${describe(created)}); set API_TOKEN`)
    }
    if (created.status !== 409) throw new ProvisionError(`register ${spec.id}: ${describe(created)}`)
    const rotation = await request('POST', `/api/v1/devices/${encodeURIComponent(spec.id)}/rotate`)
    if (rotation.status === 200) {
      secrets.set(spec.id, secretOf(rotation, `rotate ${spec.id}`))
      rotated++
      return
    }
    if (rotation.status === 409) {
      // Revoked or decommissioned on purpose by an operator: the simulator must not bring it back.
      skipped.push({ id: spec.id, reason: describe(rotation) })
      log('warn', `${spec.id}: not simulated: ${describe(rotation)}`, { device: spec.id })
      return
    }
    throw new ProvisionError(`rotate the secret of ${spec.id}: ${describe(rotation)}`)
  }

  const queue = [...specs]
  const worker = async () => {
    for (let spec = queue.shift(); spec !== undefined; spec = queue.shift()) await provisionOne(spec)
  }
  await Promise.all(Array.from({ length: Math.min(options.concurrency, specs.length) }, worker))

  const devices = specs.flatMap((spec) => {
    const secret = secrets.get(spec.id)
    return secret === undefined ? [] : [{ ...spec, secret }]
  })
  return { devices, registered, rotated, skipped }
}
