import type { Knex } from 'knex';

/**
 * `persist_channel_changes` runs its statements on generic plans only (`plan_cache_mode =
 * force_generic_plan`, for the function's calls alone).
 *
 * Under the default (`auto`), PostgreSQL re-plans a statement at every execution when a plan for the
 * parameters at hand looks cheaper than the generic one. The function's two statements over a batch's
 * arrays (the channels locked at the start, the senders' read marks at the end) look cheaper that way
 * whenever the batch is small, since a generic plan assumes arrays of ten: in batches of one, as
 * at low load, both were planned at every call (pg_stat_statements: as many plans as calls), about an
 * eighth of the backend's CPU per batch (perf). Its other statements read and write by key and were
 * already on generic plans. docs/PERFORMANCE.md has the measurements.
 *
 * A generic plan is made once per session and made again when the tables' statistics change
 * (ANALYZE, which autovacuum runs as they grow); test/db/persist-lookups.test.ts checks that plans made
 * while a channel was small still look a message up by its key once it is large.
 */
const SIGNATURE = 'persist_channel_changes(text[], uuid[], uuid[], uuid[], text[], text[], uuid[], text[], text[], jsonb)';

export async function up(knex: Knex): Promise<void> {
  await knex.raw(`ALTER FUNCTION ${SIGNATURE} SET plan_cache_mode = force_generic_plan`);
}

export async function down(knex: Knex): Promise<void> {
  await knex.raw(`ALTER FUNCTION ${SIGNATURE} RESET plan_cache_mode`);
}
