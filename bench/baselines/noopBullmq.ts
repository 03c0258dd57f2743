/**
 * Ceiling of the queue alone: BullMQ add + process with a no-op processor, on the same Redis, with the
 * product's queue layout (one queue per partition, concurrency 1 each) and job options. Jobs carry one
 * send each, shaped like the product's batch jobs.
 */
import { fork } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { Queue } from 'bullmq';
import { Redis } from 'ioredis';
import { killOnExit } from '../../scripts/child-process.js';
import { PARTITION_QUEUE_STREAMS, batchJobOptions } from '../../shared/queues.js';
import { nowUs, sleep } from '../lib/clock.js';
import { round } from '../lib/histogram.js';
import { REPO_ROOT } from '../lib/proc.js';
import { Progress } from '../lib/progress.js';

export interface NoopBullmqResult {
  partitions: number;
  /** Concurrent add() calls the producer keeps going. */
  addWindow: number;
  added: number;
  processed: number;
  /** First add to last job processed. */
  windowS: number;
  jobsPerS: number;
}

const MAX_BACKLOG = 2_000;

interface WorkerProgress {
  type: 'progress' | 'ready';
  processed: number;
  firstUs: number;
  lastUs: number;
}

export async function noopBullmq(o: {
  redisUrl: string;
  bullPrefix: string;
  partitions: number;
  /** The product's QUEUE_KEEP_COMPLETED: its job options are the product's. */
  keepCompleted: number;
  durationMs: number;
  bodyBytes: number;
  addWindow?: number;
}): Promise<NoopBullmqResult> {
  const addWindow = o.addWindow ?? 64;
  const child = fork('bench/baselines/noopWorker.ts', [], {
    cwd: REPO_ROOT,
    execArgv: ['--import', 'tsx'],
    env: { ...process.env, BENCH_REDIS_URL: o.redisUrl, BENCH_BULL_PREFIX: o.bullPrefix, BENCH_PARTITIONS: String(o.partitions) },
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
  });
  const disarm = killOnExit(child.pid!, 'SIGKILL');
  let progress: WorkerProgress = { type: 'progress', processed: 0, firstUs: 0, lastUs: 0 };
  const ready = new Promise<void>((resolve, reject) => {
    child.on('message', (m: WorkerProgress) => {
      if (m.type === 'ready') resolve();
      else progress = m;
    });
    child.once('exit', (code) => reject(new Error(`no-op BullMQ worker exited (code ${code})`)));
  });
  const connection = new Redis(o.redisUrl, { maxRetriesPerRequest: 1 });
  const queues = Array.from(
    { length: o.partitions },
    (_, p) =>
      new Queue(`noop-${p}`, {
        connection,
        prefix: o.bullPrefix,
        streams: PARTITION_QUEUE_STREAMS,
        defaultJobOptions: batchJobOptions(o.keepCompleted),
      }),
  );
  try {
    await ready;
    await Promise.all(queues.map((q) => q.waitUntilReady()));
    const body = 'x'.repeat(o.bodyBytes);
    const userId = randomUUID();
    const channelIds = queues.map(() => randomUUID());
    let added = 0;
    let firstAddUs = 0;
    const bar = new Progress('no-op BullMQ');
    const end = nowUs() + o.durationMs * 1000;
    const adders = Array.from({ length: addWindow }, async (_, a) => {
      for (let n = 0; nowUs() < end; n++) {
        // A bounded backlog: the worker is measured processing, not Redis holding a growing queue.
        while (added - progress.processed > MAX_BACKLOG && nowUs() < end) await sleep(2);
        const p = (a + n) % queues.length;
        if (firstAddUs === 0) firstAddUs = nowUs();
        await queues[p].add('batch', {
          node: 'bench',
          sends: [{ id: randomUUID(), channelId: channelIds[p], userId, body, clientMsgId: `noop-${a}-${n}` }],
        });
        added++;
      }
    });
    const ticker = setInterval(() => bar.update({ sent: added, acked: progress.processed, delivered: 0 }), 500);
    await Promise.all(adders);
    const deadline = Date.now() + 120_000;
    while (progress.processed < added && Date.now() < deadline) await sleep(50);
    clearInterval(ticker);
    bar.update({ sent: added, acked: progress.processed, delivered: 0 }, true);
    const windowS = (progress.lastUs - firstAddUs) / 1e6;
    return { partitions: o.partitions, addWindow, added, processed: progress.processed, windowS: round(windowS, 3), jobsPerS: round(progress.processed / windowS, 1) };
  } finally {
    await Promise.all(queues.map((q) => q.close()));
    connection.disconnect();
    child.disconnect();
    await new Promise<void>((resolve) => {
      if (child.exitCode !== null) return resolve();
      const timer = setTimeout(() => child.kill('SIGKILL'), 5_000);
      child.once('exit', () => {
        clearTimeout(timer);
        resolve();
      });
    });
    disarm();
  }
}
