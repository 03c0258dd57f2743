import knexFactory, { type Knex } from 'knex';
import { pathToFileURL } from 'node:url';
import { loadConfig } from '../shared/config.js';
import { knexConfig } from '../shared/db.js';

/**
 * Message search (issue #12): `messages.search_vector`, the body as a tsvector, with a GIN index on
 * (channel_id, user_id, search_vector).
 *
 * A STORED generated column rather than a trigger: PostgreSQL computes it in the INSERT and UPDATE that
 * persist_channel_changes already runs (a send, an edit, a delete's empty body), with no function call per
 * row, and that function stays as it is. A generated column needs an immutable expression, so the text
 * search configuration is a constant of it, taken from SEARCH_LANGUAGE when the column is built; queries
 * read the same constant from `message_search_language()`, so a query is always parsed as the rows were,
 * whatever the process's own setting.
 *
 * `message_snapshot()` (the message as events and acks show it) leaves the vector out, as it leaves out
 * the kept original body.
 */
export async function up(knex: Knex): Promise<void> {
  // GIN operator classes for uuid (channel_id, user_id), from contrib; trusted, so a database owner may create it.
  await knex.raw('CREATE EXTENSION IF NOT EXISTS btree_gin');
  await buildSearchColumn(knex, loadConfig(process.env).search.language);
  await knex.raw(`
    CREATE OR REPLACE FUNCTION message_snapshot(m messages) RETURNS jsonb LANGUAGE plpgsql IMMUTABLE AS $fn$
    BEGIN
      RETURN to_jsonb(m) - 'original_body' - 'original_mentions' - 'search_vector';
    END
    $fn$;
  `);
}

export async function down(knex: Knex): Promise<void> {
  await knex.raw(`
    CREATE OR REPLACE FUNCTION message_snapshot(m messages) RETURNS jsonb LANGUAGE plpgsql IMMUTABLE AS $fn$
    BEGIN
      RETURN to_jsonb(m) - 'original_body' - 'original_mentions';
    END
    $fn$;
    DROP FUNCTION message_search_language();
    ALTER TABLE messages DROP COLUMN search_vector;
    -- btree_gin stays: other indexes may have come to use it.
  `);
}

/**
 * (Re)builds the column and its index in `language` (a text search configuration: `english`, `simple`,
 * … see `SELECT cfgname FROM pg_ts_config`). Rewrites the messages table: run it when the language
 * changes, not on every start.
 */
export async function buildSearchColumn(knex: Knex, language: string): Promise<void> {
  // The cast refuses an unknown configuration (42704) and gives its canonical, quoted-if-needed name.
  const { rows } = await knex.raw<{ rows: Array<{ cfg: string }> }>('SELECT ?::regconfig::text AS cfg', [language]);
  const literal = `'${rows[0].cfg.replaceAll("'", "''")}'::regconfig`;
  await knex.transaction(async (trx) => {
    await trx.raw(`
      ALTER TABLE messages DROP COLUMN IF EXISTS search_vector;
      ALTER TABLE messages ADD COLUMN search_vector tsvector GENERATED ALWAYS AS (to_tsvector(${literal}, body)) STORED;
      -- Searches are always within channels (the caller's), often of one author (from:): both in the index
      -- let a rare word's hits in one channel, or an author's, be found without reading the channel's other
      -- messages.
      CREATE INDEX messages_channel_id_user_id_search_vector ON messages USING gin (channel_id, user_id, search_vector);
      -- Inlined into a query as the constant it returns.
      CREATE OR REPLACE FUNCTION message_search_language() RETURNS regconfig LANGUAGE sql IMMUTABLE PARALLEL SAFE
        AS $fn$ SELECT ${literal} $fn$;
    `);
  });
}

/**
 * `SEARCH_LANGUAGE=german npx tsx migrations/20261202060000_message_search.ts`: re-indexes every message
 * in the configured language, unless they already are (README, "Configuration").
 */
async function reindex(): Promise<void> {
  await import('dotenv/config');
  const config = loadConfig(process.env);
  const knex = knexFactory(knexConfig(config));
  try {
    const { rows } = await knex.raw<{ rows: Array<{ current: string; wanted: string }> }>(
      'SELECT message_search_language()::text AS current, ?::regconfig::text AS wanted',
      [config.search.language],
    );
    const { current, wanted } = rows[0];
    if (current === wanted) {
      console.log(`search: messages are already indexed in ${current}`);
      return;
    }
    await buildSearchColumn(knex, wanted);
    console.log(`search: re-indexed every message in ${wanted} (was ${current})`);
  } finally {
    await knex.destroy();
  }
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  reindex().catch((err) => {
    console.error(`search: re-indexing failed: ${(err as Error).message}`);
    process.exitCode = 1;
  });
}
