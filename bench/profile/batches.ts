/**
 * What the product's queue did during a phase, read back from BullMQ's completed jobs (kept by
 * removeOnComplete): batch sizes, time each batch spent being processed (persist + publish + reply), and
 * time it waited in its partition queue.
 */
import { Queue } from 'bullmq';
import { Redis } from 'ioredis';
import { bullPrefix, messageQueueName, type MessageBatchJob } from '../../shared/queues.js';
import { round } from '../lib/histogram.js';
import { distribution, type Distribution } from '../lib/stats.js';

export interface BatchProfile {
  jobs: number;
  messages: number;
  /** Sends per batch. */
  size: Distribution;
  /** processedOn → finishedOn, ms (BullMQ's timestamps have 1 ms resolution). */
  processMs: Distribution;
  /** Added → processing started, ms. */
  queueWaitMs: Distribution;
  /** Share of the window the partitions spent processing, summed over partitions (1.0 = one partition always busy). */
  busyPartitions: number;
  /** False when BullMQ already removed some of the window's jobs (removeOnComplete count): figures cover the rest. */
  complete: boolean;
}

export async function batchProfile(o: {
  redisUrl: string;
  redisPrefix: string;
  partitions: number;
  keepCompleted: number;
  fromMs: number;
  toMs: number;
}): Promise<BatchProfile> {
  const connection = new Redis(o.redisUrl, { maxRetriesPerRequest: 1 });
  const sizes: number[] = [];
  const processMs: number[] = [];
  const waitMs: number[] = [];
  let complete = true;
  try {
    for (let p = 0; p < o.partitions; p++) {
      const queue = new Queue<MessageBatchJob>(messageQueueName(p), { connection, prefix: bullPrefix(o.redisPrefix) });
      try {
        const jobs = await queue.getJobs(['completed'], 0, -1, true);
        let oldest = Infinity;
        for (const job of jobs) {
          if (!job?.finishedOn || !job.processedOn) continue;
          oldest = Math.min(oldest, job.finishedOn);
          if (job.finishedOn < o.fromMs || job.finishedOn > o.toMs) continue;
          sizes.push(job.data.sends.length);
          processMs.push(job.finishedOn - job.processedOn);
          waitMs.push(job.processedOn - job.timestamp);
        }
        if (jobs.length >= o.keepCompleted && oldest > o.fromMs) complete = false;
      } finally {
        await queue.close();
      }
    }
  } finally {
    connection.disconnect();
  }
  const windowMs = Math.max(1, o.toMs - o.fromMs);
  return {
    jobs: sizes.length,
    messages: sizes.reduce((s, v) => s + v, 0),
    size: distribution(sizes, 1),
    processMs: distribution(processMs, 1),
    queueWaitMs: distribution(waitMs, 1),
    busyPartitions: round(processMs.reduce((s, v) => s + v, 0) / windowMs, 2),
    complete,
  };
}
