// mqtt-packet with and without quiet debug calls (broker/quiet-debug.ts): parse a PUBLISH and write a
// PUBACK, as the broker thread does for every reading. Each variant runs in its own process, since the
// choice is made when mqtt-packet loads; the baseline (mqtt-packet as published) runs in the same
// invocation. `npx tsx bench/packet-debug.ts`. Prints µs per reading, the best of 5 rounds each.
import { spawnSync } from 'node:child_process'
import { createRequire } from 'node:module'
import { Writable } from 'node:stream'

const variant = process.argv[2]
if (variant === undefined) {
  const run = (v: string) => {
    const r = spawnSync(process.execPath, ['--import', 'tsx', new URL(import.meta.url).pathname, v], {
      encoding: 'utf8',
    })
    if (r.status !== 0) throw new Error(`bench: ${v} failed: ${r.stderr}`)
    return Number(r.stdout.trim())
  }
  // Interleaved, twice, so that a busy moment of the machine does not favour one side.
  const figures = { published: [] as number[], quiet: [] as number[] }
  for (let i = 0; i < 2; i++) {
    figures.published.push(run('published'))
    figures.quiet.push(run('quiet'))
  }
  const best = (a: number[]) => Math.min(...a)
  const [p, q] = [best(figures.published), best(figures.quiet)]
  process.stdout.write(
    `parse PUBLISH + write PUBACK: mqtt-packet as published ${p.toFixed(2)} µs, quiet debug ${q.toFixed(2)} µs (${(((p - q) / p) * 100).toFixed(0)}% less)\n`,
  )
  process.stdout.write(`${JSON.stringify({ publishedUs: p, quietUs: q })}\n`)
} else {
  if (variant === 'quiet') {
    const { quietDebugFor } = await import('../broker/quiet-debug.ts')
    if (!quietDebugFor('mqtt-packet')) throw new Error('bench: mqtt-packet was loaded too early')
  }
  const mqttPacket = createRequire(import.meta.url)('mqtt-packet') as typeof import('mqtt-packet')
  const publish = mqttPacket.generate({
    cmd: 'publish',
    topic: 'devices/dps-river-001/telemetry',
    payload: Buffer.from('{"v":1,"seq":123456,"ts":1795533616935,"waterLevel":123.4,"battery":3.9}'),
    qos: 1,
    messageId: 42,
    retain: false,
    dup: false,
  })
  // 100 packets per read, as a busy connection delivers them.
  const chunk = Buffer.concat(Array.from({ length: 100 }, () => publish))
  const parser = mqttPacket.parser()
  let parsed = 0
  parser.on('packet', () => parsed++)
  const sink = new Writable({ write: (_c, _e, cb) => cb() })
  const puback = { cmd: 'puback' as const, messageId: 42 }
  const readings = 500_000
  let best = Number.POSITIVE_INFINITY
  for (let round = 0; round < 5; round++) {
    const t = process.hrtime.bigint()
    for (let i = 0; i < readings / 100; i++) parser.parse(chunk)
    for (let i = 0; i < readings; i++) mqttPacket.writeToStream(puback, sink)
    best = Math.min(best, Number(process.hrtime.bigint() - t) / 1000 / readings)
  }
  if (parsed !== 5 * readings) throw new Error(`bench: parsed ${parsed} packets, expected ${5 * readings}`)
  process.stdout.write(`${best}\n`)
}
