import type { Knex } from 'knex';

/**
 * Deletes the refusals (`change_refusals`) older than a number of hours, a chunk at a time.
 *
 * A refusal is kept so that a batch run again (its worker died, or lost its lock, after the commit and
 * before BullMQ completed the job) answers as its first run did. The next worker takes such a batch over
 * within seconds, so a refusal a day old serves nothing; yet every send or change refused by the worker
 * (a channel one is not in, an archived one, a bad parent) adds one, and so does every reaction change
 * that changed nothing, at whatever rate a client keeps making them. Rows locked by another worker's
 * prune are skipped, not waited for.
 */
export const PRUNE_REFUSALS_SQL = `
  WITH old AS (
    SELECT change_id FROM change_refusals
     WHERE created_at < now() - make_interval(hours => ?)
     LIMIT ? FOR UPDATE SKIP LOCKED
  )
  DELETE FROM change_refusals r USING old WHERE r.change_id = old.change_id`;

/** Rows deleted per statement: each is a short transaction, beside batches' own. */
const CHUNK = 5_000;

/** The prune through `knex`, resolving to the number of refusals deleted. */
export function pruneRefusals(knex: Knex, keepHours: number, chunk = CHUNK): () => Promise<number> {
  return async () => {
    let deleted = 0;
    for (;;) {
      const { rowCount } = await knex.raw(PRUNE_REFUSALS_SQL, [keepHours, chunk]);
      deleted += rowCount ?? 0;
      if ((rowCount ?? 0) < chunk) return deleted;
    }
  };
}
