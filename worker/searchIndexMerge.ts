import type { Knex } from 'knex';
import type { Logger } from '../shared/logger.js';
import { startRepeating, type Repeating } from './repeat.js';

/**
 * Merges the pending lists of the GIN indexes on `messages` (search, mentions) into the indexes, every
 * SEARCH_INDEX_MERGE_MS, from a worker's own connection.
 *
 * PostgreSQL adds a GIN index's new entries to a pending list and merges the list into the index when it
 * outgrows `gin_pending_list_limit` (4 MB), inside the transaction of the insert that filled it. Here that
 * is a batch's transaction: every ~9,000 messages (fewer with edits and reactions, whose rewrites re-index
 * their message), one batch took ~200 ms instead of ~8, and every send behind it in its partition waited.
 * Autovacuum merges the lists too, but on a table of millions of rows it comes rarely. Merged every second,
 * a merge is small and off the send path; an insert that outgrows the list while a merge runs leaves the
 * merge to it instead of waiting (docs/PERFORMANCE.md, "What changed, measured").
 */
export const MERGE_SQL = `
  SELECT coalesce(sum(gin_clean_pending_list(i.indexrelid::regclass)), 0)::int AS pages
    FROM pg_index i
    JOIN pg_class c ON c.oid = i.indexrelid
    JOIN pg_am am ON am.oid = c.relam
   WHERE i.indrelid = 'messages'::regclass AND am.amname = 'gin'`;

/** `insufficient_privilege`: only the indexes' owner (or a superuser) may merge them. */
const NOT_OWNER = '42501';

/**
 * Runs `merge` (resolving to the pages merged) every `intervalMs` (worker/repeat.ts); `intervalMs` 0
 * runs none. Without the privilege to merge, it logs why and stops: inserts and autovacuum merge as they
 * would without it.
 */
export function startSearchIndexMerge(deps: {
  merge: () => Promise<number>;
  intervalMs: number;
  logger: Logger;
  onMerged?: (pages: number) => void;
}): Repeating {
  return startRepeating({
    what: 'search index merge',
    run: async () => {
      const pages = await deps.merge();
      if (pages > 0) deps.onMerged?.(pages);
    },
    intervalMs: deps.intervalMs,
    logger: deps.logger,
    fatal: (err) =>
      err.code === NOT_OWNER ? 'not the owner of the messages indexes: search index merges left to inserts and autovacuum' : undefined,
  });
}

/** The merge of every GIN index on `messages`, through `knex`. */
export function mergeMessageIndexes(knex: Knex): () => Promise<number> {
  return async () => Number((await knex.raw(MERGE_SQL)).rows[0].pages);
}
