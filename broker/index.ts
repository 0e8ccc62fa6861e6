export { type BrokerAddresses, createBroker, type PlatformBroker } from './broker.ts'
export {
  type BrokerConfig,
  BrokerEnvSchema,
  brokerConfigFromEnv,
  parseInternalCredentials,
} from './config.ts'
export {
  ConnectionLimiter,
  type GuardViolation,
  guardConnection,
  MqttFrameScanner,
  TELEMETRY_PUBLISH_OVERHEAD_BYTES,
} from './guard.ts'
export { CONNACK, createHooks, type HookDeps, type HookOptions, INTERNAL_PREFIX } from './hooks.ts'
