import { randomBytes } from 'node:crypto'
import type { Logger } from 'pino'
import type { DeviceRegistry, DeviceStatus } from '../../ingest/registry.ts'
import type { LiveState } from '../live-state.ts'
import type { Alarm } from '../protocol.ts'
import type { AlarmsConfig } from './config.ts'
import { type AlarmType, type Observation, PRIORITY_RANK, rulesFor, severityOf } from './rules.ts'
import type {
  AlarmRecord,
  AlarmState,
  AlarmStore,
  AlarmWrite,
  Delivery,
  Transition,
  TransitionAction,
} from './store.ts'
import type { WebhookDispatcher } from './webhooks.ts'

/** Devices evaluated between two yields to the event loop. */
const EVAL_SLICE = 250

/** The actor of transitions the engine makes by itself. */
export const SYSTEM_ACTOR = 'system'

export class AlarmActionError extends Error {
  override readonly name = 'AlarmActionError'
  constructor(
    readonly code: 'not_found' | 'conflict',
    message: string,
  ) {
    super(message)
  }
}

/** A state change worked out but not yet stored: `current` is the record in memory it will change. */
interface Prepared {
  readonly current: AlarmRecord
  readonly alarm: AlarmRecord
  readonly transition: Transition
  readonly deliveries: readonly Delivery[]
  /** The open-alarm key of a new alarm. */
  readonly insert: string | undefined
}

function toWrite(p: Prepared): AlarmWrite {
  return {
    alarm: p.alarm,
    transition: p.transition,
    deliveries: p.deliveries,
    insert: p.insert !== undefined,
  }
}

/** Per device and rule: since when a condition has held (not yet raised) or been gone (not yet cleared). */
interface Track {
  pendingSince: number | null
  clearSince: number | null
  /** The evaluation pass that last saw this device and rule. */
  seenInPass: number
}

const ACTIVE: ReadonlySet<AlarmState> = new Set(['raised', 'acknowledged'])
/** Devices whose rules are evaluated; the alarms of the others are cleared. */
const IN_SERVICE: ReadonlySet<DeviceStatus> = new Set(['provisioned', 'active'])

function newAlarmId(now: number): string {
  return `alm-${now.toString(36)}-${randomBytes(4).toString('hex')}`
}

/**
 * Raises, escalates and clears alarms from the aggregator's views on a timer, and applies operators'
 * actions. One alarm per device and rule is open at a time; every change is one stored transition (and a
 * webhook event). All mutations run one after another, so a timer tick and an acknowledgement never race.
 */
export class AlarmEngine {
  /** Alarms not closed, by `${deviceId}:${type}`. */
  private readonly open = new Map<string, AlarmRecord>()
  private readonly seqs = new Map<string, number>()
  private readonly tracks = new Map<string, Track>()
  /**
   * Per device, its rules' `${deviceId}:${type}` keys and tracks, made once: the whole fleet is evaluated
   * every second, and a key and a track lookup per device and rule cost a hash each on every pass.
   */
  private readonly slots = new Map<
    string,
    { rules: ReturnType<typeof rulesFor>; keys: string[]; tracks: Track[] }
  >()
  private pass = 0
  /** When `start` ran (the aggregator's live state begins empty then). */
  private startedAt = Number.POSITIVE_INFINITY
  private chain: Promise<unknown> = Promise.resolve()
  private timer: NodeJS.Timeout | undefined
  private evaluating = false
  private changed = true
  private streamCache: Alarm[] | undefined

  constructor(
    private readonly config: AlarmsConfig,
    private readonly deps: {
      readonly store: AlarmStore
      readonly live: LiveState
      readonly registry: DeviceRegistry
      readonly webhooks: WebhookDispatcher
      readonly log: Logger
    },
  ) {}

  /** Loads the alarms left open by the last run, then evaluates on the timer. */
  async start() {
    this.startedAt = Date.now()
    // On the chain: the API listens before the engine starts, and an action that came in meanwhile found no
    // open alarm in memory and took a raised alarm for a closed one (409).
    await this.serial(async () => {
      const [open, seqs] = await Promise.all([this.deps.store.loadOpen(), this.deps.store.lastSeqs()])
      for (const a of open) {
        this.open.set(`${a.deviceId}:${a.type}`, a)
        this.seqs.set(a.id, seqs.get(a.id) ?? 0)
      }
      if (open.length > 0) this.deps.log.info({ alarms: open.length }, 'alarms still open from the last run')
    })
    await this.deps.webhooks.start()
    this.deps.live.setRuleAlarms({ alarms: () => this.streamAlarms(), takeChanged: () => this.takeChanged() })
    this.timer = setInterval(() => {
      if (this.evaluating) return
      this.evaluating = true
      this.evaluate()
        .catch((err: Error) => this.deps.log.error({ err: err.message }, 'alarm evaluation failed'))
        .finally(() => {
          this.evaluating = false
        })
    }, this.config.evalIntervalMs)
    this.timer.unref()
  }

  async stop() {
    clearInterval(this.timer)
    this.deps.live.setRuleAlarms(undefined)
    await this.chain.catch(() => undefined)
    await this.deps.webhooks.stop()
  }

  /**
   * One pass of every rule over every device, then escalation of alarms past their SLA. The pass's
   * transitions are stored a slice at a time, each slice in one transaction: a regency-wide outage raises
   * thousands of alarms in one pass.
   */
  evaluate(now = Date.now()): Promise<void> {
    return this.serial(async () => {
      const pass = ++this.pass
      const batch: Prepared[] = []
      let visited = 0
      for (const { view } of this.deps.live.all(now)) {
        if (++visited % EVAL_SLICE === 0) {
          await this.commit(batch.splice(0))
          // A city's whole fleet is evaluated every second: let the broker's acknowledgements through between slices.
          await new Promise((resolve) => setImmediate(resolve))
        }
        const device = this.deps.registry.get(view.id)
        // The aggregator may still hold the view of a device taken out of service (one already offline gets
        // no event that would drop it): its rules would hold its alarms raised for ever. Cleared below.
        if (device === undefined || !IN_SERVICE.has(device.status)) continue
        const hour = this.deps.live.hourCoverage(view.id, now)
        const rules = rulesFor(view.kind)
        const { keys, tracks } = this.slotOf(view.id, rules)
        for (let i = 0; i < rules.length; i++) {
          const rule = rules[i]!
          const key = keys[i]!
          const alarm = this.open.get(key)
          const active = alarm !== undefined && ACTIVE.has(alarm.state)
          const track = tracks[i]!
          track.seenInPass = pass
          const obs = rule.observe(
            { view, device, hour, sinceStartMs: now - this.startedAt },
            active || track.pendingSince !== null,
          )
          const change = this.step(key, rule.type, view, alarm, active, track, obs, now)
          if (change !== undefined) batch.push(change)
        }
      }
      await this.commit(batch.splice(0))
      for (const [key, alarm] of this.open) {
        if (this.tracks.get(key)?.seenInPass === pass || !ACTIVE.has(alarm.state)) continue
        // A device out of service reports no more: nothing else would ever clear its alarms, and one cleared
        // by hand would come back from its last view. A revoked device is out too (it can only be
        // decommissioned and registered anew).
        const d = this.deps.registry.get(alarm.deviceId)
        if (d === undefined || !IN_SERVICE.has(d.status)) {
          const reason = d?.status === 'revoked' ? 'device revoked' : 'device decommissioned'
          batch.push(this.prepare(alarm, 'cleared', SYSTEM_ACTOR, now, reason, null))
        }
      }
      await this.commit(batch.splice(0))
      for (const alarm of this.open.values()) {
        if (alarm.state === 'raised' && alarm.escalatedAt === null && now >= alarm.slaDueAt) {
          batch.push(
            this.prepare(
              alarm,
              'escalated',
              SYSTEM_ACTOR,
              now,
              null,
              { slaMs: this.config.slaMs[alarm.priority], overdueMs: now - alarm.slaDueAt },
              { changes: { escalatedAt: now } },
            ),
          )
        }
      }
      await this.commit(batch.splice(0))
    })
  }

  private track(key: string): Track {
    let t = this.tracks.get(key)
    if (t === undefined) {
      t = { pendingSince: null, clearSince: null, seenInPass: 0 }
      this.tracks.set(key, t)
    }
    return t
  }

  private slotOf(deviceId: string, rules: ReturnType<typeof rulesFor>) {
    const cached = this.slots.get(deviceId)
    if (cached !== undefined && cached.rules === rules) return cached
    const keys = rules.map((r) => `${deviceId}:${r.type}`)
    const slot = { rules, keys, tracks: keys.map((k) => this.track(k)) }
    this.slots.set(deviceId, slot)
    return slot
  }

  /** Applies one observation; returns the transition it makes (to store and apply), else undefined. */
  private step(
    key: string,
    type: AlarmType,
    view: { id: string; kind: AlarmRecord['kind']; name: string; regency: string; district: string },
    alarm: AlarmRecord | undefined,
    active: boolean,
    track: Track,
    obs: Observation | undefined,
    now: number,
  ): Prepared | undefined {
    if (obs === undefined) return
    const min = this.config.minDurationMs
    // The clock was set back (NTP putting right a clock that ran ahead): a condition held or gone since
    // "the future" would wait out the jump before its alarm is raised or cleared. It counts from now.
    if (track.pendingSince !== null && track.pendingSince > now) track.pendingSince = now
    if (track.clearSince !== null && track.clearSince > now) track.clearSince = now
    if (obs.active) {
      track.clearSince = null
      if (active && alarm) {
        if (alarm.value !== obs.value) {
          alarm.value = obs.value
          this.touch()
        }
        if (alarm.level !== obs.level || alarm.priority !== obs.priority)
          return this.changeLevel(alarm, obs, now)
        return
      }
      track.pendingSince ??= now
      if (now - track.pendingSince < min) return
      track.pendingSince = null
      if (alarm !== undefined && alarm.state === 'cleared') {
        // The same condition came back before anyone closed the alarm: reopen it rather than add another.
        return this.prepare(
          alarm,
          'reopened',
          SYSTEM_ACTOR,
          now,
          null,
          { level: obs.level, value: obs.value },
          { changes: this.raisedFields(obs, now) },
        )
      }
      const record: AlarmRecord = {
        id: newAlarmId(now),
        deviceId: view.id,
        type,
        kind: view.kind,
        name: view.name,
        regency: view.regency,
        district: view.district,
        ...this.raisedFields(obs, now),
        state: 'raised',
        raisedAt: now,
        updatedAt: now,
        closedAt: null,
        closedBy: null,
      }
      return this.prepare(
        record,
        'raised',
        SYSTEM_ACTOR,
        now,
        null,
        { level: obs.level, value: obs.value },
        { insert: key },
      )
    }
    track.pendingSince = null
    if (!active || alarm === undefined) return
    track.clearSince ??= now
    if (now - track.clearSince < min) return
    track.clearSince = null
    return this.prepare(alarm, 'cleared', SYSTEM_ACTOR, now, 'condition ended', null)
  }

  /** What a raise sets, for a new alarm and for one the same condition reopens. */
  private raisedFields(obs: Observation & { active: true }, now: number) {
    return {
      level: obs.level,
      priority: obs.priority,
      value: obs.value,
      slaDueAt: now + this.config.slaMs[obs.priority],
      escalatedAt: null,
      acknowledgedAt: null,
      acknowledgedBy: null,
      clearedAt: null,
      clearedBy: null,
    }
  }

  private changeLevel(alarm: AlarmRecord, obs: Observation & { active: true }, now: number): Prepared {
    const from = { level: alarm.level, priority: alarm.priority }
    const worse = PRIORITY_RANK[obs.priority] < PRIORITY_RANK[alarm.priority]
    const changes: Partial<AlarmRecord> = { level: obs.level, priority: obs.priority, value: obs.value }
    if (worse) {
      // A worse level needs its own acknowledgement within its own (shorter) SLA.
      Object.assign(changes, {
        slaDueAt: now + this.config.slaMs[obs.priority],
        escalatedAt: null,
        acknowledgedAt: null,
        acknowledgedBy: null,
      })
    }
    return this.prepare(
      alarm,
      'level_changed',
      SYSTEM_ACTOR,
      now,
      null,
      { from, to: { level: obs.level, priority: obs.priority }, value: obs.value },
      { changes },
    )
  }

  /**
   * Works out a state change: the alarm's next state, its transition and the webhook deliveries it causes.
   * Nothing changes in memory until `commit` stored it: readers of the open alarms never see a state whose
   * transition is not in the trail yet, and a failed write leaves nothing half applied.
   */
  private prepare(
    current: AlarmRecord,
    action: TransitionAction,
    actor: string,
    now: number,
    comment: string | null,
    detail: Record<string, unknown> | null,
    opts: { changes?: Partial<AlarmRecord>; insert?: string } = {},
  ): Prepared {
    const insert = opts.insert !== undefined
    const base: AlarmRecord = { ...current, ...opts.changes }
    const fromState = insert ? null : current.state
    const toState: AlarmState =
      action === 'raised' || action === 'reopened'
        ? 'raised'
        : action === 'acknowledged'
          ? base.state === 'cleared'
            ? 'cleared'
            : 'acknowledged'
          : action === 'cleared'
            ? 'cleared'
            : action === 'closed'
              ? 'closed'
              : action === 'level_changed' && base.acknowledgedAt === null && base.state === 'acknowledged'
                ? 'raised'
                : base.state
    const alarm: AlarmRecord = { ...base, state: toState, updatedAt: now }
    if (action === 'acknowledged') {
      alarm.acknowledgedAt = now
      alarm.acknowledgedBy = actor
    } else if (action === 'cleared') {
      alarm.clearedAt = now
      alarm.clearedBy = actor
    } else if (action === 'closed') {
      alarm.closedAt = now
      alarm.closedBy = actor
    }
    const seq = (this.seqs.get(alarm.id) ?? 0) + 1
    const transition: Transition = {
      alarmId: alarm.id,
      seq,
      at: now,
      actor,
      action,
      fromState,
      toState,
      comment,
      detail,
    }
    const deliveries =
      action === 'commented'
        ? []
        : this.deps.webhooks.prepare(
            alarm.id,
            seq,
            `alarm.${action}`,
            { alarm: publicAlarm(alarm), transition },
            now,
          )
    return { current, alarm, transition, deliveries, insert: opts.insert }
  }

  /**
   * Stores prepared changes in one transaction, then applies them in memory and hands their webhook
   * deliveries on. Each alarm appears at most once in a batch (one step per device and rule per pass).
   * A refused batch is halved until the refused change is alone, as the ingest does with InfluxDB's 400s:
   * one bad change costs a few more transactions and does not hold back the rest. A refused change is
   * logged and made again on a later pass, since its condition still holds.
   */
  private async commit(batch: readonly Prepared[]): Promise<void> {
    if (batch.length === 0) return
    try {
      await this.deps.store.saveMany(batch.map(toWrite))
    } catch (err) {
      if (batch.length > 1) {
        const half = batch.length >>> 1
        await this.commit(batch.slice(0, half))
        await this.commit(batch.slice(half))
        return
      }
      const { alarm, transition } = batch[0]!
      this.deps.log.error(
        {
          err: (err as Error).message,
          alarmId: alarm.id,
          deviceId: alarm.deviceId,
          action: transition.action,
        },
        'alarm transition not stored',
      )
      return
    }
    for (const p of batch) this.apply(p)
  }

  private apply({ current, alarm, transition, deliveries, insert }: Prepared) {
    Object.assign(current, alarm)
    if (insert !== undefined) this.open.set(insert, current)
    this.seqs.set(alarm.id, transition.seq)
    if (alarm.state === 'closed') {
      this.open.delete(`${alarm.deviceId}:${alarm.type}`)
      this.seqs.delete(alarm.id)
    }
    this.deps.webhooks.enqueue(deliveries)
    this.touch()
    this.deps.log.info(
      {
        alarmId: alarm.id,
        deviceId: alarm.deviceId,
        type: alarm.type,
        action: transition.action,
        actor: transition.actor,
        state: alarm.state,
      },
      'alarm transition',
    )
  }

  /** Operators' actions; each needs a comment (checked by the route) and is stored under the actor's name. */
  act(
    id: string,
    action: 'acknowledged' | 'commented' | 'cleared' | 'closed',
    actor: string,
    comment: string,
  ): Promise<{ alarm: AlarmRecord; transition: Transition }> {
    return this.serial(async () => {
      const now = Date.now()
      const alarm = [...this.open.values()].find((a) => a.id === id)
      if (alarm === undefined) {
        const stored = await this.deps.store.get(id)
        if (stored === undefined) throw new AlarmActionError('not_found', `no alarm ${id}`)
        if (action !== 'commented') throw new AlarmActionError('conflict', `alarm ${id} is closed`)
        const seq = (await this.deps.store.transitions(id)).length + 1
        const transition: Transition = {
          alarmId: id,
          seq,
          at: now,
          actor,
          action,
          fromState: 'closed',
          toState: 'closed',
          comment,
          detail: null,
        }
        await this.deps.store.saveMany([
          { alarm: { ...stored, updatedAt: now }, transition, deliveries: [], insert: false },
        ])
        return { alarm: { ...stored, updatedAt: now }, transition }
      }
      if (action === 'acknowledged' && alarm.acknowledgedAt !== null)
        throw new AlarmActionError(
          'conflict',
          `alarm ${id} was acknowledged by ${alarm.acknowledgedBy} already`,
        )
      if (action === 'cleared' && !ACTIVE.has(alarm.state))
        throw new AlarmActionError('conflict', `alarm ${id} is ${alarm.state}`)
      if (action === 'closed' && alarm.state !== 'cleared')
        throw new AlarmActionError('conflict', `alarm ${id} is ${alarm.state}: clear it before closing it`)
      const change = this.prepare(alarm, action, actor, now, comment, null)
      // An operator's action fails loudly (the route answers 5xx) rather than being logged and retried.
      await this.deps.store.saveMany([toWrite(change)])
      this.apply(change)
      const { transition } = change
      if (action === 'cleared') {
        // Reset in place: the device's slot holds the same track. A condition still present starts over.
        const track = this.tracks.get(`${alarm.deviceId}:${alarm.type}`)
        if (track) {
          track.pendingSince = null
          track.clearSince = null
        }
      }
      return { alarm: { ...alarm }, transition }
    })
  }

  /** Open alarms in memory (not closed), most urgent first. */
  openAlarms(): AlarmRecord[] {
    return [...this.open.values()].sort(
      (a, b) => PRIORITY_RANK[a.priority] - PRIORITY_RANK[b.priority] || a.raisedAt - b.raisedAt,
    )
  }

  get store() {
    return this.deps.store
  }

  private touch() {
    this.changed = true
    this.streamCache = undefined
  }

  private takeChanged(): boolean {
    const c = this.changed
    this.changed = false
    return c
  }

  private streamAlarms(): Alarm[] {
    this.streamCache ??= this.openAlarms().map(streamAlarm)
    return this.streamCache
  }

  private serial<T>(fn: () => Promise<T>): Promise<T> {
    const next = this.chain.then(fn, fn)
    this.chain = next.catch(() => undefined)
    return next
  }
}

/** The alarm as the REST API and webhooks show it. */
export function publicAlarm(a: AlarmRecord) {
  return { ...a, severity: severityOf(a.priority) }
}

export function streamAlarm(a: AlarmRecord): Alarm {
  return {
    id: a.id,
    source: 'rule',
    type: a.type,
    severity: severityOf(a.priority),
    deviceId: a.deviceId,
    kind: a.kind,
    name: a.name,
    regency: a.regency,
    district: a.district,
    level: a.level,
    value: a.value,
    since: a.raisedAt,
    acknowledgedAt: a.acknowledgedAt,
    state: a.state,
    priority: a.priority,
    acknowledgedBy: a.acknowledgedBy,
    slaDueAt: a.state === 'raised' ? a.slaDueAt : null,
    escalatedAt: a.escalatedAt,
  }
}
