/**
 * PostgreSQL's CPU per send and per change, by kind (each change authorized in the statement that applies
 * it, as workers do), then per op of the bench's mixed load against send-only, in batches of the size the
 * bench's open loop makes at 50 %: `npx tsx bench/profile/changeCost.ts`.
 *
 * Reads the CPU time of the one backend doing the work (/proc/<pid>/schedstat: nanoseconds, where
 * /proc/<pid>/stat counts 10 ms ticks), not the wall clock, so other load on the machine changes the
 * figures far less than it changes latencies. Compare rows of one run.
 * Works in a scratch database of its own (created, migrated, dropped) on the configured server.
 */
import { randomUUID } from 'node:crypto';
import { readFileSync } from 'node:fs';
import type { Knex } from 'knex';
import type { ChangeKind, ChangeRequest, ReactionRequest, SendRequest } from '../../shared/queues.js';
import { persistMessages } from '../../worker/actions/persistMessages.js';
import { withScratchKnex } from './scratchDatabase.js';
import { seedScratchTeam } from './scratchTeam.js';

const CHANNELS = 4;
const USERS = 32;
const BATCH = 50;
const OPS = 4000;
/** Mean batch of the bench's open loop at 50 % on 2 cores (its report's `batches` line). */
const BENCH_BATCH = 7;
/** Variants take turns in short runs, many times over: the machine's drift and PostgreSQL's periodic work
 * (a GIN index's pending list flushed by whichever insert fills it, page pruning) fall on all of them. */
const MIX_ROUNDS = 80;
const MIX_BATCHES_PER_ROUND = 20;


async function profile(knex: Knex): Promise<void> {
  const pid = Number((await knex.raw('SELECT pg_backend_pid() AS pid')).rows[0].pid);
  const cpuNs = () => Number(readFileSync(`/proc/${pid}/schedstat`, 'utf8').split(' ')[0]);
  const cpuPerOp = async (ops: number, run: () => Promise<void>) => {
    const cpu = cpuNs();
    await run();
    return (cpuNs() - cpu) / 1000 / ops;
  };
  const measure = async (name: string, ops: number, run: () => Promise<void>) => {
    const wall = performance.now();
    const us = await cpuPerOp(ops, run);
    console.log(`${name.padEnd(44)} ${us.toFixed(0).padStart(6)} µs PostgreSQL CPU per op   ${(((performance.now() - wall) * 1000) / ops).toFixed(0).padStart(6)} µs wall`);
  };

  const { workspaceId, users, channels } = await seedScratchTeam(knex, { name: 'change cost', users: USERS, channels: CHANNELS });

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
  // A removal is made by op() from an earlier add, never here.
  const change = (kind: 'reaction:add' | 'edit' | 'delete', clientChangeId: string): ChangeRequest => {
    const m = target();
    const base = { id: randomUUID(), channelId: m.channelId, userId: m.userId, messageId: m.id, clientChangeId };
    if (kind === 'edit') return { ...base, kind, body: `edited ${n++}` };
    if (kind === 'delete') {
      stored.splice(stored.indexOf(m), 1);
      return { ...base, kind };
    }
    return { ...base, kind, emoji: ['thumbsup', 'eyes', 'tada'][n++ % 3] };
  };

  let cc = 0;
  const reacted: ReactionRequest[] = [];
  const op = (kind: ChangeKind, i: number): ChangeRequest => {
    if (kind === 'send') {
      const s = send(i);
      stored.push(s);
      return s;
    }
    const added = kind === 'reaction:remove' ? reacted.shift() : undefined;
    // A removal takes back an earlier add (the bench's clients remove their own reactions); none left: an add.
    if (added) return { ...added, id: randomUUID(), kind: 'reaction:remove', clientChangeId: `cost-c${cc++}` };
    const c = change(kind === 'reaction:remove' ? 'reaction:add' : kind, `cost-c${cc++}`);
    if (c.kind === 'reaction:add') reacted.push(c);
    return c;
  };

  await sends(40); // warm-up, and messages to change
  await measure(`sends, batches of ${BATCH}`, OPS, () => sends(OPS / BATCH));
  for (const kind of ['reaction:add', 'reaction:remove', 'edit', 'delete'] as const) {
    await measure(`${kind}, batches of ${BATCH}`, OPS / 2, async () => {
      for (let b = 0; b < OPS / 2 / BATCH; b++) await persistMessages(knex, Array.from({ length: BATCH }, (_, i) => op(kind, i)));
    });
  }
  await measure(`sends again, batches of ${BATCH}`, OPS, () => sends(OPS / BATCH));

  // The bench's mixed phase from PostgreSQL's side: batches of its size, where a call's fixed cost weighs
  // more, clientChangeIds as its clients send them, and each kind of change alone as 2 of a batch's 7 ops.
  // The variants take turns, so the machine's drift falls on all of them; ratios are of means over rounds.
  const mixedOp = (i: number): ChangeRequest => {
    const r = Math.random() * 100;
    if (r < 70) return op('send', i);
    if (r < 85) return op(Math.random() < 0.5 && reacted.length > 0 ? 'reaction:remove' : 'reaction:add', i);
    return op(r < 95 ? 'edit' : 'delete', i);
  };
  const variants: Record<string, (i: number) => ChangeRequest> = {
    'send-only': (i) => op('send', i),
    'mixed 70/15/10/5': mixedOp,
    ...Object.fromEntries((['reaction:add', 'reaction:remove', 'edit', 'delete'] as const).map((kind) => [`5 sends + 2 ${kind}`, (i: number) => op(i < 2 ? kind : 'send', i)])),
  };
  const ops = MIX_BATCHES_PER_ROUND * BENCH_BATCH;
  const perOp: Record<string, number[]> = {};
  for (let round = 0; round < MIX_ROUNDS; round++) {
    for (const [name, make] of Object.entries(variants)) {
      (perOp[name] ??= []).push(await cpuPerOp(ops, async () => {
        for (let b = 0; b < MIX_BATCHES_PER_ROUND; b++) await persistMessages(knex, Array.from({ length: BENCH_BATCH }, (_, i) => make(i)));
      }));
    }
  }
  const mean = (v: number[]) => v.reduce((a, b) => a + b, 0) / v.length;
  const quartiles = (v: number[]) => {
    const sorted = [...v].sort((a, b) => a - b);
    return [0.25, 0.5, 0.75].map((q) => sorted[Math.floor(q * (sorted.length - 1))]);
  };
  const base = mean(perOp['send-only']);
  console.log(`Batches of ${BENCH_BATCH}, ${MIX_ROUNDS} rounds of ${ops} ops each: PostgreSQL CPU µs per op (quartiles of the rounds, mean), and the mean's ratio to send-only's:`);
  for (const [name, v] of Object.entries(perOp)) {
    const ratio = mean(v) / base;
    // 2 of 7 ops changed: what one such change costs, in sends.
    const each = name.startsWith('5 sends') ? `   one change ≈ ${(1 + ((ratio - 1) * BENCH_BATCH) / 2).toFixed(2)} sends` : '';
    console.log(`  ${name.padEnd(28)} ${quartiles(v).map((us) => us.toFixed(0).padStart(4)).join(' ')}  mean ${mean(v).toFixed(0).padStart(4)}   ${ratio.toFixed(2)}×${each}`);
  }

  await knex.raw('DELETE FROM workspaces WHERE id = ?', [workspaceId]);
  await knex.raw('DELETE FROM users WHERE id = ANY(?::uuid[])', [users]);
}

await withScratchKnex('change_cost', profile);
