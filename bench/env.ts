/**
 * The bench's own resources: a database (created, migrated, dropped at the end) and a Redis key prefix
 * (its keys deleted at the end) on the configured PostgreSQL and Redis, or on the local fallbacks `npm start`
 * uses (scripts/services.ts). Nothing else on those servers is touched.
 */
import { randomBytes } from 'node:crypto';
import { mkdirSync } from 'node:fs';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import dotenv from 'dotenv';
import pg from 'pg';
import { loadConfig, type Config } from '../shared/config.js';
import { dropDatabase, migrateLatest, withDatabase } from '../scripts/db-admin.js';
import { deleteKeysWithPrefix } from '../scripts/redis-admin.js';
import { ensureServices, type Services } from '../scripts/services.js';
import type { BenchOptions } from './cli.js';
import { REPO_ROOT } from './lib/proc.js';
import { note } from './lib/progress.js';

export interface BenchEnv {
  readonly id: string;
  readonly services: Services;
  /** The bench database's config (also the product's, unless --url). */
  readonly config: Config;
  readonly databaseUrl: string;
  readonly redisUrl: string;
  /** Every Redis key and channel of the run starts with this. */
  readonly redisPrefix: string;
  /** Environment of the product processes the bench starts: the product's defaults, send rate limit included. */
  readonly productEnv: Record<string, string>;
  /**
   * Added to productEnv for the front nodes of the phases whose senders exceed one user's default send
   * budget (throughput, latency, fan-out); empty when --env sets MESSAGE_RATE_PER_SECOND.
   */
  readonly overBudgetEnv: Record<string, string>;
  cleanUp(): Promise<void>;
}

/**
 * The per-user send rate of the front nodes of throughput, latency and fan-out. Their senders exceed the
 * default of 50/s (500 per 10 s) by design: closed loop or thousands of msg/s over 32 senders, and fan-out's
 * one sender at ~80 msg/s. 100,000/s is far above anything one sender can reach on one machine (the whole
 * pipeline does < 10,000 msg/s), so the limiter still runs, leasing points from Redis, but never refuses.
 */
export const OVER_BUDGET_RATE_PER_SECOND = 100_000;

export async function setUpEnv(options: BenchOptions): Promise<BenchEnv> {
  dotenv.config({ quiet: true });
  const id = randomBytes(4).toString('hex');
  const database = `ssb_bench_${id}`;
  const redisPrefix = `ssbbench-${id}`;
  const services = await ensureServices(withDatabase(loadConfig(process.env), database), (line) => note(`[services] ${line}`));
  let migrated = false;
  const cleanUp = async () => {
    try {
      await dropDatabase(services.config).catch((err: unknown) => note(`[cleanup] dropping ${database} failed: ${String(err)}`));
      const deleted = await deleteKeysWithPrefix(services.config.redis.url, redisPrefix).catch(() => 0);
      if (migrated) note(`[cleanup] dropped database ${database}, deleted ${deleted} Redis keys under ${redisPrefix}`);
    } finally {
      await services.stop();
    }
  };
  try {
    await migrateLatest(services.config);
    migrated = true;
    await applyPgSettings(services.env.DATABASE_URL, database, options.pgSettings);
  } catch (err) {
    await cleanUp().catch(() => {});
    throw err;
  }
  const base: Record<string, string> = {
    ...services.env,
    NODE_ENV: 'development',
    REDIS_PREFIX: redisPrefix,
    JWT_SECRET: randomBytes(24).toString('hex'),
    BCRYPT_ROUNDS: '4',
    // Every batch of a phase stays readable for the batch profile (bench/profile/batches.ts).
    QUEUE_KEEP_COMPLETED: '100000',
    LOG_LEVEL: 'info',
    // The load agents are one address for thousands of users: the per-address budgets guard against
    // abuse from one client and would only refuse the bench's own set-up (registering and connecting).
    REGISTER_RATE_PER_MINUTE: '0',
    SOCKET_CONNECT_PER_IP_PER_MINUTE: '0',
    // History pages are timed from one user's token, thousands a second: the per-user REST budget runs
    // (its cost is measured) but never refuses.
    REST_RATE_PER_SECOND: String(OVER_BUDGET_RATE_PER_SECOND),
  };
  // The product's shipped default, stated explicitly so that a MESSAGE_RATE_PER_SECOND in .env or the shell
  // does not leak into the processes' environment (process.env is their base).
  const defaultRate = loadConfig({ ...process.env, ...base, MESSAGE_RATE_PER_SECOND: undefined }).messages.ratePerSecond;
  const productEnv: Record<string, string> = { ...base, MESSAGE_RATE_PER_SECOND: String(defaultRate), ...options.productEnv };
  const overBudgetEnv: Record<string, string> =
    options.productEnv.MESSAGE_RATE_PER_SECOND === undefined ? { MESSAGE_RATE_PER_SECOND: String(OVER_BUDGET_RATE_PER_SECOND) } : {};
  if (options.cpuProf) {
    const dir = path.resolve(options.cpuProf);
    mkdirSync(dir, { recursive: true });
    productEnv.BENCH_CPU_PROF_DIR = dir;
    productEnv.NODE_OPTIONS = `${process.env.NODE_OPTIONS ?? ''} --import ${pathToFileURL(path.join(REPO_ROOT, 'bench/profile/cpuprof-hook.mjs'))}`.trim();
  }
  return {
    id,
    services,
    config: services.config,
    databaseUrl: services.env.DATABASE_URL,
    redisUrl: services.env.REDIS_URL,
    redisPrefix,
    productEnv,
    overBudgetEnv,
    cleanUp,
  };
}

/** ALTER DATABASE <the bench's own> SET ...: new sessions (the product's pools) pick them up. */
async function applyPgSettings(databaseUrl: string, database: string, settings: Record<string, string>): Promise<void> {
  if (Object.keys(settings).length === 0) return;
  const client = new pg.Client({ connectionString: databaseUrl });
  await client.connect();
  try {
    for (const [key, value] of Object.entries(settings)) {
      await client.query(`ALTER DATABASE ${client.escapeIdentifier(database)} SET ${key} = ${client.escapeLiteral(value)}`);
      note(`[services] ${database}: ${key} = ${value}`);
    }
  } finally {
    await client.end();
  }
}
