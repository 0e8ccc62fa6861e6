import { type ChildProcess, spawn } from 'node:child_process'
import { accessSync, constants, mkdtempSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs'
import { createServer } from 'node:net'
import { tmpdir } from 'node:os'
import { delimiter, join } from 'node:path'
import { procStatFields } from './process.ts'

/**
 * A throwaway InfluxDB 1.x (Debian's `influxd`) on free 127.0.0.1 ports with its data in a temp dir.
 * Outage tests take it down and bring it back on the same port with the same data.
 */
export interface Influxd {
  readonly url: string
  readonly port: number
  /** Created after start when asked for in the options. */
  readonly database?: string
  /** Admin credentials when started with `auth`. */
  readonly auth?: { readonly username: string; readonly password: string }
  /** The temp dir holding config, meta, data and wal. */
  readonly dir: string
  /** influxd's process id while it runs (benchmarks read its CPU from /proc). */
  readonly pid: number | undefined
  /** Runs InfluxQL through POST /query (with the admin credentials, if any). */
  query(statement: string, db?: string): Promise<InfluxResponse>
  /** Posts line protocol to the 1.x /write endpoint, ms precision (with the admin credentials, if any). */
  write(db: string, lines: string, params?: Record<string, string>): Promise<InfluxResponse>
  /** Terminates influxd (SIGTERM, waits for exit) and removes the temp dir. Idempotent. */
  stop(): Promise<void>
  /** Terminates influxd (SIGTERM, waits for exit) but keeps the data: `start()` brings it back. */
  halt(): Promise<void>
  /** Starts influxd again after `halt()` or `kill()`, on the same port and data dir. */
  start(): Promise<void>
  /** `halt()` then `start()`. */
  restart(): Promise<void>
  /** Immediate SIGKILL, as a crash would; the data dir stays for `start()`. */
  kill(): void
  /**
   * Freezes the process (SIGSTOP) and waits until every thread has stopped: connections are then accepted
   * by the kernel but never answered.
   */
  pause(): Promise<void>
  /** Undoes `pause()`. */
  resume(): Promise<void>
}

export interface InfluxResponse {
  readonly status: number
  readonly text: string
  /** Parsed body when it is JSON. */
  readonly json: unknown
}

export interface StartInfluxdOptions {
  /** Create this database once the server answers. */
  readonly database?: string
  /** Turn on HTTP authentication and create this admin user. */
  readonly auth?: { readonly username: string; readonly password: string }
  /** How long to wait for `/ping`. */
  readonly startTimeoutMs?: number
}

const INSTALL_HINT = 'install it with `apt-get install -y influxdb` (Debian package)'
const OUTPUT_TAIL_CHARS = 4000

interface LiveServer {
  proc: ChildProcess | undefined
  readonly dir: string
}

/** Servers of this process still running or holding a temp dir, so that none outlives it. */
const live = new Set<LiveServer>()
let exitHookInstalled = false

function installExitHook(): void {
  if (exitHookInstalled) return
  exitHookInstalled = true
  // 'exit' handlers must be synchronous: there is no time left for a graceful shutdown.
  process.on('exit', () => {
    for (const server of live) {
      const proc = server.proc
      if (proc?.pid !== undefined && !exited(proc)) {
        try {
          process.kill(proc.pid, 'SIGKILL')
        } catch {}
      }
      try {
        rmSync(server.dir, { recursive: true, force: true })
      } catch {}
    }
  })
}

function findInfluxd(): string {
  for (const dir of (process.env.PATH ?? '').split(delimiter)) {
    if (dir === '') continue
    const candidate = join(dir, 'influxd')
    try {
      accessSync(candidate, constants.X_OK)
      if (statSync(candidate).isFile()) return candidate
    } catch {}
  }
  throw new Error(`influxd is not on PATH: ${INSTALL_HINT}`)
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer()
    server.unref()
    server.on('error', reject)
    server.listen(0, '127.0.0.1', () => {
      const address = server.address()
      if (address === null || typeof address === 'string') {
        server.close()
        reject(new Error('could not determine a free port'))
        return
      }
      server.close(() => resolve(address.port))
    })
  })
}

function configText(dir: string, httpPort: number, rpcPort: number, authEnabled: boolean): string {
  // Quiet and self-contained: no _internal database, no usage reporting, nothing outside `dir`.
  return `reporting-enabled = false
bind-address = "127.0.0.1:${rpcPort}"

[meta]
  dir = "${join(dir, 'meta')}"
  logging-enabled = false

[data]
  dir = "${join(dir, 'data')}"
  wal-dir = "${join(dir, 'wal')}"
  query-log-enabled = false

[monitor]
  store-enabled = false

[subscriber]
  enabled = false

[continuous_queries]
  enabled = false
  log-enabled = false

[http]
  enabled = true
  bind-address = "127.0.0.1:${httpPort}"
  auth-enabled = ${authEnabled}
  log-enabled = false
  pprof-enabled = false

[logging]
  level = "error"
  suppress-logo = true
`
}

async function ping(url: string): Promise<number | undefined> {
  try {
    const res = await fetch(`${url}/ping`, { signal: AbortSignal.timeout(1000) })
    await res.arrayBuffer()
    return res.status
  } catch {
    return undefined
  }
}

function delay(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms))
}

function exited(proc: ChildProcess): boolean {
  return proc.exitCode !== null || proc.signalCode !== null
}

function waitForExit(proc: ChildProcess): Promise<void> {
  if (exited(proc)) return Promise.resolve()
  // The child is unref'd so that it never holds the test process open; while someone waits on it, it must.
  proc.ref()
  return new Promise((resolve) =>
    proc.once('exit', () => {
      proc.unref()
      resolve()
    }),
  )
}

/** Scheduler states of a process's threads (R, S, T...), from /proc. */
function threadStates(pid: number): string[] {
  return readdirSync(`/proc/${pid}/task`).map((task) => procStatFields(`/proc/${pid}/task/${task}/stat`)[0]!)
}

async function waitForThreads(pid: number, done: (states: string[]) => boolean, what: string): Promise<void> {
  const deadline = Date.now() + 5000
  for (;;) {
    try {
      if (done(threadStates(pid))) return
    } catch {
      // A thread that exits between listing and reading its stat: look again.
    }
    if (Date.now() > deadline) throw new Error(`influxd (pid ${pid}) did not ${what} within 5 s`)
    await delay(5)
  }
}

async function respond(res: Response): Promise<InfluxResponse> {
  const text = await res.text()
  let json: unknown
  try {
    json = JSON.parse(text)
  } catch {}
  return { status: res.status, text, json }
}

export async function startInfluxd(options: StartInfluxdOptions = {}): Promise<Influxd> {
  const binary = findInfluxd()
  installExitHook()
  const startTimeoutMs = options.startTimeoutMs ?? 30_000
  const dir = mkdtempSync(join(tmpdir(), 'influxd-test-'))
  const configPath = join(dir, 'influxd.conf')
  const server: LiveServer = { proc: undefined, dir }
  live.add(server)

  let url = ''
  let port = 0
  let watchdog: ChildProcess | undefined
  let outputTail = ''
  let removed = false
  let sigkilled = false
  const authHeader: Record<string, string> =
    options.auth === undefined
      ? {}
      : {
          authorization: `Basic ${Buffer.from(`${options.auth.username}:${options.auth.password}`).toString('base64')}`,
        }

  const dropWatchdog = (): void => {
    if (watchdog === undefined) return
    // Kill the shell before closing its stdin, or it would signal a pid that may already be reused.
    watchdog.kill('SIGKILL')
    watchdog.stdin?.destroy()
    watchdog = undefined
  }

  const terminate = async (): Promise<void> => {
    const proc = server.proc
    if (proc === undefined) return
    if (!exited(proc)) {
      // A paused process acts on SIGTERM only once it runs again.
      proc.kill('SIGCONT')
      proc.kill('SIGTERM')
      const timer = setTimeout(() => proc.kill('SIGKILL'), 10_000)
      await waitForExit(proc)
      clearTimeout(timer)
    }
    dropWatchdog()
    server.proc = undefined
  }

  const spawnOnce = async (): Promise<void> => {
    outputTail = ''
    const proc = spawn(binary, ['-config', configPath], { stdio: ['ignore', 'pipe', 'pipe'] })
    server.proc = proc
    const keepTail = (chunk: Buffer): void => {
      outputTail = (outputTail + chunk.toString('utf8')).slice(-OUTPUT_TAIL_CHARS)
    }
    proc.stdout?.on('data', keepTail)
    proc.stderr?.on('data', keepTail)
    let spawnError: Error | undefined
    proc.on('error', (err) => {
      spawnError = err
    })
    proc.unref()
    ;(proc.stdout as { unref?: () => void } | null)?.unref?.()
    ;(proc.stderr as { unref?: () => void } | null)?.unref?.()

    // A test worker killed with SIGKILL runs no exit hook. This watchdog sees its stdin close when the
    // worker dies, takes influxd down and removes the temp dir.
    if (proc.pid !== undefined) {
      const script =
        'cat >/dev/null; kill -TERM "$1" 2>/dev/null; i=0; ' +
        'while kill -0 "$1" 2>/dev/null && [ $i -lt 50 ]; do sleep 0.1; i=$((i+1)); done; ' +
        'kill -KILL "$1" 2>/dev/null; rm -rf "$2"'
      watchdog = spawn('sh', ['-c', script, 'influxd-watchdog', String(proc.pid), dir], {
        stdio: ['pipe', 'ignore', 'ignore'],
      })
      watchdog.unref()
      ;(watchdog.stdin as { unref?: () => void } | null)?.unref?.()
    }

    const deadline = Date.now() + startTimeoutMs
    for (;;) {
      if (spawnError !== undefined) {
        await terminate()
        throw new Error(`influxd could not be started (${spawnError.message}): ${INSTALL_HINT}`)
      }
      if (exited(proc)) {
        dropWatchdog()
        throw new Error(
          `influxd exited (code ${proc.exitCode}, signal ${proc.signalCode}) before answering /ping on ${url}. ` +
            `Output:\n${outputTail}`,
        )
      }
      if ((await ping(url)) === 204) return
      if (Date.now() > deadline) {
        const tail = outputTail
        await terminate()
        throw new Error(
          `influxd did not answer /ping on ${url} within ${startTimeoutMs} ms. Output:\n${tail}`,
        )
      }
      await delay(50)
    }
  }

  const start = async (): Promise<void> => {
    if (removed) throw new Error('influxd was stopped and its data removed; start a new one')
    const proc = server.proc
    if (proc !== undefined && !exited(proc)) {
      if (!sigkilled) return
      // Signalled by kill() but not reaped yet: wait, or the new server would find its port taken.
      await waitForExit(proc)
    }
    sigkilled = false
    await spawnOnce()
  }

  const query = async (statement: string, db?: string): Promise<InfluxResponse> => {
    const params = new URLSearchParams({ q: statement })
    if (db !== undefined) params.set('db', db)
    return respond(await fetch(`${url}/query`, { method: 'POST', body: params, headers: authHeader }))
  }

  const write = async (
    db: string,
    lines: string,
    params: Record<string, string> = {},
  ): Promise<InfluxResponse> => {
    const search = new URLSearchParams({ db, precision: 'ms', ...params })
    return respond(
      await fetch(`${url}/write?${search}`, { method: 'POST', body: lines, headers: authHeader }),
    )
  }

  const fail = async (error: unknown): Promise<never> => {
    await terminate()
    live.delete(server)
    rmSync(dir, { recursive: true, force: true })
    throw error
  }

  // Another process may take the free port found before influxd binds it: try a few times.
  for (let attempt = 1; ; attempt++) {
    port = await freePort()
    const rpcPort = await freePort()
    url = `http://127.0.0.1:${port}`
    writeFileSync(configPath, configText(dir, port, rpcPort, options.auth !== undefined))
    try {
      await spawnOnce()
      break
    } catch (err) {
      await terminate()
      if (!/address already in use/i.test(outputTail) || attempt >= 3) await fail(err)
    }
  }

  if (options.auth !== undefined) {
    // 1.x lets anyone create the first admin user while none exists.
    const { username, password } = options.auth
    const res = await query(
      `CREATE USER "${username.replace(/["\\]/g, '\\$&')}" WITH PASSWORD '${password.replace(/['\\]/g, '\\$&')}' WITH ALL PRIVILEGES`,
    )
    if (res.status !== 200 || res.text.includes('"error"'))
      await fail(new Error(`could not create the admin user: ${res.text}`))
  }
  if (options.database !== undefined) {
    const res = await query(`CREATE DATABASE "${options.database.replace(/["\\]/g, '\\$&')}"`)
    if (res.status !== 200 || res.text.includes('"error"')) {
      await fail(new Error(`could not create database ${options.database}: ${res.status} ${res.text}`))
    }
  }

  return {
    url,
    port,
    database: options.database,
    auth: options.auth,
    dir,
    get pid() {
      const proc = server.proc
      return proc === undefined || exited(proc) ? undefined : proc.pid
    },
    query,
    write,
    async stop() {
      await terminate()
      if (!removed) {
        removed = true
        rmSync(dir, { recursive: true, force: true })
        live.delete(server)
      }
    },
    halt: terminate,
    start,
    async restart() {
      await terminate()
      await start()
    },
    kill() {
      const proc = server.proc
      if (proc !== undefined && !exited(proc)) {
        proc.kill('SIGKILL')
        sigkilled = true
      }
      dropWatchdog()
    },
    async pause() {
      const pid = server.proc?.pid
      if (pid === undefined) throw new Error('influxd is not running')
      server.proc?.kill('SIGSTOP')
      // Threads stop as the scheduler gets to them: until then one of them may still answer a request.
      await waitForThreads(pid, (states) => states.every((s) => s === 'T' || s === 't'), 'stop')
    },
    async resume() {
      const pid = server.proc?.pid
      if (pid === undefined) throw new Error('influxd is not running')
      server.proc?.kill('SIGCONT')
      await waitForThreads(pid, (states) => states.every((s) => s !== 'T'), 'resume')
    },
  }
}
