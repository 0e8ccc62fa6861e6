import { join } from 'node:path'
import closeWithGrace from 'close-with-grace'
import { pino } from 'pino'
import { ConfigError } from '../firmware-contracts/index.ts'
import { loadPlatformConfig } from './config.ts'
import { startPlatform } from './platform.ts'

// The one place that reads the environment, listens and exits.
let config: ReturnType<typeof loadPlatformConfig>
try {
  config = loadPlatformConfig(process.env)
} catch (err) {
  if (err instanceof ConfigError) {
    process.stderr.write(`${err.message}\nFix the variables above and start again (README: Configuration).\n`)
    process.exit(78)
  }
  throw err
}

/**
 * A listener that could not bind, named by its variable: the error itself only says `listen EADDRINUSE …
 * 127.0.0.1:1883` (from the broker thread as text, with no code left on it).
 */
function listenProblem(err: unknown): string | undefined {
  const m = /listen (EADDRINUSE|EACCES|EADDRNOTAVAIL)\b.*?(\S+):(\d+)\s*$/.exec(
    err instanceof Error ? err.message : '',
  )
  if (!m) return undefined
  const [, code, host, port] = m
  const variable = [
    ['MQTT_PORT', config.broker.port],
    ['MQTT_WS_PORT', config.broker.wsPort],
    ['MQTT_TLS_PORT', config.broker.tls?.port],
    ['HTTP_PORT', config.dashboard.port],
  ].find(([, p]) => String(p) === port)?.[0]
  const what =
    code === 'EADDRINUSE'
      ? 'is already in use (another process, or another instance of the platform)'
      : code === 'EACCES'
        ? 'needs privileges this process does not have (ports below 1024)'
        : 'is not an address of this machine'
  return `${variable ?? 'a listener'} ${port} on ${host} ${what}`
}

const log = pino({ level: config.logLevel, base: undefined })
let failed = false
const platform = await startPlatform(config, log, {
  // Without its broker thread the platform takes no readings: stop gracefully (flushing what was accepted)
  // and exit non-zero so the supervisor restarts it.
  onFatal: () => {
    failed = true
    process.kill(process.pid, 'SIGTERM')
  },
}).catch((err: unknown) => {
  const problem = listenProblem(err)
  log.fatal({ err }, problem ? `platform failed to start: ${problem}` : 'platform failed to start')
  process.exit(1)
})

const store =
  platform.store.kind === 'influxdb'
    ? platform.store.description
    : `embedded DuckDB store (${config.ingest.dataDir})`
process.stdout.write(
  [
    '',
    'Kota sensor platform is running',
    `  Store:         ${store}`,
    `  MQTT:          ${platform.mqttUrl}`,
    // Tokens stay out of this banner, which service managers keep in their journals: it says where they are.
    `  Wall display:  ${config.dashboard.displayToken === undefined ? platform.wallUrl : `${platform.httpUrl}/?token=<DISPLAY_TOKEN>`}`,
    `  REST API:      ${platform.httpUrl}/api/v1  (Authorization: Bearer ${config.dashboard.apiToken === undefined ? `$(cat ${join(config.ingest.dataDir, 'api-token')})` : '$API_TOKEN'})`,
    `  Health:        ${platform.httpUrl}/api/v1/health   Metrics: ${platform.httpUrl}/metrics`,
    `  Simulator:     ${platform.fleet ? `${platform.fleet.deviceIds.length} simulated devices (SIM_ENABLED=false to switch off)` : 'off'}`,
    '  Ctrl-C stops it gracefully.',
    '',
  ].join('\n'),
)

const KEPT = 'readings not yet in the store stay in the spool for the next start'
closeWithGrace(
  {
    delay: 20_000,
    logger: { error: (err: unknown) => log.error({ err }, 'graceful stop failed') },
    onSecondSignal: (signal) => log.warn({ signal }, `second signal: exiting now; ${KEPT}`),
    onTimeout: (delayMs) => log.error({ delayMs }, `graceful stop took too long: exiting now; ${KEPT}`),
  },
  async ({ signal, err }) => {
    if (err) log.error({ err }, 'stopping after an error')
    else log.info({ signal }, 'stopping')
    await platform.stop()
    log.info('stopped; every accepted reading is in the store or the spool')
    // close-with-grace exits 0 after a signal, whatever process.exitCode says; a platform that lost its broker
    // thread must exit non-zero, or a supervisor's Restart=on-failure leaves it down.
    if (failed) process.exit(1)
  },
)
