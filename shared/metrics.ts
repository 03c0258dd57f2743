import { timingSafeEqual } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Redis } from 'ioredis';
import type { Knex } from 'knex';
import { Counter, Gauge, Registry, collectDefaultMetrics } from 'prom-client';

/**
 * One Prometheus registry per node instance (never prom-client's global one), so several nodes in one
 * process (the tests) keep their own series. The process default metrics are registered on it.
 */
export function createRegistry(): Registry {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry });
  return registry;
}

/** The part of knex's connection pool (tarn) the pool gauges read. */
interface PoolLike {
  numUsed(): number;
  numFree(): number;
  numPendingAcquires(): number;
}

/**
 * PostgreSQL pool use, read from knex's pool when scraped: connections lent out and idle, the pool's
 * size, and queries waiting for a connection (above 0 for long: the pool or the database is the bottleneck).
 */
export function registerDbPoolMetrics(registry: Registry, knex: Knex, poolMax: number): void {
  // Absent once knex is destroyed (the process is stopping).
  const pool = () => knex.client.pool as PoolLike | undefined;
  new Gauge({
    name: 'db_pool_connections',
    help: 'PostgreSQL connections of this process\'s pool, by state: used (lent to a query or transaction) or free (idle)',
    labelNames: ['state'],
    registers: [registry],
    collect() {
      this.set({ state: 'used' }, pool()?.numUsed() ?? 0);
      this.set({ state: 'free' }, pool()?.numFree() ?? 0);
    },
  });
  new Gauge({
    name: 'db_pool_max_connections',
    help: 'Most PostgreSQL connections this process\'s pool opens (DB_POOL_MAX)',
    registers: [registry],
  }).set(poolMax);
  new Gauge({
    name: 'db_pool_pending_acquires',
    help: 'Queries and transactions waiting for a PostgreSQL connection from this process\'s pool',
    registers: [registry],
    collect() {
      this.set(pool()?.numPendingAcquires() ?? 0);
    },
  });
}

/**
 * Counts the 'error' events of each Redis connection (refused, reset, timed out …: ioredis reconnects by
 * itself, so these are otherwise only log lines), by the name its process gives it. Every series starts
 * at 0, so a rate() sees the first error.
 */
export function countRedisErrors(registry: Registry, clients: Record<string, Redis>): void {
  const errors = new Counter({
    name: 'redis_errors_total',
    help: 'Errors reported by each Redis connection of this process (ioredis error events), by client',
    labelNames: ['client'],
    registers: [registry],
  });
  for (const [client, connection] of Object.entries(clients)) {
    errors.inc({ client }, 0);
    connection.on('error', () => errors.inc({ client }));
  }
}

function sameToken(given: string, expected: string): boolean {
  const a = Buffer.from(given);
  const b = Buffer.from(expected);
  return a.length === b.length && timingSafeEqual(a, b);
}

/**
 * `GET /metrics`: the registry in Prometheus text format. With a token, only to `Authorization: Bearer
 * <token>` (401 otherwise); without one, open (keep the port private).
 */
export function metricsHandler(registry: Registry, token: string | undefined) {
  return async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    if (token) {
      const header = req.headers.authorization ?? '';
      const given = header.startsWith('Bearer ') ? header.slice(7) : '';
      if (!sameToken(given, token)) {
        res.statusCode = 401;
        res.setHeader('WWW-Authenticate', 'Bearer');
        res.setHeader('Content-Type', 'application/json');
        res.end(JSON.stringify({ error: { code: 'UNAUTHORIZED', message: 'A valid metrics token is required' } }));
        return;
      }
    }
    const body = await registry.metrics();
    res.statusCode = 200;
    res.setHeader('Content-Type', registry.contentType);
    res.end(body);
  };
}
