import { type Browser, chromium } from 'playwright-core'

const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium'

/** Debian's Chromium, headless; the flags keep it off the (closed) network and the sandbox root lacks. */
export async function launchChromium(): Promise<Browser> {
  try {
    return await chromium.launch({
      executablePath: CHROMIUM,
      headless: true,
      args: [
        '--no-sandbox',
        '--disable-gpu',
        '--disable-background-networking',
        '--disable-component-update',
        '--disable-sync',
        '--no-first-run',
        '--disable-quic',
      ],
    })
  } catch (err) {
    throw new Error(
      `could not start Chromium at ${CHROMIUM}: install it with \`apt-get install -y chromium\` (Debian package)\n${String(err)}`,
    )
  }
}

/** Polls a page text (bounded) until `ok` accepts it; the error shows the last text seen. */
export async function waitForText(
  read: () => Promise<string>,
  ok: (t: string) => boolean,
  timeoutMs = 20_000,
) {
  const deadline = Date.now() + timeoutMs
  let last = ''
  while (Date.now() < deadline) {
    last = await read()
    if (ok(last)) return last
    await new Promise((r) => setTimeout(r, 200))
  }
  throw new Error(`text did not reach the expected state within ${timeoutMs} ms; last: ${last.slice(0, 300)}`)
}
