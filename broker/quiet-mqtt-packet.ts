// Loaded by the broker thread before its entry (startBrokerThread), so that it runs before Aedes loads
// mqtt-packet; quiet-debug.ts says why.
import { quietDebugFor } from './quiet-debug.ts'

export const mqttPacketQuiet = quietDebugFor('mqtt-packet')
