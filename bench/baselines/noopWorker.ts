/**
 * The no-op BullMQ baseline's worker process: one Worker per partition queue, concurrency 1 and global
 * concurrency 1, exactly as the product's worker, with a processor that does nothing. Reports over IPC.
 */
import { Queue, Worker } from 'bullmq';
import { Redis } from 'ioredis';
import { nowUs } from '../lib/clock.js';

const redisUrl = process.env.BENCH_REDIS_URL!;
const prefix = process.env.BENCH_BULL_PREFIX!;
const partitions = Number(process.env.BENCH_PARTITIONS ?? 8);
const names = Array.from({ length: partitions }, (_, p) => `noop-${p}`);

const connection = new Redis(redisUrl, { maxRetriesPerRequest: null });
let processed = 0;
let firstUs = 0;
let lastUs = 0;

const workers = names.map(
  (name) =>
    new Worker(
      name,
      async () => {
        processed++;
        lastUs = nowUs();
        if (firstUs === 0) firstUs = lastUs;
        return { outcomes: {} };
      },
      { connection, prefix, autorun: false, concurrency: 1, lockDuration: 5000, stalledInterval: 2500 },
    ),
);

async function main(): Promise<void> {
  for (const name of names) {
    const queue = new Queue(name, { connection, prefix });
    await queue.setGlobalConcurrency(1);
    await queue.close();
  }
  for (const worker of workers) void worker.run();
  await Promise.all(workers.map((w) => w.waitUntilReady()));
  process.send?.({ type: 'ready' });
  setInterval(() => process.send?.({ type: 'progress', processed, firstUs, lastUs }), 100);
}

process.on('disconnect', () => {
  void Promise.all(workers.map((w) => w.close(true))).finally(() => {
    connection.disconnect();
    process.exit(0);
  });
});
main().catch((err) => {
  console.error(err);
  process.exit(1);
});
