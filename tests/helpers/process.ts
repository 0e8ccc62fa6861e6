import { type ChildProcess, spawn } from 'node:child_process'
import { createServer } from 'node:net'

const ROOT = new URL('../..', import.meta.url).pathname

/** A port the OS reports free on 127.0.0.1, for processes that must come back on the same port. */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer()
    srv.once('error', reject)
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address() as { port: number }
      srv.close(() => resolve(port))
    })
  })
}

// The platform reads the same files (V8's threads by start time); tests and the bench use its parser.
export { procStatFields } from '../../broker/thread-priority.ts'

export interface TsProcess {
  readonly child: ChildProcess
  /** stdout and stderr so far, interleaved. */
  output(): string
  stdout(): string
  stderr(): string
  /** Resolves with the exit code. */
  readonly exited: Promise<number | null>
  /** Resolves with the first match of `pattern` in the output; rejects if the process exits or time runs out. */
  waitFor(pattern: RegExp, timeoutMs?: number): Promise<RegExpMatchArray>
}

/**
 * Runs one of the repository's TypeScript entry points as its own process (so a SIGKILL is a real crash),
 * with only the environment given (plus PATH and HOME), and keeps its output.
 */
export function spawnTs(
  file: string,
  args: string[] = [],
  env: Record<string, string> = {},
  nodeArgs: string[] = [],
): TsProcess {
  const child = spawn(process.execPath, [...nodeArgs, '--import', 'tsx', file, ...args], {
    cwd: ROOT,
    env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '/tmp', ...env },
    stdio: ['pipe', 'pipe', 'pipe'],
  })
  let out = ''
  let stdout = ''
  let stderr = ''
  child.stdout!.on('data', (d) => {
    out += d
    stdout += d
  })
  child.stderr!.on('data', (d) => {
    out += d
    stderr += d
  })
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)))
  return {
    child,
    output: () => out,
    stdout: () => stdout,
    stderr: () => stderr,
    exited,
    async waitFor(pattern, timeoutMs = 30_000) {
      const deadline = Date.now() + timeoutMs
      while (Date.now() < deadline && child.exitCode === null) {
        const m = out.match(pattern)
        if (m) return m
        await new Promise((r) => setTimeout(r, 50))
      }
      const m = out.match(pattern)
      if (m) return m
      throw new Error(
        `no ${pattern} in the output of ${file} (exit code ${child.exitCode}):\n${out.slice(-3000)}`,
      )
    },
  }
}

/**
 * The environment of a platform process (`platform/main.ts`) on loopback ports, without the simulated
 * fleet, storing in InfluxDB 1.x database `city`: what the crash test and `bench:ingest` both start.
 */
export function platformProcessEnv(p: {
  mqttPort: number
  httpPort: number
  dataDir: string
  influxUrl: string
  apiToken: string
  logLevel: string
}): Record<string, string> {
  return {
    MQTT_HOST: '127.0.0.1',
    MQTT_PORT: String(p.mqttPort),
    HTTP_HOST: '127.0.0.1',
    HTTP_PORT: String(p.httpPort),
    DATA_DIR: p.dataDir,
    SIM_ENABLED: 'false',
    LOG_LEVEL: p.logLevel,
    API_TOKEN: p.apiToken,
    INFLUX_URL: p.influxUrl,
    INFLUX_API: 'v1',
    INFLUX_DATABASE: 'city',
  }
}
