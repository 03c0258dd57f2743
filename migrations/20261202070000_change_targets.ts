import type { Knex } from 'knex';

/**
 * `change_targets`: what workers authorize a batch's changes on (worker/actions/authorizeChanges.ts), for
 * each (user, channel, message, clientChangeId), in the keys' order.
 *
 * A function, not a statement sent each time: as a plain statement PostgreSQL planned it at every call
 * and, not knowing how many keys the unnest holds, joined them with hash joins over whole tables; one read
 * cost its backend 3 to 8 persisted sends' worth of CPU (bench/profile/changeCost.ts). In PL/pgSQL with a
 * generic plan it is planned once per session, and LATERAL makes each key a few primary-key lookups: about
 * one send's worth alone, a quarter of one when four share a call.
 */
export async function up(knex: Knex): Promise<void> {
  await knex.raw(`
    CREATE FUNCTION change_targets(p_user_ids uuid[], p_channel_ids uuid[], p_message_ids uuid[], p_client_ids text[])
    RETURNS TABLE (i bigint, is_private boolean, archived boolean, created_by uuid, caller_role text,
                   is_member boolean, author_id uuid, deleted boolean, retried boolean)
    LANGUAGE plpgsql STABLE
    -- PL/pgSQL would plan its query again at every call: a generic plan is as good for any keys.
    SET plan_cache_mode = force_generic_plan
    AS $fn$
    BEGIN
      RETURN QUERY
      SELECT k.i, t.is_private, t.archived, t.created_by, t.caller_role, t.is_member, t.author_id, t.deleted, t.retried
        FROM unnest(p_user_ids, p_channel_ids, p_message_ids, p_client_ids) WITH ORDINALITY
               AS k(user_id, channel_id, message_id, client_id, i)
        CROSS JOIN LATERAL (
          SELECT c.is_private, c.archived, c.created_by,
                 (SELECT wm.role FROM workspace_members wm
                   WHERE wm.workspace_id = c.workspace_id AND wm.user_id = k.user_id) AS caller_role,
                 EXISTS (SELECT 1 FROM channel_members cm
                          WHERE cm.channel_id = c.id AND cm.user_id = k.user_id) AS is_member,
                 m.user_id AS author_id, m.deleted_at IS NOT NULL AS deleted,
                 EXISTS (SELECT 1 FROM client_changes cc
                          WHERE cc.user_id = k.user_id AND cc.client_change_id = k.client_id) AS retried
            FROM channels c
            LEFT JOIN messages m ON m.id = k.message_id AND m.channel_id = c.id
           WHERE c.id = k.channel_id) t;
    END
    $fn$;
  `);
}

export async function down(knex: Knex): Promise<void> {
  await knex.raw('DROP FUNCTION change_targets(uuid[], uuid[], uuid[], text[])');
}
