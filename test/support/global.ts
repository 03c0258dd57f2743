/**
 * Mocha global fixtures: every run gets its own freshly migrated database and its own Redis key prefix on the
 * configured servers (or local fallbacks, see scripts/services.ts), and removes both afterwards.
 *
 * Mocha imports the spec files before mochaGlobalSetup runs, so specs must read the environment (loadConfig)
 * in hooks or tests, not at module top level. Child processes that specs spawn inherit it.
 */
import { randomBytes } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import dotenv from 'dotenv';
import { loadConfig } from '../../shared/config.js';
import { dropDatabase, migrateLatest, withDatabase } from '../../scripts/db-admin.js';
import { deleteKeysWithPrefix } from '../../scripts/redis-admin.js';
import { ensureServices, type Services } from '../../scripts/services.js';
import { runningProcs } from '../../scripts/cluster.js';

// A LOG_LEVEL in .env is meant for running the app; only one given for this very run applies to tests.
const requestedLogLevel = process.env.LOG_LEVEL;
// .env still says which servers to use (DB_PASSWORD etc.), and nothing else: the tests run the product's
// defaults, whatever a developer set there for running it (a rate limit, a batch size …).
const SERVER_KEYS = /^(DATABASE_URL|DB_(HOST|PORT|USER|USERNAME|PASSWORD|NAME)|REDIS_(URL|HOST|PORT))$/;
if (existsSync('.env')) {
  for (const [key, value] of Object.entries(dotenv.parse(readFileSync('.env')))) {
    if (SERVER_KEYS.test(key) && process.env[key] === undefined) process.env[key] = value;
  }
}
// The processes the tests start load .env too (dotenv/config): not for them.
process.env.DOTENV_CONFIG_PATH = '/dev/null';
process.env.DOTENV_CONFIG_QUIET = 'true';

interface Run {
  /** Its config names the run's database. */
  readonly services: Services;
  readonly redisPrefix: string;
}

let run: Run | undefined;

const log = (line: string) => console.error(`[test setup] ${line}`);

async function cleanUp({ services, redisPrefix }: Run): Promise<void> {
  try {
    try {
      await dropDatabase(services.config);
    } finally {
      await deleteKeysWithPrefix(services.config.redis.url, redisPrefix);
    }
  } finally {
    await services.stop();
  }
}

export async function mochaGlobalSetup(): Promise<void> {
  process.env.NODE_ENV = 'test';
  const id = randomBytes(4).toString('hex');
  // Pointed at the run's own database, ensureServices creates it on whichever server it settles on.
  const services = await ensureServices(withDatabase(loadConfig(process.env), `ssb_test_${id}`), log);
  const attempt: Run = { services, redisPrefix: `ssbtest-${id}` };
  try {
    await migrateLatest(services.config);
    Object.assign(process.env, {
      ...services.env,
      REDIS_PREFIX: attempt.redisPrefix,
      // The suites register thousands of users: at the default cost (10) hashing alone would add minutes to
      // every run, and the cost is not what they test. test/rest/auth.test.ts runs a node at the default.
      BCRYPT_ROUNDS: '4',
      // Workers in the tests (in-process and spawned) take any free port for health and metrics.
      WORKER_HTTP_PORT: '0',
      LOG_LEVEL: requestedLogLevel || 'warn',
    });
  } catch (err) {
    // Mocha skips the teardown when setup fails.
    await cleanUp(attempt).catch(() => {});
    throw err;
  }
  run = attempt;
}

export async function mochaGlobalTeardown(): Promise<void> {
  if (!run) return;
  const finished = run;
  run = undefined;
  await cleanUp(finished);
}

/**
 * A test that failed against spawned front nodes or workers shows what they printed (warnings and errors at
 * the tests' LOG_LEVEL): their side of a failure is otherwise lost when the cluster stops.
 */
export const mochaHooks = {
  afterEach(this: Mocha.Context) {
    if (this.currentTest?.state !== 'failed') return;
    for (const proc of runningProcs()) {
      const output = proc.output.toString().trim();
      if (output !== '') console.error(`[after the failure] ${proc.kind} ${proc.url} (pid ${proc.pid}), its last output:\n${output}`);
    }
  },
};
