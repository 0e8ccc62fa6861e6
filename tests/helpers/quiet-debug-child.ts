// Child process for tests/quiet-debug.test.ts: loads mqtt-packet the way the broker thread does (after
// quiet-mqtt-packet.ts, or before it with `late`) and parses one PUBLISH. Prints one JSON line.
import { createRequire } from 'node:module'

const late = process.argv[2] === 'late'
const require = createRequire(import.meta.url)
if (late) require('mqtt-packet')
const { mqttPacketQuiet } = await import('../../broker/quiet-mqtt-packet.ts')
const mqttPacket = require('mqtt-packet') as typeof import('mqtt-packet')
const parser = mqttPacket.parser()
const packets: string[] = []
parser.on('packet', (p) => packets.push(`${p.cmd} ${'topic' in p ? p.topic : ''}`))
parser.parse(
  mqttPacket.generate({
    cmd: 'publish',
    topic: 'devices/dps-river-001/telemetry',
    payload: Buffer.from('{}'),
    qos: 1,
    messageId: 7,
    retain: false,
    dup: false,
  }),
)
process.stdout.write(`${JSON.stringify({ mqttPacketQuiet, packets })}\n`)
