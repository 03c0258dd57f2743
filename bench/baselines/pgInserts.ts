/**
 * PostgreSQL's own ceiling on this machine: rows/s of single-row inserts (one autocommit INSERT per row) and
 * of 100-row batches (one INSERT ... unnest per batch), into a scratch table shaped and indexed like
 * `messages`, from as many concurrent connections as the worker runs batches (one per partition).
 */
import { randomUUID } from 'node:crypto';
import pg from 'pg';
import { nowUs } from '../lib/clock.js';
import { round } from '../lib/histogram.js';
import { note } from '../lib/progress.js';

export interface PgInsertResult {
  connections: number;
  singleRowRowsPerS: number;
  batch100RowsPerS: number;
  batch100StatementsPerS: number;
}

const TABLE = 'bench_insert_baseline';

async function timedLoop(pool: pg.Pool, connections: number, durationMs: number, rowsPerStatement: number): Promise<{ rows: number; statements: number; seconds: number }> {
  const userId = randomUUID();
  const body = 'x'.repeat(100);
  let rows = 0;
  let statements = 0;
  const start = nowUs();
  const end = start + durationMs * 1000;
  await Promise.all(
    Array.from({ length: connections }, async () => {
      const client = await pool.connect();
      const channelId = randomUUID();
      try {
        for (let seq = 1; nowUs() < end; seq += rowsPerStatement) {
          if (rowsPerStatement === 1) {
            await client.query(`INSERT INTO ${TABLE} (id, channel_id, seq, user_id, body, client_msg_id) VALUES ($1, $2, $3, $4, $5, $6)`, [
              randomUUID(),
              channelId,
              seq,
              userId,
              body,
              randomUUID(),
            ]);
          } else {
            const ids = Array.from({ length: rowsPerStatement }, () => randomUUID());
            await client.query(
              `INSERT INTO ${TABLE} (id, channel_id, seq, user_id, body, client_msg_id)
               SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::bigint[], $4::uuid[], $5::text[], $6::text[])`,
              [
                ids,
                ids.map(() => channelId),
                ids.map((_, i) => seq + i),
                ids.map(() => userId),
                ids.map(() => body),
                ids.map(() => randomUUID()),
              ],
            );
          }
          rows += rowsPerStatement;
          statements++;
        }
      } finally {
        client.release();
      }
    }),
  );
  return { rows, statements, seconds: (nowUs() - start) / 1e6 };
}

export async function pgInserts(o: { databaseUrl: string; connections: number; durationMs: number }): Promise<PgInsertResult> {
  const pool = new pg.Pool({ connectionString: o.databaseUrl, max: o.connections });
  try {
    await pool.query(`DROP TABLE IF EXISTS ${TABLE}`);
    await pool.query(`CREATE TABLE ${TABLE} (
      id uuid PRIMARY KEY, channel_id uuid NOT NULL, seq bigint NOT NULL, user_id uuid NOT NULL, body text NOT NULL,
      client_msg_id text, created_at timestamptz NOT NULL DEFAULT now(), UNIQUE (channel_id, seq))`);
    await pool.query(`CREATE UNIQUE INDEX ${TABLE}_client ON ${TABLE} (user_id, client_msg_id) WHERE client_msg_id IS NOT NULL`);
    note(`[postgres] single-row inserts, ${o.connections} connections, ${o.durationMs / 1000} s`);
    const single = await timedLoop(pool, o.connections, o.durationMs, 1);
    note(`[postgres] 100-row batch inserts, ${o.connections} connections, ${o.durationMs / 1000} s`);
    const batch = await timedLoop(pool, o.connections, o.durationMs, 100);
    return {
      connections: o.connections,
      singleRowRowsPerS: round(single.rows / single.seconds, 1),
      batch100RowsPerS: round(batch.rows / batch.seconds, 1),
      batch100StatementsPerS: round(batch.statements / batch.seconds, 1),
    };
  } finally {
    await pool.query(`DROP TABLE IF EXISTS ${TABLE}`).catch(() => {});
    await pool.end();
  }
}
