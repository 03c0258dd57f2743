import type { Knex } from 'knex';
import { PERSIST_CHANNEL_CHANGES as PREVIOUS, edited } from './20261203020000_no_ops_are_final.js';

/**
 * A batch of plain sends, the common batch, is stored with one statement for all of them instead of one
 * loop turn per send.
 *
 * `persist_channel_changes` decides and writes a batch row by row: per send a read for an earlier run, one
 * for membership, one for the clientMsgId, then an INSERT of the message and one of its event. Each of those
 * statements pays its own executor start, index predicates and trigger set-up; that per-statement part was
 * most of what issues #11 and #12 added to a send (docs/PERFORMANCE.md, "Persisting a send, commit by
 * commit").
 *
 * The new path is taken only when every send of the batch is going to be 'created': sends only, no reply
 * (`parentId`), ids and (user, clientMsgId) pairs distinct within the batch, no earlier run (no message by
 * these ids, no refusal recorded for them), every channel there and not archived, every sender a member,
 * and no clientMsgId already stored. Those facts are read in one statement each, under the channels' locks
 * taken above, as the loop reads them. Any other batch goes through the loop unchanged. So both paths give
 * the same answers, the same seqs and revs in batch order, the same rows and the same events
 * (test/db/persist-plain-sends.test.ts runs random batches through both and compares).
 *
 * The function is the one of migrations/*_no_ops_are_final.ts with the edits below, each of which must match
 * exactly where it is meant to, so the history replays as it ran.
 */
const EDITS: Array<{ find: string; replace: string; times: number }> = [
  {
    // Keyed reads only. The function's plans are generic and kept for the session (…_persist_generic_plans.ts):
    // made while a table is small or its statistics old, the new path's reads over a batch's arrays were
    // planned as scans of the whole messages table, which a table of any size then paid at every batch.
    // Every statement of the function finds its rows by a key; this keeps PostgreSQL to that.
    find: `LANGUAGE plpgsql SET plan_cache_mode = force_generic_plan AS $fn$`,
    replace: `LANGUAGE plpgsql SET plan_cache_mode = force_generic_plan SET enable_seqscan = off AS $fn$`,
    times: 1,
  },
  {
    find: `      v_refused change_refusals[] := '{}';
    BEGIN`,
    replace: `      v_refused change_refusals[] := '{}';
      v_plain boolean;
    BEGIN`,
    times: 1,
  },
  {
    find: `        FROM change_refusals r WHERE r.change_id = ANY(p_ids);
      FOR i IN 1 .. coalesce(cardinality(p_ids), 0) LOOP`,
    replace: `        FROM change_refusals r WHERE r.change_id = ANY(p_ids);

      -- Every send of the batch is new and allowed: all of it in one statement (see the migration's header).
      v_plain := coalesce(cardinality(p_ids), 0) > 0 AND cardinality(v_prior_ids) = 0 AND NOT (true = ANY(v_archived))
        AND NOT EXISTS (SELECT 1 FROM unnest(p_ids, p_kinds, p_message_ids, p_channel_ids) AS b(id, kind, parent_id, channel_id)
                         WHERE coalesce(b.kind, 'send') <> 'send' OR b.parent_id IS NOT NULL OR NOT (b.channel_id = ANY(v_channels)))
        AND (SELECT count(DISTINCT b.id) FROM unnest(p_ids) AS b(id)) = cardinality(p_ids)
        AND (SELECT count(*) = count(DISTINCT (b.user_id, b.client_id)) FROM unnest(p_user_ids, p_client_ids) AS b(user_id, client_id)
              WHERE b.client_id IS NOT NULL);
      IF v_plain THEN
        v_plain := NOT EXISTS (SELECT 1 FROM messages m WHERE m.id = ANY(p_ids))
          AND NOT EXISTS (SELECT 1 FROM unnest(p_channel_ids, p_user_ids) AS b(channel_id, user_id)
                           WHERE NOT EXISTS (SELECT 1 FROM channel_members cm WHERE cm.channel_id = b.channel_id AND cm.user_id = b.user_id))
          -- One lookup per send (LATERAL … LIMIT 1): a join here may be planned as a pass over the whole index.
          AND NOT EXISTS (SELECT 1 FROM unnest(p_user_ids, p_client_ids) AS b(user_id, client_id)
                            CROSS JOIN LATERAL (SELECT 1 FROM messages m
                                                 WHERE m.user_id = b.user_id AND m.client_msg_id = b.client_id LIMIT 1) AS stored
                           WHERE b.client_id IS NOT NULL);
      END IF;
      IF v_plain THEN
        RETURN QUERY
        WITH batch AS (
          SELECT b.*, v_last_seqs[array_position(v_channels, b.channel_id)] + row_number() OVER w AS seq,
                 v_last_revs[array_position(v_channels, b.channel_id)] + row_number() OVER w AS rev
            FROM unnest(p_ids, p_channel_ids, p_user_ids, p_bodies, p_client_ids) WITH ORDINALITY AS b(id, channel_id, user_id, body, client_id, ord)
          WINDOW w AS (PARTITION BY b.channel_id ORDER BY b.ord)
        ), stored AS (
          INSERT INTO messages (id, channel_id, seq, user_id, body, client_msg_id, rev, created_rev, parent_id, mentions)
          SELECT b.id, b.channel_id, b.seq, b.user_id, b.body, b.client_id, b.rev, b.rev, NULL, message_mentions(b.channel_id, b.body)
            FROM batch b ORDER BY b.ord
          RETURNING messages.id, messages.user_id, messages.rev, message_snapshot(messages) AS snapshot
        ), logged AS (
          INSERT INTO channel_events (channel_id, rev, kind, message_id, change_id, user_id)
          SELECT b.channel_id, b.rev, 'message:new', b.id, b.id, b.user_id FROM batch b ORDER BY b.ord
        ), advanced AS (
          UPDATE channels c SET last_seq = v.seq, last_rev = v.rev
            FROM (SELECT b.channel_id, max(b.seq) AS seq, max(b.rev) AS rev FROM batch b GROUP BY b.channel_id) v
           WHERE c.id = v.channel_id AND c.last_rev < v.rev
        ), read_marks AS (
          -- A sender has read what it wrote.
          UPDATE channel_members cm SET last_read_seq = v.seq
            FROM (SELECT b.channel_id, b.user_id, max(b.seq) AS seq FROM batch b GROUP BY b.channel_id, b.user_id) v
           WHERE cm.channel_id = v.channel_id AND cm.user_id = v.user_id AND cm.last_read_seq < v.seq
        )
        SELECT s.id, 'created'::text, s.snapshot,
               jsonb_build_array(jsonb_build_object('rev', s.rev, 'kind', 'message:new', 'message_id', s.id,
                 'user_id', s.user_id, 'emoji', NULL, 'seq', NULL, 'message', s.snapshot)),
               NULL::text
          FROM stored s;
        RETURN;
      END IF;

      FOR i IN 1 .. coalesce(cardinality(p_ids), 0) LOOP`,
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
