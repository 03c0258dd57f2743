import { Router } from 'express';
import type { Knex } from 'knex';
import type { Redis } from 'ioredis';

function withTimeout<T>(promise: Promise<T>, ms: number): Promise<T> {
  return Promise.race([
    promise,
    new Promise<T>((_, reject) => setTimeout(() => reject(new Error('timeout')), ms).unref()),
  ]);
}

/**
 * Liveness says the process answers; readiness that it can serve: PostgreSQL and Redis both answer.
 * Front nodes serve these on their port, workers on WORKER_HTTP_PORT.
 */
export function healthRoutes(deps: { knex: Knex; redis: Redis }): Router {
  const router = Router();
  router.get('/health/live', (_req, res) => {
    res.json({ status: 'ok' });
  });
  router.get('/health/ready', async (_req, res) => {
    const [db, redis] = await Promise.allSettled([
      withTimeout(deps.knex.raw('select 1'), 2000),
      withTimeout(deps.redis.ping(), 2000),
    ]);
    const checks = { postgres: db.status === 'fulfilled' ? 'ok' : 'down', redis: redis.status === 'fulfilled' ? 'ok' : 'down' };
    if (db.status === 'fulfilled' && redis.status === 'fulfilled') {
      res.json({ status: 'ok' });
    } else {
      res.status(503).json({
        error: { code: 'SERVICE_UNAVAILABLE', message: 'A dependency is unavailable', details: checks },
      });
    }
  });
  return router;
}

/** What a node tells the process that started it once it serves: its kind and its HTTP port. */
export interface ReadyMessage {
  ready: 'server' | 'worker';
  /** A front node's PORT, a worker's WORKER_HTTP_PORT (health and metrics). */
  port: number;
}

/** Whether an IPC message is a node of `kind` saying it is ready. */
export function isReadyMessage(message: unknown, kind: ReadyMessage['ready']): message is ReadyMessage {
  const m = message as Partial<ReadyMessage> | null;
  return m?.ready === kind && typeof m.port === 'number';
}

/**
 * Readiness for a parent process (scripts/cluster.ts, scripts/start.ts), over the IPC channel it opened,
 * so that nothing depends on log lines or LOG_LEVEL. Without a channel (a container, a service manager),
 * `/health/ready` says it.
 */
export function reportReady(message: ReadyMessage): void {
  if (!process.send) return;
  // A parent that went away meanwhile is no reason to fail.
  process.send(message, undefined, undefined, () => {});
  // The channel must not keep the process alive once its servers close.
  process.channel?.unref();
}
