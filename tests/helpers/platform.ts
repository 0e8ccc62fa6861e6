import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import mqtt, { type IClientOptions, type MqttClient } from 'mqtt'
import { pino } from 'pino'
import WebSocket from 'ws'
import { type ServerMessage, ServerMessageSchema } from '../../dashboard-api/protocol.ts'
import { loadPlatformConfig } from '../../platform/config.ts'
import { type Platform, startPlatform } from '../../platform/platform.ts'
import type { Influxd } from './influxd.ts'

export const TEST_API_TOKEN = 'test-api-token-0123456789abcdef'

export interface TestPlatform extends Platform {
  readonly dataDir: string
  api<T = unknown>(method: string, path: string, body?: unknown): Promise<{ status: number; body: T }>
  /** Stops the platform and removes its data directory. */
  close(): Promise<void>
}

/**
 * The whole platform in this process on OS-assigned ports, with its data in a temp dir; InfluxDB (1.x,
 * a throwaway `influxd`) when given, the embedded store otherwise.
 */
export async function startTestPlatform(
  options: { influx?: Influxd; env?: Record<string, string>; dataDir?: string } = {},
): Promise<TestPlatform> {
  const dataDir = options.dataDir ?? mkdtempSync(join(tmpdir(), 'platform-test-'))
  const env: Record<string, string> = {
    MQTT_HOST: '127.0.0.1',
    MQTT_PORT: '0',
    HTTP_HOST: '127.0.0.1',
    HTTP_PORT: '0',
    DATA_DIR: dataDir,
    SIM_ENABLED: 'false',
    LOG_LEVEL: 'silent',
    API_TOKEN: TEST_API_TOKEN,
    LIVE_INTERVAL_MS: '100',
    WRITER_MAX_WAIT_MS: '10',
    ...(options.influx ? { INFLUX_URL: options.influx.url, INFLUX_API: 'v1', INFLUX_DATABASE: 'city' } : {}),
    ...options.env,
  }
  const log = pino({ level: process.env.TEST_LOG_LEVEL ?? 'silent' })
  const removeOwnDir = () => {
    if (options.dataDir === undefined) rmSync(dataDir, { recursive: true, force: true })
  }
  let platform: Awaited<ReturnType<typeof startPlatform>>
  try {
    platform = await startPlatform(loadPlatformConfig(env), log)
  } catch (err) {
    // A platform that refused to start (what some tests expect) leaves no temp dir behind.
    removeOwnDir()
    throw err
  }
  return {
    ...platform,
    dataDir,
    async api<T>(method: string, path: string, body?: unknown) {
      const res = await fetch(`${platform.httpUrl}${path}`, {
        method,
        headers: {
          authorization: `Bearer ${TEST_API_TOKEN}`,
          ...(body === undefined ? {} : { 'content-type': 'application/json' }),
        },
        body: body === undefined ? undefined : JSON.stringify(body),
      })
      const text = await res.text()
      return { status: res.status, body: (text ? JSON.parse(text) : undefined) as T }
    },
    async close() {
      await platform.stop({ flushTimeoutMs: 5000 })
      removeOwnDir()
    },
  }
}

export const RIVER_DEVICE = {
  id: 'dps-river-901',
  kind: 'river-level',
  name: 'Tukad Badung — Jl. Gajah Mada',
  regency: 'Kota Denpasar',
  district: 'Denpasar Barat',
  latitude: -8.6562,
  longitude: 115.2118,
  reportingIntervalMs: 60_000,
  thresholds: { waspada: 150, siaga: 200, awas: 250 },
} as const

/** Registers a device through the REST API, as an installer would, and returns its secret. */
export async function registerDevice(
  platform: TestPlatform,
  device: Record<string, unknown>,
): Promise<string> {
  const res = await platform.api<{ secret: string }>('POST', '/api/v1/devices', device)
  if (res.status !== 201) throw new Error(`register failed: ${res.status} ${JSON.stringify(res.body)}`)
  return res.body.secret
}

/** A real mqtt.js device client; rejects with the CONNACK error when refused. */
export function connectDevice(
  url: string,
  id: string,
  secret: string,
  extra: IClientOptions = {},
): Promise<MqttClient> {
  return new Promise((resolve, reject) => {
    const client = mqtt.connect(url, {
      clientId: id,
      username: id,
      password: secret,
      reconnectPeriod: 0,
      connectTimeout: 5000,
      ...extra,
    })
    client.once('connect', () => resolve(client))
    client.once('error', (err) => {
      client.end(true)
      reject(err)
    })
  })
}

/** A live-stream client that keeps every server message and lets a test wait for one. */
export async function openLive(httpUrl: string, query = '') {
  const messages: ServerMessage[] = []
  const waiters: Array<{ match: (m: ServerMessage) => boolean; resolve: (m: ServerMessage) => void }> = []
  const ws = new WebSocket(`${httpUrl.replace('http', 'ws')}/api/v1/live${query}`)
  ws.on('message', (data) => {
    const msg = ServerMessageSchema.parse(JSON.parse(String(data)))
    messages.push(msg)
    for (const w of [...waiters]) {
      if (w.match(msg)) {
        waiters.splice(waiters.indexOf(w), 1)
        w.resolve(msg)
      }
    }
  })
  await new Promise<void>((resolve, reject) => {
    ws.once('open', () => resolve())
    ws.once('error', reject)
  })
  return {
    ws,
    messages,
    waitFor(match: (m: ServerMessage) => boolean, timeoutMs = 10_000): Promise<ServerMessage> {
      const seen = messages.find(match)
      if (seen) return Promise.resolve(seen)
      return new Promise((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error('timed out waiting for a live message')), timeoutMs)
        waiters.push({
          match,
          resolve: (m) => {
            clearTimeout(timer)
            resolve(m)
          },
        })
      })
    },
    close: () => ws.close(),
  }
}

/** Polls until `fn` returns a value other than undefined (bounded). */
export async function eventually<T>(
  fn: () => Promise<T | undefined>,
  timeoutMs = 10_000,
  everyMs = 50,
): Promise<T> {
  const deadline = Date.now() + timeoutMs
  let last: unknown
  while (Date.now() < deadline) {
    try {
      const v = await fn()
      if (v !== undefined) return v
    } catch (err) {
      last = err
    }
    await new Promise((r) => setTimeout(r, everyMs))
  }
  throw new Error(`condition not met within ${timeoutMs} ms${last ? `: ${String(last)}` : ''}`)
}

export function publishQos1(client: MqttClient, topic: string, payload: string | Buffer): Promise<void> {
  return new Promise((resolve, reject) =>
    client.publish(topic, payload, { qos: 1 }, (err) => (err ? reject(err) : resolve())),
  )
}
