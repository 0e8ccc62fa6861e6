import { type DuckDBConnection, DuckDBInstance } from '@duckdb/node-api'
import type { DeviceKind } from '../../firmware-contracts/index.ts'
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

function alarmParams(a: AlarmRecord) {
  return {
    id: a.id,
    device: a.deviceId,
    type: a.type,
    kind: a.kind,
    name: a.name,
    regency: a.regency,
    district: a.district,
    level: a.level,
    priority: a.priority,
    value: a.value,
    state: a.state,
    raised: a.raisedAt,
    updated: a.updatedAt,
    sla: a.slaDueAt,
    escalated: a.escalatedAt,
    acked: a.acknowledgedAt,
    ackedBy: a.acknowledgedBy,
    cleared: a.clearedAt,
    clearedBy: a.clearedBy,
    closed: a.closedAt,
    closedBy: a.closedBy,
  }
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

  /** Writes the alarm's new state, its transition and the webhook deliveries it causes, atomically. */
  save(alarm: AlarmRecord, transition: Transition, deliveries: readonly Delivery[], insert: boolean) {
    const snapshot = { ...alarm }
    return this.serial(async () => {
      await this.db.run('BEGIN TRANSACTION')
      try {
        if (insert) {
          await this.db.run(
            `INSERT INTO alarms VALUES ($id, $device, $type, $kind, $name, $regency, $district, $level, $priority,
              $value, $state, $raised, $updated, $sla, $escalated, $acked, $ackedBy, $cleared, $clearedBy,
              $closed, $closedBy)`,
            alarmParams(snapshot),
          )
        } else {
          const { id, device: _d, type: _t, kind: _k, raised: _r, ...rest } = alarmParams(snapshot)
          await this.db.run(
            `UPDATE alarms SET name = $name, regency = $regency, district = $district, level = $level,
              priority = $priority, value = $value, state = $state, updated_at = $updated, sla_due_at = $sla,
              escalated_at = $escalated, acknowledged_at = $acked, acknowledged_by = $ackedBy,
              cleared_at = $cleared, cleared_by = $clearedBy, closed_at = $closed, closed_by = $closedBy
              WHERE id = $id`,
            { id, ...rest },
          )
        }
        await this.db.run(
          'INSERT INTO alarm_transitions VALUES ($alarm, $seq, $at, $actor, $action, $from, $to, $comment, $detail)',
          {
            alarm: transition.alarmId,
            seq: transition.seq,
            at: transition.at,
            actor: transition.actor,
            action: transition.action,
            from: transition.fromState,
            to: transition.toState,
            comment: transition.comment,
            detail: transition.detail === null ? null : JSON.stringify(transition.detail),
          },
        )
        for (const d of deliveries) await this.insertDelivery(d)
        await this.db.run('COMMIT')
      } catch (err) {
        await this.db.run('ROLLBACK').catch(() => undefined)
        throw err
      }
    })
  }

  private insertDelivery(d: Delivery) {
    return this.db.run(
      `INSERT INTO webhook_deliveries VALUES ($id, $alarm, $seq, $url, $event, $body, $status, $attempts, $error,
        $code, $next, $created, $delivered)`,
      {
        id: d.id,
        alarm: d.alarmId,
        seq: d.transitionSeq,
        url: d.url,
        event: d.event,
        body: d.body,
        status: d.status,
        attempts: d.attempts,
        error: d.lastError,
        code: d.lastStatusCode,
        next: d.nextAttemptAt,
        created: d.createdAt,
        delivered: d.deliveredAt,
      },
    )
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
