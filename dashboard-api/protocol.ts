import { z } from 'zod'
import { DeviceKindSchema } from '../firmware-contracts/index.ts'

/**
 * The live stream's wire contract, version 1, shared by the server and the wall display. The server sends
 * `hello`, then a `snapshot` of every device in scope, then coalesced `delta`s of the devices that changed.
 */
export const LIVE_PROTOCOL_VERSION = 1
export const LIVE_PATH = '/api/v1/live'

export const LatestReadingSchema = z.object({
  ts: z.number(),
  receivedAt: z.number(),
  seq: z.number(),
  fields: z.record(z.string(), z.number()),
})
export type LatestReading = z.infer<typeof LatestReadingSchema>

export const DeviceLiveSchema = z.object({
  id: z.string(),
  kind: DeviceKindSchema,
  name: z.string(),
  regency: z.string(),
  district: z.string(),
  latitude: z.number(),
  longitude: z.number(),
  reportingIntervalMs: z.number(),
  thresholds: z.record(z.string(), z.number()).optional(),
  online: z.boolean(),
  /** Last time anything was heard from the device (reading or status), ms since epoch. */
  lastSeen: z.number().nullable(),
  latest: LatestReadingSchema.nullable(),
})
export type DeviceLive = z.infer<typeof DeviceLiveSchema>

export const ScopeSchema = z.strictObject({
  regency: z.array(z.string().max(80)).max(50).optional(),
  district: z.array(z.string().max(80)).max(200).optional(),
  kind: z.array(DeviceKindSchema).max(10).optional(),
  device: z.array(z.string().max(64)).max(1000).optional(),
})
export type Scope = z.infer<typeof ScopeSchema>

export const ClientMessageSchema = z.discriminatedUnion('type', [
  z.strictObject({ v: z.literal(1).optional(), type: z.literal('subscribe'), scope: ScopeSchema }),
  z.strictObject({ v: z.literal(1).optional(), type: z.literal('ping'), id: z.string().max(64).optional() }),
])
export type ClientMessage = z.infer<typeof ClientMessageSchema>

export const LIVE_ERROR_CODES = {
  bad_message: 'The message is not valid JSON or does not match the protocol',
  too_slow: 'The client did not read its updates fast enough',
  unauthorized: 'A display token is required',
} as const
export type LiveErrorCode = keyof typeof LIVE_ERROR_CODES

export const ServerMessageSchema = z.discriminatedUnion('type', [
  z.object({ v: z.literal(1), type: z.literal('hello'), now: z.number(), intervalMs: z.number() }),
  z.object({
    v: z.literal(1),
    type: z.literal('snapshot'),
    now: z.number(),
    devices: z.array(DeviceLiveSchema),
  }),
  z.object({
    v: z.literal(1),
    type: z.literal('delta'),
    now: z.number(),
    devices: z.array(DeviceLiveSchema),
  }),
  z.object({ v: z.literal(1), type: z.literal('pong'), now: z.number(), id: z.string().optional() }),
  z.object({
    v: z.literal(1),
    type: z.literal('error'),
    code: z.enum(Object.keys(LIVE_ERROR_CODES) as [LiveErrorCode, ...LiveErrorCode[]]),
    message: z.string(),
  }),
])
export type ServerMessage = z.infer<typeof ServerMessageSchema>

export function inScope(scope: Scope, d: Pick<DeviceLive, 'id' | 'kind' | 'regency' | 'district'>): boolean {
  return (
    (scope.regency === undefined || scope.regency.includes(d.regency)) &&
    (scope.district === undefined || scope.district.includes(d.district)) &&
    (scope.kind === undefined || scope.kind.includes(d.kind)) &&
    (scope.device === undefined || scope.device.includes(d.id))
  )
}
