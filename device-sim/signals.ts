import { type DeviceKind, KIND_SPECS } from '../firmware-contracts/index.ts'
import type { SimDeviceSpec } from './fleet.ts'
import {
  DISTRICT_TEMPERATURE_OFFSET,
  marketByName,
  REGENCIES,
  REGENCY_NAMES,
  type RegencyName,
  type RiverAlertLevels,
  regencyByCode,
  regencyByName,
  riverGaugeByName,
} from './places.ts'
import { clamp, hashInts, hashString, mulberry32, normalAt, round, smoothNoise, uniformAt } from './random.ts'

/*
 * Every signal is a function of (device, time, seed), plus a little state where the physics needs memory
 * (a people counter's running occupancy). Rain comes from one weather field per regency, so a rain gauge
 * and the river gauge downstream of it agree about the same storm.
 */

const MINUTE = 60_000
const HOUR = 3_600_000
const DAY = 86_400_000
/** Bali and Lombok keep WITA (Asia/Makassar), UTC+8, with no daylight saving. */
export const WITA_OFFSET_MS = 8 * HOUR
/** Days between the stand-in ceremony days (Kajeng Kliwon recurs every 15 days in the Pawukon calendar). */
export const CEREMONY_DAY_PERIOD = 15

export type SignalSpec = Pick<
  SimDeviceSpec,
  'id' | 'kind' | 'name' | 'regency' | 'district' | 'reportingIntervalMs' | 'thresholds'
>
export type Metrics = Record<string, number>

export interface SignalState {
  /** Signal time of the first reading: battery drain is counted from here. */
  readonly startedAt: number
  /** Signal time of the previous reading, if any. */
  readonly lastAt: number | undefined
  /** People inside, for crowd counters: the running sum of entries minus exits, never below zero. */
  readonly occupancy: number
}

export interface SimReading {
  readonly ts: number
  readonly seq: number
  readonly metrics: Metrics
}

export function initialSignalState(startedAt: number): SignalState {
  return { startedAt, lastAt: undefined, occupancy: 0 }
}

// ---------------------------------------------------------------------------------------------- time

/** Local (WITA) day number since the epoch; local midnight starts a new day. */
export function localDay(t: number): number {
  return Math.floor((t + WITA_OFFSET_MS) / DAY)
}

/** Local (WITA) hour of day, fractional, in [0, 24). */
export function localHour(t: number): number {
  const ms = (t + WITA_OFFSET_MS) % DAY
  return (ms < 0 ? ms + DAY : ms) / HOUR
}

/** Local month, 0 = January. */
export function localMonth(t: number): number {
  return new Date(t + WITA_OFFSET_MS).getUTCMonth()
}

/** UTC time of local midnight starting the given local day. */
export function localMidnight(day: number): number {
  return day * DAY - WITA_OFFSET_MS
}

/** A stand-in for Kajeng Kliwon / Purnama: markets are busier, offerings are burnt. */
export function isCeremonyDay(t: number): boolean {
  return localDay(t) % CEREMONY_DAY_PERIOD === 0
}

// ------------------------------------------------------------------------------------------- weather

/** Chance of an afternoon convective storm per day, by month: the wet season runs November to March. */
const STORM_CHANCE_BY_MONTH = [0.62, 0.6, 0.5, 0.32, 0.18, 0.1, 0.07, 0.05, 0.08, 0.18, 0.35, 0.52] as const
const WETTEST = 0.62

export interface RainEvent {
  readonly start: number
  readonly durationMs: number
  /** Peak intensity, mm/h; the event rises and falls as sin². */
  readonly peakMmPerHour: number
}

/** Wetness of the season in [0, 1]: 1 in the heart of the wet season. */
export function seasonWetness(t: number): number {
  return STORM_CHANCE_BY_MONTH[localMonth(t)]! / WETTEST
}

const eventCache = new Map<string, readonly RainEvent[]>()
const EVENT_CACHE_LIMIT = 4096

/**
 * Rain over a regency on one local day: at most an afternoon thunderstorm (13:00-18:00 WITA, heavy-tailed
 * intensity, as wet-season convection is) and a spell of light night or morning rain.
 */
export function rainEventsOn(regency: RegencyName, day: number, seed: number): readonly RainEvent[] {
  const key = `${seed}:${regency}:${day}`
  const cached = eventCache.get(key)
  if (cached !== undefined) return cached
  const next = mulberry32(hashInts(seed, 0x7261696e, REGENCY_NAMES.indexOf(regency), day))
  // Draw every number up front so that one branch never shifts the draws of another.
  const [u1, u2, u3, u4, u5, u6, u7, u8] = [next(), next(), next(), next(), next(), next(), next(), next()]
  const midnight = localMidnight(day)
  const chance =
    STORM_CHANCE_BY_MONTH[localMonth(midnight + 12 * HOUR)]! * REGENCIES[regency].stormChanceFactor
  const events: RainEvent[] = []
  if (u1 < chance) {
    const storm = {
      start: midnight + (13 + 5 * u2) * HOUR,
      durationMs: (0.5 + 2.5 * u3) * HOUR,
      peakMmPerHour: 6 + 64 * u4 ** 2,
    }
    events.push(
      ...stormCells(storm, mulberry32(hashInts(seed, 0x63656c6c, REGENCY_NAMES.indexOf(regency), day))),
    )
  }
  if (u5 < chance * 0.35) {
    events.push({
      start: midnight + 10 * u6 * HOUR,
      durationMs: (1 + 3 * u7) * HOUR,
      peakMmPerHour: 0.8 + 4 * u8,
    })
  }
  if (eventCache.size >= EVENT_CACHE_LIMIT) eventCache.clear()
  eventCache.set(key, events)
  return events
}

/**
 * A thunderstorm is not one smooth pulse: a gauge records a sharp burst from the first cell, then weaker,
 * longer showers from the cells behind it. Splits a storm into 2-4 cells with the same total depth, so the
 * rivers downstream (calibrated on depth) rise as much, with a ragged rain record like a real one.
 */
function stormCells(storm: RainEvent, next: () => number): RainEvent[] {
  const count = 2 + Math.floor(3 * next())
  const cells: RainEvent[] = []
  let offset = 0
  for (let i = 0; i < count; i++) {
    const [a, b, c] = [next(), next(), next()]
    const durationMs = storm.durationMs * (i === 0 ? 0.25 + 0.2 * a : 0.3 + 0.45 * a)
    const peakMmPerHour = storm.peakMmPerHour * (i === 0 ? 1 : 0.15 + 0.55 * b)
    cells.push({ start: storm.start + offset, durationMs, peakMmPerHour })
    // The next cell starts before this one ends (showers overlap) or after a short lull.
    offset += durationMs * (0.45 + 0.8 * c)
  }
  const depth = (e: RainEvent) => (e.peakMmPerHour * e.durationMs) / HOUR / 2
  const scale = depth(storm) / cells.reduce((sum, e) => sum + depth(e), 0)
  return cells.map((e) => ({ ...e, peakMmPerHour: e.peakMmPerHour * scale }))
}

/** A gauge sees the regency's storm a little earlier or later, and stronger or weaker, than its neighbours. */
interface SiteWeather {
  readonly factor: number
  readonly shiftMs: number
}

const WHOLE_REGENCY: SiteWeather = { factor: 1, shiftMs: 0 }

function siteWeather(seed: number, deviceId: string): SiteWeather {
  const h = hashString(deviceId)
  return {
    factor: 0.75 + 0.5 * uniformAt(seed, h, 0x51),
    shiftMs: (uniformAt(seed, h, 0x52) * 2 - 1) * 15 * MINUTE,
  }
}

/** Integral of peak·sin²(πx/d) from 0 to x, in mm when x and d are in hours and the peak in mm/h. */
function pulseIntegral(peak: number, durationH: number, xH: number): number {
  const x = clamp(xH, 0, durationH)
  return peak * (x / 2 - (durationH / (4 * Math.PI)) * Math.sin((2 * Math.PI * x) / durationH))
}

/** Rain intensity in mm/h over a regency (or at one site of it) at time t. */
export function rainRate(
  regency: RegencyName,
  t: number,
  seed: number,
  site: SiteWeather = WHOLE_REGENCY,
): number {
  const day = localDay(t)
  let rate = 0
  for (let d = day - 1; d <= day; d++) {
    for (const e of rainEventsOn(regency, d, seed)) {
      const x = t - (e.start + site.shiftMs)
      if (x <= 0 || x >= e.durationMs) continue
      rate += e.peakMmPerHour * site.factor * Math.sin((Math.PI * x) / e.durationMs) ** 2
    }
  }
  return rate
}

/** Rain fallen between a and b (a < b), mm. Exact: the event shapes integrate in closed form. */
export function rainBetween(
  regency: RegencyName,
  a: number,
  b: number,
  seed: number,
  site: SiteWeather = WHOLE_REGENCY,
): number {
  let mm = 0
  for (let d = localDay(a) - 1; d <= localDay(b); d++) {
    for (const e of rainEventsOn(regency, d, seed)) {
      const start = e.start + site.shiftMs
      const durationH = e.durationMs / HOUR
      const peak = e.peakMmPerHour * site.factor
      mm +=
        pulseIntegral(peak, durationH, (b - start) / HOUR) -
        pulseIntegral(peak, durationH, (a - start) / HOUR)
    }
  }
  return Math.max(0, mm)
}

/** The regency a device belongs to: from its registry record, else from its id prefix, else Denpasar. */
export function regencyOf(spec: Pick<SignalSpec, 'id' | 'regency'>): RegencyName {
  return regencyByName(spec.regency) ?? regencyByCode(spec.id.split('-')[0] ?? '') ?? 'Kota Denpasar'
}

// -------------------------------------------------------------------------------------------- rivers

export const DEFAULT_RIVER_THRESHOLDS: RiverAlertLevels = { waspada: 150, siaga: 200, awas: 250 }

export function riverThresholds(spec: Pick<SignalSpec, 'thresholds'>): RiverAlertLevels {
  const t = spec.thresholds
  const waspada = t?.waspada
  const siaga = t?.siaga
  const awas = t?.awas
  if (waspada !== undefined && siaga !== undefined && awas !== undefined && waspada < siaga && siaga < awas) {
    return { waspada, siaga, awas }
  }
  return DEFAULT_RIVER_THRESHOLDS
}

/** Unit hydrograph: rises to 1 at one lag after the rain, then recedes over several lags. */
function hydrograph(tau: number): number {
  return tau <= 0 ? 0 : tau * Math.exp(1 - tau)
}

/** Storm rain (mm) that takes a gauge just past Waspada; more rain saturates towards the channel's top. */
const WASPADA_STORM_MM = 50

export interface RiverSample {
  readonly waterLevel: number
  readonly flow: number
}

/**
 * Water level: dry-weather base (higher in the wet season) plus the catchment's storms, each routed
 * through a unit hydrograph with the gauge's lag. Scaled from the gauge's own alert levels, so any gauge
 * the registry knows behaves sensibly: a ~50 mm storm crosses Waspada, a rare big one reaches Siaga or
 * Awas, and the river falls back within a day.
 */
export function riverSample(spec: SignalSpec, t: number, seed: number): RiverSample {
  const { waspada, awas } = riverThresholds(spec)
  const gauge = riverGaugeByName(spec.name)
  const catchment = gauge?.catchment ?? regencyOf(spec)
  const h = hashString(spec.id)
  const lagMs = (gauge?.lagHours ?? 1.5 + 2 * uniformAt(seed, h, 0x4c)) * HOUR
  const base = waspada * (0.3 + 0.12 * seasonWetness(t)) + 4 * smoothNoise(seed, h, t, 6 * HOUR)

  let effective = 0
  const day = localDay(t)
  for (let d = day - 3; d <= day; d++) {
    for (const e of rainEventsOn(catchment, d, seed)) {
      const volumeMm = (e.peakMmPerHour * e.durationMs) / HOUR / 2
      effective += volumeMm * hydrograph((t - (e.start + e.durationMs / 2)) / lagMs)
    }
  }
  const dryBase = waspada * 0.36
  const span = (awas - dryBase) * 1.3
  const scale = -WASPADA_STORM_MM / Math.log(1 - (waspada - dryBase + 5) / span)
  const rise = span * (1 - Math.exp(-effective / scale))
  const noise = 0.6 * normalAt(seed, h, t)
  const waterLevel = round(clamp(base + rise + noise, 0, 2900), 1)

  // Rating curve Q = c·(h - h0)^1.6, calibrated to ~60 m³/s at Waspada.
  const h0 = (dryBase * 0.5) / 100
  const c = 60 / Math.max(0.05, waspada / 100 - h0) ** 1.6
  const flow = round(clamp(c * Math.max(0, waterLevel / 100 - h0) ** 1.6, 0, 19_000), 2)
  return { waterLevel, flow }
}

// ---------------------------------------------------------------------------------------- rain gauge

/** Millimetres of rain per tip of the bucket. */
export const BUCKET_MM = 0.2

/** Rain in the reporting interval ending at t, as whole bucket tips. */
export function rainfallInInterval(spec: SignalSpec, t: number, intervalMs: number, seed: number): number {
  const regency = regencyOf(spec)
  const site = siteWeather(seed, spec.id)
  // Tips count the crossings of the running total, so rain is never lost between intervals.
  const origin = localMidnight(localDay(t - intervalMs) - 1)
  const before = rainBetween(regency, origin, t - intervalMs, seed, site)
  const after = before + rainBetween(regency, t - intervalMs, t, seed, site)
  const tips = Math.floor(after / BUCKET_MM + 1e-9) - Math.floor(before / BUCKET_MM + 1e-9)
  return round(clamp(tips * BUCKET_MM, 0, 500), 1)
}

// --------------------------------------------------------------------------------------- air quality

function gaussian(x: number, mu: number, sigma: number): number {
  return Math.exp(-((x - mu) ** 2) / (2 * sigma ** 2))
}

/** Road traffic in [0, ~1]: morning commute and school run, a midday plateau, the evening return. */
export function trafficLevel(t: number): number {
  const h = localHour(t)
  const weekday = new Date(t + WITA_OFFSET_MS).getUTCDay()
  const weekend = weekday === 0 || weekday === 6
  const morning = (weekend ? 0.65 : 1) * gaussian(h, 7.5, 1.1)
  const evening = 0.85 * gaussian(h, 18.3, 1.4)
  const day = h > 8.5 && h < 17 ? 0.35 : 0
  return Math.max(0.06, morning + evening + day)
}

/** Daytime sun in [0, 1]: drives ozone and warming. */
function sunLevel(h: number): number {
  return h > 6 && h < 18 ? Math.sin((Math.PI * (h - 6)) / 12) : 0
}

/** Diurnal temperature shape: 0 at the 06:00 minimum, 1 at the 14:00 maximum. */
function diurnal(h: number): number {
  if (h >= 6 && h < 14) return (1 - Math.cos((Math.PI * (h - 6)) / 8)) / 2
  const since = (h - 14 + 24) % 24
  return (1 + Math.cos((Math.PI * since) / 16)) / 2
}

/**
 * Open burning (household waste, field stubble, and offerings on ceremony days) near a station: a plume of
 * one to four hours, more likely in the dry season.
 */
export function burningPlume(spec: Pick<SignalSpec, 'id'>, t: number, seed: number): number {
  const h = hashString(spec.id)
  const day = localDay(t)
  let extra = 0
  for (let d = day - 1; d <= day; d++) {
    const next = mulberry32(hashInts(seed, h, 0x6669, d))
    const [u1, u2, u3, u4] = [next(), next(), next(), next()]
    const midnight = localMidnight(d)
    const dry = 1 - seasonWetness(midnight + 12 * HOUR)
    const chance = 0.04 + 0.1 * dry + (d % CEREMONY_DAY_PERIOD === 0 ? 0.15 : 0)
    if (u1 >= chance) continue
    const start = midnight + (6 + 14 * u2) * HOUR
    const duration = (1 + 3 * u3) * HOUR
    const x = t - start
    if (x > 0 && x < duration) extra += (60 + 240 * u4) * Math.sin((Math.PI * x) / duration) ** 2
  }
  return extra
}

function airQuality(spec: SignalSpec, t: number, seed: number): Metrics {
  const regency = regencyOf(spec)
  const urban = REGENCIES[regency].urban
  const h = hashString(spec.id)
  const hour = localHour(t)
  const traffic = trafficLevel(t)
  // The boundary layer grows with the sun and collapses at sunset: evening traffic emits into a shallow
  // layer, midday traffic into a deep one.
  const mixing = 1.35 - 0.65 * sunLevel(hour)
  // Rain scrubs particles out; the air recovers over a few hours (weights fade with age, so no step).
  const rainRecent =
    rainBetween(regency, t - HOUR, t, seed) +
    0.5 * rainBetween(regency, t - 2 * HOUR, t - HOUR, seed) +
    0.2 * rainBetween(regency, t - 3 * HOUR, t - 2 * HOUR, seed)
  const washout = 1 - 0.45 * (1 - Math.exp(-rainRecent / 3))
  const dry = 1 - seasonWetness(t)
  const drift = 1 + 0.2 * smoothNoise(seed, h, t, 90 * MINUTE)
  const plume = burningPlume(spec, t, seed)
  const background = (urban ? 13 : 8) * (1 + 0.3 * dry)
  const trafficPm = urban ? 32 : 12

  const pm25 = (background + trafficPm * traffic) * mixing * washout * drift + plume
  const pm10 = pm25 * (1.55 + 0.15 * smoothNoise(seed, h + 1, t, 2 * HOUR)) + 12 * traffic * (1 + dry)
  const co = (300 + (urban ? 1900 : 700) * traffic) * mixing * drift + 18 * plume
  const no2 = (8 + (urban ? 48 : 16) * traffic) * mixing * drift
  const sun = sunLevel(hour)
  const o3 = (22 + 95 * sun ** 1.5 * (1 - 0.3 * traffic)) * (1 + 0.1 * smoothNoise(seed, h + 2, t, 2 * HOUR))
  const so2 = (4 + 9 * traffic) * drift + 0.04 * plume
  const hc = (25 + 55 * traffic) * mixing * drift + 0.25 * plume

  const rainNow = rainRate(regency, t, seed)
  const d = diurnal(hour)
  const temperature =
    24 + 7.5 * d + (DISTRICT_TEMPERATURE_OFFSET[spec.district] ?? 0) - 2 * Math.min(1, rainNow / 10)
  const humidity = 92 - 30 * d + 8 * Math.min(1, rainNow / 5) + 3 * smoothNoise(seed, h + 3, t, HOUR)

  const noisy = (value: number, stream: number, relative: number) =>
    value * (1 + relative * normalAt(seed, h, stream, t))
  return {
    pm25: round(clamp(noisy(pm25, 1, 0.04), 0, 1500), 1),
    pm10: round(clamp(noisy(pm10, 2, 0.04), 0, 2500), 1),
    o3: round(clamp(noisy(o3, 3, 0.03), 0, 2500), 1),
    co: round(clamp(noisy(co, 4, 0.03), 0, 90_000), 0),
    no2: round(clamp(noisy(no2, 5, 0.04), 0, 4500), 1),
    so2: round(clamp(noisy(so2, 6, 0.05), 0, 4500), 1),
    hc: round(clamp(noisy(hc, 7, 0.04), 0, 2500), 1),
    temperature: round(clamp(temperature + 0.2 * normalAt(seed, h, 8, t), -5, 50), 1),
    relativeHumidity: round(clamp(humidity, 25, 100), 1),
  }
}

// ------------------------------------------------------------------------------------------- markets

export interface MarketProfile {
  readonly capacity: number
  readonly opensAt: number
  readonly closesAt: number
}

/** The market a counter stands at, or a plausible mid-sized one for counters the simulator does not know. */
export function marketProfile(spec: Pick<SignalSpec, 'id' | 'name'>, seed: number): MarketProfile {
  const market = marketByName(spec.name)
  if (market !== undefined) return market
  return {
    capacity: Math.round(500 + 1000 * uniformAt(seed, hashString(spec.id), 0x6d)),
    opensAt: 4,
    closesAt: 18,
  }
}

/** Share of the morning peak inside the market at a local hour: a dawn rush, a quiet noon, an afternoon bump. */
export function marketShape(hour: number, opensAt: number, closesAt: number): number {
  if (hour < opensAt || hour >= closesAt) return 0
  const knots: ReadonlyArray<readonly [number, number]> = [
    [opensAt, 0],
    [opensAt + 1, 0.55],
    [Math.max(opensAt + 1.5, 6.5), 1],
    [Math.max(opensAt + 2, 8.5), 0.95],
    [11, 0.45],
    [14.5, 0.35],
    [Math.min(16, closesAt - 1), 0.5],
    [closesAt - 0.5, 0.15],
    [closesAt, 0],
  ]
  for (let i = 1; i < knots.length; i++) {
    const [x1, y1] = knots[i]!
    const [x0, y0] = knots[i - 1]!
    if (hour <= x1) return x1 === x0 ? y1 : y0 + ((y1 - y0) * (hour - x0)) / (x1 - x0)
  }
  return 0
}

/** Expected people inside at time t, as the counter at one entrance would see the whole market. */
export function marketTarget(spec: Pick<SignalSpec, 'id' | 'name'>, t: number, seed: number): number {
  const profile = marketProfile(spec, seed)
  const shape = marketShape(localHour(t), profile.opensAt, profile.closesAt)
  if (shape === 0) return 0
  const weekday = new Date(t + WITA_OFFSET_MS).getUTCDay()
  const busy = (isCeremonyDay(t) ? 1.6 : 1) * (weekday === 0 ? 1.1 : 1)
  const wander = 1 + 0.08 * smoothNoise(seed, hashString(spec.id), t, 2 * HOUR)
  return profile.capacity * shape * busy * wander
}

/** People stay about this long in a traditional market. */
const DWELL_MS = 40 * MINUTE
/** Counters are zeroed at 02:00 WITA, when the market is certainly empty, so miscounts never pile up. */
const COUNTER_RESET_HOUR = 2

function crowd(
  spec: SignalSpec,
  t: number,
  seed: number,
  state: SignalState,
): { metrics: Metrics; occupancy: number } {
  const dt = state.lastAt === undefined ? spec.reportingIntervalMs : t - state.lastAt
  // A counter switched on while the market is open finds people already inside: start from what the
  // model implies for the moment before the first interval, not from an empty market at 14:41.
  let occupancy = state.lastAt === undefined ? Math.round(marketTarget(spec, t - dt, seed)) : state.occupancy
  if (state.lastAt !== undefined && crossedHour(state.lastAt, t, COUNTER_RESET_HOUR)) occupancy = 0
  if (dt <= 0) return { metrics: { peopleIn: 0, peopleOut: 0, occupancy }, occupancy }

  const h = hashString(spec.id)
  const now = marketTarget(spec, t, seed)
  const before = marketTarget(spec, t - dt, seed)
  const leaving = 1 - Math.exp(-dt / DWELL_MS)
  const noiseIn = 1 + 0.1 * normalAt(seed, h, 0x69, t)
  const noiseOut = 1 + 0.1 * normalAt(seed, h, 0x6f, t)
  const peopleIn = Math.max(0, Math.round(Math.max(0, now - before * (1 - leaving)) * noiseIn))
  // After closing the last stragglers must leave: round up so the count reaches zero.
  const expectedOut = Math.max(0, occupancy * leaving * noiseOut)
  const out = now < 1 ? Math.ceil(expectedOut) : Math.round(expectedOut)
  const peopleOut = Math.min(out, occupancy + peopleIn)
  occupancy = Math.max(0, occupancy + peopleIn - peopleOut)
  return { metrics: { peopleIn, peopleOut, occupancy }, occupancy }
}

function crossedHour(from: number, to: number, hour: number): boolean {
  const mark = (d: number) => localMidnight(d) + hour * HOUR
  for (let d = localDay(from); d <= localDay(to); d++) {
    if (mark(d) > from && mark(d) <= to) return true
  }
  return false
}

// ----------------------------------------------------------------------------------- device health

/** Solar-powered field nodes drain slowly and top up by day; a technician swaps the pack at 10 %. */
export function batteryLevel(
  spec: Pick<SignalSpec, 'id' | 'kind'>,
  t: number,
  seed: number,
  startedAt: number,
): number {
  const h = hashString(spec.id)
  if (spec.kind === 'air-quality' || spec.kind === 'crowd-counter') {
    // Mains-powered with a backup pack: it only floats near full.
    return round(clamp(97 + 2 * smoothNoise(seed, h, t, 6 * HOUR), 0, 100), 1)
  }
  const start = 70 + 30 * uniformAt(seed, h, 0x62)
  const drainPerDay = 0.4 + 1.2 * uniformAt(seed, h, 0x64)
  const days = Math.max(0, t - startedAt) / DAY
  const span = 90
  const level = 10 + ((((start - 10 - drainPerDay * days) % span) + span) % span)
  return round(clamp(level + 2 * sunLevel(localHour(t)), 0, 100), 1)
}

/** Signal strength: a fixed path loss per site, fading a little, and worse in heavy rain. */
export function signalStrength(spec: SignalSpec, t: number, seed: number): number {
  const h = hashString(spec.id)
  const base = -62 - 43 * uniformAt(seed, h, 0x72)
  const rain = rainRate(regencyOf(spec), t, seed)
  const value = base + 3 * normalAt(seed, h, 0x73, t) - 4 * Math.min(1, rain / 20)
  return Math.round(clamp(value, -140, -30))
}

// ------------------------------------------------------------------------------------------- readings

/** Metrics in contract order, so payloads look like the firmware's. */
function ordered(kind: DeviceKind, metrics: Metrics): Metrics {
  const out: Metrics = {}
  for (const name of Object.keys(KIND_SPECS[kind].metrics)) {
    const value = metrics[name]
    if (value !== undefined) out[name] = value
  }
  return out
}

/**
 * The metrics a device reports at signal time t. Pure: the same (spec, t, seed, state) always gives the
 * same metrics and next state.
 */
export function sampleMetrics(
  spec: SignalSpec,
  t: number,
  seed: number,
  state: SignalState,
): { metrics: Metrics; state: SignalState } {
  const health = {
    battery: batteryLevel(spec, t, seed, state.startedAt),
    rssi: signalStrength(spec, t, seed),
  }
  let metrics: Metrics
  let occupancy = state.occupancy
  switch (spec.kind) {
    case 'river-level':
      metrics = { ...riverSample(spec, t, seed), ...health }
      break
    case 'rain-gauge': {
      const interval = state.lastAt === undefined ? spec.reportingIntervalMs : Math.max(0, t - state.lastAt)
      metrics = { rainfall: rainfallInInterval(spec, t, interval, seed), ...health }
      break
    }
    case 'air-quality':
      metrics = { ...airQuality(spec, t, seed), ...health }
      break
    case 'crowd-counter': {
      const result = crowd(spec, t, seed, state)
      occupancy = result.occupancy
      metrics = { ...result.metrics, ...health }
      break
    }
  }
  return { metrics: ordered(spec.kind, metrics), state: { startedAt: state.startedAt, lastAt: t, occupancy } }
}

export interface SimulateSeriesOptions {
  /** First reading's time, ms since epoch. */
  readonly from: number
  /** Readings up to and including this time. */
  readonly to: number
  readonly seed: number
  /** Defaults to the device's reporting interval. */
  readonly intervalMs?: number
  readonly firstSeq?: number
}

/** A device's readings over a time span, as it would send them (ts = signal time). */
export function simulateSeries(spec: SignalSpec, options: SimulateSeriesOptions): SimReading[] {
  const interval = options.intervalMs ?? spec.reportingIntervalMs
  if (!(interval > 0)) throw new RangeError('intervalMs must be positive')
  const readings: SimReading[] = []
  let state = initialSignalState(options.from)
  let seq = options.firstSeq ?? 0
  for (let t = options.from; t <= options.to; t += interval) {
    const sample = sampleMetrics(spec, t, options.seed, state)
    state = sample.state
    readings.push({ ts: Math.round(t), seq: seq++, metrics: sample.metrics })
  }
  return readings
}
