import { mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Worker } from 'node:worker_threads'
import { afterEach, describe, expect, it } from 'vitest'
import {
  currentThreadId,
  lowerBackgroundPriority,
  readThreadSchedTimes,
  v8PlatformThreadIds,
} from '../broker/thread-priority.ts'
import { ConfigError } from '../firmware-contracts/index.ts'
import { loadPlatformConfig } from '../platform/config.ts'
import { eventually, startTestPlatform, type TestPlatform } from './helpers/platform.ts'
import { procStatFields } from './helpers/process.ts'

// The acknowledgement path (broker thread, spool sync thread) keeps its priority; the platform's other
// threads are lowered so that on a loaded machine the kernel runs PUBACKs first. Linux only.
const linux = process.platform === 'linux'

/** Nice value of a thread of this process, from /proc (field 19 of stat). */
function niceOf(tid: number): number {
  return Number(procStatFields(`/proc/self/task/${tid}/stat`)[16])
}

const threads = () => readdirSync('/proc/self/task').map(Number)

let platform: TestPlatform | undefined
const workers: Worker[] = []
afterEach(async () => {
  await platform?.close()
  platform = undefined
  for (const w of workers.splice(0)) await w.terminate()
})

describe('background thread priority', () => {
  it.runIf(linux)(
    'leaves the broker, spool and V8 threads at normal priority and lowers all others',
    async () => {
      const before = niceOf(process.pid)
      platform = await startTestPlatform({ env: { PLATFORM_BACKGROUND_NICE: '7' } })
      const ack = platform.ackThreadIds
      expect(ack).toHaveLength(2)
      const v8 = v8PlatformThreadIds()
      expect(v8).toHaveLength(5)
      for (const tid of [...ack, ...v8]) {
        expect(threads()).toContain(tid)
        expect(niceOf(tid)).toBe(before)
      }
      const others = threads().filter((t) => !ack.includes(t) && !v8.includes(t))
      expect(others).toContain(process.pid)
      for (const tid of others) expect(niceOf(tid)).toBeGreaterThanOrEqual(7)
    },
  )

  it.runIf(linux)('lowers threads that a kept thread starts later, on its next sweep', async () => {
    // A kept thread's children inherit its normal priority: only the sweep can find them.
    const parent = new Worker(
      `
      const { parentPort, Worker } = require('node:worker_threads')
      const { readlinkSync } = require('node:fs')
      const tid = () => Number(readlinkSync('/proc/thread-self').split('/').pop())
      parentPort.postMessage({ self: tid() })
      parentPort.on('message', () => {
        const child = new Worker("require('node:worker_threads').parentPort.postMessage(Number(require('node:fs').readlinkSync('/proc/thread-self').split('/').pop())); setInterval(() => {}, 1000)", { eval: true })
        child.on('message', (t) => parentPort.postMessage({ child: t }))
      })
      `,
      { eval: true },
    )
    workers.push(parent)
    const next = () => new Promise<Record<string, number>>((r) => parent.once('message', r))
    const { self } = await next()
    const priority = lowerBackgroundPriority({ nice: 12, keep: [self!], sweepMs: 50 })
    try {
      expect(niceOf(currentThreadId()!)).toBeGreaterThanOrEqual(12)
      const start = niceOf(self!)
      expect(start).toBeLessThan(12)
      const asked = next()
      parent.postMessage('start')
      const { child } = await asked
      await eventually(async () => {
        expect(niceOf(child!)).toBeGreaterThanOrEqual(12)
        return true
      })
      expect(niceOf(self!)).toBe(start)
      expect(priority.lowered).toBeGreaterThan(0)
    } finally {
      priority.stop()
    }
  })

  it.runIf(linux)('keeps a thread another caller still keeps, however often one caller stops', async () => {
    const worker = new Worker(
      "const { parentPort } = require('node:worker_threads'); parentPort.postMessage(Number(require('node:fs').readlinkSync('/proc/thread-self').split('/').pop())); setInterval(() => {}, 1000)",
      { eval: true },
    )
    workers.push(worker)
    const tid = await new Promise<number>((r) => worker.once('message', r))
    const start = niceOf(tid)
    expect(start).toBeLessThan(15)
    const a = lowerBackgroundPriority({ nice: 15, keep: [tid], sweepMs: 60_000 })
    const b = lowerBackgroundPriority({ nice: 15, keep: [tid], sweepMs: 60_000 })
    a.stop()
    a.stop()
    // A third caller's sweep lowers everything not kept: b still keeps the worker.
    const c = lowerBackgroundPriority({ nice: 15, keep: [currentThreadId()!], sweepMs: 60_000 })
    try {
      expect(niceOf(tid)).toBe(start)
    } finally {
      b.stop()
      c.stop()
    }
  })

  it.runIf(linux)(
    'names V8’s platform threads: the oldest after the main one, where garbage collection runs',
    () => {
      const v8 = v8PlatformThreadIds()
      expect(v8).toHaveLength(5)
      expect(v8).not.toContain(process.pid)
      const startOf = (tid: number) => Number(procStatFields(`/proc/self/task/${tid}/stat`)[19])
      const newest = Math.max(...v8.map(startOf))
      for (const tid of threads().filter((t) => t !== process.pid && !v8.includes(t))) {
        expect(startOf(tid)).toBeGreaterThanOrEqual(newest)
      }
      // Garbage with survivors makes V8 scavenge and mark in parallel: its helpers get CPU time, and they
      // are the threads named (ticks of 10 ms, so the loop runs until they show some or 20 s pass).
      const cpuOf = (tid: number) => {
        const f = procStatFields(`/proc/self/task/${tid}/stat`)
        return Number(f[11]) + Number(f[12])
      }
      const before = v8.map(cpuOf)
      let kept: unknown[] = []
      const deadline = Date.now() + 20_000
      while (Date.now() < deadline) {
        for (let i = 0; i < 200_000; i++) kept.push({ i, s: `reading ${i}` })
        if (kept.length > 2_000_000) kept = []
        if (v8.some((tid, i) => cpuOf(tid) > before[i]!)) break
      }
      expect(v8.some((tid, i) => cpuOf(tid) > before[i]!)).toBe(true)
    },
  )

  it('takes 0 (off) to 19 from PLATFORM_BACKGROUND_NICE and refuses anything else', () => {
    expect(loadPlatformConfig({}).backgroundNice).toBe(10)
    expect(loadPlatformConfig({ PLATFORM_BACKGROUND_NICE: '0' }).backgroundNice).toBe(0)
    for (const bad of ['-1', '20', 'high', '2.5']) {
      let error: unknown
      try {
        loadPlatformConfig({ PLATFORM_BACKGROUND_NICE: bad })
      } catch (err) {
        error = err
      }
      expect(error).toBeInstanceOf(ConfigError)
      expect((error as Error).message).toContain('PLATFORM_BACKGROUND_NICE')
    }
  })
})

describe('thread scheduler times', () => {
  it('reads CPU and run-queue wait from a schedstat file, and nothing from a missing or odd one', () => {
    const dir = mkdtempSync(join(tmpdir(), 'schedstat-'))
    try {
      const file = join(dir, 'schedstat')
      writeFileSync(file, '1500000000 250000000 42\n')
      expect(readThreadSchedTimes(file)).toEqual({ cpuSeconds: 1.5, waitSeconds: 0.25 })
      writeFileSync(file, 'not numbers\n')
      expect(readThreadSchedTimes(file)).toBeUndefined()
      expect(readThreadSchedTimes(join(dir, 'missing'))).toBeUndefined()
    } finally {
      rmSync(dir, { recursive: true, force: true })
    }
  })

  it.runIf(linux)('reads the calling thread’s own times by default', () => {
    const times = readThreadSchedTimes()
    expect(times?.cpuSeconds).toBeGreaterThan(0)
    expect(times?.waitSeconds).toBeGreaterThanOrEqual(0)
  })
})
