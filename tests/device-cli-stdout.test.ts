import { spawn } from 'node:child_process'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { RIVER_DEVICE, startTestPlatform, TEST_API_TOKEN, type TestPlatform } from './helpers/platform.ts'

interface Run {
  readonly code: number | null
  readonly stdout: string
  readonly stderr: string
}

function runCli(args: string[], env: Record<string, string>, timeoutMs = 40_000): Promise<Run> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['--import', 'tsx', 'dashboard-api/device-cli.ts', ...args], {
      env: { ...process.env, ...env },
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

// The CLI prints "the API's JSON answer": a script that pipes `register` or `rotate` into a JSON parser
// to put the secret on a device must get JSON alone on stdout, the once-only reminder elsewhere.
describe('device CLI entry point: stdout is the JSON answer', () => {
  let platform: TestPlatform
  beforeAll(async () => {
    platform = await startTestPlatform()
  }, 60_000)
  afterAll(async () => platform?.close())

  it('keeps the once-only reminder of register and rotate off stdout', async () => {
    const env = { API_URL: platform.httpUrl, API_TOKEN: TEST_API_TOKEN }
    const d = RIVER_DEVICE
    const registered = await runCli(
      [
        'register',
        '--id',
        'dps-river-441',
        '--kind',
        d.kind,
        '--name',
        d.name,
        '--regency',
        d.regency,
        '--district',
        d.district,
        `--lat=${d.latitude}`,
        `--lon=${d.longitude}`,
      ],
      env,
    )
    expect(registered.code, registered.stderr).toBe(0)
    const answer = JSON.parse(registered.stdout) as { secret: string }
    expect(answer.secret.length).toBeGreaterThan(0)
    expect(registered.stderr).toContain('shown only this once')

    const rotated = await runCli(['rotate', 'dps-river-441'], env)
    expect(rotated.code, rotated.stderr).toBe(0)
    const rotatedSecret = (JSON.parse(rotated.stdout) as { secret: string }).secret
    expect(rotatedSecret).not.toBe(answer.secret)
    expect(rotated.stderr).toContain('shown only this once')
  }, 60_000)
})
