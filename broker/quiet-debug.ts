// mqtt-packet calls `debug(...)` about a dozen times for every packet it parses and again for every packet
// it writes. With debugging off each call returns at once, but only after its rest parameter has allocated
// an array: about 1 µs per PUBLISH and PUBACK together (a quarter of mqtt-packet's own time for them) and
// an eighth of what the broker thread allocates. A namespace that is off when mqtt-packet loads gets a
// function that does nothing instead; one that is on (DEBUG=mqtt-packet:*) keeps the real logger.
import { createRequire } from 'node:module'

/** The `debug` package's factory, as far as this module uses it. */
export type CreateDebug = (namespace: string) => DebugLogger
export interface DebugLogger {
  (...args: unknown[]): void
  readonly enabled: boolean
}

const off: DebugLogger = Object.assign(() => {}, { enabled: false })

/** A factory like `createDebug` that hands out a do-nothing logger for namespaces that are off. */
export function quietFactory(createDebug: CreateDebug): CreateDebug {
  // The package's own properties (enable, disable, formatters, …) stay reachable through the wrapper.
  return Object.assign((namespace: string) => {
    const logger = createDebug(namespace)
    return logger.enabled ? logger : off
  }, createDebug)
}

/**
 * Makes `packageName` (mqtt-packet) load a quiet `debug`. Must run before that package is first loaded:
 * returns false, changing nothing, when it is too late or the package does not use `debug`.
 */
export function quietDebugFor(packageName: string): boolean {
  const require = createRequire(import.meta.url)
  let packagePath: string
  let debugPath: string
  try {
    packagePath = require.resolve(packageName)
    debugPath = createRequire(packagePath).resolve('debug')
  } catch {
    return false
  }
  if (require.cache[packagePath] !== undefined) return false
  const createDebug = require(debugPath) as CreateDebug
  const cached = require.cache[debugPath]
  if (cached === undefined || typeof createDebug !== 'function') return false
  cached.exports = quietFactory(createDebug)
  return true
}
