import { join } from 'node:path'
import { setLogger } from '@influxdata/influxdb-client'
import type { Logger } from 'pino'
import type { IngestConfig } from './config.ts'
import { createDuckDbStore } from './store/duckdb.ts'
import { createInfluxStore } from './store/influx.ts'
import type { TimeSeriesStore } from './store/types.ts'

/** InfluxDB when configured, otherwise the embedded store in the data directory. */
export function createStore(config: IngestConfig, log: Logger): TimeSeriesStore {
  const influx = config.influx
  if (influx === undefined) return createDuckDbStore({ path: join(config.dataDir, 'readings.duckdb') })
  // The client logs each retry to the console; the writer already reports failures, so keep these at debug.
  // (The client's logger is process-wide.)
  setLogger({
    error: (message, err) =>
      log.debug({ err: err instanceof Error ? err.message : err }, `influxdb client: ${message}`),
    warn: (message, err) =>
      log.debug({ err: err instanceof Error ? err.message : err }, `influxdb client: ${message}`),
  })
  return influx.apiVersion === 'v2'
    ? createInfluxStore({
        url: influx.url,
        apiVersion: 'v2',
        token: influx.token,
        org: influx.org,
        bucket: influx.bucket,
        timeoutMs: influx.timeoutMs,
      })
    : createInfluxStore({
        url: influx.url,
        apiVersion: 'v1',
        database: influx.database,
        retentionPolicy: influx.retentionPolicy,
        username: influx.username,
        password: influx.password,
        timeoutMs: influx.timeoutMs,
      })
}
