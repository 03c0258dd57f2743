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
  /** Environment of the product processes the bench starts. */
  readonly productEnv: Record<string, string>;
  cleanUp(): Promise<void>;
}

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
  const productEnv: Record<string, string> = {
    ...services.env,
    NODE_ENV: 'development',
    REDIS_PREFIX: redisPrefix,
    JWT_SECRET: randomBytes(24).toString('hex'),
    BCRYPT_ROUNDS: '4',
    MESSAGE_RATE_PER_SECOND: '0',
    SYNC_HOLD_MS: '0',
    // Every batch of a phase stays readable for the batch profile (bench/profile/batches.ts).
    QUEUE_KEEP_COMPLETED: '100000',
    LOG_LEVEL: 'info',
    ...options.productEnv,
  };
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
