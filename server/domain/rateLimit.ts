import type { Redis } from 'ioredis';
import { RateLimiterMemory, RateLimiterRedis, RateLimiterRes } from 'rate-limiter-flexible';
import { RateLimitedError, ServiceUnavailableError, type RateLimitPolicy } from '../../shared/errors.js';

export interface RateLimit {
  /** Takes one point for `key`, or throws RateLimitedError with how long to wait. */
  consume(key: string): Promise<void>;
  /** Throws RateLimitedError if `key` has no points left, without taking one. */
  check(key: string): Promise<void>;
}

/** A lease is at most this share of a window's points (and at most MAX_LEASE): see createRateLimit. */
const LEASE_SHARE = 1 / 50;
const MAX_LEASE = 100;
/** Leases kept before expired ones are dropped. */
const PRUNE_AT = 10_000;

interface Lease {
  left: number;
  expiresAt: number;
}

const limited = (res: RateLimiterRes, policy: RateLimitPolicy) =>
  new RateLimitedError(Math.max(1, Math.ceil(res.msBeforeNext / 1000)), policy, Math.max(1, Math.ceil(res.msBeforeNext)));

/**
 * A Redis-backed limit shared by every front node: a burst of up to `points` in each `durationSeconds`
 * window; 0 points disables it.
 *
 * A front node takes points from Redis a lease at a time and spends them locally, so a busy sender
 * costs one Redis call per lease instead of one per send (measured: the per-send call cost 7-17 % of
 * the pipeline's throughput). A lease is 1/50 of the window's points, at most 100: limits of fewer than
 * 100 points are exact. Points leased and not spent before the window ends are lost, and a lease asked
 * for when fewer points are left is refused whole, so a user whose sends spread over N front nodes may
 * be limited up to N × (lease − 1) points early, never late.
 *
 * `policyName` names the limit in the RateLimitedError it throws (the RateLimit-Policy header's name).
 */
export function createRateLimit(
  redis: Redis,
  keyPrefix: string,
  points: number,
  durationSeconds: number,
  policyName = keyPrefix.slice(keyPrefix.lastIndexOf(':') + 1),
  options: { perNodeWhenRedisDown?: boolean } = {},
): RateLimit {
  if (points <= 0) return { consume: async () => {}, check: async () => {} };
  const policy: RateLimitPolicy = Object.freeze({ name: policyName, quota: points, windowSeconds: durationSeconds });
  const limiter = new RateLimiterRedis({
    storeClient: redis,
    keyPrefix,
    points,
    duration: durationSeconds,
    // While Redis is unreachable, a budget that must not stop reads (REST history keeps working from
    // PostgreSQL through a Redis outage) is counted by each front node on its own; the others refuse.
    ...(options.perNodeWhenRedisDown && { insuranceLimiter: new RateLimiterMemory({ keyPrefix, points, duration: durationSeconds }) }),
  });
  const leaseSize = Math.min(MAX_LEASE, Math.max(1, Math.floor(points * LEASE_SHARE)));
  const leases = new Map<string, Lease>();
  /** One lease request per key at a time: concurrent sends wait for it instead of leasing twice. */
  const leasing = new Map<string, Promise<void>>();

  const spend = (key: string): boolean => {
    const lease = leases.get(key);
    if (!lease || lease.left <= 0 || lease.expiresAt <= Date.now()) return false;
    lease.left--;
    return true;
  };

  const lease = async (key: string): Promise<void> => {
    let res: RateLimiterRes;
    try {
      res = await limiter.consume(key, leaseSize);
    } catch (err) {
      if (err instanceof RateLimiterRes) throw limited(err, policy);
      throw new ServiceUnavailableError();
    }
    if (leases.size >= PRUNE_AT) {
      const now = Date.now();
      for (const [k, l] of leases) if (l.expiresAt <= now || l.left <= 0) leases.delete(k);
    }
    leases.set(key, { left: leaseSize, expiresAt: Date.now() + res.msBeforeNext });
  };

  return {
    async consume(key) {
      while (!spend(key)) {
        let pending = leasing.get(key);
        if (!pending) {
          pending = lease(key).finally(() => leasing.delete(key));
          leasing.set(key, pending);
        }
        // Every send waiting for a lease, the one that asked for it included, spends from it as it comes,
        // in the order they asked (they resume in the order they awaited); if it was refused, they are
        // refused with it.
        await pending;
      }
    },
    async check(key) {
      let res: RateLimiterRes | null;
      try {
        res = await limiter.get(key);
      } catch {
        throw new ServiceUnavailableError();
      }
      if (res && res.consumedPoints >= points) throw limited(res, policy);
    },
  };
}
