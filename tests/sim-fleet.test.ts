import { randomBytes } from 'node:crypto'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { pino } from 'pino'
import { expect, it } from 'vitest'
import { defineFleet } from '../device-sim/index.ts'
import { DeviceRegistry } from '../ingest/registry.ts'
import { startSimulatedFleet } from '../platform/sim-fleet.ts'

// The demo fleet's ids follow the same naming as real installations: a real device an installer
// registered under one of them keeps its secret, and the simulator does not publish in its name.
it('leaves a real device alone that holds a simulated device id, and takes over its own ones', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'sim-fleet-'))
  const registry = await DeviceRegistry.open({ path: join(dir, 'r.duckdb'), key: randomBytes(32) })
  try {
    const seed = 7
    const [taken, own] = defineFleet({ perKind: 1, seed })
    const real = await registry.register({ ...taken!, reportingIntervalMs: 60_000 }, 'wayan')
    const options = {
      registry,
      // Nothing listens there: the simulator only tries to connect, and this test is about the registry.
      mqttUrl: 'mqtt://127.0.0.1:9',
      perKind: 1,
      intervalMs: 60_000,
      seed,
      log: pino({ level: 'silent' }),
    }
    const first = await startSimulatedFleet(options)
    await first.stop()
    expect(first.deviceIds).not.toContain(taken!.id)
    expect(first.deviceIds).toContain(own!.id)
    expect(registry.verify(taken!.id, real.secret)?.id).toBe(taken!.id)
    // Its own devices are still its own at the next start (their secrets rotate to the simulator).
    const second = await startSimulatedFleet(options)
    await second.stop()
    expect(second.deviceIds).toContain(own!.id)
  } finally {
    await registry.close()
    rmSync(dir, { recursive: true, force: true })
  }
})
