export { createBroker, type PlatformBroker } from './broker.ts'
export { type BrokerConfig, BrokerEnvSchema, brokerConfigFromEnv } from './config.ts'
export { CONNACK, createHooks, type HookDeps } from './hooks.ts'
