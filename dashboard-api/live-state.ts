import { Aggregator } from './aggregates/aggregator.ts'

/**
 * The live state of every device the dashboard shows: the aggregator (latest per device, rolling windows,
 * ISPU, river status, occupancy, derived alarms). Kept under this name because the composition root and
 * the app know it as the dashboard's live dependency.
 */
export class LiveState extends Aggregator {}
export type { AggregatorOptions, CachedView } from './aggregates/aggregator.ts'
