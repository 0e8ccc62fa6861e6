import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { spawnTs, type TsProcess } from './helpers/process.ts'

const KILL_PRELOAD = new URL('./helpers/platform-edge-kill-broker.mjs', import.meta.url).pathname

/** Resolves with the exit code, or 'hung' when the process is still running after `ms`. */
function exitWithin(p: TsProcess, ms: number): Promise<number | null | 'hung'> {
  return Promise.race([p.exited, new Promise<'hung'>((r) => setTimeout(() => r('hung'), ms).unref())])
}

describe('platform process: failures an operator meets', () => {
  let dir: string
  const procs: TsProcess[] = []
  const env = (extra: Record<string, string> = {}) => ({
    MQTT_HOST: '127.0.0.1',
    MQTT_PORT: '0',
    HTTP_HOST: '127.0.0.1',
    HTTP_PORT: '0',
    SIM_ENABLED: 'false',
    API_TOKEN: 'platform-edge-token-0123456789',
    DATA_DIR: join(dir, `data-${procs.length}`),
    ...extra,
  })
  const start = (e: Record<string, string>, nodeArgs: string[] = []) => {
    const p = spawnTs('platform/main.ts', [], e, nodeArgs)
    procs.push(p)
    return p
  }

  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), 'platform-edge-startup-'))
  })
  afterAll(() => {
    for (const p of procs) if (p.child.exitCode === null) p.child.kill('SIGKILL')
    rmSync(dir, { recursive: true, force: true })
  })

  it('exits non-zero after its broker thread died, so that the supervisor starts it again', {
    timeout: 60_000,
  }, async () => {
    const trigger = join(dir, 'kill-broker-thread')
    const p = start(env({ KILL_WORKERS_WHEN: trigger }), ['--import', KILL_PRELOAD])
    await p.waitFor(/is running/)
    writeFileSync(trigger, '')
    const code = await exitWithin(p, 40_000)
    expect(p.output()).toMatch(/broker thread failed; readings are no longer taken/)
    // Before the fix close-with-grace's exit(0) replaced the exit code set for the failure: systemd's
    // Restart=on-failure left the platform down.
    expect(code, p.output().slice(-2000)).toBe(1)
  })
})
