// First, so that a profile reading its configuration at the top of its module reads .env too.
import 'dotenv/config';
import knexFactory, { type Knex } from 'knex';
import { createDatabaseIfMissing, databaseName, dropDatabase, migrateLatest, withDatabase } from '../../scripts/db-admin.js';
import { loadConfig, type Config } from '../../shared/config.js';
import { knexConfig } from '../../shared/db.js';

/**
 * Runs `fn` with the config of a scratch database of its own (`<DB_NAME>_<suffix>` on the configured
 * server, one connection per pool), created and migrated first and dropped after, whatever happens.
 */
export async function withScratchDatabase<T>(suffix: string, fn: (scratch: Config) => Promise<T>): Promise<T> {
  const base = loadConfig(process.env);
  const scratch = withDatabase(loadConfig({ ...process.env, DB_POOL_MAX: '1' }), `${databaseName(base.db.connection)}_${suffix}`);
  await createDatabaseIfMissing(scratch);
  try {
    await migrateLatest(scratch);
    return await fn(scratch);
  } finally {
    await dropDatabase(scratch);
  }
}

/** withScratchDatabase() with one connection to it, closed after `fn`. */
export function withScratchKnex<T>(suffix: string, fn: (knex: Knex) => Promise<T>): Promise<T> {
  return withScratchDatabase(suffix, async (scratch) => {
    const knex = knexFactory(knexConfig(scratch));
    try {
      return await fn(knex);
    } finally {
      await knex.destroy();
    }
  });
}
