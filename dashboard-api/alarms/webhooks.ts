import { createHmac, randomUUID } from 'node:crypto'
import type { Logger } from 'pino'
import type { AlarmsConfig } from './config.ts'
import type { AlarmStore, Delivery } from './store.ts'

export const SIGNATURE_HEADER = 'x-kota-signature'
export const TIMESTAMP_HEADER = 'x-kota-timestamp'
export const DELIVERY_HEADER = 'x-kota-delivery'
export const EVENT_HEADER = 'x-kota-event'

/** `sha256=<hex>` of the raw body: what a receiver recomputes with the shared secret and compares. */
export function signBody(secret: string, body: string): string {
  return `sha256=${createHmac('sha256', secret).update(body).digest('hex')}`
}

const MAX_BACKOFF_MS = 600_000

/**
 * A webhook URL as logs and the API show it: without a user and password, and without its query (gateways
 * often take their API key there).
 */
export function redactUrl(url: string): string {
  try {
    const u = new URL(url)
    return `${u.origin}${u.pathname}${u.search === '' ? '' : '?…'}`
  } catch {
    return '(invalid URL)'
  }
}

/** A text (an error message) with every URL in it redacted: a URL's password and query are no one's business. */
export function redactUrls(text: string): string {
  return text.replace(/\bhttps?:\/\/[^\s"'<>]+/gi, redactUrl)
}

/** What to fetch: fetch refuses a URL with a user or password in it, so they go as Basic auth. */
function requestTarget(url: string): { href: string; authorization: string | undefined } {
  const u = new URL(url)
  if (u.username === '' && u.password === '') return { href: url, authorization: undefined }
  const credentials = `${decodeURIComponent(u.username)}:${decodeURIComponent(u.password)}`
  u.username = ''
  u.password = ''
  return { href: u.href, authorization: `Basic ${Buffer.from(credentials).toString('base64')}` }
}

/** Attempts under way per receiver: each has its own, so one that hangs until its timeout holds back no other. */
const MAX_IN_FLIGHT = 4

/** Exponential backoff with jitter (50–100 % of the step), so many failing receivers do not retry in step. */
export function backoffMs(baseMs: number, attempt: number, random = Math.random): number {
  const step = Math.min(MAX_BACKOFF_MS, baseMs * 2 ** Math.max(0, attempt - 1))
  return Math.round(step * (0.5 + random() / 2))
}

/**
 * Delivers alarm transitions to the configured URLs: a JSON POST signed with HMAC-SHA256, retried with
 * exponential backoff and jitter up to `maxAttempts`, each attempt and its outcome stored. A delivery keeps
 * its id (`X-Kota-Delivery`) over all attempts so a receiver can drop repeats: a receiver that answered
 * 2xx but whose answer was lost gets the same id again. Pending deliveries survive a restart.
 */
export class WebhookDispatcher {
  private readonly queue = new Map<string, Delivery>()
  private readonly inFlight = new Map<string, Promise<void>>()
  /** Attempts under way, by URL. */
  private readonly busy = new Map<string, number>()
  private timer: NodeJS.Timeout | undefined
  private stopped = false
  private readonly abort = new AbortController()

  constructor(
    private readonly config: AlarmsConfig['webhooks'],
    private readonly store: AlarmStore,
    private readonly log: Logger,
  ) {}

  get enabled(): boolean {
    return this.config.urls.length > 0 && this.config.secret !== undefined
  }

  /** New pending deliveries for one event, one per URL (stored by the caller with the transition). */
  prepare(alarmId: string, transitionSeq: number, event: string, payload: unknown, now: number): Delivery[] {
    if (!this.enabled) return []
    return this.config.urls.map((url) => {
      const id = randomUUID()
      const body = JSON.stringify({ id, event, sentFor: now, ...(payload as object) })
      return {
        id,
        alarmId,
        transitionSeq,
        url,
        event,
        body,
        status: 'pending',
        attempts: 0,
        lastError: null,
        lastStatusCode: null,
        nextAttemptAt: now,
        createdAt: now,
        deliveredAt: null,
      }
    })
  }

  async start() {
    let dropped = 0
    for (const d of await this.store.pendingDeliveries()) {
      if (this.enabled && this.config.urls.includes(d.url)) {
        this.queue.set(d.id, d)
        continue
      }
      // The operator took this receiver out (or turned webhooks off) while it still had deliveries to retry.
      d.status = 'failed'
      d.lastError = 'URL no longer in ALARM_WEBHOOK_URLS'
      await this.store.updateDelivery(d).catch((err: Error) => {
        this.log.error({ err: err.message, deliveryId: d.id }, 'could not store webhook delivery status')
      })
      dropped++
    }
    if (dropped > 0)
      this.log.warn({ deliveries: dropped }, 'pending alarm webhooks to URLs no longer configured: not sent')
    this.schedule(0)
  }

  /** Hands stored deliveries to the sender. */
  enqueue(deliveries: readonly Delivery[]) {
    for (const d of deliveries) this.queue.set(d.id, d)
    if (deliveries.length > 0) this.schedule(0)
  }

  async stop() {
    this.stopped = true
    clearTimeout(this.timer)
    this.abort.abort()
    await Promise.allSettled([...this.inFlight.values()])
  }

  private schedule(delayMs: number) {
    if (this.stopped) return
    clearTimeout(this.timer)
    // Never past a backoff's cap: a longer delay overflows the timer, which then fires at once, over and over.
    this.timer = setTimeout(() => this.pump(), Math.min(MAX_BACKOFF_MS, Math.max(0, delayMs)))
    this.timer.unref()
  }

  private pump() {
    if (this.stopped) return
    const now = Date.now()
    let next = Number.POSITIVE_INFINITY
    for (const d of this.queue.values()) {
      if (this.inFlight.has(d.id)) continue
      // Further ahead than any backoff puts it: stored while the clock ran ahead, and it has been put right.
      if (d.nextAttemptAt > now + MAX_BACKOFF_MS) d.nextAttemptAt = now
      if (d.nextAttemptAt > now) {
        next = Math.min(next, d.nextAttemptAt)
        continue
      }
      if (this.inFlight.size >= MAX_IN_FLIGHT * this.config.urls.length) break
      // A receiver at its limit: the end of one of its attempts pumps again.
      const busy = this.busy.get(d.url) ?? 0
      if (busy >= MAX_IN_FLIGHT) continue
      this.busy.set(d.url, busy + 1)
      const p = this.attempt(d).finally(() => {
        this.inFlight.delete(d.id)
        const left = (this.busy.get(d.url) ?? 1) - 1
        if (left > 0) this.busy.set(d.url, left)
        else this.busy.delete(d.url)
        this.schedule(0)
      })
      this.inFlight.set(d.id, p)
    }
    if (Number.isFinite(next)) this.schedule(next - now)
  }

  private async attempt(d: Delivery) {
    const timestamp = String(Date.now())
    d.attempts++
    let error: string | null = null
    let code: number | null = null
    try {
      const { href, authorization } = requestTarget(d.url)
      const res = await fetch(href, {
        method: 'POST',
        headers: {
          ...(authorization !== undefined && { authorization }),
          'content-type': 'application/json',
          'user-agent': 'kota-sensor-platform-alarms/1',
          [SIGNATURE_HEADER]: signBody(this.config.secret!, d.body),
          [TIMESTAMP_HEADER]: timestamp,
          [DELIVERY_HEADER]: d.id,
          [EVENT_HEADER]: d.event,
        },
        body: d.body,
        redirect: 'manual',
        signal: AbortSignal.any([this.abort.signal, AbortSignal.timeout(this.config.timeoutMs)]),
      })
      code = res.status
      await res.body?.cancel().catch(() => undefined)
      if (res.status < 200 || res.status >= 300) error = `HTTP ${res.status}`
    } catch (err) {
      if (this.stopped) {
        // Shutting down: this attempt does not count; the delivery stays pending for the next start.
        d.attempts--
        return
      }
      error = (err as Error).cause ? String((err as Error & { cause: Error }).cause.message) : String(err)
    }
    d.lastStatusCode = code
    if (error === null) {
      d.status = 'delivered'
      d.deliveredAt = Date.now()
      d.lastError = null
      this.queue.delete(d.id)
    } else {
      d.lastError = redactUrls(error).slice(0, 500)
      if (d.attempts >= this.config.maxAttempts) {
        d.status = 'failed'
        this.queue.delete(d.id)
        this.log.error(
          {
            deliveryId: d.id,
            alarmId: d.alarmId,
            url: redactUrl(d.url),
            attempts: d.attempts,
            error: d.lastError,
          },
          'alarm webhook failed; giving up',
        )
      } else {
        d.nextAttemptAt = Date.now() + backoffMs(this.config.retryMs, d.attempts)
        this.log.warn(
          { deliveryId: d.id, url: redactUrl(d.url), attempts: d.attempts, error: d.lastError },
          'alarm webhook failed',
        )
      }
    }
    await this.store.updateDelivery(d).catch((err: Error) => {
      this.log.error({ err: err.message, deliveryId: d.id }, 'could not store webhook delivery status')
    })
  }
}
