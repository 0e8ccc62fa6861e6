import {
  type AnalystQuery,
  type AnalystRow,
  QueryTimeoutError,
  StoreUnavailableError,
  type TimeSeriesStore,
} from '../store/types.ts'
import { QueryError } from './errors.ts'

/**
 * Runs a query on a store; a store that does not answer in time becomes `query_timeout`, one that cannot
 * be reached `store_unavailable` (an outage, not a fault of the query or of the platform). Neither message
 * names the store: the cause stays on the error for the log.
 */
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
    if (error instanceof StoreUnavailableError) {
      throw new QueryError(503, 'store_unavailable', undefined, { cause: error })
    }
    throw error
  }
}
