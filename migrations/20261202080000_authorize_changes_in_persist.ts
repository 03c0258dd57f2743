import type { Knex } from 'knex';

/**
 * Changes are authorized inside the statement that applies them (issue #11): a `persist_channel_changes`
 * with two more parameters, each change's policy action and the worker's rules compiled to a table
 * (worker/actions/authorizeChanges.ts). The rules stay in shared/policy.ts; PostgreSQL only looks up the
 * decision the worker computed in advance for the facts it finds, under the channels' locks.
 *
 * Before, a worker read a batch's facts (`change_targets`) and decided, then called the function: one
 * more statement and round trip before every batch holding a change, which made sends slower when changes
 * were mixed in (docs/PERFORMANCE.md). And a batch run again after a crash was decided on what its first
 * run had left: the delete it had applied was refused as NOT_FOUND instead of answered 'stored'. Here the
 * changes an earlier run applied are not decided again.
 *
 * The function with eight parameters stays as it is: this one calls it with the changes the rules allow,
 * and workers of the previous release still call it during a rolling deploy.
 */
export async function up(knex: Knex): Promise<void> {
  await knex.raw(`
    -- The index into a compiled rule table (worker/actions/authorizeChanges.ts, changeRuleKey, which must
    -- agree: test/db/change-rules.test.ts) of one change's facts. 0: no such channel. Creator and author:
    -- NULL none, false another user, true the caller.
    CREATE FUNCTION change_rule_key(
      p_found boolean, p_role text, p_is_member boolean, p_is_private boolean, p_archived boolean,
      p_creator_is_caller boolean, p_author_is_caller boolean, p_deleted boolean, p_retried boolean
    ) RETURNS int LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $fn$
      SELECT CASE WHEN NOT p_found THEN 0 ELSE
        1 + coalesce(array_position(ARRAY['owner', 'admin', 'member', 'guest'], p_role), 0)
          + 5 * (p_is_member::int
          + 2 * (p_is_private::int
          + 2 * (p_archived::int
          + 2 * (CASE WHEN p_creator_is_caller IS NULL THEN 0 WHEN p_creator_is_caller THEN 2 ELSE 1 END
          + 3 * (CASE WHEN p_author_is_caller IS NULL THEN 0 ELSE 1 + p_author_is_caller::int + 2 * p_deleted::int END
          + 5 * p_retried::int)))))
      END
    $fn$;

    CREATE FUNCTION persist_channel_changes(
      p_kinds text[], p_ids uuid[], p_channel_ids uuid[], p_user_ids uuid[], p_bodies text[],
      p_client_ids text[], p_message_ids uuid[], p_emojis text[], p_actions text[], p_rules jsonb
    ) RETURNS TABLE (change_id uuid, outcome text, message jsonb, events jsonb, refusal text)
    LANGUAGE plpgsql AS $fn$
    DECLARE
      v_asked int[];
      v_users uuid[];
      v_channels uuid[];
      v_messages uuid[];
      v_clients text[];
      v_refused int[];
      v_codes text[];
    BEGIN
      -- As the function called below locks them, first: what is decided on is read under these locks.
      PERFORM 1 FROM channels c WHERE c.id = ANY(p_channel_ids) ORDER BY c.id FOR UPDATE;

      -- The changes to decide: each one with an action, unless an earlier run of this batch applied it
      -- (the call below answers it 'stored', with its events, whatever happened to the message since).
      v_asked := ARRAY(SELECT s.i FROM generate_subscripts(p_ids, 1) AS s(i)
                        WHERE p_actions[s.i] IS NOT NULL
                          AND NOT EXISTS (SELECT 1 FROM channel_events e WHERE e.change_id = p_ids[s.i] AND e.kind <> 'message:new')
                        ORDER BY s.i);
      SELECT array_agg(p_user_ids[a.i] ORDER BY a.n), array_agg(p_channel_ids[a.i] ORDER BY a.n),
             array_agg(p_message_ids[a.i] ORDER BY a.n), array_agg(p_client_ids[a.i] ORDER BY a.n)
        INTO v_users, v_channels, v_messages, v_clients
        FROM unnest(v_asked) WITH ORDINALITY AS a(i, n);

      -- A code other than 'a' (allowed) is a refusal the worker maps back to its error; NULL (a table
      -- without the action) refuses too.
      SELECT coalesce(array_agg(d.i ORDER BY d.i), '{}'), coalesce(array_agg(coalesce(d.code, '?') ORDER BY d.i), '{}')
        INTO v_refused, v_codes
        FROM (SELECT a.i, substr(p_rules ->> p_actions[a.i], 1 + change_rule_key(
                       t.i IS NOT NULL, t.caller_role, t.is_member, t.is_private, t.archived,
                       CASE WHEN t.created_by IS NULL THEN NULL ELSE t.created_by = p_user_ids[a.i] END,
                       CASE WHEN t.author_id IS NULL THEN NULL ELSE t.author_id = p_user_ids[a.i] END,
                       t.deleted, t.retried), 1) AS code
                FROM unnest(v_asked) WITH ORDINALITY AS a(i, n)
                LEFT JOIN change_targets(v_users, v_channels, v_messages, v_clients) t ON t.i = a.n) d
       WHERE d.code IS DISTINCT FROM 'a';

      IF cardinality(v_refused) > 0 THEN
        RETURN QUERY SELECT p_ids[r.i], 'refused'::text, NULL::jsonb, NULL::jsonb, r.code
                       FROM unnest(v_refused, v_codes) AS r(i, code);
        SELECT array_agg(p_kinds[s.i] ORDER BY s.i), array_agg(p_ids[s.i] ORDER BY s.i), array_agg(p_channel_ids[s.i] ORDER BY s.i),
               array_agg(p_user_ids[s.i] ORDER BY s.i), array_agg(p_bodies[s.i] ORDER BY s.i), array_agg(p_client_ids[s.i] ORDER BY s.i),
               array_agg(p_message_ids[s.i] ORDER BY s.i), array_agg(p_emojis[s.i] ORDER BY s.i)
          INTO p_kinds, p_ids, p_channel_ids, p_user_ids, p_bodies, p_client_ids, p_message_ids, p_emojis
          FROM generate_subscripts(p_ids, 1) AS s(i)
         WHERE s.i <> ALL (v_refused);
      END IF;

      RETURN QUERY SELECT p.change_id, p.outcome, p.message, p.events, NULL::text
                     FROM persist_channel_changes(p_kinds, p_ids, p_channel_ids, p_user_ids, p_bodies,
                                                  p_client_ids, p_message_ids, p_emojis) p;
    END
    $fn$;
  `);
}

export async function down(knex: Knex): Promise<void> {
  await knex.raw(`
    DROP FUNCTION persist_channel_changes(text[], uuid[], uuid[], uuid[], text[], text[], uuid[], text[], text[], jsonb);
    DROP FUNCTION change_rule_key(boolean, text, boolean, boolean, boolean, boolean, boolean, boolean, boolean);
  `);
}
