import type { Logger } from 'pino'
import type { WebSocket } from 'ws'
import type { LiveState } from './live-state.ts'
import {
  ClientMessageSchema,
  type DeviceLive,
  inScope,
  LIVE_PROTOCOL_VERSION,
  type LiveErrorCode,
  type Scope,
  type ServerMessage,
} from './protocol.ts'

export interface LiveStreamOptions {
  /** Deltas are coalesced and sent at most this often. */
  readonly intervalMs: number
  /** A client whose socket holds more unsent bytes than this gets no new frames (its deltas coalesce). */
  readonly maxBufferedBytes: number
  /** A client that stays above `maxBufferedBytes` this long is disconnected. */
  readonly slowClientTimeoutMs: number
  readonly heartbeatMs: number
}

interface LiveClient {
  readonly socket: WebSocket
  scope: Scope
  /** Latest state per device not yet sent: bounded by the number of devices in scope. */
  readonly pending: Map<string, DeviceLive>
  slowSince: number | null
  alive: boolean
}

/**
 * Fans the live state out to WebSocket clients. Ingest only marks devices as changed; this hub reads the
 * changes on its own timer, so a slow or stuck display can never hold up ingest or another display.
 */
export class LiveHub {
  private readonly clients = new Set<LiveClient>()
  private tickTimer: NodeJS.Timeout | undefined
  private heartbeatTimer: NodeJS.Timeout | undefined

  constructor(
    private readonly state: LiveState,
    private readonly options: LiveStreamOptions,
    private readonly log: Logger,
  ) {}

  start() {
    this.tickTimer = setInterval(() => this.tick(), this.options.intervalMs)
    this.heartbeatTimer = setInterval(() => this.heartbeat(), this.options.heartbeatMs)
    this.tickTimer.unref()
    this.heartbeatTimer.unref()
  }

  get clientCount() {
    return this.clients.size
  }

  add(socket: WebSocket) {
    const client: LiveClient = { socket, scope: {}, pending: new Map(), slowSince: null, alive: true }
    this.clients.add(client)
    socket.on('pong', () => {
      client.alive = true
    })
    socket.on('message', (data, isBinary) => this.onMessage(client, data, isBinary))
    socket.on('close', () => this.clients.delete(client))
    socket.on('error', (err) => {
      this.log.debug({ err: err.message }, 'live client socket error')
      this.clients.delete(client)
    })
    this.send(client, {
      v: LIVE_PROTOCOL_VERSION,
      type: 'hello',
      now: Date.now(),
      intervalMs: this.options.intervalMs,
    })
    this.sendSnapshot(client)
  }

  stop() {
    clearInterval(this.tickTimer)
    clearInterval(this.heartbeatTimer)
    for (const c of this.clients) c.socket.close(1001, 'server shutting down')
    this.clients.clear()
  }

  private onMessage(client: LiveClient, data: unknown, isBinary: boolean) {
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
        'expected {"type":"subscribe","scope":{...}} or {"type":"ping"}',
      )
    const msg = result.data
    if (msg.type === 'ping') {
      this.send(client, { v: LIVE_PROTOCOL_VERSION, type: 'pong', now: Date.now(), id: msg.id })
    } else {
      client.scope = msg.scope
      client.pending.clear()
      this.sendSnapshot(client)
    }
  }

  private error(client: LiveClient, code: LiveErrorCode, message: string) {
    this.send(client, { v: LIVE_PROTOCOL_VERSION, type: 'error', code, message })
  }

  private sendSnapshot(client: LiveClient) {
    const devices = this.state.all().filter((d) => inScope(client.scope, d))
    this.send(client, { v: LIVE_PROTOCOL_VERSION, type: 'snapshot', now: Date.now(), devices })
  }

  private tick() {
    const changed = this.state.drainChanged()
    const now = Date.now()
    if (changed.size > 0 && this.clients.size > 0) {
      const views: DeviceLive[] = []
      for (const id of changed) {
        const v = this.state.view(id)
        if (v) views.push(v)
      }
      for (const client of this.clients) {
        for (const v of views) if (inScope(client.scope, v)) client.pending.set(v.id, v)
      }
    }
    for (const client of this.clients) this.flush(client, now)
  }

  private flush(client: LiveClient, now: number) {
    if (client.pending.size === 0) return
    if (client.socket.bufferedAmount > this.options.maxBufferedBytes) {
      client.slowSince ??= now
      if (now - client.slowSince > this.options.slowClientTimeoutMs) {
        this.log.warn({ buffered: client.socket.bufferedAmount }, 'live client too slow; disconnecting')
        client.socket.terminate()
        this.clients.delete(client)
      }
      return
    }
    client.slowSince = null
    const devices = [...client.pending.values()]
    client.pending.clear()
    this.send(client, { v: LIVE_PROTOCOL_VERSION, type: 'delta', now, devices })
  }

  private heartbeat() {
    for (const client of this.clients) {
      if (!client.alive) {
        client.socket.terminate()
        this.clients.delete(client)
        continue
      }
      client.alive = false
      client.socket.ping()
    }
  }

  private send(client: LiveClient, msg: ServerMessage) {
    if (client.socket.readyState !== client.socket.OPEN) return
    client.socket.send(JSON.stringify(msg))
  }
}
