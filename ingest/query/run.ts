import {
  type AnalystQuery,
  type AnalystRow,
  QueryTimeoutError,
  type TimeSeriesStore,
} from '../store/types.ts'
import { QueryError } from './errors.ts'

/** Runs a query on a store; a store that does not answer in time becomes `query_timeout`. */
export async function runAnalystQuery(
  store: TimeSeriesStore,
  query: AnalystQuery,
  timeoutMs: number,
): Promise<AnalystRow[]> {
  try {
    return await store.analystQuery(query, { timeoutMs })
  } catch (error) {
    if (error instanceof QueryTimeoutError) {
      throw new QueryError(
        504,
        'query_timeout',
        `the store did not answer within ${timeoutMs} ms: narrow the range or the devices, or use a longer window`,
      )
    }
    throw error
  }
}
