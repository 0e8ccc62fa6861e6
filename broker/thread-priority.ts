import { readdirSync, readFileSync, readlinkSync } from 'node:fs'
import { getPriority, setPriority } from 'node:os'
import type { ThreadSchedTimes } from '../ingest/metrics.ts'

export type { ThreadSchedTimes }

/**
 * The kernel's id of the calling thread (Linux: `/proc/thread-self`), or undefined where there is none.
 * Each thread must ask for itself; Node.js gives no other way to name a thread to the scheduler.
 */
export function currentThreadId(): number | undefined {
  try {
    const tid = Number(readlinkSync('/proc/thread-self').split('/').pop())
    return Number.isInteger(tid) && tid > 0 ? tid : undefined
  } catch {
    return undefined
  }
}

/**
 * Reads a thread's scheduler times from Linux's `schedstat` (`/proc/thread-self/schedstat` for the caller,
 * `/proc/<pid>/task/<tid>/schedstat` for another); undefined where there is none (other systems, or a
 * kernel built without schedstats).
 */
export function readThreadSchedTimes(path = '/proc/thread-self/schedstat'): ThreadSchedTimes | undefined {
  try {
    const [cpuNs, waitNs] = readFileSync(path, 'utf8').trim().split(/\s+/).map(Number)
    if (!Number.isFinite(cpuNs) || !Number.isFinite(waitNs)) return undefined
    return { cpuSeconds: cpuNs! / 1e9, waitSeconds: waitNs! / 1e9 }
  } catch {
    return undefined
  }
}

/**
 * The fields of a Linux /proc `stat` file after the command name, so that index 0 is the state (field 3 of
 * proc(5)), 11 and 12 are user and system CPU ticks, 16 the nice value. The name in parentheses may
 * contain spaces: the fields start after its closing parenthesis.
 */
export function procStatFields(path: string): string[] {
  const stat = readFileSync(path, 'utf8')
  return stat.slice(stat.lastIndexOf(')') + 2).split(' ')
}

/**
 * V8's platform threads: its worker pool (four by default, `--v8-pool-size`) and the delayed-task scheduler,
 * which Node.js starts before any other thread. The broker thread's garbage collection runs on them: a
 * parallel scavenge waits until every helper that took a share of it is done. At a lower priority, on a busy
 * machine, those helpers waited for a core while the broker thread waited for them. They are the process's
 * oldest threads after the main one (Linux: by start time in `/proc/self/task/<tid>/stat`); empty elsewhere.
 */
export function v8PlatformThreadIds(count = 5): number[] {
  if (process.platform !== 'linux') return []
  let tids: number[]
  try {
    tids = readdirSync('/proc/self/task').map(Number)
  } catch {
    return []
  }
  const started: Array<{ tid: number; start: number }> = []
  for (const tid of tids) {
    if (tid === process.pid) continue
    try {
      // Index 19 is field 22 of proc(5), the start time.
      started.push({ tid, start: Number(procStatFields(`/proc/self/task/${tid}/stat`)[19]) })
    } catch {
      // The thread ended between the listing and the read: not one of V8's, which live as long as the process.
    }
  }
  return started
    .sort((a, b) => a.start - b.start || a.tid - b.tid)
    .slice(0, count)
    .map((t) => t.tid)
}

/** Threads of every running acknowledgement path in this process, with how many callers keep each. */
const keptThreads = new Map<number, number>()

export interface BackgroundPriorityOptions {
  /** Nice value (1–19) for every thread of this process except the `keep` ones. */
  readonly nice: number
  /** Threads left at their priority: the acknowledgement path (broker thread, spool sync thread). */
  readonly keep: readonly number[]
  /** How often threads started since (libuv's pool, DuckDB's workers) are looked for. */
  readonly sweepMs: number
}

export interface BackgroundPriority {
  /** Threads lowered so far. */
  readonly lowered: number
  stop(): void
}

/**
 * Lowers the scheduling priority of the platform's background threads (store writer, live stream, alarm
 * engine, queries, DuckDB, gzip) under the acknowledgement path's. On a loaded machine the kernel then runs
 * the broker thread and the spool's fdatasync as soon as they wake, and a store batch or a dashboard tick
 * waits instead of a device's PUBACK. Nothing is starved: a niced thread still gets every idle cycle, and
 * when the background falls behind, the spool's back-pressure slows devices, which frees the CPU for it.
 *
 * Linux only (per-thread nice through `setpriority` on a thread id); elsewhere it does nothing. Lowering a
 * priority needs no privilege. Threads the process starts later inherit their creator's nice value, but
 * some are created by threads left at normal priority, hence the periodic sweep.
 */
export function lowerBackgroundPriority(options: BackgroundPriorityOptions): BackgroundPriority {
  if (process.platform !== 'linux' || options.keep.length === 0) return { lowered: 0, stop: () => undefined }
  // Shared by every platform in the process (tests start several): none lowers another's broker thread.
  for (const tid of options.keep) keptThreads.set(tid, (keptThreads.get(tid) ?? 0) + 1)
  let lowered = 0
  let stopped = false
  const sweep = () => {
    let tids: string[]
    try {
      tids = readdirSync('/proc/self/task')
    } catch {
      return
    }
    for (const name of tids) {
      const tid = Number(name)
      if (keptThreads.has(tid)) continue
      try {
        if (getPriority(tid) < options.nice) {
          setPriority(tid, options.nice)
          lowered++
        }
      } catch {
        // The thread ended between the listing and the call.
      }
    }
  }
  sweep()
  const timer = setInterval(sweep, options.sweepMs)
  timer.unref()
  return {
    get lowered() {
      return lowered
    },
    stop: () => {
      // Once only: a second stop must not release a thread another running platform still keeps.
      if (stopped) return
      stopped = true
      clearInterval(timer)
      for (const tid of options.keep) {
        const n = (keptThreads.get(tid) ?? 1) - 1
        if (n > 0) keptThreads.set(tid, n)
        else keptThreads.delete(tid)
      }
    },
  }
}
