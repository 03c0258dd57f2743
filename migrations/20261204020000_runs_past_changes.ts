import type { Knex } from 'knex';
import { edited, type FunctionEdit } from './20261203020000_no_ops_are_final.js';
import { PERSIST_CHANNEL_CHANGES as PREVIOUS } from './20261204000000_plain_sends_at_once.js';

/**
 * A run of plain sends is written before the next op only when that op may read it.
 *
 * Since migrations/*_plain_sends_at_once.ts, the run was written before any op that is not a plain send, so
 * each change in a batch of sends split the run: a batch of 5 sends and 2 changes made up to three runs,
 * each a statement of its own. A change reads the message it changes, its own earlier run (its events,
 * none of them a `message:new`) and its retry key (`client_changes`, which sends do not write): of these,
 * the run writes only its messages. So a change of one of the run's messages, and any send that is not
 * plain (a reply, whose parent may be in the run; a retry or a duplicate of one of its sends), still has
 * the run written first, and so does an op with the id of one of the run's sends (the worker takes a
 * batch's answers by id, the last one for an id: they must come in the loop's order). Any other change is
 * applied in its turn, with its rev, and the run goes on past it: the run's rows and events are written
 * later in the same transaction with the seqs and revs they were given in their turn, and the worker
 * publishes a batch's events in rev order whatever order the function answers in
 * (worker/actions/persistMessages.ts).
 *
 * Answers, rows and events are the same as the loop's (test/db/persist-plain-sends.test.ts).
 */
const EDITS: FunctionEdit[] = [
  {
    find: `      v_run plain_send[] := '{}';
`,
    replace: `      v_run plain_send[] := '{}';
      v_run_ids uuid[] := '{}';
`,
    times: 1,
  },
  {
    find: `          v_run := v_run || (p_ids[i], p_channel_ids[i], p_user_ids[i], p_bodies[i], p_client_ids[i], v_last_seqs[k], v_last_revs[k])::plain_send;
`,
    replace: `          v_run := v_run || (p_ids[i], p_channel_ids[i], p_user_ids[i], p_bodies[i], p_client_ids[i], v_last_seqs[k], v_last_revs[k])::plain_send;
          v_run_ids := v_run_ids || p_ids[i];
`,
    times: 1,
  },
  {
    find: `        -- Whatever comes next may read the messages of the run: they are written first.
        IF cardinality(v_run) > 0 THEN
          RETURN QUERY SELECT * FROM persist_plain_sends(v_run);
          v_run := '{}';
        END IF;`,
    replace: `        -- What may read the messages of the run has them written first (see the migration's header).
        IF cardinality(v_run) > 0 AND (coalesce(p_kinds[i], 'send') = 'send' OR p_ids[i] = ANY(v_run_ids)
                                       OR coalesce(p_message_ids[i] = ANY(v_run_ids), false)) THEN
          RETURN QUERY SELECT * FROM persist_plain_sends(v_run);
          v_run := '{}';
          v_run_ids := '{}';
        END IF;`,
    times: 1,
  },
];

/** The function this migration installs; a later migration may install it again with edits (see there). */
export const PERSIST_CHANNEL_CHANGES = edited(PREVIOUS, EDITS);

export async function up(knex: Knex): Promise<void> {
  await knex.raw(PERSIST_CHANNEL_CHANGES);
}

export async function down(knex: Knex): Promise<void> {
  await knex.raw(PREVIOUS);
}
