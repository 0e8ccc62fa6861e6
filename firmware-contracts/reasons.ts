/**
 * Stable reason codes for rejected payloads. Installers, dashboards and firmware teams key on these
 * strings: add new ones, never rename or reuse.
 */
export const REJECT_REASONS = {
  invalid_json: 'Payload is not valid UTF-8 JSON',
  schema: 'Payload does not match the contract for this device kind',
  out_of_range: 'A value lies outside the plausible physical range of the sensor',
  unknown_kind: 'The device kind has no contract',
  too_large: 'Payload exceeds the size limit',
  future_timestamp: 'Reading timestamp lies too far in the future',
  unsupported_version: 'Contract version is not supported',
  bad_topic: 'Topic does not follow the device topic grammar',
  unknown_device: 'The device is not registered',
  store_refused: 'The time-series store refused the reading',
  spool_full:
    'The spool is at its disk limit (a long store outage): a QoS 0 reading, which cannot be slowed down, is not kept; QoS 1 readings wait instead',
} as const
export type RejectReason = keyof typeof REJECT_REASONS

export interface Rejection {
  readonly code: RejectReason
  /** Human-readable detail (zod's prettified error for schema problems). */
  readonly message: string
}
