import type { Logger } from 'pino'
import { defineFleet, startSimulator } from '../device-sim/index.ts'
import type { DeviceRegistry } from '../ingest/registry.ts'

export interface SimulatedFleet {
  readonly deviceIds: readonly string[]
  stop(): Promise<void>
}

/**
 * The demo fleet that `npm start` runs. Its devices are registered like real ones; since a secret is
 * shown only once, the platform rotates each simulated device's secret at every start and hands it to
 * the simulator, which is the only holder.
 */
export async function startSimulatedFleet(options: {
  registry: DeviceRegistry
  mqttUrl: string
  perKind: number
  intervalMs: number
  seed: number
  log: Logger
}): Promise<SimulatedFleet> {
  const specs = defineFleet({ perKind: options.perKind, seed: options.seed }).map((s) => ({
    ...s,
    reportingIntervalMs: options.intervalMs,
  }))
  const devices = []
  for (const spec of specs) {
    const existing = options.registry.get(spec.id)
    if (existing !== undefined && existing.status !== 'provisioned' && existing.status !== 'active') continue
    const { secret } = existing
      ? await options.registry.rotateSecret(spec.id, 'simulator')
      : await options.registry.register(spec, 'simulator')
    devices.push({ ...spec, secret })
  }
  const sim = await startSimulator({
    url: options.mqttUrl,
    devices,
    seed: options.seed,
    intervalMs: options.intervalMs,
  })
  options.log.info({ devices: devices.length, intervalMs: options.intervalMs }, 'simulated fleet started')
  return { deviceIds: devices.map((d) => d.id), stop: () => sim.stop() }
}
