import { getHeapSpaceStatistics } from 'node:v8'
import { Worker } from 'node:worker_threads'
import { afterEach, describe, expect, it } from 'vitest'
import { ConfigError } from '../firmware-contracts/index.ts'
import { loadPlatformConfig } from '../platform/config.ts'
import { eventually, startTestPlatform, type TestPlatform } from './helpers/platform.ts'

// The broker thread holds every reading in flight until its commit is on disk; a young generation sized
// for that (PLATFORM_BROKER_SEMI_SPACE_MB) keeps it from scavenging and promoting them over and over.
// The size is the broker thread's alone: V8's flags are process-wide, so they must be put back.

const MiB = 1024 ** 2
let platform: TestPlatform | undefined
afterEach(async () => {
  await platform?.close()
  platform = undefined
})

async function metric(name: string): Promise<number | undefined> {
  const text = await (await fetch(`${platform!.httpUrl}/metrics`)).text()
  const m = text.match(new RegExp(`^${name.replace(/[{}"]/g, (c) => `\\${c}`)} (\\S+)$`, 'm'))
  return m ? Number(m[1]) : undefined
}

/** The new space of a worker started now, after it allocated enough to be scavenged a few times. */
function freshWorkerNewSpace(): Promise<number> {
  return new Promise((resolve, reject) => {
    const worker = new Worker(
      `const { parentPort } = require('node:worker_threads')
       const v8 = require('node:v8')
       let keep = []
       for (let i = 0; i < 2e6; i++) { keep.push({ i }); if (keep.length > 1000) keep = [] }
       parentPort.postMessage(v8.getHeapSpaceStatistics().find((s) => s.space_name === 'new_space').space_size)`,
      { eval: true },
    )
    worker.once('message', (size: number) => {
      void worker.terminate()
      resolve(size)
    })
    worker.once('error', reject)
  })
}

const mainNewSpace = () => getHeapSpaceStatistics().find((s) => s.space_name === 'new_space')!.space_size

describe('broker thread young generation', () => {
  it('has two semi-spaces of PLATFORM_BROKER_SEMI_SPACE_MB, and no other thread is changed', async () => {
    platform = await startTestPlatform({ env: { PLATFORM_BROKER_SEMI_SPACE_MB: '40' } })
    // V8 commits the second semi-space at the first scavenge; both sizes are beyond V8's default, whose
    // semi-spaces grow to 16 MiB at most.
    expect([40 * MiB, 80 * MiB]).toContain(await metric('broker_thread_young_generation_bytes'))
    // A worker started now, after allocating enough to grow its young generation, and this thread.
    expect(await freshWorkerNewSpace()).toBeLessThanOrEqual(2 * 16 * MiB)
    expect(mainNewSpace()).toBeLessThanOrEqual(2 * 16 * MiB)
  })

  it('is 64 MiB per semi-space by default and V8 decides with 0', async () => {
    platform = await startTestPlatform()
    expect([64 * MiB, 128 * MiB]).toContain(await metric('broker_thread_young_generation_bytes'))
    // Loaded before the thread's modules, as it must be (broker/quiet-debug.ts).
    expect(await metric('broker_thread_mqtt_packet_debug_quiet')).toBe(1)
    await platform.close()
    platform = await startTestPlatform({ env: { PLATFORM_BROKER_SEMI_SPACE_MB: '0' } })
    const size = await metric('broker_thread_young_generation_bytes')
    expect(size).toBeGreaterThan(0)
    expect(size).toBeLessThanOrEqual(2 * 16 * MiB)
  })

  it("counts the broker thread's garbage-collection pauses by kind", async () => {
    // A small young generation: loading the thread's modules alone fills it several times.
    platform = await startTestPlatform({ env: { PLATFORM_BROKER_SEMI_SPACE_MB: '1' } })
    // V8 hands GC entries to observers a little later than they happen.
    const scavenges = await eventually(() => metric('broker_thread_gc_pause_seconds_total{kind="scavenge"}'))
    expect(scavenges).toBeGreaterThan(0)
    expect(scavenges).toBeLessThan(60)
  })

  it('takes 0 to 256 from PLATFORM_BROKER_SEMI_SPACE_MB and refuses anything else', () => {
    expect(loadPlatformConfig({}).brokerSemiSpaceMb).toBe(64)
    expect(loadPlatformConfig({ PLATFORM_BROKER_SEMI_SPACE_MB: '0' }).brokerSemiSpaceMb).toBe(0)
    expect(loadPlatformConfig({ PLATFORM_BROKER_SEMI_SPACE_MB: '256' }).brokerSemiSpaceMb).toBe(256)
    for (const bad of ['-1', '257', '1.5', 'big']) {
      try {
        loadPlatformConfig({ PLATFORM_BROKER_SEMI_SPACE_MB: bad })
        expect.unreachable(`accepted ${JSON.stringify(bad)}`)
      } catch (error) {
        expect(error).toBeInstanceOf(ConfigError)
        expect((error as Error).message).toContain('PLATFORM_BROKER_SEMI_SPACE_MB')
      }
    }
  })
})
