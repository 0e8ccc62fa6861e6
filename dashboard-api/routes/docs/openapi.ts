import { z } from 'zod'
import {
  CompletenessQuerySchema,
  QUERY_ERROR_CODES,
  ReadingsQuerySchema,
} from '../../../ingest/query/index.ts'

const CellSchema = z.union([z.number(), z.string(), z.null()])

/** The JSON answer of /api/v1/readings, described for the OpenAPI document. */
export const QueryResultSchema = z.object({
  kind: z.string(),
  from: z.number().int().describe('ms since epoch, inclusive'),
  to: z.number().int().describe('ms since epoch, exclusive'),
  window: z.string(),
  tz: z.string(),
  groupBy: z.enum(['device', 'district']),
  aggregates: z.array(z.string()),
  columns: z
    .array(z.string())
    .describe('`<metric>_<aggregate>` per window, `<metric>` for raw; ispu, ispuCategory, ispuCritical'),
  rows: z.number().int(),
  series: z.array(
    z.object({
      key: z.string().describe('the device id or the district'),
      time: z.array(z.number().int()).describe('window starts (or observation times), ms since epoch'),
      device: z
        .array(z.string())
        .optional()
        .describe('raw readings grouped by district: the device of each row'),
      values: z.record(z.string(), z.array(CellSchema)).describe('one array per column, aligned with `time`'),
    }),
  ),
})

export const CompletenessSchema = z.object({
  device: z.string(),
  from: z.number().int(),
  to: z.number().int(),
  reportingIntervalMs: z.number().int(),
  expected: z.number().int(),
  arrived: z.number().int(),
  share: z.number().nullable(),
  seqMissing: z.number().int(),
  late: z.number().int(),
  gaps: z.array(z.object({ from: z.number().int(), to: z.number().int(), missing: z.number().int() })),
  gapsTruncated: z.boolean(),
})

const ErrorSchema = z.object({
  error: z.object({
    code: z.enum(['unauthorized', 'invalid_json', ...Object.keys(QUERY_ERROR_CODES)]),
    message: z.string(),
  }),
})

type JsonSchema = Record<string, unknown>

function jsonSchema(schema: z.ZodType, io: 'input' | 'output'): JsonSchema {
  const { $schema: _, ...rest } = z.toJSONSchema(schema, { io, unrepresentable: 'any' }) as JsonSchema
  return rest
}

/** Query parameters of a GET from the properties of its zod schema; lists are comma-separated. */
function parameters(schema: z.ZodType): JsonSchema[] {
  const json = jsonSchema(schema, 'input') as { properties: Record<string, JsonSchema>; required?: string[] }
  return Object.entries(json.properties).map(([name, property]) => {
    const { description, ...rest } = property
    return {
      name,
      in: 'query',
      required: json.required?.includes(name) ?? false,
      ...(description !== undefined && { description }),
      schema: rest,
      ...(rest.type === 'array' && { style: 'form', explode: false }),
    }
  })
}

const errors = {
  '400': {
    description: 'bad_request or query_too_large',
    content: { 'application/json': { schema: { $ref: '#/components/schemas/Error' } } },
  },
  '401': {
    description: 'unauthorized',
    content: { 'application/json': { schema: { $ref: '#/components/schemas/Error' } } },
  },
  '503': {
    description: 'store_unavailable',
    content: { 'application/json': { schema: { $ref: '#/components/schemas/Error' } } },
  },
  '504': {
    description: 'query_timeout',
    content: { 'application/json': { schema: { $ref: '#/components/schemas/Error' } } },
  },
}

/** The OpenAPI 3.1 document of the analyst API, generated from the route schemas. */
export function openApiDocument(): JsonSchema {
  const result = {
    '200': {
      description:
        'columnar JSON, or CSV when format=csv (comma, decimal point) or format=csv-id (semicolon, decimal comma, for spreadsheets in the Indonesian locale), streamed',
      content: {
        'application/json': { schema: { $ref: '#/components/schemas/QueryResult' } },
        'text/csv': { schema: { type: 'string' } },
      },
    },
    ...errors,
  }
  return {
    openapi: '3.1.0',
    info: {
      title: 'Kota Sensor Platform — Analyst API',
      version: '1',
      description:
        'History of the sensor network, from InfluxDB or the embedded store with the same answers. ' +
        'Windows start at local multiples of their length in `tz` (a day at local midnight; WITA by default). ' +
        'Windows without readings are left out. p95 is the nearest-rank percentile: the value at rank ' +
        'floor(n × 0.95 + 0.5) of the sorted values. `last` is the latest value; between readings of the same ' +
        'time the greater. Errors: {"error":{"code","message"}} with a stable code.',
    },
    servers: [{ url: '/' }],
    security: [{ bearer: [] }],
    paths: {
      '/api/v1/readings': {
        get: {
          operationId: 'queryReadings',
          summary: 'Readings of many devices: raw or aggregated in windows, JSON or CSV',
          parameters: parameters(ReadingsQuerySchema),
          responses: result,
        },
        post: {
          operationId: 'queryReadingsPost',
          summary: 'The same query as a JSON body (for long device lists)',
          requestBody: {
            required: true,
            content: { 'application/json': { schema: { $ref: '#/components/schemas/ReadingsQuery' } } },
          },
          responses: result,
        },
      },
      '/api/v1/readings/completeness': {
        get: {
          operationId: 'readingsCompleteness',
          summary: 'Share of expected readings that arrived, late readings and the gaps, for one device',
          parameters: parameters(CompletenessQuerySchema),
          responses: {
            '200': {
              description: 'completeness',
              content: { 'application/json': { schema: { $ref: '#/components/schemas/Completeness' } } },
            },
            ...errors,
            '404': {
              description: 'not_found',
              content: { 'application/json': { schema: { $ref: '#/components/schemas/Error' } } },
            },
          },
        },
      },
    },
    components: {
      securitySchemes: { bearer: { type: 'http', scheme: 'bearer' } },
      schemas: {
        ReadingsQuery: jsonSchema(ReadingsQuerySchema, 'input'),
        QueryResult: jsonSchema(QueryResultSchema, 'output'),
        Completeness: jsonSchema(CompletenessSchema, 'output'),
        Error: jsonSchema(ErrorSchema, 'output'),
      },
    },
  }
}
