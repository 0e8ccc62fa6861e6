import { readFile } from 'node:fs/promises'
import { z } from 'zod'
import {
  type CliCommand,
  CliUsageError,
  parseCliArgs,
  parseDevicesFile,
  selectDevices,
  USAGE,
} from './cli-args.ts'
import { enabledFaults, FaultsSchema } from './faults.ts'
import { defineFleet, type SimDeviceWithSecret } from './fleet.ts'
import { runLoad } from './load.ts'
import { ProvisionError, provisionFleet } from './provision.ts'
import { type SimLogger, type SimStats, startSimulator } from './simulator.ts'

/** Entry point of `npm run sim`: the only place that reads argv, writes to the terminal or exits. */

const EXIT_USAGE = 2
/** The platform's API refused or failed provisioning (bad token, server error, unreachable). */
const EXIT_API = 1

/** Defines the fleet and registers it (or rotates the secrets of devices already registered). */
async function provisionFromApi(
  command: Extract<CliCommand, { mode: 'simulate' }>,
  log: SimLogger,
): Promise<SimDeviceWithSecret[]> {
  const api = command.api!
  const specs = defineFleet({ perKind: command.perKind ?? 2, seed: command.seed, kinds: command.kinds }).map(
    // The registry should expect the interval the devices will really report at (it needs at least 1 s).
    (spec) =>
      command.intervalMs !== undefined && command.intervalMs >= 1000
        ? { ...spec, reportingIntervalMs: command.intervalMs }
        : spec,
  )
  process.stderr.write(`provisioning ${specs.length} devices through ${api.url}\n`)
  const result = await provisionFleet(specs, { api: api.url, token: api.token, waitMs: api.waitMs }, log)
  process.stderr.write(
    `provisioned: ${result.registered} registered, ${result.rotated} secrets rotated` +
      (result.skipped.length > 0 ? `, ${result.skipped.length} skipped (revoked or decommissioned)` : '') +
      '\n',
  )
  return result.devices
}

/** Resolves once the text is handed to the OS: to a pipe, stdout is asynchronous and exit() would cut it. */
function write(stream: NodeJS.WriteStream, text: string): Promise<void> {
  return new Promise((resolve) => stream.write(text, () => resolve()))
}

function makeLogger(verbose: boolean): SimLogger {
  return (level, message) => {
    if (!verbose && (level === 'debug' || level === 'info')) return
    process.stderr.write(`${new Date().toISOString()} ${level.padEnd(5)} ${message}\n`)
  }
}

function statsLine(s: SimStats): string {
  const faults = Object.entries(s.faults)
    .filter(([, n]) => n > 0)
    .map(([name, n]) => `${name}=${n}`)
    .join(' ')
  return [
    `${s.connected}/${s.devices} connected`,
    `readings ${s.readings}`,
    `published ${s.published}`,
    `acked ${s.acked} (${s.ackedReadings} readings to store, ${s.expectedRejections} to reject)`,
    `errors ${s.errors}`,
    `reconnects ${s.reconnects}`,
    `backlog ${s.backlog}`,
    faults === '' ? '' : `faults ${faults}`,
    s.selfCheckFailures > 0 ? `SELF-CHECK FAILURES ${s.selfCheckFailures}` : '',
  ]
    .filter((part) => part !== '')
    .join(', ')
}

async function readDevices(file: string, kinds: readonly string[], perKind: number | undefined) {
  let text: string
  try {
    text = await readFile(file, 'utf8')
  } catch (err) {
    throw new CliUsageError(
      `cannot read --devices ${file}: ${err instanceof Error ? err.message : String(err)}`,
    )
  }
  const devices = selectDevices(parseDevicesFile(text, file), kinds, perKind)
  if (devices.length === 0) throw new CliUsageError(`${file} has no devices of the kinds ${kinds.join(', ')}`)
  return devices
}

/** Resolves on the first SIGINT/SIGTERM; a second one exits at once. */
function interrupted(): Promise<string> {
  return new Promise((resolve) => {
    let count = 0
    const onSignal = (signal: string) => {
      count++
      if (count > 1) process.exit(130)
      process.stderr.write(`\n${signal}: stopping (again to exit at once)\n`)
      resolve(signal)
    }
    process.on('SIGINT', () => onSignal('SIGINT'))
    process.on('SIGTERM', () => onSignal('SIGTERM'))
  })
}

async function main(): Promise<number> {
  const command = parseCliArgs(process.argv.slice(2), process.env)
  switch (command.mode) {
    case 'help':
      await write(process.stdout, USAGE)
      return 0
    case 'print-fleet': {
      const fleet = defineFleet({ perKind: command.perKind, seed: command.seed, kinds: command.kinds })
      await write(process.stdout, `${JSON.stringify(fleet, null, 2)}\n`)
      return 0
    }
    case 'load': {
      const devices = await readDevices(command.devicesFile, command.kinds, command.perKind)
      const log = makeLogger(command.verbose)
      process.stderr.write(
        `load: ${devices.length} devices, ${command.ratePerSec} msg/s for ${command.durationMs} ms against ${command.url}\n`,
      )
      const report = await runLoad({
        url: command.url,
        devices,
        ratePerSec: command.ratePerSec,
        durationMs: command.durationMs,
        qos: command.qos,
        payloadKind: command.payloadKind,
        maxInflightPerDevice: command.maxInflight,
        seed: command.seed,
        log,
      })
      const { ackedSeqs, ...summary } = report
      const complete = Object.values(ackedSeqs).filter((s) => s.size > 0).length
      if (command.json) {
        await write(process.stdout, `${JSON.stringify({ ...summary, devicesWithAcks: complete }, null, 2)}\n`)
      } else {
        const l = report.latency
        await write(
          process.stdout,
          [
            `devices     ${report.devices.connected}/${report.devices.requested} connected in ${report.connectMs} ms` +
              (report.firstConnectError ? ` (first error: ${report.firstConnectError})` : ''),
            `messages    sent ${report.sent} of ${report.target.messages}, acked ${report.acked}, unacked ${report.unacked}`,
            `rate        ${report.achievedRatePerSec} msg/s over ${report.sendMs} ms (target ${report.target.ratePerSec})`,
            `puback      p50 ${l.p50Ms.toFixed(2)} ms, p90 ${l.p90Ms.toFixed(2)} ms, p99 ${l.p99Ms.toFixed(2)} ms, max ${l.maxMs.toFixed(2)} ms`,
            `generator   ${report.cpu.percentOfOneCore}% of one core (user ${report.cpu.userMs} ms, system ${report.cpu.systemMs} ms)`,
            `problems    errors ${report.errors}, disconnects ${report.disconnects}, stalled ticks ${report.stalls}`,
            '',
          ].join('\n'),
        )
      }
      return report.devices.connected === 0 ? 1 : 0
    }
    case 'simulate': {
      const log = makeLogger(command.verbose)
      let devices: SimDeviceWithSecret[]
      if (command.api !== undefined) {
        devices = await provisionFromApi(command, log)
        if (devices.length === 0) {
          await write(process.stderr, 'npm run sim: no device left to simulate\n')
          return EXIT_API
        }
      } else if (command.devicesFile !== undefined) {
        devices = await readDevices(command.devicesFile, command.kinds, command.perKind)
      } else {
        throw new CliUsageError('--devices <file> or --api <url> is required')
      }
      const faults = FaultsSchema.parse(command.faults)
      const on = enabledFaults(faults)
      process.stderr.write(
        `simulating ${devices.length} devices against ${command.url}` +
          (on.length > 0 ? `, faults: ${on.join(', ')}` : '') +
          '; Ctrl-C to stop\n',
      )
      const sim = await startSimulator({
        url: command.url,
        devices,
        intervalMs: command.intervalMs,
        seed: command.seed,
        qos: command.qos,
        faults,
        timeScale: command.timeScale,
        signalStart: command.signalStart,
        log,
      })
      const ticker =
        command.statsEveryMs > 0
          ? setInterval(() => process.stdout.write(`${statsLine(sim.stats())}\n`), command.statsEveryMs)
          : undefined
      const stopSignal = interrupted()
      const limit =
        command.durationMs === undefined
          ? undefined
          : new Promise<string>((resolve) =>
              setTimeout(() => resolve('duration reached'), command.durationMs),
            )
      await Promise.race(limit === undefined ? [stopSignal] : [stopSignal, limit])
      clearInterval(ticker)
      await sim.stop()
      await write(process.stdout, `${statsLine(sim.stats())}\n`)
      return sim.stats().selfCheckFailures > 0 ? 1 : 0
    }
  }
}

main().then(
  (code) => process.exit(code),
  async (err: unknown) => {
    if (err instanceof CliUsageError || err instanceof z.ZodError) {
      const message = err instanceof z.ZodError ? z.prettifyError(err) : err.message
      await write(process.stderr, `npm run sim: ${message}\nTry --help.\n`)
      process.exit(EXIT_USAGE)
    }
    if (err instanceof ProvisionError) {
      await write(process.stderr, `npm run sim: ${err.message}\n`)
      process.exit(EXIT_API)
    }
    await write(
      process.stderr,
      `npm run sim: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`,
    )
    process.exit(1)
  },
)
