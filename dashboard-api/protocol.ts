import { z } from 'zod'
import { DeviceKindSchema } from '../firmware-contracts/index.ts'

/**
 * The live stream's wire contract, version 1, shared by the server and the wall display (both validate
 * with these schemas). The server sends `hello`, then a `snapshot` of every device in scope with the
 * rollups and active alarms of that scope, then coalesced `delta`s of the devices that changed, at most
 * every `intervalMs` (a device leaving the scope, decommissioned or moved, brings a new `snapshot`). A client sends `subscribe` (any time; a new snapshot follows) and `ping`. A bad
 * client message gets an `error` frame; the connection stays open. Dead clients (no pong to the
 * WebSocket ping) and clients too slow to read their updates are closed.
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

/** `[mean, min, max]` of a rolling window, or null when the window holds no reading. */
export const WindowTupleSchema = z.tuple([z.number(), z.number(), z.number()]).nullable()
export const MetricWindowsSchema = z.object({
  m1: WindowTupleSchema,
  m15: WindowTupleSchema,
  h1: WindowTupleSchema,
})
export type MetricWindows = z.infer<typeof MetricWindowsSchema>

/**
 * `online`: reporting; `stale`: connected but no reading for 3 reporting intervals; `offline`: the broker or
 * the device's last will says it is gone; `unknown`: never heard from since the server started.
 */
export const DeviceLiveStatusSchema = z.enum(['online', 'stale', 'offline', 'unknown'])
export type DeviceLiveStatus = z.infer<typeof DeviceLiveStatusSchema>
export const STALE_AFTER_INTERVALS = 3

export const IspuLiveSchema = z.object({
  value: z.number(),
  category: z.enum(['baik', 'sedang', 'tidak-sehat', 'sangat-tidak-sehat', 'berbahaya']),
  critical: z.string(),
  subIndices: z.record(z.string(), z.number()),
  /** Version of the break-point table, e.g. `P.14/2020`. */
  table: z.string(),
  /** What the concentrations are: the live view uses the rolling 1-hour means. */
  basis: z.literal('mean-1h'),
})
export type IspuLive = z.infer<typeof IspuLiveSchema>

export const RiverLevelSchema = z.enum(['normal', 'waspada', 'siaga', 'awas'])
export const RiverLiveSchema = z.object({
  level: RiverLevelSchema,
  /** Jakarta's numbering of the same level: `Siaga 4` (normal) … `Siaga 1` (awas). */
  jakarta: z.string(),
  waterLevel: z.number(),
  /** cm per hour over the last 15 minutes (least squares over minute means); null with too little data. */
  riseCmPerHour: z.number().nullable(),
  thresholds: z.object({ waspada: z.number(), siaga: z.number(), awas: z.number() }),
})
export type RiverLive = z.infer<typeof RiverLiveSchema>

export const OccupancyLiveSchema = z.object({
  people: z.number(),
  capacity: z.number().nullable(),
  ratio: z.number().nullable(),
})
export type OccupancyLive = z.infer<typeof OccupancyLiveSchema>

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
  status: DeviceLiveStatusSchema,
  /** Last time anything was heard from the device (reading or status), ms since epoch. */
  lastSeen: z.number().nullable(),
  /** Server receive time of the last reading that arrived (late ones included). */
  lastReadingAt: z.number().nullable(),
  /** Newest reading by observation time: a late reading never replaces a newer one here. */
  latest: LatestReadingSchema.nullable(),
  /** Rolling windows per metric (battery and rssi left out), ending at the newest observation. */
  windows: z.record(z.string(), MetricWindowsSchema),
  /** The kind's main metric over the last hour, one mean per minute, oldest first (null: no reading). */
  spark: z.object({ metric: z.string(), points: z.array(z.number().nullable()) }).nullable(),
  ispu: IspuLiveSchema.nullable(),
  river: RiverLiveSchema.nullable(),
  occupancy: OccupancyLiveSchema.nullable(),
})
export type DeviceLive = z.infer<typeof DeviceLiveSchema>
/** A device's view without its windows and sparkline: what alarm rules, derived alarms and rollups read. */
export type DeviceSummary = Omit<DeviceLive, 'windows' | 'spark'>

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
  rate_limited:
    'The client sent too many messages; they are ignored until it slows down (one such frame a run; a flood closes the socket, 1008)',
} as const
export type LiveErrorCode = keyof typeof LIVE_ERROR_CODES

/**
 * An active condition. Version 1 carries conditions derived from the aggregates (`source: "derived"`);
 * rule-based alarms with acknowledgement will arrive with `source: "rule"` and the optional fields.
 */
export const AlarmSchema = z.object({
  id: z.string(),
  source: z.enum(['derived', 'rule']),
  type: z.enum(['river', 'ispu', 'occupancy', 'offline', 'stale', 'rise', 'battery', 'completeness']),
  severity: z.enum(['warning', 'critical']),
  deviceId: z.string(),
  kind: DeviceKindSchema,
  name: z.string(),
  regency: z.string(),
  district: z.string(),
  /** River level, ISPU category, or the device status. */
  level: z.string(),
  value: z.number().nullable(),
  since: z.number(),
  acknowledgedAt: z.number().nullable().optional(),
  /** Rule alarms only: lifecycle state, priority, who acknowledged, and the SLA deadline to acknowledge. */
  state: z.enum(['raised', 'acknowledged', 'cleared', 'closed']).optional(),
  priority: z.enum(['emergency', 'high', 'warning', 'technical']).optional(),
  acknowledgedBy: z.string().nullable().optional(),
  slaDueAt: z.number().nullable().optional(),
  escalatedAt: z.number().nullable().optional(),
})
export type Alarm = z.infer<typeof AlarmSchema>

export const RollupSchema = z.object({
  group: z.enum(['district', 'regency', 'kind']),
  key: z.string(),
  /** The regency a district belongs to. */
  regency: z.string().optional(),
  devices: z.number(),
  online: z.number(),
  stale: z.number(),
  offline: z.number(),
  worstIspu: z
    .object({ deviceId: z.string(), value: z.number(), category: z.string(), critical: z.string() })
    .nullable(),
  highestRiver: z
    .object({
      deviceId: z.string(),
      level: RiverLevelSchema,
      waterLevel: z.number(),
      riseCmPerHour: z.number().nullable(),
    })
    .nullable(),
  busiestMarket: z
    .object({
      deviceId: z.string(),
      people: z.number(),
      capacity: z.number().nullable(),
      ratio: z.number().nullable(),
    })
    .nullable(),
  alarms: z.number(),
})
export type Rollup = z.infer<typeof RollupSchema>

export const ServerMessageSchema = z.discriminatedUnion('type', [
  z.object({
    v: z.literal(1),
    type: z.literal('hello'),
    now: z.number(),
    intervalMs: z.number(),
    ispuTable: z.string().optional(),
  }),
  z.object({
    v: z.literal(1),
    type: z.literal('snapshot'),
    now: z.number(),
    devices: z.array(DeviceLiveSchema),
    rollups: z.array(RollupSchema),
    alarms: z.array(AlarmSchema),
  }),
  /** Devices that changed, latest state each; `rollups` and `alarms`, when present, replace the lists. */
  z.object({
    v: z.literal(1),
    type: z.literal('delta'),
    now: z.number(),
    devices: z.array(DeviceLiveSchema),
    rollups: z.array(RollupSchema).optional(),
    alarms: z.array(AlarmSchema).optional(),
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
