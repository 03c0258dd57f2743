/**
 * What SEARCH_INDEX_MERGE_MS buys a batch: `npx tsx bench/profile/indexMerge.ts` (~1 min).
 *
 * Persists 2,000 batches of 20 sends (ordinary words, as people write them) one after another on one
 * connection with the worker's persistMessages(), twice, each in a scratch database of its own (created,
 * migrated, dropped): with the GIN indexes' pending lists left to the inserts (SEARCH_INDEX_MERGE_MS=0),
 * and merged from a second connection by the worker's own searchIndexMerge.ts at the default interval.
 * Prints the time per batch (p50 / p99 / max), the batches over 100 ms (the inserts that outgrew the list and
 * merged it inside their transaction) and the background merges' own time. Compare rows of one run.
 */
import { randomUUID } from 'node:crypto';
import knexFactory from 'knex';
import { pino } from 'pino';
import { loadConfig, type Config } from '../../shared/config.js';
import { knexConfig } from '../../shared/db.js';
import type { SendRequest } from '../../shared/queues.js';
import { persistMessages } from '../../worker/actions/persistMessages.js';
import { mergeMessageIndexes, startSearchIndexMerge } from '../../worker/searchIndexMerge.js';
import { distribution } from '../lib/stats.js';
import { withScratchDatabase } from './scratchDatabase.js';
import { seedScratchTeam } from './scratchTeam.js';

const BATCHES = 2000;
const BATCH = 20;
const CHANNELS = 8;
const USERS = 16;
const WORDS = 'alpha bravo charlie delta echo foxtrot golf hotel india juliet kilo lima mike november oscar papa quebec romeo sierra tango'.split(' ');

async function main(): Promise<void> {
  const { indexMergeMs } = loadConfig(process.env).search;
  for (const mergeMs of [0, indexMergeMs]) await withScratchDatabase('index_merge', (scratch) => profile(scratch, mergeMs));
}

async function profile(scratch: Config, mergeMs: number): Promise<void> {
  const knex = knexFactory(knexConfig(scratch));
  const mergeKnex = knexFactory(knexConfig(scratch));
  let mergeTotalMs = 0;
  let merges = 0;
  const merge = mergeMessageIndexes(mergeKnex);
  const timedMerge = async () => {
    const t = performance.now();
    try {
      return await merge();
    } finally {
      mergeTotalMs += performance.now() - t;
      merges++;
    }
  };
  try {
    const { channels, users } = await seedScratchTeam(knex, { name: 'index merge', users: USERS, channels: CHANNELS });
    const merger = startSearchIndexMerge({ merge: timedMerge, intervalMs: mergeMs, logger: pino({ level: 'warn' }) });
    const ms: number[] = [];
    let n = 0;
    for (let b = 0; b < BATCHES; b++) {
      const batch: SendRequest[] = Array.from({ length: BATCH }, (_, i) => ({
        kind: 'send',
        id: randomUUID(),
        channelId: channels[i % CHANNELS],
        userId: users[i % USERS],
        body: `message ${n++} ${Array.from({ length: 12 }, () => `${WORDS[Math.floor(Math.random() * WORDS.length)]}${Math.floor(Math.random() * 500)}`).join(' ')}`,
        clientMsgId: `merge-${n}`,
      }));
      const t = performance.now();
      await persistMessages(knex, batch);
      ms.push(performance.now() - t);
    }
    await merger.stop();
    // The first batches warm the connection's caches and plans.
    const timed = ms.slice(10);
    const d = distribution(timed, 1);
    const total = ms.reduce((a, b) => a + b, 0) / 1000;
    const label = mergeMs === 0 ? 'left to inserts (SEARCH_INDEX_MERGE_MS=0)' : `merged every ${mergeMs} ms (the default)`;
    console.log(
      `${label.padEnd(44)} batch p50 ${d.p50} / p99 ${d.p99} / max ${d.max.toFixed(0)} ms, ` +
        `${timed.filter((t) => t > 100).length} over 100 ms, ${total.toFixed(1)} s in all` +
        (merges > 0 ? `; ${merges} merges took ${(mergeTotalMs / 1000).toFixed(1)} s beside them` : ''),
    );
  } finally {
    await knex.destroy();
    await mergeKnex.destroy();
  }
}

await main();
