import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { describeDatabase, describeRedis, type Config } from '../shared/config.js';
import { connectionUrl, createDatabaseIfMissing, databaseName } from './db-admin.js';
import { startEmbeddedPostgres } from './embedded-postgres.js';
import { errorText, freePort, isUnreachable } from './net.js';
import { pingRedis, startRedisServer } from './redis-admin.js';

export const REPO_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
/** Git-ignored, and kept between runs so the embedded database survives restarts. */
const EMBEDDED_POSTGRES_DIR = path.join(REPO_ROOT, '.data', 'postgres');

/** A configured server on this machine or network answers well within this; beyond it we fall back. */
const PROBE_TIMEOUT_MS = 2_000;

export interface Services {
  /** The caller's config, pointed at the PostgreSQL database and Redis actually in use. */
  readonly config: Config;
  /** The same for child processes: these variables take precedence over DB_* and REDIS_HOST/REDIS_PORT. */
  readonly env: { readonly DATABASE_URL: string; readonly REDIS_URL: string };
  /** Human-readable, password-free descriptions of what is used. */
  readonly describe: { readonly database: string; readonly redis: string };
  /** Stops what ensureServices started, newest first; services that were already running are left alone. */
  stop(): Promise<void>;
}

interface Service {
  readonly url: string;
  /** Said after the description when the service is a local fallback. */
  readonly note?: string;
  readonly stop?: () => Promise<void>;
}

function refuseFallbackInProduction(config: Config, what: string, err: unknown): void {
  // A production deployment silently writing to a throwaway local server would lose data.
  if (config.nodeEnv === 'production') {
    throw new Error(`${what} is unreachable (${errorText(err)}); with NODE_ENV=production there is no local fallback`);
  }
}

async function ensurePostgres(config: Config, log: (line: string) => void): Promise<Service> {
  try {
    await createDatabaseIfMissing(config, { connectTimeoutMs: PROBE_TIMEOUT_MS });
    return { url: connectionUrl(config.db.connection) };
  } catch (err) {
    if (!isUnreachable(err)) throw err;
    const what = `PostgreSQL at ${describeDatabase(config)}`;
    refuseFallbackInProduction(config, what, err);
    log(`${what} is unreachable (${errorText(err)}); using an embedded PostgreSQL instead`);
  }

  const embedded = await startEmbeddedPostgres({ dataDir: EMBEDDED_POSTGRES_DIR, port: await freePort(), log });
  try {
    const url = embedded.url(databaseName(config.db.connection));
    await createDatabaseIfMissing({ ...config, db: { ...config.db, connection: url } });
    return {
      url,
      note: `embedded, data in ${path.relative(REPO_ROOT, EMBEDDED_POSTGRES_DIR)}`,
      stop: embedded.started ? () => embedded.stop() : undefined,
    };
  } catch (err) {
    await embedded.stop();
    throw err;
  }
}

async function ensureRedis(config: Config, log: (line: string) => void): Promise<Service> {
  try {
    await pingRedis(config.redis.url, { connectTimeoutMs: PROBE_TIMEOUT_MS });
    return { url: config.redis.url };
  } catch (err) {
    if (!isUnreachable(err)) throw err;
    const what = `Redis at ${describeRedis(config)}`;
    refuseFallbackInProduction(config, what, err);
    log(`${what} is unreachable (${errorText(err)}); starting a local redis-server instead`);
  }
  const local = await startRedisServer(await freePort());
  return { url: local.url, note: 'started for this run, not persisted', stop: () => local.stop() };
}

/**
 * Makes sure the configured PostgreSQL and Redis answer, and the configured database exists. A service that
 * does not answer is replaced by a local one (embedded PostgreSQL, redis-server from PATH), so a fresh machine
 * can run the product and its tests; a service that answers with an error (bad password...) is an error.
 */
export async function ensureServices(config: Config, log: (line: string) => void): Promise<Services> {
  const started: Array<() => Promise<void>> = [];
  const stop = async () => {
    const errors: unknown[] = [];
    for (const stopService of started.splice(0).reverse()) {
      await stopService().catch((err: unknown) => errors.push(err));
    }
    if (errors.length > 0) throw errors[0];
  };

  try {
    const db = await ensurePostgres(config, log);
    if (db.stop) started.push(db.stop);
    const redis = await ensureRedis(config, log);
    if (redis.stop) started.push(redis.stop);

    const effective: Config = Object.freeze({
      ...config,
      db: Object.freeze({ ...config.db, connection: db.url }),
      redis: Object.freeze({ ...config.redis, url: redis.url }),
    });
    const describe = (text: string, service: Service) => (service.note ? `${text} (${service.note})` : text);
    return {
      config: effective,
      env: Object.freeze({ DATABASE_URL: db.url, REDIS_URL: redis.url }),
      describe: Object.freeze({
        database: describe(describeDatabase(effective), db),
        redis: describe(describeRedis(effective), redis),
      }),
      stop,
    };
  } catch (err) {
    await stop().catch(() => {});
    throw err;
  }
}
