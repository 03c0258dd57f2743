import type { Knex } from 'knex';

/**
 * Workers delete retry keys (`client_changes`) older than `CLIENT_CHANGES_KEEP_HOURS` (worker/prune.ts):
 * by this index each prune reads the old keys alone, not the whole table. Keys are written in time order,
 * so each one lands at the index's right edge.
 *
 * Built CONCURRENTLY, outside a transaction: the release running meanwhile (docs/OPERATIONS.md, "Deploys")
 * keeps writing keys while a large table is indexed, where a plain CREATE INDEX would hold every change
 * until the build ends.
 */
export const config = { transaction: false };

export async function up(knex: Knex): Promise<void> {
  // Not recorded as run, so an index of that name is what a build that failed half-way left: invalid.
  await knex.raw('DROP INDEX CONCURRENTLY IF EXISTS client_changes_created_at');
  await knex.raw('CREATE INDEX CONCURRENTLY client_changes_created_at ON client_changes (created_at)');
}

export async function down(knex: Knex): Promise<void> {
  await knex.raw('DROP INDEX CONCURRENTLY IF EXISTS client_changes_created_at');
}
