import { z } from 'zod'

/**
 * Ids that name members of `Object.prototype` or prototype-pollution gadgets: a registry or cache keyed by
 * device id in a plain object would find something for them that no one registered.
 */
export const RESERVED_DEVICE_IDS = ['constructor', 'prototype'] as const

/**
 * Device ids are lowercase so that a topic, a file name, an InfluxDB tag and a SQL value all agree on one
 * spelling; 3 to 64 characters, starting and ending with a letter or digit, not one of RESERVED_DEVICE_IDS.
 */
export const DEVICE_ID_PATTERN = /^(?!(?:constructor|prototype)$)[a-z0-9](?:[a-z0-9-]{1,62})[a-z0-9]$/
/** The longest device id DEVICE_ID_PATTERN allows; it bounds the topic of every device message. */
export const MAX_DEVICE_ID_LENGTH = 64
export const DeviceIdSchema = z
  .string()
  .regex(
    DEVICE_ID_PATTERN,
    'device id: 3-64 characters of a-z, 0-9 and "-", starting and ending with a letter or digit (not "constructor" or "prototype")',
  )
export type DeviceId = z.infer<typeof DeviceIdSchema>

export const TOPIC_ROOT = 'devices'

/** Channels under `devices/<deviceId>/`. `up` channels are published by the device, `down` ones by the platform. */
export const CHANNELS = {
  telemetry: { path: 'telemetry', direction: 'up' },
  status: { path: 'status', direction: 'up' },
  cmdAck: { path: 'cmd/ack', direction: 'up' },
  config: { path: 'config', direction: 'down' },
  cmd: { path: 'cmd', direction: 'down' },
} as const
export type Channel = keyof typeof CHANNELS

const CHANNEL_BY_PATH: ReadonlyMap<string, Channel> = new Map(
  (Object.keys(CHANNELS) as Channel[]).map((c) => [CHANNELS[c].path, c]),
)

export function topicFor(deviceId: string, channel: Channel): string {
  return `${TOPIC_ROOT}/${deviceId}/${CHANNELS[channel].path}`
}

export type TopicParseResult =
  | { ok: true; deviceId: DeviceId; channel: Channel }
  | { ok: false; code: 'bad_topic'; message: string }

export const MAX_TOPIC_LENGTH = 256

/** Parses a topic of the device grammar. Never throws: odd input is an answer, not an exception. */
export function parseTopic(topic: unknown): TopicParseResult {
  if (typeof topic !== 'string' || topic.length === 0 || topic.length > MAX_TOPIC_LENGTH) {
    return {
      ok: false,
      code: 'bad_topic',
      message: `topic must be a non-empty string of at most ${MAX_TOPIC_LENGTH} characters`,
    }
  }
  const first = topic.indexOf('/')
  const second = first < 0 ? -1 : topic.indexOf('/', first + 1)
  if (second < 0 || topic.slice(0, first) !== TOPIC_ROOT) {
    return {
      ok: false,
      code: 'bad_topic',
      message: `topic must look like ${TOPIC_ROOT}/<deviceId>/<channel>`,
    }
  }
  const deviceId = topic.slice(first + 1, second)
  if (!DEVICE_ID_PATTERN.test(deviceId)) {
    return { ok: false, code: 'bad_topic', message: 'topic holds an invalid device id' }
  }
  const channel = CHANNEL_BY_PATH.get(topic.slice(second + 1))
  if (channel === undefined) {
    return {
      ok: false,
      code: 'bad_topic',
      message: `unknown channel; expected one of ${[...CHANNEL_BY_PATH.keys()].join(', ')}`,
    }
  }
  return { ok: true, deviceId, channel }
}
