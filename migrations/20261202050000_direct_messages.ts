import type { Knex } from 'knex';

/**
 * Direct messages (issue #12): a DM is a channel of `kind` 'dm', private and nameless, between a fixed
 * set of 2 to 9 people of one workspace.
 *
 * - `channels.kind`: 'channel' (every existing row, by the default) or 'dm'.
 * - `channels.dm_user_ids`: a DM's people, sorted, as it was opened; fixed for its life, so it stays its
 *   key when someone is removed from the workspace (and loses their channel_members row). The unique index
 *   on (workspace_id, dm_user_ids) is what makes opening one race-free: concurrent opens of the same set
 *   insert ON CONFLICT DO NOTHING and all find the one row that won.
 * - `channels.name` becomes nullable: a DM has none, a channel always one (the CHECK). The unique
 *   (workspace_id, name) stays as it is: NULLs never collide.
 */
export async function up(knex: Knex): Promise<void> {
  await knex.raw(`
    ALTER TABLE channels
      ADD COLUMN kind text NOT NULL DEFAULT 'channel' CONSTRAINT channels_kind_check CHECK (kind IN ('channel', 'dm')),
      ADD COLUMN dm_user_ids uuid[],
      ALTER COLUMN name DROP NOT NULL;
    ALTER TABLE channels ADD CONSTRAINT channels_dm_shape_check CHECK (
      (kind = 'dm') = (dm_user_ids IS NOT NULL)
      AND (kind = 'dm') = (name IS NULL)
      AND (kind <> 'dm' OR (is_private AND cardinality(dm_user_ids) BETWEEN 2 AND 9))
    );
    CREATE UNIQUE INDEX channels_dm_user_ids_unique ON channels (workspace_id, dm_user_ids) WHERE kind = 'dm';
  `);
}

/** DMs stay, with their members and history, as private channels named `dm-<id>`. */
export async function down(knex: Knex): Promise<void> {
  await knex.raw(`
    DROP INDEX channels_dm_user_ids_unique;
    ALTER TABLE channels DROP CONSTRAINT channels_dm_shape_check;
    UPDATE channels SET name = 'dm-' || id WHERE kind = 'dm';
    ALTER TABLE channels DROP COLUMN dm_user_ids, DROP COLUMN kind, ALTER COLUMN name SET NOT NULL;
  `);
}
