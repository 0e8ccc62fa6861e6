import { readFileSync } from 'node:fs'
import { createServer as createHttpServer, type Server as HttpServer } from 'node:http'
import { createServer, type Server, type Socket } from 'node:net'
import type { Duplex } from 'node:stream'
import { createServer as createTlsServer, type Server as TlsServer } from 'node:tls'
import { Aedes, type Client, type PublishPacket } from 'aedes'
import { Counter } from 'prom-client'
import { createWebSocketStream, WebSocketServer } from 'ws'
import { topicFor } from '../firmware-contracts/index.ts'
import type { BrokerConfig } from './config.ts'
import { ConnectionLimiter, guardConnection } from './guard.ts'
import { createHooks, type HookDeps } from './hooks.ts'
import { ownBytes, SharedReadBuffer } from './shared-read-buffer.ts'

export interface BrokerAddresses {
  readonly host: string
  readonly port: number
  /** Set when MQTT over WebSocket is configured; the path is `/mqtt`. */
  readonly wsPort?: number
  /** Set when MQTT over TLS is configured. */
  readonly tlsPort?: number
}

export interface PlatformBroker {
  readonly aedes: Aedes
  /** Starts listening; resolves with the bound ports (the OS picks them when configured with 0). */
  start(): Promise<BrokerAddresses>
  /** Closes a device's live connection at once (revocation, rotation). True if it was connected. */
  disconnect(deviceId: string, reason: string): boolean
  /** Stops accepting connections, then disconnects every client. */
  stop(): Promise<void>
}

type Listener = Server | TlsServer | HttpServer

/** The parts of Aedes's persistence (aedes-persistence's interface) that the broker wraps or calls itself. */
interface SessionStore {
  addSubscriptions(client: Client, subs: Array<{ topic: string }>): Promise<void>
  incomingStorePacket(client: Client, packet: PublishPacket): Promise<void>
  subscriptionsByClient(client: { id: string }): Promise<unknown[]>
  cleanSubscriptions(client: { id: string }): Promise<void>
  cleanIncoming(client: { id: string }): Promise<void>
  delWill(client: { id: string }): Promise<unknown>
  outgoingStream(client: { id: string }): AsyncIterable<{ messageId?: number }>
  outgoingClearMessageId(client: { id: string }, packet: { messageId?: number }): Promise<unknown>
  /** An empty payload removes the topic's retained message. */
  storeRetained(packet: { topic: string; payload: Buffer }): Promise<void>
}

const EMPTY_PAYLOAD = Buffer.alloc(0)

function listen(server: Listener, port: number, host: string): Promise<number> {
  return new Promise((resolve, reject) => {
    server.once('error', reject)
    server.listen(port, host, () => {
      server.off('error', reject)
      const address = server.address()
      resolve(typeof address === 'object' && address ? address.port : port)
    })
  })
}

export async function createBroker(config: BrokerConfig, deps: HookDeps): Promise<PlatformBroker> {
  const register = [deps.metrics.registry]
  const disconnected = new Counter({
    name: 'broker_devices_disconnected_total',
    help: 'Device connections the broker closed, by reason (flood, revoked, rotated, decommissioned)',
    labelNames: ['reason'] as const,
    registers: register,
  })
  const throttled = new Counter({
    name: 'broker_publishes_throttled_total',
    help: 'Publishes held back because a device exceeded its rate',
    registers: register,
  })
  const sessionsDropped = new Counter({
    name: 'broker_sessions_dropped_total',
    help: 'Persistent device sessions the broker dropped, by reason (expired, revoked, decommissioned, registered)',
    labelNames: ['reason'] as const,
    registers: register,
  })
  const messagesDropped = new Counter({
    name: 'broker_session_messages_dropped_total',
    help: 'Messages queued for a device (config, cmd) that went with its dropped persistent session, by reason',
    labelNames: ['reason'] as const,
    registers: register,
  })
  const guarded = new Counter({
    name: 'broker_connections_closed_by_guard_total',
    help: 'Connections closed before MQTT handling: oversized packet, malformed length, too many per address',
    labelNames: ['reason'] as const,
    registers: register,
  })

  /** The live client of each connected device (the latest one: Aedes closes a session it takes over). */
  const live = new Map<string, Client>()

  const closeClient = (client: Client, deviceId: string, reason: string) => {
    disconnected.inc({ reason })
    deps.log.warn({ deviceId, reason }, 'disconnecting device')
    client.close()
  }

  const hooks = createHooks(deps, {
    ratePerSec: config.deviceRatePerSec,
    burst: config.deviceBurst,
    floodLimit: config.deviceFloodLimit,
    internalCredentials: config.internalCredentials,
    onFlood: (client, deviceId) => closeClient(client, deviceId, 'flood'),
    onThrottle: () => throttled.inc(),
  })
  const aedes = await Aedes.createBroker({
    authenticate: hooks.authenticate,
    authorizePublish: hooks.authorizePublish,
    authorizeSubscribe: hooks.authorizeSubscribe,
    // A last will stays for as long as its device is connected: its payload gets memory of its own,
    // rather than the shared read slab it arrived in (see shared-read-buffer.ts).
    preConnect: (_client, packet, callback) => {
      if (packet.will && Buffer.isBuffer(packet.will.payload))
        packet.will.payload = ownBytes(packet.will.payload)
      callback(null, true)
    },
    connectTimeout: config.connectTimeoutMs,
    keepaliveLimit: config.keepaliveLimitS,
    queueLimit: config.queueLimit,
    maxTopicLevels: config.maxTopicLevels,
    // Device ids run to 64 characters (the MQTT 3.1.1 minimum of 23 would refuse valid devices).
    maxClientsIdLength: 64,
  })
  // Aedes stores a persistent session's subscriptions as the whole SUBSCRIBE packet asked for them, refused
  // filters included (handlers/subscribe.js, storeSubscriptions): a device with clean=false that asked for
  // [its config, '#'] got SUBACK [1, 0x80] and yet every later QoS 1 message queued for it, other devices'
  // config and commands included, delivered when it reconnected (restored subscriptions are not
  // authorised again). Only what the subscription rule allows is stored.
  const persistence = (aedes as unknown as { persistence: unknown }).persistence as SessionStore
  const addSubscriptions = persistence.addSubscriptions.bind(persistence)
  persistence.addSubscriptions = (client, subs) =>
    addSubscriptions(
      client,
      subs.filter((sub) => hooks.maySubscribe(client, sub.topic)),
    )
  // A QoS 2 message is kept from its PUBREC to its PUBREL only so that a resend is known as one: Aedes
  // publishes it on arrival and never reads the kept payload. Kept whole, a device that never sent PUBREL
  // held up to 1,000 payloads (MQTT_MAX_PACKET_BYTES each) per connection in the broker thread's memory, and
  // a persistent session kept them across reconnects, 1,000 more each time. Only the packet id is needed.
  // None at all for a reading whose commit lands after its device's registration ended (revoked or
  // decommissioned while the reading was on its way to disk): its id would outlive the dropped session
  // (dropSession), for good. Its connection is closed by then, so no PUBREC is lost; the reading is durable.
  const incomingStorePacket = persistence.incomingStorePacket.bind(persistence)
  persistence.incomingStorePacket = (client, packet) =>
    registrationEnded(client)
      ? Promise.reject(new Error('device registration ended'))
      : incomingStorePacket(client, { ...packet, payload: EMPTY_PAYLOAD })

  /** A device connection whose registration has ended since it authenticated: revoked, decommissioned, replaced. */
  const registrationEnded = (client: Client): boolean => {
    const device = hooks.deviceOf(client)
    if (device === undefined) return false
    const current = deps.registry.get(device.id)
    return (
      current === undefined ||
      current.createdAt !== device.createdAt ||
      (current.status !== 'active' && current.status !== 'provisioned')
    )
  }

  /**
   * Ends a device's persistent session (clean=false) in Aedes's persistence: its subscriptions, the messages
   * queued for it (sent and not yet acknowledged, or not sent), its unreleased QoS 2 packet ids and its will.
   * Aedes does this only when a clean CONNECT takes the client id over, so a revoked device's session stayed
   * in memory for ever, and a new device registered under a decommissioned id found the old device's session
   * at its first clean=false CONNECT: its subscriptions and the config and commands queued for the old one.
   * Through the persistence's own interface (Aedes clears a queue packet by packet too), so it holds for any.
   */
  const dropSession = async (deviceId: string, reason: string): Promise<void> => {
    const id = { id: deviceId }
    try {
      const subscriptions = (await persistence.subscriptionsByClient(id)).length
      await persistence.cleanSubscriptions(id)
      await persistence.cleanIncoming(id)
      await persistence.delWill(id)
      let queued = 0
      for await (const packet of persistence.outgoingStream(id)) {
        await persistence.outgoingClearMessageId(id, packet)
        queued++
      }
      if (subscriptions === 0 && queued === 0) return
      sessionsDropped.inc({ reason })
      messagesDropped.inc({ reason }, queued)
      deps.log.info({ deviceId, reason, subscriptions, queued }, 'persistent session dropped')
    } catch (err) {
      deps.log.warn({ deviceId, reason, err: (err as Error).message }, 'persistent session not dropped')
    }
  }

  // MQTT 3.1.1 keeps a persistent session until a clean CONNECT ends it: a device that never comes back (moved,
  // broken, replaced without decommissioning) kept its subscriptions and every command queued for it. A session
  // offline for MQTT_SESSION_EXPIRY_S is dropped. By device id, when it went offline (performance.now()),
  // oldest first: a sweep stops at the first one still in time.
  const offlineSince = new Map<string, number>()
  const expiryMs = config.sessionExpiryS * 1000
  const connected = (aedes as unknown as { clients: Record<string, Client | undefined> }).clients
  const expiry = setInterval(
    () => {
      const cutoff = performance.now() - expiryMs
      for (const [deviceId, since] of offlineSince) {
        if (since > cutoff) break
        offlineSince.delete(deviceId)
        // Taken up again by a CONNECT on its way to its CONNACK: that session carries on.
        if (connected[deviceId] === undefined) void dropSession(deviceId, 'expired')
      }
    },
    Math.min(expiryMs, 60_000),
  )
  expiry.unref()

  // Aedes routes every accepted publish: a packet copy, the offline-session lookup and enqueue (two promise
  // hops for QoS 1), the subscription trie and the `published` hook. For telemetry nobody subscribed to that
  // was a sixth of the broker thread's time at 20,000 readings/s; such publishes end at the spool.
  // Aedes calls it as publish(packet, client, done) from its handlers; its typings know publish(packet, done).
  type Publish = (packet: PublishPacket, client: Client | null, done?: (err?: Error) => void) => void
  const internals = aedes as unknown as { publish: Publish }
  const route = internals.publish.bind(aedes)
  internals.publish = (packet, client, done) => {
    if (typeof client !== 'function') {
      if (hooks.unrouted(client, packet)) return done?.()
      // A routed message may be queued for an offline session or retained: its payload gets memory of its own.
      if (client !== null && Buffer.isBuffer(packet.payload)) packet.payload = ownBytes(packet.payload)
    }
    route(packet, client, done)
  }

  // Online from the moment the CONNACK is written, not at Aedes's `clientReady`: that comes only after the
  // session's offline queue is drained, and the client is read again before it, so a birth message could be
  // handled first and then be overwritten by the connection's own status. `connackSent` comes before the
  // client is read again; a refused CONNACK never registers the client, so no disconnect follows it.
  aedes.on('connackSent', (connack, client) => {
    if (connack.returnCode !== 0) return
    deps.metrics.mqttClients.inc()
    const device = hooks.deviceOf(client)
    if (device === undefined) return
    offlineSince.delete(device.id)
    // Rotated or revoked after this CONNECT was authenticated and before now: no live session to close then,
    // so this one would have outlived it (the old secret kept publishing). Closed before any queued packet.
    const outlived = hooks.outlived(client)
    if (outlived !== undefined) return closeClient(client, device.id, outlived)
    live.set(device.id, client)
    deps.bus.emit('device.status', { deviceId: device.id, online: true, at: Date.now(), source: 'connect' })
    if (device.status === 'provisioned') {
      deps.registry
        .setStatus(device.id, 'active', 'broker')
        .catch((err) => deps.log.warn({ err: err.message, deviceId: device.id }, 'activate failed'))
    }
  })
  aedes.on('clientDisconnect', (client) => {
    deps.metrics.mqttClients.dec()
    const device = hooks.deviceOf(client)
    if (device === undefined) return
    if (live.get(device.id) === client) live.delete(device.id)
    // A revoked or replaced device's session is dropped already (onRegistryChange).
    if (!client.clean && !registrationEnded(client)) {
      offlineSince.delete(device.id)
      offlineSince.set(device.id, performance.now())
    }
    deps.bus.emit('device.status', {
      deviceId: device.id,
      online: false,
      at: Date.now(),
      source: 'disconnect',
    })
  })
  aedes.on('clientError', (client, err) => {
    deps.log.debug({ clientId: String(client?.id).slice(0, 64), err: err.message }, 'client error')
  })
  aedes.on('connectionError', (client, err) => {
    deps.log.debug({ clientId: String(client?.id).slice(0, 64), err: err.message }, 'connection error')
  })

  const disconnect = (deviceId: string, reason: string): boolean => {
    const client = live.get(deviceId)
    if (client === undefined) return false
    live.delete(deviceId)
    closeClient(client, deviceId, reason)
    return true
  }

  // A revoked, decommissioned or re-keyed device loses its connection at once, not at its next reconnect.
  // A revoked or decommissioned one loses its persistent session too, and an id registered again is a new
  // device (a decommissioned one comes back that way); a re-keyed device is the same one and keeps it.
  const onRegistryChange = (change: { device: { id: string; status: string }; action: string }) => {
    const id = change.device.id
    const ends =
      change.action === 'rotate-secret'
        ? 'rotated'
        : change.action === 'status' && ['revoked', 'decommissioned'].includes(change.device.status)
          ? change.device.status
          : undefined
    if (ends !== undefined) {
      hooks.endSessions(id, ends)
      disconnect(id, ends)
    }
    const drops = change.action === 'register' ? 'registered' : ends === 'rotated' ? undefined : ends
    if (drops === undefined) return
    offlineSince.delete(id)
    void dropSession(id, drops)
    // The config an internal client retained for the device goes with it too: a device registered again
    // under the id got the old one's on subscribing, clean session or not. Not at registration, so that a
    // config retained for the replacement meanwhile stays. Nothing else may be retained on a device's topics.
    if (drops === 'registered') return
    persistence
      .storeRetained({ topic: topicFor(id, 'config'), payload: EMPTY_PAYLOAD })
      .catch((err) => deps.log.warn({ deviceId: id, err: err.message }, 'retained config not dropped'))
  }
  deps.registry.on('changed', onRegistryChange)

  const limiter = new ConnectionLimiter(config.maxConnectionsPerIp)
  /** Every transport goes through here: per-address limit, then the packet-size guard, then Aedes. */
  const accept = (transport: Duplex, address: string, req?: unknown) => {
    if (!limiter.acquire(address)) {
      guarded.inc({ reason: 'too_many_connections' })
      deps.log.warn({ address }, 'too many connections from one address')
      transport.destroy()
      return
    }
    let released = false
    const release = () => {
      if (released) return
      released = true
      limiter.release(address)
    }
    transport.once('close', release)
    transport.on('error', () => undefined)
    guardConnection(transport, config.maxPacketBytes, (violation) => {
      guarded.inc({ reason: violation })
      deps.log.warn({ address, violation }, 'connection closed by the packet guard')
    })
    aedes.handle(transport, req as Parameters<typeof aedes.handle>[1])
  }
  const onSocket = (socket: Socket) => accept(socket, socket.remoteAddress ?? 'unknown')

  // Nagle's algorithm delays small PUBACKs by up to 40 ms.
  const servers: Listener[] = []
  const reads = new SharedReadBuffer()
  let defaultReadsLogged = false
  const tcp: Server = createServer({ noDelay: true }, (socket) => {
    if (!reads.adopt(socket) && !defaultReadsLogged) {
      defaultReadsLogged = true
      deps.log.warn('this Node cannot read TCP connections through a shared buffer; each read allocates')
    }
    onSocket(socket)
  })
  tcp.on('error', (err) => deps.log.error({ err }, 'mqtt listener error'))
  servers.push(tcp)

  let tls: TlsServer | undefined
  if (config.tls) {
    tls = createTlsServer(
      { cert: readFileSync(config.tls.certFile), key: readFileSync(config.tls.keyFile), noDelay: true },
      onSocket,
    )
    tls.on('tlsClientError', (err) => deps.log.debug({ err: err.message }, 'tls handshake failed'))
    tls.on('error', (err) => deps.log.error({ err }, 'mqtt tls listener error'))
    servers.push(tls)
  }

  let http: HttpServer | undefined
  let wss: WebSocketServer | undefined
  if (config.wsPort !== undefined) {
    http = createHttpServer((_req, res) => {
      res.writeHead(426, { 'content-type': 'text/plain' }).end('MQTT over WebSocket: upgrade at /mqtt\n')
    })
    wss = new WebSocketServer({
      server: http,
      path: '/mqtt',
      // The frame guard sees the MQTT stream; this caps one WebSocket message before ws buffers it.
      maxPayload: config.maxPacketBytes + 8,
      handleProtocols: (protocols) => (protocols.has('mqtt') ? 'mqtt' : false),
    })
    wss.on('connection', (ws, req) => {
      req.socket.setNoDelay(true)
      const stream = createWebSocketStream(ws)
      accept(stream, req.socket.remoteAddress ?? 'unknown', req)
    })
    wss.on('error', (err) => deps.log.error({ err }, 'mqtt websocket error'))
    http.on('error', (err) => deps.log.error({ err }, 'mqtt websocket listener error'))
    servers.push(http)
  }

  return {
    aedes,
    disconnect,
    start: async () => {
      const port = await listen(tcp, config.port, config.host)
      const wsPort =
        http && config.wsPort !== undefined ? await listen(http, config.wsPort, config.host) : undefined
      const tlsPort = tls && config.tls ? await listen(tls, config.tls.port, config.host) : undefined
      return {
        host: config.host,
        port,
        ...(wsPort !== undefined && { wsPort }),
        ...(tlsPort !== undefined && { tlsPort }),
      }
    },
    stop: async () => {
      deps.registry.off('changed', onRegistryChange)
      clearInterval(expiry)
      const closing = servers.map(
        (server) =>
          new Promise<void>((resolve) => {
            if (!server.listening) return resolve()
            server.close(() => resolve())
          }),
      )
      // server.close waits for open sockets; closing Aedes ends them.
      for (const client of wss?.clients ?? []) client.terminate()
      if (!aedes.closed) await new Promise<void>((resolve) => aedes.close(() => resolve()))
      await Promise.all(closing)
    },
  }
}
