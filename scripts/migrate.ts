/**
 * `npm run migrate` applies pending migrations (creating the database first if needed);
 * `npm run migrate:down` reverts the latest batch. Uses the configured PostgreSQL only: no fallbacks here.
 */
import 'dotenv/config';
import { describeDatabase, loadConfig } from '../shared/config.js';
import { createDatabaseIfMissing, migrateLatest, migrateRollback } from './db-admin.js';
import { errorText, isUnreachable } from './net.js';

async function run(direction: string | undefined): Promise<string> {
  if (direction !== undefined && direction !== 'latest' && direction !== 'down') {
    throw new Error(`unknown argument "${direction}" (usage: tsx scripts/migrate.ts [latest|down])`);
  }
  const config = loadConfig(process.env);
  const target = describeDatabase(config);
  try {
    if (direction === 'down') {
      const { batch, files } = await migrateRollback(config);
      return files.length > 0 ? `${target}: rolled back batch ${batch}: ${files.join(', ')}` : `${target}: nothing to roll back`;
    }
    const created = await createDatabaseIfMissing(config);
    const { batch, files } = await migrateLatest(config);
    const prefix = `${target}: ${created ? 'created the database; ' : ''}`;
    return files.length > 0 ? `${prefix}applied batch ${batch}: ${files.join(', ')}` : `${prefix}already up to date`;
  } catch (err) {
    throw isUnreachable(err) ? new Error(`cannot reach PostgreSQL at ${target} (${errorText(err)})`) : err;
  }
}

try {
  console.log(`migrate: ${await run(process.argv[2])}`);
} catch (err) {
  console.error(`migrate: failed: ${errorText(err)}`);
  process.exitCode = 1;
}
