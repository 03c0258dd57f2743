import type { Knex } from 'knex';

export async function up(knex: Knex): Promise<void> {
  await knex.schema.createTable('users', (t) => {
    t.uuid('id').primary().defaultTo(knex.raw('gen_random_uuid()'));
    t.text('email').notNullable();
    t.text('display_name').notNullable();
    t.text('password_hash').notNullable();
    t.timestamp('created_at', { useTz: true }).notNullable().defaultTo(knex.fn.now());
  });
  // Case-insensitive uniqueness without a citext dependency.
  await knex.raw('CREATE UNIQUE INDEX users_email_lower_unique ON users (lower(email))');

  await knex.schema.createTable('workspaces', (t) => {
    t.uuid('id').primary().defaultTo(knex.raw('gen_random_uuid()'));
    t.text('name').notNullable();
    t.timestamp('created_at', { useTz: true }).notNullable().defaultTo(knex.fn.now());
  });

  await knex.schema.createTable('workspace_members', (t) => {
    t.uuid('workspace_id').notNullable().references('workspaces.id').onDelete('CASCADE');
    t.uuid('user_id').notNullable().references('users.id').onDelete('CASCADE');
    t.text('role').notNullable().checkIn(['owner', 'admin', 'member'], 'workspace_members_role_check');
    t.timestamp('created_at', { useTz: true }).notNullable().defaultTo(knex.fn.now());
    t.primary(['workspace_id', 'user_id']);
    t.index(['user_id']);
  });

  await knex.schema.createTable('channels', (t) => {
    t.uuid('id').primary().defaultTo(knex.raw('gen_random_uuid()'));
    t.uuid('workspace_id').notNullable().references('workspaces.id').onDelete('CASCADE');
    t.text('name').notNullable();
    t.boolean('is_private').notNullable().defaultTo(false);
    t.text('topic').notNullable().defaultTo('');
    // The last seq handed out in this channel; the seq-assigning transaction locks and advances it.
    t.bigInteger('last_seq').notNullable().defaultTo(0);
    t.uuid('created_by').references('users.id').onDelete('SET NULL');
    t.timestamp('created_at', { useTz: true }).notNullable().defaultTo(knex.fn.now());
    t.unique(['workspace_id', 'name']);
  });

  await knex.schema.createTable('channel_members', (t) => {
    t.uuid('channel_id').notNullable().references('channels.id').onDelete('CASCADE');
    t.uuid('user_id').notNullable().references('users.id').onDelete('CASCADE');
    t.bigInteger('last_read_seq').notNullable().defaultTo(0);
    t.timestamp('created_at', { useTz: true }).notNullable().defaultTo(knex.fn.now());
    t.primary(['channel_id', 'user_id']);
    // A socket's subscriptions on connect, and the channels of a user in a workspace.
    t.index(['user_id']);
  });

  await knex.schema.createTable('messages', (t) => {
    // Assigned by the front node when the send is accepted, so a batch processed twice inserts nothing twice.
    t.uuid('id').primary();
    t.uuid('channel_id').notNullable().references('channels.id').onDelete('CASCADE');
    t.bigInteger('seq').notNullable();
    t.uuid('user_id').notNullable().references('users.id').onDelete('CASCADE');
    t.text('body').notNullable();
    t.text('client_msg_id');
    t.timestamp('created_at', { useTz: true }).notNullable().defaultTo(knex.fn.now());
    // Also the history index: every page is one range scan of (channel_id, seq).
    t.unique(['channel_id', 'seq'], { indexName: 'messages_channel_id_seq_unique' });
  });
  await knex.raw(
    'CREATE UNIQUE INDEX messages_user_id_client_msg_id_unique ON messages (user_id, client_msg_id) WHERE client_msg_id IS NOT NULL',
  );
}

export async function down(knex: Knex): Promise<void> {
  await knex.schema.dropTableIfExists('messages');
  await knex.schema.dropTableIfExists('channel_members');
  await knex.schema.dropTableIfExists('channels');
  await knex.schema.dropTableIfExists('workspace_members');
  await knex.schema.dropTableIfExists('workspaces');
  await knex.schema.dropTableIfExists('users');
}
