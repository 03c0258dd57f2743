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
