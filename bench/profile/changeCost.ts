/**
 * PostgreSQL's CPU per send and per change, by kind (each change authorized in the statement that applies
 * it, as workers do), then per op of the bench's mixed load against send-only, in batches of the size the
 * bench's open loop makes at 50 %: `npx tsx bench/profile/changeCost.ts`.
 *
 * Reads the CPU time of the one backend doing the work (/proc/<pid>/stat), not the wall clock, so other
 * load on the machine changes the figures far less than it changes latencies. Compare rows of one run.
 * Works in a scratch database of its own (created, migrated, dropped) on the configured server.
 */
import { randomUUID } from 'node:crypto';
import { readFileSync } from 'node:fs';
import knexFactory, { type Knex } from 'knex';
import { createDatabaseIfMissing, databaseName, dropDatabase, migrateLatest, withDatabase } from '../../scripts/db-admin.js';
import { loadConfig } from '../../shared/config.js';
import { knexConfig } from '../../shared/db.js';
import type { ChangeRequest, SendRequest } from '../../shared/queues.js';
import { persistMessages } from '../../worker/actions/persistMessages.js';

const CHANNELS = 4;
const USERS = 32;
const BATCH = 50;
const OPS = 4000;
const TICK_MS = 10;
/** Mean batch of the bench's open loop at 50 % on 2 cores (its report's `batches` line). */
const BENCH_BATCH = 7;
const MIX_ROUNDS = 6;

async function main(): Promise<void> {
  await import('dotenv/config');
  const base = loadConfig(process.env);
  const scratch = withDatabase(loadConfig({ ...process.env, DB_POOL_MAX: '1' }), `${databaseName(base.db.connection)}_change_cost`);
  await createDatabaseIfMissing(scratch);
  try {
    await migrateLatest(scratch);
    const knex = knexFactory(knexConfig(scratch));
    try {
      await profile(knex);
    } finally {
      await knex.destroy();
    }
  } finally {
    await dropDatabase(scratch);
  }
}

async function profile(knex: Knex): Promise<void> {
  const pid = Number((await knex.raw('SELECT pg_backend_pid() AS pid')).rows[0].pid);
  const cpuMs = () => {
    const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' ');
    return (Number(fields[11]) + Number(fields[12])) * TICK_MS;
  };
  const measure = async (name: string, ops: number, run: () => Promise<void>) => {
    const cpu = cpuMs();
    const wall = performance.now();
    await run();
    const us = ((cpuMs() - cpu) * 1000) / ops;
    if (!name) return us;
    console.log(`${name.padEnd(44)} ${us.toFixed(0).padStart(6)} µs PostgreSQL CPU per op   ${(((performance.now() - wall) * 1000) / ops).toFixed(0).padStart(6)} µs wall`);
    return us;
  };

  const workspaceId = randomUUID();
  await knex.raw('INSERT INTO workspaces (id, name) VALUES (?, ?)', [workspaceId, 'change cost']);
  const users = Array.from({ length: USERS }, () => randomUUID());
  const channels = Array.from({ length: CHANNELS }, () => randomUUID());
  for (const userId of users) {
    await knex.raw('INSERT INTO users (id, email, display_name, password_hash) VALUES (?, ?, ?, ?)', [userId, `${userId}@bench.test`, 'p', 'x']);
    await knex.raw("INSERT INTO workspace_members (workspace_id, user_id, role) VALUES (?, ?, 'member')", [workspaceId, userId]);
  }
  for (const [c, channelId] of channels.entries()) {
    await knex.raw('INSERT INTO channels (id, workspace_id, name) VALUES (?, ?, ?)', [channelId, workspaceId, `cost-${c}`]);
    for (const userId of users) await knex.raw('INSERT INTO channel_members (channel_id, user_id) VALUES (?, ?)', [channelId, userId]);
  }

  let n = 0;
  const stored: SendRequest[] = [];
  const send = (i: number): SendRequest => ({
    kind: 'send', id: randomUUID(), channelId: channels[i % CHANNELS], userId: users[i % USERS],
    body: `message ${n++} with about a hundred characters of ordinary words in it, as people write them`, clientMsgId: `cost-${n}`,
  });
  const sends = async (batches: number) => {
    for (let b = 0; b < batches; b++) {
      const batch = Array.from({ length: BATCH }, (_, i) => send(i));
      await persistMessages(knex, batch);
      stored.push(...batch);
    }
  };
  const target = () => stored[Math.floor(Math.random() * stored.length)];
  const change = (kind: 'reaction:add' | 'reaction:remove' | 'edit' | 'delete', clientChangeId: string | null = null): ChangeRequest => {
    const m = target();
    const base = { id: randomUUID(), channelId: m.channelId, userId: m.userId, messageId: m.id, clientChangeId };
    if (kind === 'edit') return { ...base, kind, body: `edited ${n++}` };
    if (kind === 'delete') {
      stored.splice(stored.indexOf(m), 1);
      return { ...base, kind };
    }
    return { ...base, kind, emoji: ['thumbsup', 'eyes', 'tada'][n++ % 3] };
  };

  await sends(40); // warm-up, and messages to change
  await measure(`sends, batches of ${BATCH}`, OPS, () => sends(OPS / BATCH));
  for (const kind of ['reaction:add', 'reaction:remove', 'edit', 'delete'] as const) {
    await measure(`${kind}, batches of ${BATCH}`, OPS / 2, async () => {
      for (let b = 0; b < OPS / 2 / BATCH; b++) await persistMessages(knex, Array.from({ length: BATCH }, () => change(kind)));
    });
  }
  await measure(`sends again, batches of ${BATCH}`, OPS, () => sends(OPS / BATCH));

  // The bench's mixed phase from PostgreSQL's side: its mix, clientChangeIds as its clients send them, in
  // batches of its size, where a call's fixed cost weighs more. Send-only and mixed take turns, so the
  // machine's drift falls on both; the median ratio is what the mixed phase adds per op.
  let cc = 0;
  const retryKey = () => `cost-c${cc++}`;
  const mixedOp = (i: number): ChangeRequest => {
    const r = Math.random() * 100;
    if (r < 70) {
      const s = send(i);
      stored.push(s);
      return s;
    }
    if (r < 85) return change(Math.random() < 0.5 ? 'reaction:add' : 'reaction:remove', retryKey());
    return change(r < 95 ? 'edit' : 'delete', retryKey());
  };
  const batches = Math.round(OPS / 4 / BENCH_BATCH);
  const ops = batches * BENCH_BATCH;
  const perOp: Record<'sends' | 'mixed', number[]> = { sends: [], mixed: [] };
  for (let round = 0; round < MIX_ROUNDS; round++) {
    perOp.sends.push(await measure('', ops, async () => {
      for (let b = 0; b < batches; b++) {
        const batch = Array.from({ length: BENCH_BATCH }, (_, i) => send(i));
        await persistMessages(knex, batch);
        stored.push(...batch);
      }
    }));
    perOp.mixed.push(await measure('', ops, async () => {
      for (let b = 0; b < batches; b++) await persistMessages(knex, Array.from({ length: BENCH_BATCH }, (_, i) => mixedOp(i)));
    }));
  }
  const median = (v: number[]) => [...v].sort((a, b) => a - b)[Math.floor(v.length / 2)];
  const row = (v: number[]) => v.map((us) => us.toFixed(0)).join(' ');
  console.log(`${`send-only, batches of ${BENCH_BATCH}, µs per op by round`.padEnd(60)} ${row(perOp.sends)}`);
  console.log(`${`mixed 70/15/10/5, batches of ${BENCH_BATCH}, µs per op by round`.padEnd(60)} ${row(perOp.mixed)}`);
  console.log(`${'mixed ÷ send-only, PostgreSQL CPU per op, median of rounds'.padEnd(60)} ${(median(perOp.mixed) / median(perOp.sends)).toFixed(2)}×`);

  await knex.raw('DELETE FROM workspaces WHERE id = ?', [workspaceId]);
  await knex.raw('DELETE FROM users WHERE id = ANY(?::uuid[])', [users]);
}

await main();
