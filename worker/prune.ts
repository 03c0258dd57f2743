import type { Knex } from 'knex';

/**
 * Deletes rows that serve no more once older than a number of hours, a chunk at a time: each chunk is a
 * short transaction beside batches' own. Rows locked by another worker's prune are skipped, not waited for.
 */

/**
 * Refusals (`change_refusals`). A refusal is kept so that a batch run again (its worker died, or lost its
 * lock, after the commit and before BullMQ completed the job) answers as its first run did. The next worker
 * takes such a batch over within seconds, so a refusal a day old serves nothing; yet every send or change
 * refused by the worker (a channel one is not in, an archived one, a bad parent) adds one, and so does
 * every reaction change that changed nothing, at whatever rate a client keeps making them.
 */
export const PRUNE_REFUSALS_SQL = `
  WITH old AS (
    SELECT change_id FROM change_refusals
     WHERE created_at < now() - make_interval(hours => ?)
     LIMIT ? FOR UPDATE SKIP LOCKED
  )
  DELETE FROM change_refusals r USING old WHERE r.change_id = old.change_id`;

/**
 * Retry keys of changes (`client_changes`: a user's `clientChangeId`). A key lets a client resend an
 * un-acked edit, delete or reaction without applying it twice. Clients resend when they come back, mostly
 * within minutes; every change made with a key adds a row, so keys are kept for a time (a week by
 * default), not forever. Read through `client_changes_created_at`.
 */
export const PRUNE_CLIENT_CHANGES_SQL = `
  WITH old AS (
    SELECT user_id, client_change_id FROM client_changes
     WHERE created_at < now() - make_interval(hours => ?)
     LIMIT ? FOR UPDATE SKIP LOCKED
  )
  DELETE FROM client_changes c USING old WHERE c.user_id = old.user_id AND c.client_change_id = old.client_change_id`;

/** Rows deleted per statement. */
const CHUNK = 5_000;

/** A prune through `knex`, resolving to the number of rows deleted. */
function prune(sql: string) {
  return (knex: Knex, keepHours: number, chunk = CHUNK): (() => Promise<number>) =>
    async () => {
      let deleted = 0;
      for (;;) {
        const { rowCount } = await knex.raw(sql, [keepHours, chunk]);
        deleted += rowCount ?? 0;
        if ((rowCount ?? 0) < chunk) return deleted;
      }
    };
}

export const pruneRefusals = prune(PRUNE_REFUSALS_SQL);
export const pruneClientChanges = prune(PRUNE_CLIENT_CHANGES_SQL);
