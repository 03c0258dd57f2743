import type { Knex } from 'knex';
import * as previous from './20261202000000_persist_batch_membership_first.js';

/**
 * Roles and channel administration (issue #10):
 * - workspace roles gain `guest` (owner > admin > member > guest);
 * - channels gain `archived`: an archived channel keeps its members and history, refuses sends and joins;
 * - persist_message_batch answers 'forbidden' for a send to an archived channel. Its order is kept:
 *   'stored' (the send's own id) first, then membership ('not_found'), then archived ('forbidden'), then
 *   deduplication. The channel rows are locked FOR UPDATE as before, so a send racing an archive is
 *   either stored before the archive commits or refused after it.
 * (channels.created_by exists since the first migration: the creator, null once their user is gone.)
 */
/** This migration's persist_message_batch; the next migration's down() puts it back. */
export const PERSIST_MESSAGE_BATCH = `
    CREATE OR REPLACE FUNCTION persist_message_batch(
      p_ids uuid[], p_channel_ids uuid[], p_user_ids uuid[], p_bodies text[], p_client_msg_ids text[]
    ) RETURNS TABLE (send_id uuid, outcome text, message jsonb)
    LANGUAGE plpgsql AS $fn$
    DECLARE
      i int;
      k int;
      v_seq bigint;
      v_row messages;
      v_channels uuid[];
      v_last_seqs bigint[];
      v_archived boolean[];
      v_read_channels uuid[] := '{}';
      v_read_users uuid[] := '{}';
      v_read_seqs bigint[] := '{}';
    BEGIN
      -- The channel rows stay locked to the end: an archive (UPDATE channels) waits for this batch, and a
      -- batch after the archive sees it.
      SELECT coalesce(array_agg(l.id ORDER BY l.id), '{}'), coalesce(array_agg(l.last_seq ORDER BY l.id), '{}'),
             coalesce(array_agg(l.archived ORDER BY l.id), '{}')
        INTO v_channels, v_last_seqs, v_archived
        FROM (SELECT c.id, c.last_seq, c.archived FROM channels c WHERE c.id = ANY(p_channel_ids) ORDER BY c.id FOR UPDATE) l;
      FOR i IN 1 .. coalesce(cardinality(p_ids), 0) LOOP
        send_id := p_ids[i];
        SELECT * INTO v_row FROM messages m WHERE m.id = p_ids[i];
        IF FOUND THEN
          outcome := 'stored';
          message := to_jsonb(v_row);
          RETURN NEXT;
          CONTINUE;
        END IF;
        k := array_position(v_channels, p_channel_ids[i]);
        PERFORM 1 FROM channel_members cm WHERE cm.channel_id = p_channel_ids[i] AND cm.user_id = p_user_ids[i];
        IF k IS NULL OR NOT FOUND THEN
          outcome := 'not_found';
          message := NULL;
          RETURN NEXT;
          CONTINUE;
        END IF;
        IF v_archived[k] THEN
          outcome := 'forbidden';
          message := NULL;
          RETURN NEXT;
          CONTINUE;
        END IF;
        IF p_client_msg_ids[i] IS NOT NULL THEN
          SELECT * INTO v_row FROM messages m
           WHERE m.user_id = p_user_ids[i] AND m.client_msg_id = p_client_msg_ids[i];
          -- The stored message is answered only to a member of its channel: a clientMsgId reused in a
          -- channel the sender has since left must not show its message.
          IF FOUND AND v_row.channel_id <> p_channel_ids[i] AND NOT EXISTS (
            SELECT 1 FROM channel_members cm WHERE cm.channel_id = v_row.channel_id AND cm.user_id = p_user_ids[i]
          ) THEN
            outcome := 'not_found';
            message := NULL;
            RETURN NEXT;
            CONTINUE;
          END IF;
          IF FOUND THEN
            outcome := 'duplicate';
            message := to_jsonb(v_row);
            RETURN NEXT;
            CONTINUE;
          END IF;
        END IF;
        v_last_seqs[k] := v_last_seqs[k] + 1;
        v_seq := v_last_seqs[k];
        INSERT INTO messages (id, channel_id, seq, user_id, body, client_msg_id)
        VALUES (p_ids[i], p_channel_ids[i], v_seq, p_user_ids[i], p_bodies[i], p_client_msg_ids[i])
        RETURNING * INTO v_row;
        v_read_channels := v_read_channels || p_channel_ids[i];
        v_read_users := v_read_users || p_user_ids[i];
        v_read_seqs := v_read_seqs || v_seq;
        outcome := 'created';
        message := to_jsonb(v_row);
        RETURN NEXT;
      END LOOP;
      IF cardinality(v_read_seqs) > 0 THEN
        UPDATE channels c SET last_seq = v.last_seq
          FROM unnest(v_channels, v_last_seqs) AS v(id, last_seq)
         WHERE c.id = v.id AND c.last_seq < v.last_seq;
        -- A sender has read what it wrote.
        UPDATE channel_members cm SET last_read_seq = v.seq
          FROM (SELECT r.channel_id, r.user_id, max(r.seq) AS seq
                  FROM unnest(v_read_channels, v_read_users, v_read_seqs) AS r(channel_id, user_id, seq)
                 GROUP BY r.channel_id, r.user_id) v
         WHERE cm.channel_id = v.channel_id AND cm.user_id = v.user_id AND cm.last_read_seq < v.seq;
      END IF;
    END
    $fn$`;

export async function up(knex: Knex): Promise<void> {
  await knex.raw('ALTER TABLE workspace_members DROP CONSTRAINT workspace_members_role_check');
  await knex.raw(
    "ALTER TABLE workspace_members ADD CONSTRAINT workspace_members_role_check CHECK (role IN ('owner', 'admin', 'member', 'guest'))",
  );
  await knex.schema.alterTable('channels', (t) => {
    t.boolean('archived').notNullable().defaultTo(false);
  });
  await knex.raw(PERSIST_MESSAGE_BATCH);
}

export async function down(knex: Knex): Promise<void> {
  await previous.up(knex);
  await knex.schema.alterTable('channels', (t) => {
    t.dropColumn('archived');
  });
  await knex.raw("UPDATE workspace_members SET role = 'member' WHERE role = 'guest'");
  await knex.raw('ALTER TABLE workspace_members DROP CONSTRAINT workspace_members_role_check');
  await knex.raw(
    "ALTER TABLE workspace_members ADD CONSTRAINT workspace_members_role_check CHECK (role IN ('owner', 'admin', 'member'))",
  );
}
