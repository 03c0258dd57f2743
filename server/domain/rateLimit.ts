import type { Redis } from 'ioredis';
import { RateLimiterRedis, RateLimiterRes } from 'rate-limiter-flexible';
import { RateLimitedError, ServiceUnavailableError } from '../../shared/errors.js';

export interface RateLimit {
  /** Takes one point for `key`, or throws RateLimitedError with how long to wait. */
  consume(key: string): Promise<void>;
  /** Throws RateLimitedError if `key` has no points left, without taking one. */
  check(key: string): Promise<void>;
}

/**
 * A Redis-backed limit shared by every front node. A burst of up to `points` is allowed in each
 * `durationSeconds` window; 0 points disables the limit.
 */
export function createRateLimit(redis: Redis, keyPrefix: string, points: number, durationSeconds: number): RateLimit {
  if (points <= 0) return { consume: async () => {}, check: async () => {} };
  const limiter = new RateLimiterRedis({ storeClient: redis, keyPrefix, points, duration: durationSeconds });
  return {
    async consume(key) {
      try {
        await limiter.consume(key);
      } catch (res) {
        if (res instanceof RateLimiterRes) throw new RateLimitedError(Math.max(1, Math.ceil(res.msBeforeNext / 1000)));
        throw new ServiceUnavailableError();
      }
    },
    async check(key) {
      let res: RateLimiterRes | null;
      try {
        res = await limiter.get(key);
      } catch {
        throw new ServiceUnavailableError();
      }
      if (res && res.consumedPoints >= points) throw new RateLimitedError(Math.max(1, Math.ceil(res.msBeforeNext / 1000)));
    },
  };
}
