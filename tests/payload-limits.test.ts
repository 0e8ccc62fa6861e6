import { readFileSync } from 'node:fs'
import type { MqttClient } from 'mqtt'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { ConfigError } from '../firmware-contracts/index.ts'
import { loadPlatformConfig } from '../platform/config.ts'
import {
  connectDevice,
  eventually,
  RIVER_DEVICE,
  registerDevice,
  startTestPlatform,
  type TestPlatform,
} from './helpers/platform.ts'

/**
 * INGEST_MAX_PAYLOAD_BYTES against MQTT_MAX_PACKET_BYTES, as the README states them: a payload the
 * ingest limit allows always fits in a packet the broker takes; above the ingest limit, a packet within
 * the broker's cap is acknowledged and rejected `too_large`; a packet over the cap closes the connection.
 */

// What a QoS 1 PUBLISH carries besides its payload in its remaining length (MQTT 3.1.1): the topic's
// two-byte length, the topic, the packet id. Spelled out here rather than imported, so that the platform's
// own figure is checked against the broker rather than against itself.
const overhead = (deviceId: string) => 2 + `devices/${deviceId}/telemetry`.length + 2
const LONGEST_ID = `dps-river-${'x'.repeat(54)}`
const WORST_OVERHEAD = overhead(LONGEST_ID)
const MAX_PACKET = 1024

function configProblems(env: Record<string, string>): ConfigError['problems'] {
  try {
    loadPlatformConfig(env)
  } catch (error) {
    expect(error).toBeInstanceOf(ConfigError)
    return (error as ConfigError).problems
  }
  return []
}

describe('payload limits at start', () => {
  it('refuses an INGEST_MAX_PAYLOAD_BYTES that a packet of MQTT_MAX_PACKET_BYTES cannot carry', () => {
    // The ingest default (64 KiB) under a 1 KiB broker cap.
    const problems = configProblems({ MQTT_MAX_PACKET_BYTES: String(MAX_PACKET) })
    expect(problems.map((p) => p.variable)).toEqual(['INGEST_MAX_PAYLOAD_BYTES'])
    expect(problems[0]!.message).toContain(`expected at most ${MAX_PACKET - WORST_OVERHEAD}`)
    expect(problems[0]!.message).toContain('MQTT_MAX_PACKET_BYTES')
    // Equal limits leave no room for the topic either.
    expect(
      configProblems({ MQTT_MAX_PACKET_BYTES: '4096', INGEST_MAX_PAYLOAD_BYTES: '4096' }).map(
        (p) => p.variable,
      ),
    ).toEqual(['INGEST_MAX_PAYLOAD_BYTES'])
  })

  it('takes the largest payload limit that still fits, and the defaults', () => {
    const fits = String(MAX_PACKET - WORST_OVERHEAD)
    expect(
      configProblems({ MQTT_MAX_PACKET_BYTES: String(MAX_PACKET), INGEST_MAX_PAYLOAD_BYTES: fits }),
    ).toEqual([])
    expect(
      configProblems({
        MQTT_MAX_PACKET_BYTES: String(MAX_PACKET),
        INGEST_MAX_PAYLOAD_BYTES: String(+fits + 1),
      }),
    ).toHaveLength(1)
    expect(configProblems({})).toEqual([])
  })

  it('states the same headroom in the README', () => {
    const readme = readFileSync(new URL('../README.md', import.meta.url), 'utf8')
    expect(readme).toContain(`\`INGEST_MAX_PAYLOAD_BYTES\` + ${WORST_OVERHEAD} (`)
    expect(readme).toContain(`at most \`MQTT_MAX_PACKET_BYTES\` − ${WORST_OVERHEAD}, checked at start`)
  })

  it('reports the mismatch with every other bad variable at once', () => {
    const problems = configProblems({ MQTT_MAX_PACKET_BYTES: String(MAX_PACKET), HTTP_PORT: 'http' })
    expect(problems.map((p) => p.variable).sort()).toEqual(['HTTP_PORT', 'INGEST_MAX_PAYLOAD_BYTES'])
  })
})

describe('payload limits on a real broker', () => {
  let platform: TestPlatform
  const shortId = 'dps-river-77'

  beforeAll(async () => {
    platform = await startTestPlatform({
      env: {
        MQTT_MAX_PACKET_BYTES: String(MAX_PACKET),
        INGEST_MAX_PAYLOAD_BYTES: String(MAX_PACKET - WORST_OVERHEAD),
      },
    })
  })
  afterAll(async () => platform?.close())

  /** A valid reading padded with spaces (still valid JSON) to exactly `bytes`. */
  const padded = (bytes: number) => JSON.stringify({ v: 1, seq: 1, waterLevel: 100 }).padEnd(bytes, ' ')

  /** Resolves 'acked' on PUBACK, 'closed' when the broker drops the connection first. */
  function publish(client: MqttClient, id: string, payload: string): Promise<'acked' | 'closed'> {
    return new Promise((resolve) => {
      client.once('close', () => resolve('closed'))
      client.publish(`devices/${id}/telemetry`, payload, { qos: 1 }, (err) => {
        if (!err) resolve('acked')
      })
    })
  }

  async function device(id: string): Promise<MqttClient> {
    const secret = await registerDevice(platform, { ...RIVER_DEVICE, id })
    return connectDevice(platform.mqttUrl, id, secret)
  }

  it('carries the largest allowed payload from the longest device id', async () => {
    const client = await device(LONGEST_ID)
    try {
      expect(await publish(client, LONGEST_ID, padded(MAX_PACKET - WORST_OVERHEAD))).toBe('acked')
      await eventually(async () =>
        (await platform.store.queryDevice(query(LONGEST_ID))).length ? true : undefined,
      )
    } finally {
      client.end(true)
    }
  })

  it('acknowledges and rejects as too_large a payload between the two limits', async () => {
    const client = await device(shortId)
    try {
      const bytes = MAX_PACKET - overhead(shortId)
      expect(bytes).toBeGreaterThan(MAX_PACKET - WORST_OVERHEAD)
      expect(await publish(client, shortId, padded(bytes))).toBe('acked')
      const rejected = await eventually(async () =>
        platform.rejections.latest(100).find((r) => r.deviceId === shortId),
      )
      expect(rejected).toMatchObject({ code: 'too_large', payloadBytes: bytes })
    } finally {
      client.end(true)
    }
  })

  it('closes the connection on a packet over MQTT_MAX_PACKET_BYTES, with no rejection record', async () => {
    const id = 'dps-river-78'
    const client = await device(id)
    try {
      expect(await publish(client, id, padded(MAX_PACKET - overhead(id) + 1))).toBe('closed')
      expect(platform.rejections.latest(100).filter((r) => r.deviceId === id)).toEqual([])
    } finally {
      client.end(true)
    }
  })
})

function query(device: string) {
  return { kind: 'river-level' as const, device, from: 0, to: Date.now() + 3_600_000, limit: 10 }
}
