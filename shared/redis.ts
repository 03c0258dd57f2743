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
  return new Redis(config.redis.url, options);
}
