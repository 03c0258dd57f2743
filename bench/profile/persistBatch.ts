/**
 * PostgreSQL time per batch, alone: the worker's persistMessages() (read, not changed) called directly on
 * the bench database, one batch after another on one connection, for several batch sizes; each batch
 * spreads over a few channels as the partitions' batches do.
 */
import { randomUUID } from 'node:crypto';
import knexFactory, { type Knex } from 'knex';
import { connectionUrl, createDatabaseIfMissing, databaseName, dropDatabase, migrateLatest, withDatabase } from '../../scripts/db-admin.js';
import { loadConfig, type Config } from '../../shared/config.js';
import { knexConfig } from '../../shared/db.js';
import type { SendRequest } from '../../shared/queues.js';
import { persistMessages } from '../../worker/actions/persistMessages.js';
import { nowUs } from '../lib/clock.js';
import { Histogram, round, type LatencySummary } from '../lib/histogram.js';

export interface PersistProfile {
  /** Rows in `messages` while measuring: the dedupe lookup's cost may grow with it. */
  tableRows: number;
  sizes: PersistSizeResult[];
}

export interface PersistSizeResult {
  batchSize: number;
  batches: number;
  /** ms per persistMessages() call. */
  ms: LatencySummary;
  rowsPerS: number;
}

const CHANNELS_PER_BATCH = 4;

/** Measures in a scratch database of its own (created, migrated, dropped), so nothing else skews or is skewed. */
export async function persistProfileFresh(o: { config: Config; sizes: number[]; durationMs: number }): Promise<PersistProfile> {
  const scratch = withDatabase(o.config, `${databaseName(o.config.db.connection)}_persist`);
  await createDatabaseIfMissing(scratch);
  try {
    await migrateLatest(scratch);
    return await persistBatchProfile({ databaseUrl: connectionUrl(scratch.db.connection), sizes: o.sizes, durationMs: o.durationMs });
  } finally {
    await dropDatabase(scratch);
  }
}

/** A workspace of `channels` channels, each with one member who sends into it: what persistMessages() needs. */
export async function seedSenders(
  knex: Knex,
  name: string,
  channels: number,
): Promise<{ workspaceId: string; members: Array<{ channelId: string; userId: string }> }> {
  const workspaceId = randomUUID();
  await knex.raw('INSERT INTO workspaces (id, name) VALUES (?, ?)', [workspaceId, name]);
  const members: Array<{ channelId: string; userId: string }> = [];
  for (let c = 0; c < channels; c++) {
    const userId = randomUUID();
    const channelId = randomUUID();
    await knex.raw('INSERT INTO users (id, email, display_name, password_hash) VALUES (?, ?, ?, ?)', [userId, `${userId}@bench.test`, 'p', 'x']);
    await knex.raw('INSERT INTO channels (id, workspace_id, name) VALUES (?, ?, ?)', [channelId, workspaceId, `persist-${c}`]);
    await knex.raw('INSERT INTO channel_members (channel_id, user_id) VALUES (?, ?)', [channelId, userId]);
    members.push({ channelId, userId });
  }
  return { workspaceId, members };
}

export async function persistBatchProfile(o: { databaseUrl: string; sizes: number[]; durationMs: number }): Promise<PersistProfile> {
  const config = loadConfig({ ...process.env, DATABASE_URL: o.databaseUrl, DB_POOL_MAX: '2' });
  const knex = knexFactory(knexConfig(config));
  try {
    const { workspaceId, members } = await seedSenders(knex, 'persist profile', CHANNELS_PER_BATCH);
    const tableRows = Number((await knex.raw('SELECT count(*) AS n FROM messages')).rows[0].n);
    const body = 'x'.repeat(100);
    const results: PersistSizeResult[] = [];
    let n = 0;
    for (const size of o.sizes) {
      const hist = new Histogram();
      let rows = 0;
      const start = nowUs();
      while (nowUs() - start < o.durationMs * 1000) {
        const sends: SendRequest[] = Array.from({ length: size }, (_, i) => {
          const m = members[i % members.length];
          return { id: randomUUID(), channelId: m.channelId, userId: m.userId, body, clientMsgId: `persist-${n++}` };
        });
        const t = nowUs();
        await persistMessages(knex, sends);
        hist.record(nowUs() - t);
        rows += size;
      }
      results.push({ batchSize: size, batches: hist.count, ms: hist.summary(), rowsPerS: round(rows / ((nowUs() - start) / 1e6), 1) });
    }
    await knex.raw('DELETE FROM workspaces WHERE id = ?', [workspaceId]);
    await knex.raw('DELETE FROM users WHERE id = ANY(?::uuid[])', [members.map((m) => m.userId)]);
    return { tableRows, sizes: results };
  } finally {
    await knex.destroy();
  }
}
