import type { Knex } from 'knex';
import { PERSIST_CHANNEL_CHANGES as PREVIOUS, edited, type FunctionEdit } from './20261203020000_no_ops_are_final.js';

/**
 * Plain sends are stored a run at a time: one INSERT for the messages of consecutive plain sends, one for
 * their events, instead of one loop turn per send.
 *
 * `persist_channel_changes` decides and writes a batch op by op: per send a read for an earlier run, one
 * for membership, one for the clientMsgId, then an INSERT of the message and one of its event. Each of those
 * statements pays its own executor start, index predicates and trigger set-up; that per-statement part was
 * most of what issues #11 and #12 added to a send (docs/PERFORMANCE.md, "Persisting a send, commit by
 * commit").
 *
 * A send is plain when it is certain to be 'created': no reply (`parentId`), its channel there and not
 * archived, its sender a member, its id and its (user, clientMsgId) neither stored nor refused before nor
 * used by an earlier op of the batch. Those facts are read for the whole batch in one statement, under the
 * channels' locks, and no change of the batch can alter them (a change stores no message and no clientMsgId,
 * and membership and archive are not changed here). The loop still takes the ops in order: a plain send gets
 * its seq and rev at its turn and waits in `v_run`; before any other op, and after the last, the run is
 * written (`persist_plain_sends`), so an op that reads the messages (a change of a message just sent, a
 * retry of its clientMsgId) finds them stored. A batch of plain sends, the usual batch, is one run.
 *
 * Answers, rows and events are the same as the loop's (test/db/persist-plain-sends.test.ts runs random
 * batches through both and compares). The function is the one of migrations/*_no_ops_are_final.ts with the
 * edits below, each of which must match exactly where it is meant to, so the history replays as it ran.
 */
const EDITS: FunctionEdit[] = [
  {
    // Keyed reads only. The function's plans are generic and kept for the session (…_persist_generic_plans.ts),
    // and PostgreSQL replans them only after an ANALYZE. Made while the tables were small, the statements over
    // a batch's arrays (the channels locked, their last seq and rev, the senders' read marks) were scans of
    // channels and channel_members with a hash join, paid at every batch until then: 8 % of PostgreSQL's CPU
    // per op (bench/profile/changeCost.ts, with and without this). Every statement here finds its rows by key.
    find: `LANGUAGE plpgsql SET plan_cache_mode = force_generic_plan AS $fn$`,
    replace: `LANGUAGE plpgsql SET plan_cache_mode = force_generic_plan SET enable_seqscan = off AS $fn$`,
    times: 1,
  },
  {
    find: `      v_refused change_refusals[] := '{}';
    BEGIN`,
    replace: `      v_refused change_refusals[] := '{}';
      v_plain boolean[];
      v_run plain_send[] := '{}';
    BEGIN`,
    times: 1,
  },
  {
    find: `        FROM change_refusals r WHERE r.change_id = ANY(p_ids);
      FOR i IN 1 .. coalesce(cardinality(p_ids), 0) LOOP
        change_id := p_ids[i];`,
    replace: `        FROM change_refusals r WHERE r.change_id = ANY(p_ids);
      -- Which ops are plain sends (see the migration's header), in batch order. Each EXISTS is one lookup by key
      -- per op: the function's plans are generic and kept for the session (…_persist_generic_plans.ts), and a
      -- read over the batch's arrays at once (= ANY, a join) made while the table was small scanned all of it
      -- at every batch after (test/db/persist-plain-sends.test.ts checks the plans).
      SELECT coalesce(array_agg(
               coalesce(b.kind, 'send') = 'send' AND b.parent_id IS NULL AND b.first_of_id AND b.first_of_key
               AND coalesce(NOT v_archived[array_position(v_channels, b.channel_id)], false)
               AND NOT (b.id = ANY(v_prior_ids))
               AND NOT EXISTS (SELECT 1 FROM messages m WHERE m.id = b.id)
               AND EXISTS (SELECT 1 FROM channel_members cm WHERE cm.channel_id = b.channel_id AND cm.user_id = b.user_id)
               AND (b.client_id IS NULL
                    OR NOT EXISTS (SELECT 1 FROM messages m WHERE m.user_id = b.user_id AND m.client_msg_id = b.client_id))
               ORDER BY b.ord), '{}')
        INTO v_plain
        FROM (SELECT u.*, row_number() OVER (PARTITION BY u.id ORDER BY u.ord) = 1 AS first_of_id,
                     u.client_id IS NULL OR row_number() OVER (PARTITION BY u.user_id, u.client_id ORDER BY u.ord) = 1 AS first_of_key
                FROM unnest(p_ids, p_kinds, p_channel_ids, p_user_ids, p_client_ids, p_message_ids)
                     WITH ORDINALITY AS u(id, kind, channel_id, user_id, client_id, parent_id, ord)) b;
      FOR i IN 1 .. coalesce(cardinality(p_ids), 0) LOOP
        IF v_plain[i] THEN
          k := array_position(v_channels, p_channel_ids[i]);
          v_last_seqs[k] := v_last_seqs[k] + 1;
          v_last_revs[k] := v_last_revs[k] + 1;
          v_run := v_run || (p_ids[i], p_channel_ids[i], p_user_ids[i], p_bodies[i], p_client_ids[i], v_last_seqs[k], v_last_revs[k])::plain_send;
          v_read_channels := v_read_channels || p_channel_ids[i];
          v_read_users := v_read_users || p_user_ids[i];
          v_read_seqs := v_read_seqs || v_last_seqs[k];
          v_touched := true;
          CONTINUE;
        END IF;
        -- Whatever comes next may read the messages of the run: they are written first.
        IF cardinality(v_run) > 0 THEN
          RETURN QUERY SELECT * FROM persist_plain_sends(v_run);
          v_run := '{}';
        END IF;
        change_id := p_ids[i];`,
    times: 1,
  },
  {
    find: `      END LOOP;
      IF v_touched THEN`,
    replace: `      END LOOP;
      IF cardinality(v_run) > 0 THEN
        RETURN QUERY SELECT * FROM persist_plain_sends(v_run);
      END IF;
      IF v_touched THEN`,
    times: 1,
  },
];

/** Plain sends with their seq and rev, and the statement that stores them as the loop stores a send. */
const PLAIN_SENDS = `
  CREATE TYPE plain_send AS (id uuid, channel_id uuid, user_id uuid, body text, client_msg_id text, seq bigint, rev bigint);

  CREATE FUNCTION persist_plain_sends(p_run plain_send[])
    RETURNS TABLE (change_id uuid, outcome text, message jsonb, events jsonb, refusal text)
    LANGUAGE plpgsql AS $fn$
  BEGIN
    RETURN QUERY
    WITH stored AS (
      INSERT INTO messages (id, channel_id, seq, user_id, body, client_msg_id, rev, created_rev, parent_id, mentions)
      SELECT r.id, r.channel_id, r.seq, r.user_id, r.body, r.client_msg_id, r.rev, r.rev, NULL, message_mentions(r.channel_id, r.body)
        FROM unnest(p_run) AS r
      RETURNING messages.id, messages.user_id, messages.rev, message_snapshot(messages) AS snapshot
    ), logged AS (
      INSERT INTO channel_events (channel_id, rev, kind, message_id, change_id, user_id)
      SELECT r.channel_id, r.rev, 'message:new', r.id, r.id, r.user_id FROM unnest(p_run) AS r
    )
    SELECT s.id, 'created'::text, s.snapshot,
           jsonb_build_array(jsonb_build_object('rev', s.rev, 'kind', 'message:new', 'message_id', s.id,
             'user_id', s.user_id, 'emoji', NULL, 'seq', NULL, 'message', s.snapshot)),
           NULL::text
      FROM stored s;
  END
  $fn$;
`;

/** The function this migration installs; a later migration may install it again with edits (see there). */
export const PERSIST_CHANNEL_CHANGES = edited(PREVIOUS, EDITS);

export async function up(knex: Knex): Promise<void> {
  await knex.raw(PLAIN_SENDS);
  await knex.raw(PERSIST_CHANNEL_CHANGES);
}

export async function down(knex: Knex): Promise<void> {
  await knex.raw(PREVIOUS);
  await knex.raw('DROP FUNCTION persist_plain_sends(plain_send[]); DROP TYPE plain_send');
}
