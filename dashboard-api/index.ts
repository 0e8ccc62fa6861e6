export { buildApp, type DashboardDeps } from './app.ts'
export { type DashboardConfig, DashboardEnvSchema, dashboardConfigFromEnv } from './config.ts'
export { LiveState } from './live-state.ts'
export * from './protocol.ts'
