import type { Logger } from 'pino'
import { defineFleet, startSimulator } from '../device-sim/index.ts'
import type { DeviceRegistry } from '../ingest/registry.ts'

/** The actor the simulated fleet registers its devices as; only devices it registered are its own. */
const SIMULATOR = 'simulator'

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
    // An id an installer registered is a real device, whatever it is called: rotating its secret would lock
    // it out and let the simulator publish under its name.
    if (existing !== undefined && existing.createdBy !== SIMULATOR) {
      options.log.warn(
        { deviceId: spec.id, createdBy: existing.createdBy },
        'simulated device id taken by a real device; skipped',
      )
      continue
    }
    if (existing !== undefined && existing.status !== 'provisioned' && existing.status !== 'active') continue
    const { secret } = existing
      ? await options.registry.rotateSecret(spec.id, SIMULATOR)
      : await options.registry.register(spec, SIMULATOR)
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
