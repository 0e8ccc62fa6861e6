import { spawn } from 'node:child_process'
import { createServer } from 'node:net'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { defineFleet } from '../device-sim/index.ts'
import { startTestPlatform, TEST_API_TOKEN, type TestPlatform } from './helpers/platform.ts'

/*
 * `npm run sim -- --api <url>` as docker-compose runs it: the CLI registers its fleet through the REST API
 * (or rotates the secrets of devices already registered), then simulates with those secrets.
 */

interface Run {
  readonly code: number | null
  readonly stdout: string
  readonly stderr: string
}

function runCli(
  args: string[],
  env: Record<string, string | undefined> = {},
  timeoutMs = 40_000,
): Promise<Run> {
  return new Promise((resolve, reject) => {
    const childEnv: Record<string, string | undefined> = { ...process.env, ...env }
    if (!('API_TOKEN' in env)) delete childEnv.API_TOKEN
    const child = spawn(process.execPath, ['--import', 'tsx', 'device-sim/cli.ts', ...args], {
      env: childEnv as NodeJS.ProcessEnv,
      stdio: ['ignore', 'pipe', 'pipe'],
    })
    let stdout = ''
    let stderr = ''
    child.stdout.on('data', (d) => {
      stdout += String(d)
    })
    child.stderr.on('data', (d) => {
      stderr += String(d)
    })
    const timer = setTimeout(() => {
      child.kill('SIGKILL')
      reject(new Error(`cli did not exit within ${timeoutMs} ms; stderr: ${stderr}`))
    }, timeoutMs)
    child.on('error', reject)
    child.on('close', (code) => {
      clearTimeout(timer)
      resolve({ code, stdout, stderr })
    })
  })
}

async function closedPort(): Promise<number> {
  const server = createServer()
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const address = server.address()
  if (address === null || typeof address === 'string') throw new Error('no address')
  await new Promise<void>((resolve) => server.close(() => resolve()))
  return address.port
}

interface ReadingsAnswer {
  readonly count: number
  readonly readings: ReadonlyArray<{ seq: number }>
}

describe('npm run sim -- --api', () => {
  let platform: TestPlatform
  const fleet = defineFleet({ perKind: 1, seed: 1 })

  beforeAll(async () => {
    platform = await startTestPlatform()
  })
  afterAll(async () => {
    await platform?.close()
  })

  const simArgs = () => [
    `--url=${platform.mqttUrl}`,
    `--api=${platform.httpUrl}`,
    '--per-kind=1',
    '--interval=1000',
    '--duration=5000',
    '--stats-every=0',
  ]

  it('registers the fleet through the REST API, then simulates with the issued secrets', async () => {
    const run = await runCli(simArgs(), { API_TOKEN: TEST_API_TOKEN })
    expect(run.stderr).toMatch(/provisioned: 4 registered, 0 secrets rotated/)
    expect(run.code, run.stderr).toBe(0)
    expect(run.stdout).toMatch(/errors 0/)
    for (const spec of fleet) {
      const device = platform.registry.get(spec.id)
      expect(device?.kind).toBe(spec.kind)
      // Registered with the interval the devices really report at.
      expect(device?.reportingIntervalMs).toBe(1000)
      const res = await platform.api<ReadingsAnswer>('GET', `/api/v1/devices/${spec.id}/readings?limit=100`)
      expect(res.status).toBe(200)
      expect(res.body.count, spec.id).toBeGreaterThan(0)
    }
  })

  it('rotates the secrets of devices already registered and simulates with the new ones', async () => {
    const before = await platform.api<ReadingsAnswer>(
      'GET',
      `/api/v1/devices/${fleet[0]!.id}/readings?limit=1000`,
    )
    const run = await runCli(simArgs(), { API_TOKEN: TEST_API_TOKEN })
    expect(run.stderr).toMatch(/provisioned: 0 registered, 4 secrets rotated/)
    expect(run.code, run.stderr).toBe(0)
    const after = await platform.api<ReadingsAnswer>(
      'GET',
      `/api/v1/devices/${fleet[0]!.id}/readings?limit=1000`,
    )
    expect(after.body.count).toBeGreaterThan(before.body.count)
  })

  it('takes the token from --api-token as well', async () => {
    const run = await runCli([...simArgs(), `--api-token=${TEST_API_TOKEN}`, '--duration=1000'])
    expect(run.code, run.stderr).toBe(0)
    expect(run.stderr).toMatch(/4 secrets rotated/)
  })

  it('exits 1 naming the problem when the API refuses the token', async () => {
    const run = await runCli(simArgs(), { API_TOKEN: 'wrong-token-0123456789abcdef' })
    expect(run.code).toBe(1)
    expect(run.stderr).toMatch(/refused the API token/)
  })

  it('exits 1 when the API cannot be reached within --api-wait', async () => {
    const port = await closedPort()
    const run = await runCli(
      [`--url=${platform.mqttUrl}`, `--api=http://127.0.0.1:${port}`, '--api-wait=300', '--duration=1000'],
      { API_TOKEN: TEST_API_TOKEN },
    )
    expect(run.code).toBe(1)
    expect(run.stderr).toMatch(/cannot reach the platform API at http:\/\/127\.0\.0\.1:\d+/)
  })

  it('exits 2 on usage errors: no token, a bad URL, --api with --devices', async () => {
    const noToken = await runCli([`--api=${platform.httpUrl}`])
    expect(noToken.code).toBe(2)
    expect(noToken.stderr).toMatch(/set API_TOKEN or pass --api-token/)
    const badUrl = await runCli(['--api=ftp://x'], { API_TOKEN: TEST_API_TOKEN })
    expect(badUrl.code).toBe(2)
    expect(badUrl.stderr).toMatch(/--api must be an http\(s\) URL/)
    const both = await runCli([`--api=${platform.httpUrl}`, '--devices=d.json'], {
      API_TOKEN: TEST_API_TOKEN,
    })
    expect(both.code).toBe(2)
    expect(both.stderr).toMatch(/either --devices <file> or --api <url>/)
  })
})
