/**
 * Unit tests of createRateLimit (server/domain/rateLimit.ts) against the run's real Redis: the limit every front
 * node shares, taken from Redis a lease at a time.
 *
 * Keys live under `${REDIS_PREFIX}:unit-rl:…`, which the run's global teardown deletes. Redis consumes are
 * counted in two ways that need no MONITOR: the limiter's key holds the points taken from Redis, and the
 * `rlflxIncr` script command that rate-limiter-flexible defines on the ioredis client is wrapped with a counter.
 */
import { randomBytes } from 'node:crypto';
import { expect } from 'chai';
import { Redis } from 'ioredis';
import { loadConfig } from '../../shared/config.js';
import { RateLimitedError, ServiceUnavailableError } from '../../shared/errors.js';
import { createRedis } from '../../shared/redis.js';
import { createRateLimit, type RateLimit } from '../../server/domain/rateLimit.js';

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** A window long enough that no test outlives it unless it means to. */
const WINDOW_S = 60;

describe('unit: createRateLimit (real Redis)', function () {
  this.timeout(20_000);

  let redis: Redis;
  /** A second connection: what another front node would use. */
  let redis2: Redis;
  let prefix: string;
  let n = 0;

  before(async () => {
    // The run's environment exists only from mochaGlobalSetup on: read it here, not at module level.
    const config = loadConfig(process.env);
    redis = createRedis(config, 'fail-fast', 'unit-rate-limit-1');
    redis2 = createRedis(config, 'fail-fast', 'unit-rate-limit-2');
    await Promise.all([redis.ping(), redis2.ping()]);
    prefix = `${config.redis.prefix}:unit-rl:${randomBytes(3).toString('hex')}`;
  });

  after(async () => {
    await Promise.all([redis?.quit(), redis2?.quit()]);
  });

  /** A fresh limiter key prefix and user key for one test. */
  function fresh(): { keyPrefix: string; key: string; redisKey: string } {
    const keyPrefix = `${prefix}:t${++n}`;
    const key = `user-${n}`;
    return { keyPrefix, key, redisKey: `${keyPrefix}:${key}` };
  }

  /** Points taken from Redis for the key so far (0 when none). */
  async function takenFromRedis(redisKey: string): Promise<number> {
    return Number((await redis.get(redisKey)) ?? 0);
  }

  /**
   * Counts the limiter's Redis consumes made through `client`: call right after createRateLimit, which (re)defines
   * the command on the client.
   */
  function countConsumes(client: Redis): { calls: number } {
    const counter = { calls: 0 };
    const target = client as unknown as Record<string, (...args: unknown[]) => unknown>;
    const original = target.rlflxIncr;
    if (typeof original !== 'function') throw new Error('rate-limiter-flexible no longer defines rlflxIncr on ioredis: update this helper');
    target.rlflxIncr = function (this: unknown, ...args: unknown[]) {
      counter.calls++;
      return original.apply(this, args);
    };
    return counter;
  }

  /** Resolves with the error consume() throws, failing if it does not. */
  async function refusal(limit: RateLimit, key: string, op: 'consume' | 'check' = 'consume'): Promise<unknown> {
    try {
      await limit[op](key);
    } catch (err) {
      return err;
    }
    expect.fail(`${op}(${key}) was let through`);
  }

  function expectRateLimited(err: unknown, maxSeconds: number): void {
    expect(err).to.be.instanceOf(RateLimitedError);
    const limited = err as RateLimitedError;
    expect(limited.code).to.equal('RATE_LIMITED');
    expect(limited.retryAfterSeconds).to.be.a('number').and.to.be.within(1, maxSeconds);
  }

  it('When points is 0 (disabled), then any number of consumes and checks pass and nothing is written to Redis', async () => {
    const { keyPrefix, key, redisKey } = fresh();
    const limit = createRateLimit(redis, keyPrefix, 0, WINDOW_S);
    for (let i = 0; i < 500; i++) await limit.consume(key);
    await Promise.all(Array.from({ length: 500 }, () => limit.consume(key)));
    await limit.check(key);
    expect(await redis.exists(redisKey)).to.equal(0);
  });

  for (const points of [5, 100, 1000]) {
    it(`When a burst of exactly points=${points} sends is made, then all pass and the next one is RATE_LIMITED with retryAfterSeconds >= 1`, async () => {
      const { keyPrefix, key } = fresh();
      const limit = createRateLimit(redis, keyPrefix, points, WINDOW_S);
      for (let i = 0; i < points; i++) await limit.consume(key);
      expectRateLimited(await refusal(limit, key), WINDOW_S);
      expectRateLimited(await refusal(limit, key), WINDOW_S);
      // Other keys have their own points.
      await limit.consume(`${key}-other`);
    });
  }

  it('When a key is refused late in a 1 s window, then retryAfterSeconds is 1 (rounded up, never 0), and once the window ends the key may send again', async () => {
    const { keyPrefix, key } = fresh();
    const limit = createRateLimit(redis, keyPrefix, 2, 1);
    await limit.consume(key);
    await limit.consume(key);
    await sleep(300);
    const err = await refusal(limit, key);
    expectRateLimited(err, 1);
    expect((err as RateLimitedError).retryAfterSeconds).to.equal(1);
    await sleep(850);
    await limit.consume(key);
  });

  it('When a window ends with points of a lease unspent, then they are not carried over: the next send leases anew from Redis', async () => {
    const { keyPrefix, key, redisKey } = fresh();
    const limit = createRateLimit(redis, keyPrefix, 100, 1); // lease 2
    const counter = countConsumes(redis);
    await limit.consume(key); // leases 2, spends 1
    expect(counter.calls).to.equal(1);
    await sleep(1_150);
    expect(await redis.exists(redisKey), 'the window is over in Redis').to.equal(0);
    await limit.consume(key);
    expect(counter.calls, 'a new lease for the new window').to.equal(2);
    expect(await takenFromRedis(redisKey)).to.equal(2);
  });

  it('When points=1000 (lease 20) and sends come one after another, then N sends make ceil(N/20) Redis consumes of 20 points each', async () => {
    const { keyPrefix, key, redisKey } = fresh();
    const limit = createRateLimit(redis, keyPrefix, 1000, WINDOW_S);
    const counter = countConsumes(redis);
    for (let i = 1; i <= 65; i++) {
      await limit.consume(key);
      const leases = Math.ceil(i / 20);
      expect(counter.calls, `Redis consumes after ${i} sends`).to.equal(leases);
      expect(await takenFromRedis(redisKey), `points taken from Redis after ${i} sends`).to.equal(leases * 20);
    }
  });

  it('When many sends of one key are made while its lease request is pending, then they share that one lease: one Redis consume per 20 sends', async () => {
    const { keyPrefix, key, redisKey } = fresh();
    const limit = createRateLimit(redis, keyPrefix, 1000, WINDOW_S);
    const counter = countConsumes(redis);
    await Promise.all(Array.from({ length: 15 }, () => limit.consume(key)));
    expect(counter.calls, 'one lease for 15 concurrent sends').to.equal(1);
    expect(await takenFromRedis(redisKey)).to.equal(20);
    // The lease's 5 points left serve the next 5 sends without Redis.
    for (let i = 0; i < 5; i++) await limit.consume(key);
    expect(counter.calls).to.equal(1);
    // 45 concurrent sends: the first asks for a lease, the rest queue behind it and its successors.
    await Promise.all(Array.from({ length: 45 }, () => limit.consume(key)));
    expect(counter.calls).to.equal(1 + 3);
    expect(await takenFromRedis(redisKey)).to.equal(80);
  });

  it('When the lease request fails because Redis is unreachable, then every waiting send gets SERVICE_UNAVAILABLE and the next send asks Redis again', async () => {
    const dead = new Redis('redis://127.0.0.1:1', { lazyConnect: true, enableOfflineQueue: false, maxRetriesPerRequest: 0, retryStrategy: () => null });
    dead.on('error', () => {});
    try {
      const { keyPrefix, key } = fresh();
      const limit = createRateLimit(dead, keyPrefix, 1000, WINDOW_S);
      const counter = countConsumes(dead);
      const outcomes = await Promise.allSettled(Array.from({ length: 5 }, () => limit.consume(key)));
      for (const o of outcomes) {
        expect(o.status).to.equal('rejected');
        expect((o as PromiseRejectedResult).reason).to.be.instanceOf(ServiceUnavailableError);
      }
      expect(counter.calls).to.equal(1);
      expect(await refusal(limit, key)).to.be.instanceOf(ServiceUnavailableError);
      expect(counter.calls, 'a failed lease request is not left pending').to.equal(2);
      expect(await refusal(limit, key, 'check')).to.be.instanceOf(ServiceUnavailableError);
    } finally {
      dead.disconnect();
    }
  });

  it('When Redis is unreachable and the budget counts per node meanwhile, then consumes pass up to its points and the next is RATE_LIMITED', async () => {
    const dead = new Redis('redis://127.0.0.1:1', { lazyConnect: true, enableOfflineQueue: false, maxRetriesPerRequest: 0, retryStrategy: () => null });
    dead.on('error', () => {});
    try {
      const { keyPrefix, key } = fresh();
      const limit = createRateLimit(dead, keyPrefix, 5, WINDOW_S, 'reads', { perNodeWhenRedisDown: true });
      for (let i = 0; i < 5; i++) await limit.consume(key);
      const refused = await refusal(limit, key);
      expect(refused).to.be.instanceOf(RateLimitedError);
      expect((refused as RateLimitedError).policy?.name).to.equal('reads');
    } finally {
      dead.disconnect();
    }
  });

  it('When two front nodes (two limiters, two connections) send for one key alternately, then no more than points pass in total, and at most 2 x (lease - 1) fewer', async () => {
    const points = 500; // lease 10
    const { keyPrefix, key, redisKey } = fresh();
    const nodes = [createRateLimit(redis, keyPrefix, points, WINDOW_S), createRateLimit(redis2, keyPrefix, points, WINDOW_S)];
    let passed = 0;
    for (let i = 0; i < points + 100; i++) {
      try {
        await nodes[i % 2].consume(key);
        passed++;
      } catch (err) {
        expectRateLimited(err, WINDOW_S);
      }
    }
    expect(passed).to.be.at.most(points);
    expect(passed).to.be.at.least(points - 2 * 9);
    expect(await takenFromRedis(redisKey)).to.be.at.least(points);
  });

  it('When two front nodes send for one key concurrently in bursts, then no more than points pass in total', async () => {
    const points = 500; // lease 10
    const { keyPrefix, key } = fresh();
    const nodes = [createRateLimit(redis, keyPrefix, points, WINDOW_S), createRateLimit(redis2, keyPrefix, points, WINDOW_S)];
    let passed = 0;
    for (let round = 0; round < 8; round++) {
      const outcomes = await Promise.allSettled(Array.from({ length: 100 }, (_, i) => nodes[(i + round) % 2].consume(key)));
      for (const o of outcomes) {
        if (o.status === 'fulfilled') passed++;
        else expectRateLimited(o.reason, WINDOW_S);
      }
    }
    expect(passed).to.be.at.most(points);
    expect(passed).to.be.at.least(points - 2 * 9);
  });

  it('When check is called, then it takes no point: it passes while points are left, however often, and refuses once they are spent', async () => {
    const { keyPrefix, key, redisKey } = fresh();
    const limit = createRateLimit(redis, keyPrefix, 5, WINDOW_S); // lease 1: exact
    for (let i = 0; i < 20; i++) await limit.check(key);
    expect(await redis.exists(redisKey), 'check writes nothing').to.equal(0);
    for (let i = 0; i < 4; i++) await limit.consume(key);
    for (let i = 0; i < 20; i++) await limit.check(key);
    expect(await takenFromRedis(redisKey)).to.equal(4);
    await limit.consume(key);
    expectRateLimited(await refusal(limit, key, 'check'), WINDOW_S);
    expect(await takenFromRedis(redisKey)).to.equal(5);
  });

  /**
   * One user's sends are admitted in the order they were made (server/messaging/admission.ts serialises
   * them too); the limiter itself keeps that order across lease boundaries: the send that asked for a
   * lease spends from it like the ones that waited for it, in the order they asked.
   */
  it('When 25 consumes of one key start together across lease boundaries (points=500, lease 10), then they resolve in the order they were called', async () => {
    const { keyPrefix, key } = fresh();
    const limit = createRateLimit(redis, keyPrefix, 500, WINDOW_S);
    const counter = countConsumes(redis);
    const order: number[] = [];
    await Promise.all(Array.from({ length: 25 }, (_, i) => limit.consume(key).then(() => order.push(i))));
    expect(counter.calls, 'leases taken').to.equal(3);
    expect(order, 'resolution order').to.deep.equal(Array.from({ length: 25 }, (_, i) => i));
  });
});
