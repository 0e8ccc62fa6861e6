import { type DuckDBAppender, type DuckDBConnection, DuckDBInstance } from '@duckdb/node-api'
import type { DeviceKind } from '../../firmware-contracts/index.ts'
import { appendRows } from '../../ingest/duckdb-append.ts'
import type { AlarmPriority } from './config.ts'
import type { AlarmType } from './rules.ts'

export const ALARM_STATES = ['raised', 'acknowledged', 'cleared', 'closed'] as const
export type AlarmState = (typeof ALARM_STATES)[number]

export const TRANSITION_ACTIONS = [
  'raised',
  'reopened',
  'level_changed',
  'escalated',
  'acknowledged',
  'commented',
  'cleared',
  'closed',
] as const
export type TransitionAction = (typeof TRANSITION_ACTIONS)[number]

export interface AlarmRecord {
  readonly id: string
  readonly deviceId: string
  readonly type: AlarmType
  readonly kind: DeviceKind
  name: string
  regency: string
  district: string
  level: string
  priority: AlarmPriority
  value: number | null
  state: AlarmState
  readonly raisedAt: number
  updatedAt: number
  /** Deadline to acknowledge; escalation happens once past it. */
  slaDueAt: number
  escalatedAt: number | null
  acknowledgedAt: number | null
  acknowledgedBy: string | null
  clearedAt: number | null
  clearedBy: string | null
  closedAt: number | null
  closedBy: string | null
}

export interface Transition {
  readonly alarmId: string
  /** 1, 2, … per alarm: receivers order webhook events by it. */
  readonly seq: number
  readonly at: number
  readonly actor: string
  readonly action: TransitionAction
  readonly fromState: AlarmState | null
  readonly toState: AlarmState
  readonly comment: string | null
  readonly detail: Record<string, unknown> | null
}

export const DELIVERY_STATUSES = ['pending', 'delivered', 'failed'] as const
export type DeliveryStatus = (typeof DELIVERY_STATUSES)[number]

export interface Delivery {
  /** Idempotency id: the same on every attempt (header `X-Kota-Delivery`). */
  readonly id: string
  readonly alarmId: string
  readonly transitionSeq: number
  readonly url: string
  readonly event: string
  readonly body: string
  status: DeliveryStatus
  attempts: number
  lastError: string | null
  lastStatusCode: number | null
  nextAttemptAt: number
  readonly createdAt: number
  deliveredAt: number | null
}

export interface AlarmFilter {
  readonly state?: readonly AlarmState[]
  readonly type?: AlarmType
  readonly priority?: AlarmPriority
  readonly kind?: DeviceKind
  readonly deviceId?: string
  readonly regency?: string
  readonly district?: string
  readonly from?: number
  readonly to?: number
  readonly limit: number
}

type Row = Record<string, unknown>
const num = (v: unknown) => (v == null ? null : Number(v))
const str = (v: unknown) => (v == null ? null : String(v))

function alarmOf(r: Row): AlarmRecord {
  return {
    id: String(r.id),
    deviceId: String(r.device_id),
    type: String(r.type) as AlarmType,
    kind: String(r.kind) as DeviceKind,
    name: String(r.name),
    regency: String(r.regency),
    district: String(r.district),
    level: String(r.level),
    priority: String(r.priority) as AlarmPriority,
    value: num(r.value),
    state: String(r.state) as AlarmState,
    raisedAt: Number(r.raised_at),
    updatedAt: Number(r.updated_at),
    slaDueAt: Number(r.sla_due_at),
    escalatedAt: num(r.escalated_at),
    acknowledgedAt: num(r.acknowledged_at),
    acknowledgedBy: str(r.acknowledged_by),
    clearedAt: num(r.cleared_at),
    clearedBy: str(r.cleared_by),
    closedAt: num(r.closed_at),
    closedBy: str(r.closed_by),
  }
}

function deliveryOf(r: Row): Delivery {
  return {
    id: String(r.id),
    alarmId: String(r.alarm_id),
    transitionSeq: Number(r.transition_seq),
    url: String(r.url),
    event: String(r.event),
    body: String(r.body),
    status: String(r.status) as DeliveryStatus,
    attempts: Number(r.attempts),
    lastError: str(r.last_error),
    lastStatusCode: num(r.last_status_code),
    nextAttemptAt: Number(r.next_attempt_at),
    createdAt: Number(r.created_at),
    deliveredAt: num(r.delivered_at),
  }
}

export interface AlarmWrite {
  readonly alarm: AlarmRecord
  readonly transition: Transition
  readonly deliveries: readonly Delivery[]
  /** A new alarm (else a change to a stored one). */
  readonly insert: boolean
}

const varchar = (a: DuckDBAppender, v: string | null) => (v === null ? a.appendNull() : a.appendVarchar(v))
const bigint = (a: DuckDBAppender, v: number | null) =>
  v === null ? a.appendNull() : a.appendBigInt(BigInt(Math.round(v)))
const int = (a: DuckDBAppender, v: number | null) => (v === null ? a.appendNull() : a.appendInteger(v))

/** In the column order of `alarms`. */
function appendAlarm(ap: DuckDBAppender, a: AlarmRecord) {
  for (const v of [a.id, a.deviceId, a.type, a.kind, a.name, a.regency, a.district, a.level, a.priority])
    ap.appendVarchar(v)
  if (a.value === null) ap.appendNull()
  else ap.appendDouble(a.value)
  ap.appendVarchar(a.state)
  for (const v of [a.raisedAt, a.updatedAt, a.slaDueAt, a.escalatedAt, a.acknowledgedAt]) bigint(ap, v)
  varchar(ap, a.acknowledgedBy)
  bigint(ap, a.clearedAt)
  varchar(ap, a.clearedBy)
  bigint(ap, a.closedAt)
  varchar(ap, a.closedBy)
}

/** In the column order of `alarm_transitions`. */
function appendTransition(ap: DuckDBAppender, t: Transition) {
  ap.appendVarchar(t.alarmId)
  ap.appendInteger(t.seq)
  bigint(ap, t.at)
  ap.appendVarchar(t.actor)
  ap.appendVarchar(t.action)
  varchar(ap, t.fromState)
  ap.appendVarchar(t.toState)
  varchar(ap, t.comment)
  varchar(ap, t.detail === null ? null : JSON.stringify(t.detail))
}

/** In the column order of `webhook_deliveries`. */
function appendDelivery(ap: DuckDBAppender, d: Delivery) {
  for (const v of [d.id, d.alarmId]) ap.appendVarchar(v)
  ap.appendInteger(d.transitionSeq)
  for (const v of [d.url, d.event, d.body, d.status]) ap.appendVarchar(v)
  ap.appendInteger(d.attempts)
  varchar(ap, d.lastError)
  int(ap, d.lastStatusCode)
  bigint(ap, d.nextAttemptAt)
  bigint(ap, d.createdAt)
  bigint(ap, d.deliveredAt)
}

/**
 * Alarms, their transitions (the audit trail) and webhook deliveries in their own DuckDB file. Writes are
 * serialised on one connection; an alarm's change and its transition commit together.
 */
export class AlarmStore {
  private chain: Promise<unknown> = Promise.resolve()

  private constructor(
    private readonly instance: DuckDBInstance,
    private readonly db: DuckDBConnection,
  ) {}

  static async open(path: string): Promise<AlarmStore> {
    const instance = await DuckDBInstance.create(path)
    const db = await instance.connect()
    await db.run(`CREATE TABLE IF NOT EXISTS alarms (
      id VARCHAR PRIMARY KEY, device_id VARCHAR NOT NULL, type VARCHAR NOT NULL, kind VARCHAR NOT NULL,
      name VARCHAR NOT NULL, regency VARCHAR NOT NULL, district VARCHAR NOT NULL, level VARCHAR NOT NULL,
      priority VARCHAR NOT NULL, value DOUBLE, state VARCHAR NOT NULL, raised_at BIGINT NOT NULL,
      updated_at BIGINT NOT NULL, sla_due_at BIGINT NOT NULL, escalated_at BIGINT, acknowledged_at BIGINT,
      acknowledged_by VARCHAR, cleared_at BIGINT, cleared_by VARCHAR, closed_at BIGINT, closed_by VARCHAR)`)
    await db.run(`CREATE TABLE IF NOT EXISTS alarm_transitions (
      alarm_id VARCHAR NOT NULL, seq INTEGER NOT NULL, occurred_at BIGINT NOT NULL, actor VARCHAR NOT NULL,
      action VARCHAR NOT NULL, from_state VARCHAR, to_state VARCHAR NOT NULL, comment VARCHAR, detail VARCHAR)`)
    await db.run(`CREATE TABLE IF NOT EXISTS webhook_deliveries (
      id VARCHAR PRIMARY KEY, alarm_id VARCHAR NOT NULL, transition_seq INTEGER NOT NULL, url VARCHAR NOT NULL,
      event VARCHAR NOT NULL, body VARCHAR NOT NULL, status VARCHAR NOT NULL, attempts INTEGER NOT NULL,
      last_error VARCHAR, last_status_code INTEGER, next_attempt_at BIGINT NOT NULL, created_at BIGINT NOT NULL,
      delivered_at BIGINT)`)
    // Per connection and never on disk: the rows of one batched UPDATE (see saveMany).
    await db.run('CREATE TEMP TABLE alarm_updates AS SELECT * FROM alarms LIMIT 0')
    return new AlarmStore(instance, db)
  }

  /** Every alarm not closed yet, oldest first. */
  loadOpen(): Promise<AlarmRecord[]> {
    return this.serial(async () =>
      (await this.db.runAndReadAll("SELECT * FROM alarms WHERE state <> 'closed' ORDER BY raised_at"))
        .getRowObjectsJS()
        .map(alarmOf),
    )
  }

  /** Highest transition seq per open alarm, to continue numbering after a restart. */
  lastSeqs(): Promise<Map<string, number>> {
    return this.serial(async () => {
      const rows = (
        await this.db.runAndReadAll(
          `SELECT t.alarm_id, max(t.seq) AS seq FROM alarm_transitions t JOIN alarms a ON a.id = t.alarm_id
            WHERE a.state <> 'closed' GROUP BY t.alarm_id`,
        )
      ).getRowObjectsJS()
      return new Map(rows.map((r) => [String(r.alarm_id), Number(r.seq)]))
    })
  }

  /**
   * Writes alarm changes (each alarm's new state, its transition and the webhook deliveries it causes) in
   * one transaction: all of them or none. A regency-wide power or network cut takes thousands of devices
   * offline at once: one transaction per alarm cost about 7 ms of CPU each (over a minute of a core for
   * 10,000 alarms, next to the ingest hot path); with appenders and one joined UPDATE, the engine's whole
   * pass costs about 0.1 ms per alarm (`npm run bench:alarms`). The caller must not change the records until
   * the returned promise settles.
   */
  saveMany(items: readonly AlarmWrite[]): Promise<void> {
    // Two changes of one alarm would need ordering inside the joined UPDATE: the caller batches one per alarm.
    const ids = new Set(items.map((i) => i.alarm.id))
    if (ids.size !== items.length)
      return Promise.reject(new Error('saveMany: more than one change of an alarm'))
    return this.serial(async () => {
      if (items.length === 0) return
      await this.db.run('BEGIN TRANSACTION')
      try {
        const inserts = items.filter((i) => i.insert)
        const updates = items.filter((i) => !i.insert)
        if (inserts.length > 0)
          await appendRows(this.db, 'alarms', inserts, (a, i) => appendAlarm(a, i.alarm))
        if (updates.length > 0) {
          // Rows to change go through a scratch table: one joined UPDATE instead of one statement per alarm.
          await appendRows(this.db, 'alarm_updates', updates, (a, i) => appendAlarm(a, i.alarm), {
            temp: true,
          })
          await this.db.run(`UPDATE alarms SET name = u.name, regency = u.regency, district = u.district,
              level = u.level, priority = u.priority, value = u.value, state = u.state, updated_at = u.updated_at,
              sla_due_at = u.sla_due_at, escalated_at = u.escalated_at, acknowledged_at = u.acknowledged_at,
              acknowledged_by = u.acknowledged_by, cleared_at = u.cleared_at, cleared_by = u.cleared_by,
              closed_at = u.closed_at, closed_by = u.closed_by
            FROM temp.alarm_updates u WHERE alarms.id = u.id`)
          await this.db.run('DELETE FROM temp.alarm_updates')
        }
        await appendRows(this.db, 'alarm_transitions', items, (a, i) => appendTransition(a, i.transition))
        const deliveries = items.flatMap((i) => i.deliveries)
        if (deliveries.length > 0) await appendRows(this.db, 'webhook_deliveries', deliveries, appendDelivery)
        await this.db.run('COMMIT')
      } catch (err) {
        await this.db.run('ROLLBACK').catch(() => undefined)
        throw err
      }
    })
  }

  updateDelivery(d: Delivery) {
    const s = { ...d }
    return this.serial(() =>
      this.db.run(
        `UPDATE webhook_deliveries SET status = $status, attempts = $attempts, last_error = $error,
          last_status_code = $code, next_attempt_at = $next, delivered_at = $delivered WHERE id = $id`,
        {
          id: s.id,
          status: s.status,
          attempts: s.attempts,
          error: s.lastError,
          code: s.lastStatusCode,
          next: s.nextAttemptAt,
          delivered: s.deliveredAt,
        },
      ),
    )
  }

  pendingDeliveries(): Promise<Delivery[]> {
    return this.serial(async () =>
      (
        await this.db.runAndReadAll(
          "SELECT * FROM webhook_deliveries WHERE status = 'pending' ORDER BY created_at, transition_seq",
        )
      )
        .getRowObjectsJS()
        .map(deliveryOf),
    )
  }

  get(id: string): Promise<AlarmRecord | undefined> {
    return this.serial(async () => {
      const rows = (
        await this.db.runAndReadAll('SELECT * FROM alarms WHERE id = $id', { id })
      ).getRowObjectsJS()
      return rows[0] === undefined ? undefined : alarmOf(rows[0])
    })
  }

  list(f: AlarmFilter): Promise<AlarmRecord[]> {
    const where: string[] = []
    const params: Record<string, string | number> = { limit: f.limit }
    if (f.state !== undefined && f.state.length > 0) {
      where.push(`state IN (${f.state.map((_, i) => `$state${i}`).join(', ')})`)
      f.state.forEach((s, i) => {
        params[`state${i}`] = s
      })
    }
    const eq = (col: string, key: string, v: string | undefined) => {
      if (v === undefined) return
      where.push(`${col} = $${key}`)
      params[key] = v
    }
    eq('type', 'type', f.type)
    eq('priority', 'priority', f.priority)
    eq('kind', 'kind', f.kind)
    eq('device_id', 'device', f.deviceId)
    eq('lower(regency)', 'regency', f.regency?.toLowerCase())
    eq('lower(district)', 'district', f.district?.toLowerCase())
    if (f.from !== undefined) {
      where.push('raised_at >= $from')
      params.from = f.from
    }
    if (f.to !== undefined) {
      where.push('raised_at < $to')
      params.to = f.to
    }
    const sql = `SELECT * FROM alarms ${where.length ? `WHERE ${where.join(' AND ')}` : ''}
      ORDER BY raised_at DESC, id LIMIT $limit`
    return this.serial(async () => (await this.db.runAndReadAll(sql, params)).getRowObjectsJS().map(alarmOf))
  }

  transitions(alarmId: string): Promise<Transition[]> {
    return this.serial(async () =>
      (
        await this.db.runAndReadAll('SELECT * FROM alarm_transitions WHERE alarm_id = $id ORDER BY seq', {
          id: alarmId,
        })
      )
        .getRowObjectsJS()
        .map((r) => ({
          alarmId: String(r.alarm_id),
          seq: Number(r.seq),
          at: Number(r.occurred_at),
          actor: String(r.actor),
          action: String(r.action) as TransitionAction,
          fromState: str(r.from_state) as AlarmState | null,
          toState: String(r.to_state) as AlarmState,
          comment: str(r.comment),
          detail: r.detail == null ? null : (JSON.parse(String(r.detail)) as Record<string, unknown>),
        })),
    )
  }

  deliveries(alarmId: string): Promise<Delivery[]> {
    return this.serial(async () =>
      (
        await this.db.runAndReadAll(
          'SELECT * FROM webhook_deliveries WHERE alarm_id = $id ORDER BY transition_seq, url',
          { id: alarmId },
        )
      )
        .getRowObjectsJS()
        .map(deliveryOf),
    )
  }

  async close(): Promise<void> {
    await this.chain.catch(() => undefined)
    this.db.closeSync()
    this.instance.closeSync()
  }

  private serial<T>(fn: () => Promise<T>): Promise<T> {
    const next = this.chain.then(fn, fn)
    this.chain = next.catch(() => undefined)
    return next
  }
}
