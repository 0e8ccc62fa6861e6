import { z } from 'zod'

/** Device kinds of contract version 1. Field names follow FIWARE Smart Data Models where one exists. */
export const DEVICE_KINDS = ['river-level', 'rain-gauge', 'air-quality', 'crowd-counter'] as const
export const DeviceKindSchema = z.enum(DEVICE_KINDS)
export type DeviceKind = z.infer<typeof DeviceKindSchema>

export interface MetricSpec {
  readonly unit: string
  readonly min: number
  readonly max: number
  readonly integer?: boolean
  readonly description: string
}

export interface KindSpec {
  readonly description: string
  /** At least one of these must be present in every reading. */
  readonly requireOneOf: readonly string[]
  readonly metrics: Readonly<Record<string, MetricSpec>>
}

const battery: MetricSpec = { unit: '%', min: 0, max: 100, description: 'Battery charge' }
const rssi: MetricSpec = { unit: 'dBm', min: -150, max: 0, description: 'Received signal strength' }

/**
 * Physical ranges are "plausible for the sensor", not "normal for the place": a value outside them is a
 * broken sensor or firmware bug (reason `out_of_range`), never an alarm.
 */
export const KIND_SPECS = {
  'river-level': {
    description: 'River water level gauge (ultrasonic or radar), mounted above the channel',
    requireOneOf: ['waterLevel'],
    metrics: {
      waterLevel: { unit: 'cm', min: -500, max: 3000, description: 'Water level above gauge zero' },
      flow: { unit: 'm3/s', min: 0, max: 20000, description: 'Discharge, where the gauge estimates it' },
      battery,
      rssi,
    },
  },
  'rain-gauge': {
    description: 'Tipping-bucket rain gauge',
    requireOneOf: ['rainfall'],
    metrics: {
      rainfall: { unit: 'mm', min: 0, max: 500, description: 'Rain fallen during the reporting interval' },
      battery,
      rssi,
    },
  },
  'air-quality': {
    description: 'Air-quality station reporting ISPU pollutants (PermenLHK P.14/2020)',
    requireOneOf: ['pm25', 'pm10', 'o3', 'co', 'no2', 'so2', 'hc'],
    metrics: {
      pm25: { unit: 'µg/m3', min: 0, max: 2000, description: 'PM2.5 concentration' },
      pm10: { unit: 'µg/m3', min: 0, max: 3000, description: 'PM10 concentration' },
      o3: { unit: 'µg/m3', min: 0, max: 3000, description: 'Ozone concentration' },
      co: { unit: 'µg/m3', min: 0, max: 100000, description: 'Carbon monoxide concentration' },
      no2: { unit: 'µg/m3', min: 0, max: 5000, description: 'Nitrogen dioxide concentration' },
      so2: { unit: 'µg/m3', min: 0, max: 5000, description: 'Sulphur dioxide concentration' },
      hc: { unit: 'µg/m3', min: 0, max: 3000, description: 'Hydrocarbons (non-methane) concentration' },
      temperature: { unit: '°C', min: -10, max: 60, description: 'Air temperature' },
      relativeHumidity: { unit: '%', min: 0, max: 100, description: 'Relative humidity' },
      battery,
      rssi,
    },
  },
  'crowd-counter': {
    description: 'People counter at a heritage market entrance',
    requireOneOf: ['peopleIn', 'peopleOut', 'occupancy'],
    metrics: {
      peopleIn: {
        unit: 'people',
        min: 0,
        max: 100000,
        integer: true,
        description: 'Entries during the interval',
      },
      peopleOut: {
        unit: 'people',
        min: 0,
        max: 100000,
        integer: true,
        description: 'Exits during the interval',
      },
      occupancy: { unit: 'people', min: 0, max: 100000, integer: true, description: 'People inside now' },
      battery,
      rssi,
    },
  },
} as const satisfies Record<DeviceKind, KindSpec>

export function isDeviceKind(value: unknown): value is DeviceKind {
  return typeof value === 'string' && (DEVICE_KINDS as readonly string[]).includes(value)
}

/** Metric names of a kind, in contract order (stores use this for columns). */
export function metricNames(kind: DeviceKind): string[] {
  return Object.keys(KIND_SPECS[kind].metrics)
}
