import type { Knex } from 'knex';

/**
 * Workers delete retry keys (`client_changes`) older than `CLIENT_CHANGES_KEEP_HOURS` (worker/prune.ts):
 * by this index each prune reads the old keys alone, not the whole table. Keys are written in time order,
 * so each one lands at the index's right edge.
 */
export async function up(knex: Knex): Promise<void> {
  await knex.raw('CREATE INDEX client_changes_created_at ON client_changes (created_at)');
}

export async function down(knex: Knex): Promise<void> {
  await knex.raw('DROP INDEX client_changes_created_at');
}
