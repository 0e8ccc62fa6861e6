import { randomBytes } from 'node:crypto'
import type { Logger } from 'pino'
import type { WebSocket } from 'ws'
import { CURRENT_ISPU_TABLE } from './aggregates/ispu.ts'
import { computeRollups } from './aggregates/rollups.ts'
import type { CachedView, LiveState } from './live-state.ts'
import {
  type Alarm,
  ClientMessageSchema,
  inScope,
  LIVE_PROTOCOL_VERSION,
  type LiveErrorCode,
  type Scope,
  type ServerMessage,
} from './protocol.ts'

export interface LiveStreamOptions {
  /** Deltas are coalesced and sent at most this often. */
  readonly intervalMs: number
  /**
   * A client whose socket holds more unsent bytes than this gets no new frame of any kind: its deltas and
   * the snapshot it asked for coalesce, its replies and error frames are dropped.
   */
  readonly maxBufferedBytes: number
  /** A client that stays above `maxBufferedBytes` this long is disconnected. */
  readonly slowClientTimeoutMs: number
  readonly heartbeatMs: number
}

/**
 * Client messages allowed per second (burst: twice that); more are ignored, and the first of a run gets an
 * error frame: one frame per ignored message would answer a flood of tiny frames with as many larger ones.
 */
const CLIENT_MESSAGES_PER_SEC = 10
/**
 * Messages ignored in a row (at 10 a second, this many arrived within about a tenth of a second each) after
 * which the client is closed with 1008: no display sends that, and a flood costs the server every frame.
 */
const CLIENT_FLOOD_LIMIT = 10 * CLIENT_MESSAGES_PER_SEC
/** Devices whose view is rebuilt between two yields to the event loop (about 20–40 µs each). */
const REFRESH_SLICE = 100

interface LiveClient {
  readonly socket: WebSocket
  scope: Scope
  scopeKey: string
  /**
   * Device JSON not yet sent, latest per device: bounded by the number of devices in scope whatever the
   * client's speed (the strings are shared with the aggregator's cache, not copied).
   */
  readonly pending: Map<string, string>
  needRollups: boolean
  needAlarms: boolean
  /** A `subscribe` arrived while the socket was over the limit: its snapshot goes out once it is not. */
  needSnapshot: boolean
  /** Monotonic (`performance.now()`), as `tokensAt`: a clock set back or forward must not stretch limits. */
  slowSince: number | null
  alive: boolean
  /** Data of the last ping sent; only a pong echoing it counts as an answer. */
  pingData: Buffer | undefined
  tokens: number
  tokensAt: number
  /** Messages ignored by the rate limit since the last one taken. */
  dropped: number
}

interface ScopeTick {
  readonly devices: CachedView[]
  rollups: string | undefined
  alarms: string | undefined
  frame: Buffer | undefined
  /**
   * A device its displays may hold left the scope (decommissioned, or moved to another district, regency
   * or kind): a delta cannot take a device away, so each of them gets a new snapshot, built once.
   */
  readonly departed: boolean
  snapshot: Buffer | undefined
  readonly lists: ScopeLists
}

/** The latest rollups and alarms (JSON) per scope, to send only what changed. */
interface ScopeLists {
  rollups: string
  alarms: string
  /** The hub's alarm list these were made from, and the scope's part of it. */
  source: readonly Alarm[]
  scoped: readonly Alarm[]
  /** The devices in the scope. */
  ids: ReadonlySet<string>
}

export interface LiveHubStats {
  readonly clients: number
  /** Devices waiting to be sent, over all clients, and the most for one client. */
  readonly pendingTotal: number
  readonly pendingMax: number
  /** Unsent bytes in the fullest client socket now, and the most seen since start. */
  readonly bufferedMax: number
  readonly bufferedPeak: number
  readonly slowDisconnects: number
  readonly deadDisconnects: number
  readonly framesSent: number
}

/** Whether a client has updates not yet sent (an owed snapshot included). */
function owes(client: LiveClient): boolean {
  return client.pending.size > 0 || client.needRollups || client.needAlarms || client.needSnapshot
}

function scopeKey(scope: Scope): string {
  const norm = (a: readonly string[] | undefined) => (a === undefined ? null : [...a].sort())
  return JSON.stringify([norm(scope.regency), norm(scope.district), norm(scope.kind), norm(scope.device)])
}

/**
 * Fans the live state out to WebSocket clients. Ingest only updates the aggregates and marks devices as
 * changed; this hub reads the changes on its own timer, serialises each changed device once and each
 * frame once per distinct scope, so a slow or stuck display can never hold up ingest or another display.
 */
export class LiveHub {
  private readonly clients = new Set<LiveClient>()
  private readonly lists = new Map<string, ScopeLists>()
  /**
   * Per scope, the ids of every device its displays may hold (those of the last tick and of every snapshot
   * sent since): one of them missing from the scope at the next tick is a device to take off those walls.
   */
  private readonly held = new Map<string, Set<string>>()
  private tickTimer: NodeJS.Timeout | undefined
  private ticking = false
  private heartbeatTimer: NodeJS.Timeout | undefined
  private counters = { slowDisconnects: 0, deadDisconnects: 0, framesSent: 0, bufferedPeak: 0 }

  constructor(
    private readonly state: LiveState,
    private readonly options: LiveStreamOptions,
    private readonly log: Logger,
  ) {}

  start() {
    this.tickTimer = setInterval(() => {
      this.tick().catch((err) => this.log.error({ err }, 'live tick failed'))
    }, this.options.intervalMs)
    this.heartbeatTimer = setInterval(() => this.heartbeat(), this.options.heartbeatMs)
    this.tickTimer.unref()
    this.heartbeatTimer.unref()
  }

  get clientCount() {
    return this.clients.size
  }

  stats(): LiveHubStats {
    let pendingTotal = 0
    let pendingMax = 0
    let bufferedMax = 0
    for (const c of this.clients) {
      pendingTotal += c.pending.size
      pendingMax = Math.max(pendingMax, c.pending.size)
      bufferedMax = Math.max(bufferedMax, c.socket.bufferedAmount)
    }
    return { clients: this.clients.size, pendingTotal, pendingMax, bufferedMax, ...this.counters }
  }

  add(socket: WebSocket) {
    const client: LiveClient = {
      socket,
      scope: {},
      scopeKey: scopeKey({}),
      pending: new Map(),
      needRollups: false,
      needAlarms: false,
      needSnapshot: false,
      slowSince: null,
      alive: true,
      pingData: undefined,
      tokens: 2 * CLIENT_MESSAGES_PER_SEC,
      tokensAt: performance.now(),
      dropped: 0,
    }
    this.clients.add(client)
    // Unsolicited pongs are legal, and a client that never reads its socket can still send them: only the
    // echo of our ping's random data proves the client read up to it.
    socket.on('pong', (data) => {
      if (client.pingData?.equals(data)) client.alive = true
    })
    socket.on('message', (data, isBinary) => this.onMessage(client, data, isBinary))
    socket.on('close', () => this.clients.delete(client))
    socket.on('error', (err) => {
      this.log.debug({ err: err.message }, 'live client socket error')
      this.clients.delete(client)
    })
    this.sendMessage(client, {
      v: LIVE_PROTOCOL_VERSION,
      type: 'hello',
      now: Date.now(),
      intervalMs: this.options.intervalMs,
      ispuTable: CURRENT_ISPU_TABLE,
    })
    this.requestSnapshot(client, Date.now())
  }

  stop() {
    clearInterval(this.tickTimer)
    clearInterval(this.heartbeatTimer)
    for (const c of this.clients) c.socket.close(1001, 'server shutting down')
    this.clients.clear()
  }

  private onMessage(client: LiveClient, data: unknown, isBinary: boolean) {
    // A client closed for flooding, cut off as slow or dead: what it still sends is not read.
    if (!this.clients.has(client)) return
    const now = Date.now()
    // Date.now() set back an hour took 36,000 tokens: the display was refused every message for an hour.
    const mono = performance.now()
    client.tokens = Math.min(
      2 * CLIENT_MESSAGES_PER_SEC,
      client.tokens + ((mono - client.tokensAt) / 1000) * CLIENT_MESSAGES_PER_SEC,
    )
    client.tokensAt = mono
    if (client.tokens < 1) {
      client.dropped++
      if (client.dropped === 1) this.error(client, 'rate_limited', 'too many messages; slow down')
      else if (client.dropped > CLIENT_FLOOD_LIMIT) {
        this.log.warn({ dropped: client.dropped }, 'live client flooding; disconnecting')
        this.clients.delete(client)
        client.socket.close(1008, 'too many messages')
        // Stop reading it (its flood waits in TCP), so its answer to the close frame is never read either:
        // the socket goes after a second, not after ws's 30 s close timeout.
        client.socket.pause()
        setTimeout(() => client.socket.terminate(), 1000).unref()
      }
      return
    }
    client.dropped = 0
    client.tokens -= 1
    let parsed: unknown
    try {
      parsed = isBinary ? undefined : JSON.parse(String(data))
    } catch {
      parsed = undefined
    }
    const result = ClientMessageSchema.safeParse(parsed)
    if (!result.success)
      return this.error(
        client,
        'bad_message',
        'expected {"v":1,"type":"subscribe","scope":{...}} or {"v":1,"type":"ping"}',
      )
    const msg = result.data
    if (msg.type === 'ping') {
      this.sendMessage(client, { v: LIVE_PROTOCOL_VERSION, type: 'pong', now, id: msg.id })
    } else {
      client.scope = msg.scope
      client.scopeKey = scopeKey(msg.scope)
      client.pending.clear()
      client.needAlarms = false
      client.needRollups = false
      this.requestSnapshot(client, now)
    }
  }

  /**
   * However often a client that does not read asks, its socket holds at most one snapshot over the limit
   * and one more is owed; the owed one is built when the socket drains, from the state of that moment.
   */
  private requestSnapshot(client: LiveClient, now: number) {
    if (this.admit(client)) this.sendSnapshot(client, now)
    else client.needSnapshot = this.clients.has(client)
  }

  private error(client: LiveClient, code: LiveErrorCode, message: string) {
    this.sendMessage(client, { v: LIVE_PROTOCOL_VERSION, type: 'error', code, message })
  }

  private scopeAlarms(scope: Scope, alarms: readonly Alarm[]): Alarm[] {
    return alarms.filter((a) =>
      inScope(scope, { id: a.deviceId, kind: a.kind, regency: a.regency, district: a.district }),
    )
  }

  /**
   * The scope's rollups and alarm list. The alarm list stays the same array until an alarm changes; while it
   * does, the scope's part and its JSON are reused (thousands of offline devices are thousands of alarms).
   */
  private computeLists(
    scope: Scope,
    all: readonly CachedView[],
    alarms: readonly Alarm[],
    prev?: ScopeLists,
  ): ScopeLists {
    const inS = all.filter((v) => inScope(scope, v.view))
    const same = prev?.source === alarms
    const scoped = same ? prev.scoped : this.scopeAlarms(scope, alarms)
    return {
      rollups: JSON.stringify(
        computeRollups(
          inS.map((v) => v.view),
          scoped,
        ),
      ),
      alarms: same ? prev.alarms : JSON.stringify(scoped),
      source: alarms,
      scoped,
      ids: new Set(inS.map((v) => v.view.id)),
    }
  }

  private sendSnapshot(client: LiveClient, now: number) {
    client.needSnapshot = false
    const all = this.state.all(now)
    const lists = this.computeLists(client.scope, all, this.state.alarms())
    const devices = all.filter((v) => inScope(client.scope, v.view))
    const held = this.held.get(client.scopeKey) ?? new Set()
    for (const v of devices) held.add(v.view.id)
    this.held.set(client.scopeKey, held)
    this.write(client, this.snapshotFrame(now, devices, lists))
  }

  private snapshotFrame(now: number, devices: readonly CachedView[], lists: ScopeLists): string {
    return `{"v":${LIVE_PROTOCOL_VERSION},"type":"snapshot","now":${now},"devices":[${devices.map((v) => v.json).join(',')}],"rollups":${lists.rollups},"alarms":${lists.alarms}}`
  }

  private deltaFrame(now: number, devices: Iterable<string>, rollups?: string, alarms?: string): string {
    let s = `{"v":${LIVE_PROTOCOL_VERSION},"type":"delta","now":${now},"devices":[${[...devices].join(',')}]`
    if (rollups !== undefined) s += `,"rollups":${rollups}`
    if (alarms !== undefined) s += `,"alarms":${alarms}`
    return `${s}}`
  }

  /**
   * Rebuilds the changed devices' views in slices that yield to the event loop in between, so a tick with
   * a thousand changed devices never holds up the broker's acknowledgements for tens of milliseconds.
   */
  private async refreshInSlices(
    now: number,
  ): Promise<{ views: CachedView[]; removed: string[]; alarmsChanged: boolean }> {
    const views: CachedView[] = []
    const removed: string[] = []
    let alarmsChanged = false
    // Only what changed before this tick: devices that change meanwhile wait for the next one.
    let left = this.state.pendingChanges
    for (let first = true; first || left > 0; first = false) {
      const r = this.state.refresh(now, { budget: REFRESH_SLICE, sweep: first })
      views.push(...r.views)
      removed.push(...r.removed)
      alarmsChanged ||= r.alarmsChanged
      left = Math.min(left - REFRESH_SLICE, this.state.pendingChanges)
      if (left > 0) await new Promise((resolve) => setImmediate(resolve))
    }
    return { views, removed, alarmsChanged }
  }

  private async tick() {
    // A tick that is still slicing when the timer fires again simply covers both intervals.
    if (this.ticking) return
    this.ticking = true
    try {
      const now = Date.now()
      const { views, removed, alarmsChanged } = await this.refreshInSlices(now)
      // Only a removed device some display may hold changes anything: one no display holds (removed before
      // any snapshot showed it) would cost every scope its lists for nothing.
      const held = [...this.held.values()]
      this.fanOut(now, views, alarmsChanged || removed.some((id) => held.some((h) => h.has(id))))
    } finally {
      this.ticking = false
    }
  }

  /** `listsChanged`: alarms changed or a device was removed, so rollups and alarm lists may differ. */
  private fanOut(now: number, views: CachedView[], listsChanged: boolean) {
    if (this.clients.size === 0) {
      this.lists.clear()
      this.held.clear()
      return
    }
    const groups = new Map<string, ScopeTick>()
    let all: CachedView[] = []
    if (views.length > 0 || listsChanged) {
      all = this.state.all(now)
      const alarms = this.state.alarms()
      for (const client of this.clients) {
        if (groups.has(client.scopeKey)) continue
        const prev = this.lists.get(client.scopeKey)
        const lists = this.computeLists(client.scope, all, alarms, prev)
        const before = this.held.get(client.scopeKey)
        let departed = false
        if (before !== undefined) for (const id of before) if (!lists.ids.has(id)) departed = true
        const tick: ScopeTick = {
          devices: views.filter((v) => inScope(client.scope, v.view)),
          rollups: prev?.rollups === lists.rollups ? undefined : lists.rollups,
          alarms: prev?.alarms === lists.alarms ? undefined : lists.alarms,
          frame: undefined,
          departed,
          snapshot: undefined,
          lists,
        }
        this.lists.set(client.scopeKey, lists)
        this.held.set(client.scopeKey, new Set(lists.ids))
        groups.set(client.scopeKey, tick)
      }
      for (const key of this.lists.keys()) if (!groups.has(key)) this.lists.delete(key)
      for (const key of this.held.keys()) if (!groups.has(key)) this.held.delete(key)
    }
    for (const client of this.clients) {
      const ready = this.admit(client)
      if (!this.clients.has(client)) continue
      const g = groups.get(client.scopeKey)
      if (g?.departed) {
        // What the client was owed is in the snapshot; one that is over the limit is owed the snapshot.
        client.pending.clear()
        client.needRollups = false
        client.needAlarms = false
        if (ready) {
          client.needSnapshot = false
          g.snapshot ??= Buffer.from(
            this.snapshotFrame(
              now,
              all.filter((v) => inScope(client.scope, v.view)),
              g.lists,
            ),
          )
          this.write(client, g.snapshot)
        } else client.needSnapshot = true
        continue
      }
      const hasNews =
        g !== undefined && (g.devices.length > 0 || g.rollups !== undefined || g.alarms !== undefined)
      if (hasNews && ready && !owes(client)) {
        // The common case: one frame per scope per tick, shared by every client of that scope.
        g.frame ??= Buffer.from(
          this.deltaFrame(
            now,
            g.devices.map((v) => v.json),
            g.rollups,
            g.alarms,
          ),
        )
        this.write(client, g.frame)
        continue
      }
      // An owed snapshot carries the state of the moment it is sent: nothing to keep for it.
      if (hasNews && !client.needSnapshot) {
        for (const v of g.devices) client.pending.set(v.view.id, v.json)
        if (g.rollups !== undefined) client.needRollups = true
        if (g.alarms !== undefined) client.needAlarms = true
      }
      if (ready) this.flush(client, now)
    }
  }

  /** Sends what a client that was over the limit is owed; the caller checked that it no longer is. */
  private flush(client: LiveClient, now: number) {
    if (client.needSnapshot) return this.sendSnapshot(client, now)
    if (!owes(client)) return
    const lists = this.lists.get(client.scopeKey)
    const frame = this.deltaFrame(
      now,
      client.pending.values(),
      client.needRollups ? lists?.rollups : undefined,
      client.needAlarms ? lists?.alarms : undefined,
    )
    client.pending.clear()
    client.needRollups = false
    client.needAlarms = false
    this.write(client, frame)
  }

  /**
   * Whether the client's socket may take another frame, and the one slow-client rule: every frame, whatever
   * asked for it, passes here first, so a socket never holds more than the limit plus one frame, and a
   * client over the limit longer than the grace period is cut off (called for each client on every tick
   * too, so it happens even when nothing is owed).
   */
  private admit(client: LiveClient): boolean {
    const now = performance.now()
    if (client.socket.bufferedAmount <= this.options.maxBufferedBytes) {
      client.slowSince = null
      return true
    }
    client.slowSince ??= now
    if (now - client.slowSince > this.options.slowClientTimeoutMs) {
      this.log.warn(
        { buffered: client.socket.bufferedAmount, pending: client.pending.size },
        'live client too slow; disconnecting',
      )
      this.counters.slowDisconnects++
      // No close frame: it would only queue behind what the client is not reading.
      client.socket.terminate()
      this.clients.delete(client)
    }
    return false
  }

  private heartbeat() {
    for (const client of this.clients) {
      if (!client.alive) {
        this.counters.deadDisconnects++
        client.socket.terminate()
        this.clients.delete(client)
        continue
      }
      client.alive = false
      client.pingData = randomBytes(8)
      client.socket.ping(client.pingData)
    }
  }

  private sendMessage(client: LiveClient, msg: ServerMessage) {
    this.sendRaw(client, JSON.stringify(msg))
  }

  /** Replies, error frames and the greeting: dropped while the client is over the limit. */
  private sendRaw(client: LiveClient, data: string | Buffer) {
    if (this.admit(client)) this.write(client, data)
  }

  /** Only after `admit` said yes, in the same turn of the event loop. */
  private write(client: LiveClient, data: string | Buffer) {
    if (client.socket.readyState !== client.socket.OPEN) return
    client.socket.send(data, { binary: false })
    this.counters.framesSent++
    const buffered = client.socket.bufferedAmount
    if (buffered > this.counters.bufferedPeak) this.counters.bufferedPeak = buffered
  }
}
