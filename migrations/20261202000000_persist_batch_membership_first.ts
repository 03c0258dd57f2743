import type { Knex } from 'knex';
import * as previous from './20261128010000_persist_message_batch.js';

/**
 * persist_message_batch checks membership before deduplication: a user removed from a channel who resends
 * an old clientMsgId into it was answered ok with the stored message (deduplication ran first); now such a
 * send is not_found like any other send to a channel the sender is not in. A send whose own id is stored
 * (the same batch run again after a crash) still answers 'stored' first: it was accepted when it ran.
 */
export async function up(knex: Knex): Promise<void> {
  await knex.raw(`
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
      v_read_channels uuid[] := '{}';
      v_read_users uuid[] := '{}';
      v_read_seqs bigint[] := '{}';
    BEGIN
      SELECT coalesce(array_agg(l.id ORDER BY l.id), '{}'), coalesce(array_agg(l.last_seq ORDER BY l.id), '{}')
        INTO v_channels, v_last_seqs
        FROM (SELECT c.id, c.last_seq FROM channels c WHERE c.id = ANY(p_channel_ids) ORDER BY c.id FOR UPDATE) l;
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
    $fn$`);
}

export async function down(knex: Knex): Promise<void> {
  await previous.down(knex);
  await previous.up(knex);
}
