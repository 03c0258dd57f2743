import type { Knex } from 'knex';
import * as previous from './20261202030000_roles_guest_channel_archived.js';

/**
 * Message changes (issue #11): edits, deletes, reactions, threads and mentions, on one ordered change
 * stream per channel.
 *
 * - `channels.last_rev`: every change to a channel's messages (a new message, an edit, a delete, a
 *   reaction added or removed, a thread parent's counters) takes the channel's next rev, in the
 *   transaction that stores it, so revs are gap-free like seqs.
 * - `channel_events` is the change log, one row per rev: what resume by rev replays and what fills a
 *   live gap. A `message:new` row carries no copy of the message: it is rebuilt from the message row as it
 *   was created (`message_as_created`), so a send writes one narrow row more, not its body twice. Other
 *   rows carry what their event needs (`message:updated` a snapshot of the message row).
 * - `messages` gains the change fields; `original_body`/`original_mentions` keep what a message was
 *   created with once it is edited. A delete erases the content everywhere: body, original, snapshots.
 * - `message_reactions` holds who reacted with what (set semantics); `messages.reactions` is its summary,
 *   kept in the same transaction, so history reads one row per message.
 * - `persist_channel_changes` applies a batch of sends and changes in order, in one statement.
 *   `persist_message_batch` stays as a sends-only wrapper.
 *
 * Existing messages get rev = seq and a message:new row each (channels' last_rev = last_seq).
 */
export async function up(knex: Knex): Promise<void> {
  await knex.raw(`
    ALTER TABLE channels ADD COLUMN last_rev bigint NOT NULL DEFAULT 0;
    ALTER TABLE messages
      ADD COLUMN rev bigint NOT NULL DEFAULT 0,
      ADD COLUMN created_rev bigint NOT NULL DEFAULT 0,
      ADD COLUMN parent_id uuid REFERENCES messages(id) ON DELETE CASCADE,
      ADD COLUMN edited_at timestamptz,
      ADD COLUMN deleted_at timestamptz,
      ADD COLUMN reply_count integer NOT NULL DEFAULT 0,
      ADD COLUMN last_reply_at timestamptz,
      ADD COLUMN reactions jsonb NOT NULL DEFAULT '[]',
      ADD COLUMN mentions uuid[] NOT NULL DEFAULT '{}',
      ADD COLUMN original_body text,
      ADD COLUMN original_mentions uuid[];
    -- Replies of a thread, paged by seq.
    CREATE INDEX messages_parent_id_seq ON messages (parent_id, seq) WHERE parent_id IS NOT NULL;
    -- mentionCount: the unread messages of a channel that mention the reader.
    CREATE INDEX messages_mentions ON messages USING gin (mentions) WHERE mentions <> '{}';

    CREATE TABLE channel_events (
      channel_id uuid NOT NULL REFERENCES channels(id) ON DELETE CASCADE,
      rev bigint NOT NULL,
      kind text NOT NULL CHECK (kind IN ('message:new', 'message:updated', 'message:deleted', 'reaction:added', 'reaction:removed')),
      message_id uuid NOT NULL,
      -- The send or change that made this event (a reply makes two: the reply and its parent's update).
      change_id uuid NOT NULL,
      user_id uuid,
      emoji text,
      seq bigint,
      snapshot jsonb,
      created_at timestamptz NOT NULL DEFAULT now(),
      PRIMARY KEY (channel_id, rev)
    );
    -- Finding a change again (a batch run twice); sends are found by their message id instead.
    CREATE INDEX channel_events_change_id ON channel_events (change_id) WHERE kind <> 'message:new';
    -- A client's retry key of a change, kept whether or not the change changed anything (adding a reaction
    -- that was there), so that its retry never applies it later.
    CREATE TABLE client_changes (
      user_id uuid NOT NULL REFERENCES users(id) ON DELETE CASCADE,
      client_change_id text NOT NULL,
      change_id uuid NOT NULL,
      message_id uuid NOT NULL,
      created_at timestamptz NOT NULL DEFAULT now(),
      PRIMARY KEY (user_id, client_change_id)
    );
    -- Erasing a deleted message's snapshots.
    CREATE INDEX channel_events_snapshot_message_id ON channel_events (message_id) WHERE snapshot IS NOT NULL;

    CREATE TABLE message_reactions (
      message_id uuid NOT NULL REFERENCES messages(id) ON DELETE CASCADE,
      emoji text NOT NULL,
      user_id uuid NOT NULL REFERENCES users(id) ON DELETE CASCADE,
      rev bigint NOT NULL,
      PRIMARY KEY (message_id, emoji, user_id)
    );

    UPDATE messages SET rev = seq, created_rev = seq;
    UPDATE channels SET last_rev = last_seq;
    INSERT INTO channel_events (channel_id, rev, kind, message_id, change_id, user_id, created_at)
      SELECT channel_id, seq, 'message:new', id, id, user_id, created_at FROM messages;
  `);

  await knex.raw(`
    -- PL/pgSQL, not SQL: called once per row from persist_channel_changes, a SQL function would be parsed
    -- and planned again at every call (its plans live for one statement); these keep theirs per session.

    -- The message as its message:new event showed it. A deleted message's content is gone for good.
    CREATE FUNCTION message_as_created(m messages) RETURNS jsonb LANGUAGE plpgsql STABLE AS $fn$
    BEGIN
      RETURN message_snapshot(m) || jsonb_build_object(
        'rev', m.created_rev,
        'body', CASE WHEN m.deleted_at IS NULL THEN coalesce(m.original_body, m.body) ELSE '' END,
        'mentions', CASE WHEN m.deleted_at IS NULL THEN to_jsonb(coalesce(m.original_mentions, m.mentions)) ELSE '[]'::jsonb END,
        'edited_at', NULL, 'deleted_at', NULL, 'reply_count', 0, 'last_reply_at', NULL, 'reactions', '[]'::jsonb);
    END
    $fn$;

    -- A message row as clients see it (without what only the server keeps).
    CREATE FUNCTION message_snapshot(m messages) RETURNS jsonb LANGUAGE plpgsql IMMUTABLE AS $fn$
    BEGIN
      RETURN to_jsonb(m) - 'original_body' - 'original_mentions';
    END
    $fn$;

    -- An event row as the worker publishes it and resume replays it.
    CREATE FUNCTION channel_event_json(e channel_events) RETURNS jsonb LANGUAGE plpgsql STABLE AS $fn$
    DECLARE
      v_message jsonb := e.snapshot;
    BEGIN
      IF e.kind = 'message:new' THEN
        SELECT message_as_created(m) INTO v_message FROM messages m WHERE m.id = e.message_id;
      END IF;
      RETURN jsonb_build_object('rev', e.rev, 'kind', e.kind, 'message_id', e.message_id, 'user_id', e.user_id,
        'emoji', e.emoji, 'seq', e.seq, 'message', v_message);
    END
    $fn$;

    -- Channel members written as <@userId> in a body, ascending, each once.
    CREATE FUNCTION message_mentions(p_channel_id uuid, p_body text) RETURNS uuid[] LANGUAGE plpgsql STABLE AS $fn$
    BEGIN
      IF strpos(p_body, '<@') = 0 THEN
        RETURN '{}'::uuid[];
      END IF;
      RETURN coalesce((
        SELECT array_agg(DISTINCT cm.user_id ORDER BY cm.user_id)
          FROM channel_members cm
         WHERE cm.channel_id = p_channel_id
           AND cm.user_id IN (
             SELECT lower(x[1])::uuid
               FROM regexp_matches(p_body, '<@([0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12})>', 'g') AS x)
      ), '{}'::uuid[]);
    END
    $fn$;

    -- Reactions of a message as clients see them: per emoji, in the order of its oldest current reaction.
    CREATE FUNCTION message_reaction_summary(p_message_id uuid) RETURNS jsonb LANGUAGE plpgsql STABLE AS $fn$
    BEGIN
      RETURN (
        SELECT coalesce(jsonb_agg(jsonb_build_object('emoji', s.emoji, 'count', s.n, 'userIds', s.user_ids) ORDER BY s.first_rev), '[]'::jsonb)
          FROM (SELECT r.emoji, count(*) AS n, min(r.rev) AS first_rev,
                       to_jsonb((array_agg(r.user_id ORDER BY r.rev, r.user_id))[1:50]) AS user_ids
                  FROM message_reactions r WHERE r.message_id = p_message_id GROUP BY r.emoji) s);
    END
    $fn$;
  `);

  await knex.raw(`
    CREATE FUNCTION persist_channel_changes(
      p_kinds text[], p_ids uuid[], p_channel_ids uuid[], p_user_ids uuid[], p_bodies text[],
      p_client_ids text[], p_message_ids uuid[], p_emojis text[]
    ) RETURNS TABLE (change_id uuid, outcome text, message jsonb, events jsonb)
    LANGUAGE plpgsql AS $fn$
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
      v_touched boolean := false;
      v_read_channels uuid[] := '{}';
      v_read_users uuid[] := '{}';
      v_read_seqs bigint[] := '{}';
    BEGIN
      -- The channel rows stay locked to the end: an archive (UPDATE channels) waits for this batch, and a
      -- batch after the archive sees it.
      SELECT coalesce(array_agg(l.id ORDER BY l.id), '{}'), coalesce(array_agg(l.last_seq ORDER BY l.id), '{}'),
             coalesce(array_agg(l.last_rev ORDER BY l.id), '{}'), coalesce(array_agg(l.archived ORDER BY l.id), '{}')
        INTO v_channels, v_last_seqs, v_last_revs, v_archived
        FROM (SELECT c.id, c.last_seq, c.last_rev, c.archived FROM channels c
               WHERE c.id = ANY(p_channel_ids) ORDER BY c.id FOR UPDATE) l;
      FOR i IN 1 .. coalesce(cardinality(p_ids), 0) LOOP
        change_id := p_ids[i];
        v_kind := coalesce(p_kinds[i], 'send');
        message := NULL;
        events := NULL;

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

        k := array_position(v_channels, p_channel_ids[i]);
        PERFORM 1 FROM channel_members cm WHERE cm.channel_id = p_channel_ids[i] AND cm.user_id = p_user_ids[i];
        IF k IS NULL OR NOT FOUND THEN
          outcome := 'not_found';
          RETURN NEXT;
          CONTINUE;
        END IF;
        IF v_archived[k] THEN
          outcome := 'forbidden';
          RETURN NEXT;
          CONTINUE;
        END IF;

        -- A client's retry: the same clientMsgId / clientChangeId of the same user.
        IF p_client_ids[i] IS NOT NULL THEN
          IF v_kind = 'send' THEN
            SELECT * INTO v_row FROM messages m WHERE m.user_id = p_user_ids[i] AND m.client_msg_id = p_client_ids[i];
            v_found := FOUND;
          ELSE
            SELECT m.* INTO v_row FROM client_changes cc JOIN messages m ON m.id = cc.message_id
             WHERE cc.user_id = p_user_ids[i] AND cc.client_change_id = p_client_ids[i];
            v_found := FOUND;
          END IF;
          IF v_found THEN
            -- The stored message is answered only to a member of its channel: a client id reused in a
            -- channel the user has since left must not show its message.
            IF v_row.channel_id <> p_channel_ids[i] AND NOT EXISTS (
              SELECT 1 FROM channel_members cm WHERE cm.channel_id = v_row.channel_id AND cm.user_id = p_user_ids[i]
            ) THEN
              outcome := 'not_found';
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
            SELECT * INTO v_parent FROM messages m
             WHERE m.id = p_message_ids[i] AND m.channel_id = p_channel_ids[i] AND m.parent_id IS NULL AND m.deleted_at IS NULL
               FOR UPDATE;
            IF NOT FOUND THEN
              outcome := 'invalid_parent';
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

        -- Every change is to a message of this channel that is not deleted.
        SELECT * INTO v_row FROM messages m
         WHERE m.id = p_message_ids[i] AND m.channel_id = p_channel_ids[i] AND m.deleted_at IS NULL FOR UPDATE;
        IF NOT FOUND THEN
          outcome := 'not_found';
          RETURN NEXT;
          CONTINUE;
        END IF;
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

    DROP FUNCTION persist_message_batch(uuid[], uuid[], uuid[], text[], text[]);
    -- Sends only, as before: kept for the SQL-level tests and any tool that calls it.
    CREATE FUNCTION persist_message_batch(
      p_ids uuid[], p_channel_ids uuid[], p_user_ids uuid[], p_bodies text[], p_client_msg_ids text[]
    ) RETURNS TABLE (send_id uuid, outcome text, message jsonb)
    LANGUAGE sql AS $fn$
      SELECT c.change_id, c.outcome, c.message
        FROM persist_channel_changes(array_fill('send'::text, ARRAY[coalesce(cardinality(p_ids), 0)]), p_ids, p_channel_ids,
               p_user_ids, p_bodies, p_client_msg_ids, array_fill(NULL::uuid, ARRAY[coalesce(cardinality(p_ids), 0)]),
               array_fill(NULL::text, ARRAY[coalesce(cardinality(p_ids), 0)])) c
    $fn$;
  `);
}

export async function down(knex: Knex): Promise<void> {
  await knex.raw(`
    DROP FUNCTION persist_message_batch(uuid[], uuid[], uuid[], text[], text[]);
    DROP FUNCTION persist_channel_changes(text[], uuid[], uuid[], uuid[], text[], text[], uuid[], text[]);
    DROP FUNCTION message_reaction_summary(uuid);
    DROP FUNCTION message_mentions(uuid, text);
    DROP FUNCTION channel_event_json(channel_events);
    DROP FUNCTION message_snapshot(messages);
    DROP FUNCTION message_as_created(messages);
    DROP TABLE message_reactions;
    DROP TABLE client_changes;
    DROP TABLE channel_events;
    -- Replies and deleted messages stay, as ordinary messages (a deleted one with its empty body).
    ALTER TABLE messages DROP COLUMN rev, DROP COLUMN created_rev, DROP COLUMN parent_id, DROP COLUMN edited_at,
      DROP COLUMN deleted_at, DROP COLUMN reply_count, DROP COLUMN last_reply_at, DROP COLUMN reactions,
      DROP COLUMN mentions, DROP COLUMN original_body, DROP COLUMN original_mentions;
    ALTER TABLE channels DROP COLUMN last_rev;
  `);
  await knex.raw(previous.PERSIST_MESSAGE_BATCH);
}
