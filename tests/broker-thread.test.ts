import { existsSync } from 'node:fs'
import { createServer } from 'node:net'
import { afterEach, describe, expect, it } from 'vitest'
import { topicFor } from '../firmware-contracts/index.ts'
import {
  connectDevice,
  eventually,
  publishQos1,
  RIVER_DEVICE,
  registerDevice,
  startTestPlatform,
  type TestPlatform,
} from './helpers/platform.ts'

// The broker, validation and the spool log run on their own thread (broker/thread.ts). These tests check
// the seams between the threads; the end-to-end behaviour is covered by e2e, ingest-* and broker-* tests.
let platform: TestPlatform | undefined
afterEach(async () => {
  await platform?.close()
  platform = undefined
})

const metric = (text: string, name: string) =>
  Number(text.match(new RegExp(`^${name} (\\S+)`, 'm'))?.[1] ?? Number.NaN)

describe('broker thread', () => {
  it('serves its metrics in /metrics next to the platform thread’s, and the spool gauges follow it', async () => {
    platform = await startTestPlatform()
    const secret = await registerDevice(platform, RIVER_DEVICE)
    const device = await connectDevice(platform.mqttUrl, RIVER_DEVICE.id, secret)
    await publishQos1(
      device,
      topicFor(RIVER_DEVICE.id, 'telemetry'),
      // Stamped 1.5 s before it is sent: the delay histogram places it between 1 and 2 s.
      JSON.stringify({ v: 1, ts: Date.now() - 1500, seq: 1, waterLevel: 120.5, battery: 88 }),
    )
    // Without a timestamp of its own: nothing to measure a delay from.
    await publishQos1(
      device,
      topicFor(RIVER_DEVICE.id, 'telemetry'),
      JSON.stringify({ v: 1, seq: 2, waterLevel: 120.6 }),
    )
    const text = await eventually(async () => {
      const t = await (await fetch(`${platform!.httpUrl}/metrics`)).text()
      // Counted on the broker thread...
      expect(metric(t, 'broker_connected_clients')).toBe(1)
      expect(metric(t, 'ingest_readings_accepted_total\\{kind="river-level"\\}')).toBe(2)
      expect(metric(t, 'ingest_spool_group_commit_seconds_count')).toBeGreaterThanOrEqual(1)
      // ...and on the platform thread, from the same registry exposition.
      expect(metric(t, 'ingest_readings_stored_total')).toBe(2)
      return t
    })
    expect(metric(text, 'ingest_reading_delay_seconds_count')).toBe(1)
    // Every group commit is timed twice: as the broker thread saw it, and on the disk's own thread.
    const commits = metric(text, 'ingest_spool_group_commit_seconds_count')
    expect(metric(text, 'ingest_spool_fdatasync_seconds_count')).toBe(commits)
    expect(metric(text, 'ingest_spool_fdatasync_seconds_sum')).toBeGreaterThan(0)
    expect(metric(text, 'ingest_spool_fdatasync_seconds_sum')).toBeLessThanOrEqual(
      metric(text, 'ingest_spool_group_commit_seconds_sum'),
    )
    // The sync thread's wait for a core, apart from the disk's time and within the commit's.
    expect(metric(text, 'ingest_spool_sync_cpu_wait_seconds_count')).toBe(commits)
    expect(metric(text, 'ingest_spool_sync_cpu_wait_seconds_sum')).toBeGreaterThanOrEqual(0)
    expect(
      metric(text, 'ingest_spool_fdatasync_seconds_sum') +
        metric(text, 'ingest_spool_sync_cpu_wait_seconds_sum'),
    ).toBeLessThanOrEqual(metric(text, 'ingest_spool_group_commit_seconds_sum') + 1e-5)
    expect(metric(text, 'ingest_reading_delay_seconds_bucket\\{le="1"\\}')).toBe(0)
    expect(metric(text, 'ingest_reading_delay_seconds_bucket\\{le="2"\\}')).toBe(1)
    if (existsSync('/proc/thread-self/schedstat')) {
      // The broker thread's own times: some CPU, less than the whole process's.
      const cpu = metric(text, 'broker_thread_cpu_seconds_total')
      expect(cpu).toBeGreaterThan(0)
      expect(cpu).toBeLessThan(metric(text, 'process_cpu_seconds_total'))
      expect(metric(text, 'broker_thread_runqueue_wait_seconds_total')).toBeGreaterThanOrEqual(0)
    }
    expect(metric(text, 'ingest_spool_bytes')).toBeGreaterThan(0)
    expect(metric(text, 'nodejs_eventloop_lag_p99_seconds')).toBeGreaterThanOrEqual(0)
    // Each metric appears once: the two threads' values are summed, not listed twice.
    expect(text.match(/^# TYPE broker_connected_clients /gm)).toHaveLength(1)
    device.end(true)
    await eventually(async () => {
      const t = await (await fetch(`${platform!.httpUrl}/metrics`)).text()
      expect(metric(t, 'broker_connected_clients')).toBe(0)
      return true
    })
  })

  it('refuses to start, naming the reason, when the broker thread cannot listen', async () => {
    const taken = createServer()
    await new Promise<void>((r) => taken.listen(0, '127.0.0.1', () => r()))
    const port = (taken.address() as { port: number }).port
    try {
      await expect(startTestPlatform({ env: { MQTT_PORT: String(port) } })).rejects.toThrow(/EADDRINUSE/)
    } finally {
      taken.close()
    }
  })
})
