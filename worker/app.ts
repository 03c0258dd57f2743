import { Emitter } from '@socket.io/redis-emitter';
import { Queue, Worker } from 'bullmq';
import type { Config } from '../shared/config.js';
import { createDb } from '../shared/db.js';
import { InternalError, ServiceUnavailableError } from '../shared/errors.js';
import { createLogger, type Logger } from '../shared/logger.js';
import { createRedis } from '../shared/redis.js';
import {
  PARTITION_QUEUE_STREAMS,
  bullPrefix,
  messageQueueName,
  replyChannel,
  type BatchReply,
  type BatchResult,
  type MessageBatchJob,
} from '../shared/queues.js';
import { socketAdapterKey } from '../shared/events.js';
import { createBatchProcessor } from './processMessageBatch.js';

export interface WorkerNode {
  start(): Promise<void>;
  stop(): Promise<void>;
}

/**
 * Composition root of a worker process: one BullMQ Worker per message partition. Each partition queue
 * allows one active batch across all worker processes, which is what keeps a channel's order.
 */
export function createWorkerNode(config: Config, options: { logger?: Logger } = {}): WorkerNode {
  const logger = options.logger ?? createLogger(config, 'worker');
  const knex = createDb(config);
  // One connection for the Workers' commands and every publish: Redis runs a connection's commands in
  // the order they were sent, so a batch's emits and reply are in Redis before the job can complete,
  // without waiting for them (see processMessageBatch.ts). BullMQ adds its own blocking connection.
  const connection = createRedis(config, 'blocking', 'worker');
  connection.on('error', (err) => logger.warn({ err: err.message }, 'redis connection error'));
  const emitter = new Emitter(connection, { key: socketAdapterKey(config.redis.prefix) });
  let closing = false;
  const processor = createBatchProcessor({
    knex,
    emitter,
    publisher: connection,
    redisPrefix: config.redis.prefix,
    logger,
    isClosing: () => closing,
  });
  const prefix = bullPrefix(config.redis.prefix);
  const names = Array.from({ length: config.queue.partitions }, (_, p) => messageQueueName(p));
  const workers = names.map(
    (name) =>
      new Worker<MessageBatchJob, BatchResult>(name, processor, {
        connection,
        prefix,
        autorun: false,
        concurrency: 1,
        lockDuration: config.queue.lockMs,
        stalledInterval: config.queue.stalledIntervalMs,
        // A batch that kills its worker this many times is failed rather than blocking its partition forever.
        maxStalledCount: 5,
      }),
  );

  for (const worker of workers) {
    worker.on('failed', (job, err) => {
      if (!job) return;
      logger.error({ err, jobId: job.id, queue: worker.name }, 'batch failed');
      // Its senders get a definitive answer: nothing of the batch was stored.
      const error = closing ? new ServiceUnavailableError().toBody() : new InternalError().toBody();
      const reply: BatchReply = {
        jobId: job.id!,
        outcomes: Object.fromEntries((job.data?.sends ?? []).map((s) => [s.id, { ok: false, error }])),
      };
      if (typeof job.data?.node === 'string') {
        connection.publish(replyChannel(config.redis.prefix, job.data.node), JSON.stringify(reply)).catch(() => {});
      }
    });
    worker.on('error', (err) => logger.warn({ err, queue: worker.name }, 'worker error'));
  }

  return {
    async start() {
      // Idempotent: whichever worker starts first sets it; it lives in Redis with the queue.
      await Promise.all(
        names.map(async (name) => {
          const queue = new Queue(name, { connection, prefix, streams: PARTITION_QUEUE_STREAMS });
          await queue.setGlobalConcurrency(1);
          await queue.close();
        }),
      );
      for (const worker of workers) void worker.run();
      await Promise.all(workers.map((w) => w.waitUntilReady()));
      logger.info({ partitions: names.length }, 'worker ready');
    },
    async stop() {
      closing = true;
      await Promise.all(workers.map((w) => w.close()));
      await knex.destroy();
      await connection.quit().catch(() => connection.disconnect());
      logger.info('worker stopped');
    },
  };
}
