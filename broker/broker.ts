import { createServer, type Server } from 'node:net'
import { Aedes } from 'aedes'
import type { BrokerConfig } from './config.ts'
import { createHooks, type HookDeps } from './hooks.ts'

export interface PlatformBroker {
  readonly aedes: Aedes
  /** Starts listening; resolves with the bound port (the OS picks one when configured with 0). */
  start(): Promise<{ host: string; port: number }>
  /** Stops accepting connections, then disconnects every client. */
  stop(): Promise<void>
}

export async function createBroker(config: BrokerConfig, deps: HookDeps): Promise<PlatformBroker> {
  const hooks = createHooks(deps)
  const aedes = await Aedes.createBroker({
    authenticate: hooks.authenticate,
    authorizePublish: hooks.authorizePublish,
    authorizeSubscribe: hooks.authorizeSubscribe,
    connectTimeout: config.connectTimeoutMs,
    keepaliveLimit: config.keepaliveLimitS,
    queueLimit: config.queueLimit,
    maxTopicLevels: config.maxTopicLevels,
  })

  aedes.on('clientReady', (client) => {
    deps.metrics.mqttClients.inc()
    const device = hooks.deviceOf(client)
    if (device === undefined) return
    deps.bus.emit('device.status', { deviceId: device.id, online: true, at: Date.now(), source: 'connect' })
    if (device.status === 'provisioned') {
      deps.registry
        .setStatus(device.id, 'active', 'broker')
        .catch((err) => deps.log.error({ err }, 'activate failed'))
    }
  })
  aedes.on('clientDisconnect', (client) => {
    deps.metrics.mqttClients.dec()
    const device = hooks.deviceOf(client)
    if (device === undefined) return
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

  // Nagle's algorithm delays small PUBACKs by up to 40 ms.
  const server: Server = createServer({ noDelay: true }, aedes.handle)
  server.on('error', (err) => deps.log.error({ err }, 'mqtt listener error'))

  return {
    aedes,
    start: () =>
      new Promise((resolve, reject) => {
        server.once('error', reject)
        server.listen(config.port, config.host, () => {
          server.off('error', reject)
          const address = server.address()
          resolve({
            host: config.host,
            port: typeof address === 'object' && address ? address.port : config.port,
          })
        })
      }),
    stop: async () => {
      await new Promise<void>((resolve) => {
        if (!server.listening) return resolve()
        server.close(() => resolve())
        // server.close waits for open sockets; closing Aedes below ends them.
        aedes.close()
      })
      if (!aedes.closed) await new Promise<void>((resolve) => aedes.close(() => resolve()))
    },
  }
}
