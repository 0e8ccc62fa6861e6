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
