import type { Knex } from 'knex';
import * as authorize from './20261202080000_authorize_changes_in_persist.js';
import * as genericPlans from './20261203000000_persist_generic_plans.js';

/**
 * A refusal is as final as a stored change: `persist_channel_changes` records each change it refuses
 * (`change_refusals`, in the transaction that decides it) and answers a later run of the same change the
 * same way.
 *
 * A batch runs again when its worker died, or lost its lock, after the reply went out and before the job
 * completed. A stored change was answered 'stored' then, but a refused one was decided again, on the
 * facts of the moment: a send answered NOT_FOUND could be stored and published if its sender had been
 * added to the channel in between, a change answered FORBIDDEN applied once the channel was unarchived.
 * The client was told no, and saw its message appear.
 *
 * The earlier refusals of a batch are read once, under the channels' locks, so a run that races another
 * run of the same batch sees what that one decided. Otherwise the body is the one of
 * migrations/*_authorize_changes_in_persist.ts, with the same signature, so workers of the previous
 * release get this behaviour too.
 */
/** The function this migration installs; a later migration may install it again with edits (see there). */
export const PERSIST_CHANNEL_CHANGES = `
    CREATE OR REPLACE FUNCTION persist_channel_changes(
      p_kinds text[], p_ids uuid[], p_channel_ids uuid[], p_user_ids uuid[], p_bodies text[],
      p_client_ids text[], p_message_ids uuid[], p_emojis text[], p_actions text[], p_rules jsonb
    ) RETURNS TABLE (change_id uuid, outcome text, message jsonb, events jsonb, refusal text)
    LANGUAGE plpgsql SET plan_cache_mode = force_generic_plan AS $fn$
    DECLARE
      i int;
      k int;
      v_kind text;
      v_rev bigint;
      v_seq bigint;
      v_row messages;
      v_parent messages;
      v_event channel_events;
      v_found boolean;
      v_channels uuid[];
      v_last_seqs bigint[];
      v_last_revs bigint[];
      v_archived boolean[];
      v_workspaces uuid[];
      v_private boolean[];
      v_creators uuid[];
      v_member boolean;
      v_role text;
      v_retried boolean;
      v_retry messages;
      v_target messages;
      v_has_target boolean;
      v_code text;
      v_touched boolean := false;
      v_read_channels uuid[] := '{}';
      v_read_users uuid[] := '{}';
      v_read_seqs bigint[] := '{}';
      v_prior int;
      v_prior_ids uuid[];
      v_prior_outcomes text[];
      v_prior_refusals text[];
      v_refused change_refusals[] := '{}';
    BEGIN
      -- The channel rows stay locked to the end: an archive (UPDATE channels) waits for this batch, and a
      -- batch after the archive sees it.
      SELECT coalesce(array_agg(l.id ORDER BY l.id), '{}'), coalesce(array_agg(l.last_seq ORDER BY l.id), '{}'),
             coalesce(array_agg(l.last_rev ORDER BY l.id), '{}'), coalesce(array_agg(l.archived ORDER BY l.id), '{}'),
             coalesce(array_agg(l.workspace_id ORDER BY l.id), '{}'), coalesce(array_agg(l.is_private ORDER BY l.id), '{}'),
             coalesce(array_agg(l.created_by ORDER BY l.id), '{}')
        INTO v_channels, v_last_seqs, v_last_revs, v_archived, v_workspaces, v_private, v_creators
        FROM (SELECT c.id, c.last_seq, c.last_rev, c.archived, c.workspace_id, c.is_private, c.created_by FROM channels c
               WHERE c.id = ANY(p_channel_ids) ORDER BY c.id FOR UPDATE) l;
      -- Refusals of an earlier run of these changes, read under the locks: one read per batch.
      SELECT coalesce(array_agg(r.change_id), '{}'), coalesce(array_agg(r.outcome), '{}'), coalesce(array_agg(r.refusal), '{}')
        INTO v_prior_ids, v_prior_outcomes, v_prior_refusals
        FROM change_refusals r WHERE r.change_id = ANY(p_ids);
      FOR i IN 1 .. coalesce(cardinality(p_ids), 0) LOOP
        change_id := p_ids[i];
        v_kind := coalesce(p_kinds[i], 'send');
        message := NULL;
        events := NULL;
        refusal := NULL;

        -- Run before (a batch run again after a crash): answer as then, publish its events again.
        IF v_kind = 'send' THEN
          SELECT * INTO v_row FROM messages m WHERE m.id = p_ids[i];
          v_found := FOUND;
          IF v_found THEN
            SELECT jsonb_agg(channel_event_json(e) ORDER BY e.rev) INTO events FROM channel_events e
             WHERE e.channel_id = v_row.channel_id AND e.rev BETWEEN v_row.created_rev AND v_row.created_rev + 1
               AND e.change_id = p_ids[i];
          END IF;
        ELSE
          SELECT jsonb_agg(channel_event_json(e) ORDER BY e.rev) INTO events FROM channel_events e
           WHERE e.change_id = p_ids[i] AND e.kind <> 'message:new';
          v_found := events IS NOT NULL;
          IF v_found THEN
            SELECT * INTO v_row FROM messages m WHERE m.id = p_message_ids[i];
          END IF;
        END IF;
        IF v_found THEN
          outcome := 'stored';
          message := message_snapshot(v_row);
          RETURN NEXT;
          CONTINUE;
        END IF;
        v_prior := array_position(v_prior_ids, p_ids[i]);
        IF v_prior IS NOT NULL THEN
          outcome := v_prior_outcomes[v_prior];
          refusal := v_prior_refusals[v_prior];
          RETURN NEXT;
          CONTINUE;
        END IF;

        k := array_position(v_channels, p_channel_ids[i]);
        PERFORM 1 FROM channel_members cm WHERE cm.channel_id = p_channel_ids[i] AND cm.user_id = p_user_ids[i];
        v_member := FOUND;

        -- A change is decided by policy: the worker's compiled table, looked up at the facts read here,
        -- under the channel's lock (change_rule_key). A code other than 'a' is policy's refusal.
        IF v_kind <> 'send' THEN
          v_role := NULL;
          v_retried := false;
          v_retry := NULL;
          v_target := NULL;
          v_has_target := false;
          IF k IS NOT NULL THEN
            SELECT wm.role INTO v_role FROM workspace_members wm
             WHERE wm.workspace_id = v_workspaces[k] AND wm.user_id = p_user_ids[i];
            IF p_client_ids[i] IS NOT NULL THEN
              SELECT m.* INTO v_retry FROM client_changes cc LEFT JOIN messages m ON m.id = cc.message_id
               WHERE cc.user_id = p_user_ids[i] AND cc.client_change_id = p_client_ids[i];
              v_retried := FOUND;
            END IF;
            -- By id alone, then the channel: given both, PostgreSQL's plan for this statement, cached for the
            -- session and made while the table was small, can scan the channel's messages instead.
            SELECT * INTO v_target FROM messages m WHERE m.id = p_message_ids[i];
            v_has_target := FOUND AND v_target.channel_id = p_channel_ids[i];
            IF v_has_target THEN
              -- Locked against a concurrent delete of its author's account (the channel's lock covers the rest).
              SELECT * INTO v_target FROM messages m WHERE m.id = p_message_ids[i] FOR UPDATE;
              v_has_target := FOUND;
            ELSE
              v_target := NULL;
            END IF;
          END IF;
          v_code := substr(p_rules ->> p_actions[i], 1 + change_rule_key(
            k IS NOT NULL, v_role, v_member, v_private[k], v_archived[k],
            CASE WHEN v_creators[k] IS NULL THEN NULL ELSE v_creators[k] = p_user_ids[i] END,
            CASE WHEN v_has_target THEN v_target.user_id = p_user_ids[i] END,
            v_target.deleted_at IS NOT NULL, v_retried), 1);
          IF v_code IS DISTINCT FROM 'a' THEN
            outcome := 'refused';
            refusal := coalesce(v_code, '?');
            v_refused := v_refused || (p_ids[i], outcome, refusal, now())::change_refusals;
            RETURN NEXT;
            CONTINUE;
          END IF;
        END IF;

        IF k IS NULL OR NOT v_member THEN
          outcome := 'not_found';
          v_refused := v_refused || (p_ids[i], outcome, refusal, now())::change_refusals;
          RETURN NEXT;
          CONTINUE;
        END IF;
        IF v_archived[k] THEN
          outcome := 'forbidden';
          v_refused := v_refused || (p_ids[i], outcome, refusal, now())::change_refusals;
          RETURN NEXT;
          CONTINUE;
        END IF;

        -- A client's retry: the same clientMsgId / clientChangeId of the same user.
        IF p_client_ids[i] IS NOT NULL THEN
          IF v_kind = 'send' THEN
            SELECT * INTO v_row FROM messages m WHERE m.user_id = p_user_ids[i] AND m.client_msg_id = p_client_ids[i];
            v_found := FOUND;
          ELSE
            v_row := v_retry;
            v_found := v_retry.id IS NOT NULL;
          END IF;
          IF v_found THEN
            -- The stored message is answered only to a member of its channel: a client id reused in a
            -- channel the user has since left must not show its message.
            IF v_row.channel_id <> p_channel_ids[i] AND NOT EXISTS (
              SELECT 1 FROM channel_members cm WHERE cm.channel_id = v_row.channel_id AND cm.user_id = p_user_ids[i]
            ) THEN
              outcome := 'not_found';
              v_refused := v_refused || (p_ids[i], outcome, refusal, now())::change_refusals;
            ELSE
              outcome := 'duplicate';
              message := message_snapshot(v_row);
            END IF;
            RETURN NEXT;
            CONTINUE;
          END IF;
        END IF;

        IF v_kind = 'send' THEN
          IF p_message_ids[i] IS NOT NULL THEN
            -- By id alone, as the target of a change above.
            SELECT * INTO v_parent FROM messages m WHERE m.id = p_message_ids[i];
            v_found := FOUND AND v_parent.channel_id = p_channel_ids[i];
            IF v_found THEN
              SELECT * INTO v_parent FROM messages m WHERE m.id = p_message_ids[i] FOR UPDATE;
              v_found := FOUND AND v_parent.parent_id IS NULL AND v_parent.deleted_at IS NULL;
            END IF;
            IF NOT v_found THEN
              outcome := 'invalid_parent';
              v_refused := v_refused || (p_ids[i], outcome, refusal, now())::change_refusals;
              RETURN NEXT;
              CONTINUE;
            END IF;
          END IF;
          v_last_seqs[k] := v_last_seqs[k] + 1;
          v_seq := v_last_seqs[k];
          v_last_revs[k] := v_last_revs[k] + 1;
          v_rev := v_last_revs[k];
          INSERT INTO messages (id, channel_id, seq, user_id, body, client_msg_id, rev, created_rev, parent_id, mentions)
          VALUES (p_ids[i], p_channel_ids[i], v_seq, p_user_ids[i], p_bodies[i], p_client_ids[i], v_rev, v_rev,
                  p_message_ids[i], message_mentions(p_channel_ids[i], p_bodies[i]))
          RETURNING * INTO v_row;
          INSERT INTO channel_events (channel_id, rev, kind, message_id, change_id, user_id)
          VALUES (p_channel_ids[i], v_rev, 'message:new', v_row.id, p_ids[i], p_user_ids[i]);
          message := message_snapshot(v_row);
          events := jsonb_build_array(jsonb_build_object('rev', v_rev, 'kind', 'message:new', 'message_id', v_row.id,
            'user_id', v_row.user_id, 'emoji', NULL, 'seq', NULL, 'message', message));
          IF p_message_ids[i] IS NOT NULL THEN
            v_last_revs[k] := v_last_revs[k] + 1;
            UPDATE messages m SET reply_count = m.reply_count + 1, last_reply_at = v_row.created_at, rev = v_last_revs[k]
             WHERE m.id = v_parent.id RETURNING * INTO v_parent;
            INSERT INTO channel_events (channel_id, rev, kind, message_id, change_id, user_id, snapshot)
            VALUES (p_channel_ids[i], v_last_revs[k], 'message:updated', v_parent.id, p_ids[i], p_user_ids[i], message_snapshot(v_parent))
            RETURNING * INTO v_event;
            events := events || jsonb_build_array(channel_event_json(v_event));
          END IF;
          v_read_channels := v_read_channels || p_channel_ids[i];
          v_read_users := v_read_users || p_user_ids[i];
          v_read_seqs := v_read_seqs || v_seq;
          v_touched := true;
          outcome := 'created';
          RETURN NEXT;
          CONTINUE;
        END IF;

        -- Every change is to a message of this channel that is not deleted (by an earlier change of the batch).
        IF NOT v_has_target OR v_target.deleted_at IS NOT NULL THEN
          outcome := 'not_found';
          v_refused := v_refused || (p_ids[i], outcome, refusal, now())::change_refusals;
          RETURN NEXT;
          CONTINUE;
        END IF;
        v_row := v_target;
        IF p_client_ids[i] IS NOT NULL THEN
          INSERT INTO client_changes (user_id, client_change_id, change_id, message_id)
          VALUES (p_user_ids[i], p_client_ids[i], p_ids[i], v_row.id);
        END IF;

        IF v_kind = 'reaction:add' THEN
          INSERT INTO message_reactions (message_id, emoji, user_id, rev)
          VALUES (v_row.id, p_emojis[i], p_user_ids[i], v_last_revs[k] + 1)
          ON CONFLICT DO NOTHING;
          IF NOT FOUND THEN
            outcome := 'unchanged';
            message := message_snapshot(v_row);
            RETURN NEXT;
            CONTINUE;
          END IF;
        ELSIF v_kind = 'reaction:remove' THEN
          DELETE FROM message_reactions r WHERE r.message_id = v_row.id AND r.emoji = p_emojis[i] AND r.user_id = p_user_ids[i];
          IF NOT FOUND THEN
            outcome := 'unchanged';
            message := message_snapshot(v_row);
            RETURN NEXT;
            CONTINUE;
          END IF;
        END IF;

        v_last_revs[k] := v_last_revs[k] + 1;
        v_rev := v_last_revs[k];
        v_touched := true;
        IF v_kind = 'edit' THEN
          UPDATE messages m SET original_body = coalesce(m.original_body, m.body),
                                original_mentions = coalesce(m.original_mentions, m.mentions),
                                body = p_bodies[i], mentions = message_mentions(m.channel_id, p_bodies[i]),
                                edited_at = now(), rev = v_rev
           WHERE m.id = v_row.id RETURNING * INTO v_row;
          INSERT INTO channel_events (channel_id, rev, kind, message_id, change_id, user_id, snapshot)
          VALUES (v_row.channel_id, v_rev, 'message:updated', v_row.id, p_ids[i], p_user_ids[i], message_snapshot(v_row))
          RETURNING * INTO v_event;
          events := jsonb_build_array(channel_event_json(v_event));
        ELSIF v_kind = 'delete' THEN
          DELETE FROM message_reactions r WHERE r.message_id = v_row.id;
          UPDATE messages m SET body = '', original_body = NULL, mentions = '{}', original_mentions = NULL,
                                reactions = '[]', deleted_at = now(), rev = v_rev
           WHERE m.id = v_row.id RETURNING * INTO v_row;
          -- Deleted means gone: no earlier snapshot keeps the text either.
          UPDATE channel_events e SET snapshot = e.snapshot || '{"body": "", "mentions": []}'::jsonb
           WHERE e.message_id = v_row.id AND e.snapshot IS NOT NULL;
          INSERT INTO channel_events (channel_id, rev, kind, message_id, change_id, user_id, seq)
          VALUES (v_row.channel_id, v_rev, 'message:deleted', v_row.id, p_ids[i], p_user_ids[i], v_row.seq)
          RETURNING * INTO v_event;
          events := jsonb_build_array(channel_event_json(v_event));
          IF v_row.parent_id IS NOT NULL THEN
            v_last_revs[k] := v_last_revs[k] + 1;
            UPDATE messages m SET reply_count = greatest(m.reply_count - 1, 0),
                                  last_reply_at = (SELECT max(r.created_at) FROM messages r
                                                    WHERE r.parent_id = m.id AND r.deleted_at IS NULL),
                                  rev = v_last_revs[k]
             WHERE m.id = v_row.parent_id RETURNING * INTO v_parent;
            INSERT INTO channel_events (channel_id, rev, kind, message_id, change_id, user_id, snapshot)
            VALUES (v_row.channel_id, v_last_revs[k], 'message:updated', v_parent.id, p_ids[i], p_user_ids[i], message_snapshot(v_parent))
            RETURNING * INTO v_event;
            events := events || jsonb_build_array(channel_event_json(v_event));
          END IF;
        ELSE
          UPDATE messages m SET reactions = message_reaction_summary(m.id), rev = v_rev
           WHERE m.id = v_row.id RETURNING * INTO v_row;
          INSERT INTO channel_events (channel_id, rev, kind, message_id, change_id, user_id, emoji)
          VALUES (v_row.channel_id, v_rev, CASE v_kind WHEN 'reaction:add' THEN 'reaction:added' ELSE 'reaction:removed' END,
                  v_row.id, p_ids[i], p_user_ids[i], p_emojis[i])
          RETURNING * INTO v_event;
          events := jsonb_build_array(channel_event_json(v_event));
        END IF;
        outcome := 'created';
        message := message_snapshot(v_row);
        RETURN NEXT;
      END LOOP;
      IF v_touched THEN
        UPDATE channels c SET last_seq = v.last_seq, last_rev = v.last_rev
          FROM unnest(v_channels, v_last_seqs, v_last_revs) AS v(id, last_seq, last_rev)
         WHERE c.id = v.id AND c.last_rev < v.last_rev;
      END IF;
      IF cardinality(v_refused) > 0 THEN
        INSERT INTO change_refusals SELECT * FROM unnest(v_refused) ON CONFLICT DO NOTHING;
      END IF;
      IF cardinality(v_read_seqs) > 0 THEN
        -- A sender has read what it wrote.
        UPDATE channel_members cm SET last_read_seq = v.seq
          FROM (SELECT r.channel_id, r.user_id, max(r.seq) AS seq
                  FROM unnest(v_read_channels, v_read_users, v_read_seqs) AS r(channel_id, user_id, seq)
                 GROUP BY r.channel_id, r.user_id) v
         WHERE cm.channel_id = v.channel_id AND cm.user_id = v.user_id AND cm.last_read_seq < v.seq;
      END IF;
    END
    $fn$;
`;

export async function up(knex: Knex): Promise<void> {
  await knex.raw(`
    CREATE TABLE change_refusals (
      change_id uuid PRIMARY KEY,
      outcome text NOT NULL,
      refusal text,
      created_at timestamptz NOT NULL DEFAULT now()
    );
  `);
  await knex.raw(PERSIST_CHANNEL_CHANGES);
}

export async function down(knex: Knex): Promise<void> {
  await authorize.down(knex);
  await authorize.up(knex);
  await genericPlans.up(knex);
  await knex.raw('DROP TABLE change_refusals');
}
