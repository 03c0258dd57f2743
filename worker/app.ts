import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Emitter } from '@socket.io/redis-emitter';
import express from 'express';
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
import { countRedisErrors, createRegistry, metricsHandler, registerDbPoolMetrics } from '../shared/metrics.js';
import { healthRoutes, reportReady } from '../shared/health.js';
import { createWorkerMetrics } from './metrics.js';
import { changeRules } from './actions/authorizeChanges.js';
import { createBatchProcessor } from './processMessageBatch.js';
import { mergeMessageIndexes, startSearchIndexMerge } from './searchIndexMerge.js';
import { startRepeating, type Repeating } from './repeat.js';
import { pruneClientChanges, pruneRefusals } from './prune.js';

export interface WorkerNode {
  /**
   * Starts the partition workers and the health and metrics HTTP server (config.workerHttpPort; 0: any
   * free port); resolves with that server's port.
   */
  start(): Promise<number>;
  /** The health and metrics server's port, once started. */
  readonly httpPort: number | undefined;
  stop(): Promise<void>;
}

/**
 * Composition root of a worker process: one BullMQ Worker per message partition. Each partition queue
 * allows one active batch across all worker processes, which is what keeps a channel's order.
 */
export function createWorkerNode(config: Config, options: { logger?: Logger } = {}): WorkerNode {
  const logger = options.logger ?? createLogger(config, 'worker');
  // Policy's answers for changes, compiled here so that a rule that cannot be compiled stops the start.
  changeRules();
  const knex = createDb(config);
  // One connection for the Workers' commands and every publish: Redis runs a connection's commands in
  // the order they were sent, so a batch's emits and reply are in Redis before the job can complete,
  // without waiting for them (see processMessageBatch.ts). BullMQ adds its own blocking connection.
  const connection = createRedis(config, 'blocking', 'worker');
  connection.on('error', (err) => logger.warn({ err: err.message }, 'redis connection error'));
  const emitter = new Emitter(connection, { key: socketAdapterKey(config.redis.prefix) });
  let closing = false;
  const registry = createRegistry();
  const metrics = createWorkerMetrics(registry);
  registerDbPoolMetrics(registry, knex, config.db.poolMax);
  countRedisErrors(registry, { redis: connection });
  const processor = createBatchProcessor({
    metrics,
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
      // Its senders get an answer. A part of it may have been stored (one send at a time, before a retry
      // in place that failed): a retry with the same clientMsgId or clientChangeId answers what was.
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

  // `/health/live`, `/health/ready` (PostgreSQL and Redis answer, else 503) and `/metrics`, as on front nodes.
  const app = express();
  app.disable('x-powered-by');
  app.use(healthRoutes({ knex, redis: connection }));
  const serveMetrics = metricsHandler(registry, config.metricsToken);
  app.get('/metrics', (req, res, next) => {
    serveMetrics(req, res).catch(next);
  });
  app.use((_req, res) => {
    res.status(404).json({ error: { code: 'NOT_FOUND', message: 'Not found' } });
  });
  const httpServer = createServer(app);
  let httpPort: number | undefined;
  let indexMerge: Repeating | undefined;
  let prunes: Repeating[] = [];

  return {
    get httpPort() {
      return httpPort;
    },
    async start() {
      // Idempotent: whichever worker starts first sets it; it lives in Redis with the queue.
      const limitPartitions = () =>
        Promise.all(
          names.map(async (name) => {
            const queue = new Queue(name, { connection, prefix, streams: PARTITION_QUEUE_STREAMS });
            await queue.setGlobalConcurrency(1);
            await queue.close();
          }),
        );
      await limitPartitions();
      // A Redis restarted without persistence forgot it with everything else: without it, two workers
      // would take batches of one partition at once. Set again on every reconnection.
      connection.on('ready', () => {
        if (!closing) limitPartitions().catch((err: unknown) => logger.warn({ err }, 'partition concurrency not set; next reconnection retries'));
      });
      for (const worker of workers) void worker.run();
      indexMerge = startSearchIndexMerge({
        merge: mergeMessageIndexes(knex),
        intervalMs: config.search.indexMergeMs,
        logger,
        onMerged: (pages) => metrics.searchIndexPagesMerged.inc(pages),
      });
      const { retention } = config;
      prunes = [
        {
          what: 'refusals',
          prune: pruneRefusals,
          keepHours: retention.refusalsKeepHours,
          intervalMs: retention.refusalsPruneMs,
          counter: metrics.refusalsPruned,
        },
        {
          what: 'retry keys of changes',
          prune: pruneClientChanges,
          keepHours: retention.clientChangesKeepHours,
          intervalMs: retention.clientChangesPruneMs,
          counter: metrics.clientChangesPruned,
        },
      ].map(({ what, prune, keepHours, intervalMs, counter }) => {
        const run = prune(knex, keepHours);
        return startRepeating({
          what: `${what} prune`,
          run: async () => {
            const deleted = await run();
            if (deleted > 0) {
              counter.inc(deleted);
              logger.info({ deleted, keepHours }, `old ${what} deleted`);
            }
          },
          intervalMs,
          logger,
        });
      });
      await Promise.all(workers.map((w) => w.waitUntilReady()));
      await new Promise<void>((resolve, reject) => {
        httpServer.once('error', reject);
        httpServer.listen(config.workerHttpPort, () => resolve());
      });
      httpPort = (httpServer.address() as AddressInfo).port;
      logger.info({ partitions: names.length, httpPort }, 'worker ready');
      reportReady({ ready: 'worker', port: httpPort });
      return httpPort;
    },
    async stop() {
      closing = true;
      // No merge or prune starts from now on. One waiting for a connection (PostgreSQL away) is let go by
      // knex.destroy() below, so it is waited for only after that.
      const housekeepingStopped = Promise.all([indexMerge?.stop(), ...prunes.map((p) => p.stop())]);
      const httpClosed = new Promise<void>((resolve) => httpServer.close(() => resolve()));
      httpServer.closeAllConnections();
      // A batch in flight is finished within the grace; past it, the worker closes anyway and the batch,
      // uncommitted or not, is taken again by another worker once its lock expires (idempotent).
      const closed = Promise.all(workers.map((w) => w.close()));
      let timer: NodeJS.Timeout | undefined;
      const expired = new Promise<'expired'>((resolve) => (timer = setTimeout(() => resolve('expired'), config.shutdownGraceMs)));
      if ((await Promise.race([closed, expired])) === 'expired') {
        logger.warn({ graceMs: config.shutdownGraceMs }, 'batch still in flight at the end of the grace; closing anyway');
        await Promise.all(workers.map((w) => w.close(true)));
      }
      clearTimeout(timer);
      await knex.destroy();
      await housekeepingStopped;
      await connection.quit().catch(() => connection.disconnect());
      if (httpServer.listening) await httpClosed;
      logger.info('worker stopped');
    },
  };
}
