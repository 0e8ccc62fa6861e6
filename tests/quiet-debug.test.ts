import { createRequire } from 'node:module'
import { describe, expect, it, vi } from 'vitest'
import { type CreateDebug, type DebugLogger, quietFactory } from '../broker/quiet-debug.ts'
import { spawnTs } from './helpers/process.ts'

const require = createRequire(import.meta.url)

function fakeDebug(enabled: ReadonlySet<string>) {
  const calls: unknown[][] = []
  const factory = Object.assign(
    (namespace: string): DebugLogger =>
      Object.assign((...args: unknown[]) => void calls.push([namespace, ...args]), {
        enabled: enabled.has(namespace),
      }),
    { enable: vi.fn() },
  )
  return { factory, calls }
}

describe('quiet debug for mqtt-packet', () => {
  it('hands out a do-nothing logger for a namespace that is off and the real one for a namespace that is on', () => {
    const { factory, calls } = fakeDebug(new Set(['on']))
    const quiet = quietFactory(factory)
    const offLogger = quiet('off')
    offLogger('parse: %s', 'x')
    expect(offLogger.enabled).toBe(false)
    expect(calls).toEqual([])
    const onLogger = quiet('on')
    onLogger('parse: %s', 'x')
    expect(onLogger.enabled).toBe(true)
    expect(calls).toEqual([['on', 'parse: %s', 'x']])
    // The package's own functions stay reachable through the wrapper.
    ;(quiet as unknown as { enable: (ns: string) => void }).enable('on')
    expect(factory.enable).toHaveBeenCalledWith('on')
  })

  it('follows the real debug package: a namespace switched on before it is created keeps logging', () => {
    const createDebug = require('debug') as CreateDebug & { enable(ns: string): void; disable(): string }
    const quiet = quietFactory(createDebug)
    expect(quiet('quiet-debug-test:off').enabled).toBe(false)
    const before = createDebug.disable()
    try {
      createDebug.enable('quiet-debug-test:*')
      expect(quiet('quiet-debug-test:on').enabled).toBe(true)
    } finally {
      createDebug.enable(before)
    }
  })

  it('applies before mqtt-packet loads, which still parses; with DEBUG set its logging is still there', async () => {
    const run = async (env: Record<string, string>, args: string[] = []) => {
      const child = spawnTs('tests/helpers/quiet-debug-child.ts', args, env)
      expect(await child.exited).toBe(0)
      const line = child.stdout().trim().split('\n').at(-1) ?? ''
      return {
        result: JSON.parse(line) as { mqttPacketQuiet: boolean; packets: string[] },
        stderr: child.stderr(),
      }
    }
    const quiet = await run({})
    expect(quiet.result).toEqual({
      mqttPacketQuiet: true,
      packets: ['publish devices/dps-river-001/telemetry'],
    })
    expect(quiet.stderr).not.toContain('mqtt-packet:parser')
    const debugging = await run({ DEBUG: 'mqtt-packet:parser' })
    expect(debugging.result.packets).toEqual(['publish devices/dps-river-001/telemetry'])
    expect(debugging.stderr).toContain('mqtt-packet:parser _parsePublish')
    // Too late once mqtt-packet is loaded: nothing changes and the caller is told so.
    const late = await run({}, ['late'])
    expect(late.result.mqttPacketQuiet).toBe(false)
    expect(late.result.packets).toEqual(['publish devices/dps-river-001/telemetry'])
  }, 30_000)
})
