// Runs one load step in its own process (so the generator does not share an event loop with what it
// measures) and prints the report as one JSON line on stdout.
import { runLoad } from '../device-sim/index.ts'

const input = JSON.parse(
  await new Promise<string>((resolve) => {
    let text = ''
    process.stdin.on('data', (d) => {
      text += d
    })
    process.stdin.on('end', () => resolve(text))
  }),
)
// Its progress lines ("devices connected", "send window over") let the bench time the send window.
const report = await runLoad({ ...input, log: (_level: string, message: string) => console.log(message) })
process.stdout.write(
  `${JSON.stringify({
    ...report,
    ackedSeqs: Object.fromEntries(Object.entries(report.ackedSeqs).map(([id, set]) => [id, set.ranges()])),
  })}\n`,
)
