import { Redis, type RedisOptions } from 'ioredis';
import type { Config } from './config.js';

export type RedisRole =
  /** BullMQ workers and subscribers block: commands must wait for a reconnect rather than fail. */
  | 'blocking'
  /** Producers and request paths fail fast, so a client hears SERVICE_UNAVAILABLE instead of hanging. */
  | 'fail-fast';

export function createRedis(config: Config, role: RedisRole, name: string): Redis {
  const options: RedisOptions = {
    connectionName: `${config.redis.prefix}:${name}`,
    maxRetriesPerRequest: role === 'blocking' ? null : 1,
    enableOfflineQueue: true,
    retryStrategy: (times) => Math.min(times * 200, 2000),
  };
  const redis = new Redis(config.redis.url, options);
  if (role === 'fail-fast') {
    // Commands may wait for the first connection (start-up); after it, one issued while Redis is
    // unreachable fails at once (isRedisUnavailable) instead of waiting in the offline queue for two
    // reconnection attempts, 4 s once they are 2 s apart: a user's sends are admitted one after the
    // other, so those waits added up, and a send made during an outage went unanswered for longer and
    // longer.
    redis.once('ready', () => {
      redis.options.enableOfflineQueue = false;
    });
  }
  return redis;
}

/**
 * An ioredis command that failed because Redis is unreachable (a fail-fast connection while it is down,
 * or one whose retries ran out): SERVICE_UNAVAILABLE, never the client's fault nor a bug.
 */
export function isRedisUnavailable(err: unknown): boolean {
  const e = err as { name?: unknown; message?: unknown } | null | undefined;
  if (e?.name === 'MaxRetriesPerRequestError') return true;
  return typeof e?.message === 'string' && /^(Stream isn't writeable|Connection is closed)/.test(e.message);
}
