import { expect } from 'chai';
import { spawn } from 'node:child_process';
import path from 'node:path';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { parse as parseYaml } from 'yaml';
import { CONFIG_VARIABLES, ConfigError, DEV_JWT_SECRET, KNOWN_DEFAULT_SECRETS, loadConfig } from '../../shared/config.js';

const REPO_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const STRONG_SECRET = 'k3v9-Q2xZ7pL0mN5rT8wY1aB4cD6eF0gH2jK';

const readRepoFile = (name: string) => readFileSync(path.join(REPO_ROOT, name), 'utf8');

interface ComposeService {
  command?: string[];
  environment?: Record<string, string>;
  ports?: string[];
  healthcheck?: { test: string[] };
}

/** docker-compose.yml's services, its YAML anchors and merge keys resolved as Compose resolves them. */
function composeServices(): Record<string, ComposeService> {
  return parseYaml(readRepoFile('docker-compose.yml'), { merge: true }).services;
}

/**
 * A service's environment as Compose hands it to the container, given the operator's shell: `${X:-default}`,
 * `${X:?message}` (refused when X is unset or empty), `${X}`, `$$`.
 */
function composeEnvironment(service: ComposeService, shell: Record<string, string>): Record<string, string> {
  const interpolate = (value: string) =>
    value.replace(/\$\$|\$\{([A-Z_]+)(?::([-?])([^}]*))?\}/g, (whole, name?: string, op?: string, arg?: string) => {
      if (whole === '$$') return '$';
      const set = shell[name!] ?? '';
      if (op === '?' && set === '') throw new Error(`compose refuses to start: ${name} ${arg}`);
      return set !== '' || op === undefined ? set : (arg ?? '');
    });
  return Object.fromEntries(Object.entries(service.environment ?? {}).map(([k, v]) => [k, interpolate(String(v))]));
}

/** The services that run the product's code, by the npm script each runs. */
function productServices(): Array<[string, ComposeService, string]> {
  return Object.entries(composeServices()).flatMap(([name, service]) =>
    service.command?.[0] === 'npm' && service.command[1] === 'run' ? [[name, service, service.command[2]] as [string, ComposeService, string]] : [],
  );
}

/** The ConfigError thrown by loadConfig(env), or a failed assertion if it does not throw one. */
function configError(env: NodeJS.ProcessEnv): ConfigError {
  try {
    loadConfig(env);
  } catch (err) {
    expect(err).to.be.instanceOf(ConfigError);
    return err as ConfigError;
  }
  expect.fail(`loadConfig accepted ${JSON.stringify(env)}`);
}

describe('loadConfig', function () {
  describe('database user', function () {
    it('When only DB_USER is set, then it is used as the database user (alias of DB_USERNAME)', function () {
      const config = loadConfig({ DB_USER: 'alice' });
      expect(config.db.connection).to.deep.include({ user: 'alice' });
    });

    it('When only DB_USERNAME is set, then it is used as the database user', function () {
      const config = loadConfig({ DB_USERNAME: 'bob' });
      expect(config.db.connection).to.deep.include({ user: 'bob' });
    });

    it('When both DB_USERNAME and DB_USER are set, then DB_USERNAME wins', function () {
      const config = loadConfig({ DB_USERNAME: 'bob', DB_USER: 'alice' });
      expect(config.db.connection).to.deep.include({ user: 'bob' });
    });

    it('When neither is set (or both are empty strings), then the user is the default "postgres"', function () {
      expect(loadConfig({}).db.connection).to.deep.include({ user: 'postgres' });
      expect(loadConfig({ DB_USERNAME: '', DB_USER: '' }).db.connection).to.deep.include({ user: 'postgres' });
    });

    it('When DB_* variables are set without DATABASE_URL, then the connection is built from them', function () {
      const config = loadConfig({ DB_HOST: 'db.internal', DB_PORT: '6543', DB_USER: 'app', DB_PASSWORD: 'pw', DB_NAME: 'chat' });
      expect(config.db.connection).to.deep.equal({ host: 'db.internal', port: 6543, user: 'app', password: 'pw', database: 'chat' });
    });
  });

  describe('URL precedence', function () {
    it('When DATABASE_URL is set, then it wins over the DB_* variables', function () {
      const url = 'postgres://u:p@db.example:5433/chat';
      const config = loadConfig({ DATABASE_URL: url, DB_HOST: 'other', DB_PORT: '1', DB_USER: 'x', DB_NAME: 'y' });
      expect(config.db.connection).to.equal(url);
    });

    it('When REDIS_URL is set, then it wins over REDIS_HOST and REDIS_PORT', function () {
      const config = loadConfig({ REDIS_URL: 'redis://cache.example:6380/2', REDIS_HOST: 'other', REDIS_PORT: '1' });
      expect(config.redis.url).to.equal('redis://cache.example:6380/2');
    });

    it('When REDIS_URL is not set, then the URL is built from REDIS_HOST and REDIS_PORT', function () {
      expect(loadConfig({ REDIS_HOST: 'cache.internal', REDIS_PORT: '6390' }).redis.url).to.equal('redis://cache.internal:6390');
      expect(loadConfig({}).redis.url).to.equal('redis://127.0.0.1:6379');
    });

    it('When an empty DATABASE_URL is set, then it counts as unset', function () {
      const config = loadConfig({ DATABASE_URL: '', DB_HOST: 'db.internal' });
      expect(config.db.connection).to.deep.include({ host: 'db.internal' });
    });
  });

  describe('bad values', function () {
    const cases: Array<[string, NodeJS.ProcessEnv]> = [
      ['PORT', { PORT: 'abc' }],
      ['PORT', { PORT: '70000' }],
      ['DB_PORT', { DB_PORT: 'five' }],
      ['DATABASE_URL', { DATABASE_URL: 'mysql://u@h/db' }],
      ['REDIS_URL', { REDIS_URL: 'http://cache:6379' }],
      ['NODE_ENV', { NODE_ENV: 'staging' }],
      ['LOG_LEVEL', { LOG_LEVEL: 'loud' }],
      ['BCRYPT_ROUNDS', { BCRYPT_ROUNDS: '3' }],
      ['JWT_EXPIRES_IN', { JWT_EXPIRES_IN: 'soon' }],
      ['REDIS_PREFIX', { REDIS_PREFIX: 'has space' }],
      ['QUEUE_PARTITIONS', { QUEUE_PARTITIONS: '0' }],
      ['QUEUE_KEEP_COMPLETED', { QUEUE_KEEP_COMPLETED: '10' }],
      ['SHUTDOWN_GRACE_MS', { SHUTDOWN_GRACE_MS: '-1' }],
      ['CHANGE_REFUSALS_KEEP_HOURS', { CHANGE_REFUSALS_KEEP_HOURS: '0' }],
      ['CHANGE_REFUSALS_PRUNE_MS', { CHANGE_REFUSALS_PRUNE_MS: '-5' }],
      ['CLIENT_CHANGES_KEEP_HOURS', { CLIENT_CHANGES_KEEP_HOURS: '0' }],
      ['CLIENT_CHANGES_KEEP_HOURS', { CLIENT_CHANGES_KEEP_HOURS: '8761' }],
      ['CLIENT_CHANGES_PRUNE_MS', { CLIENT_CHANGES_PRUNE_MS: 'hourly' }],
    ];
    for (const [variable, env] of cases) {
      it(`When ${variable}=${JSON.stringify(Object.values(env)[0])}, then loadConfig throws a ConfigError naming ${variable}`, function () {
        const err = configError(env);
        expect(err.variable).to.equal(variable);
        expect(err.message).to.include(variable);
        expect(err.name).to.equal('ConfigError');
      });
    }

    it('When numeric variables are valid strings, then they are converted to numbers', function () {
      const config = loadConfig({ PORT: '8080', BCRYPT_ROUNDS: '4', DB_POOL_MAX: '3', QUEUE_KEEP_COMPLETED: '5000', SHUTDOWN_GRACE_MS: '30000' });
      expect(config.shutdownGraceMs).to.equal(30000);
      expect(loadConfig({}).shutdownGraceMs, 'the default').to.equal(10000);
      expect(config.port).to.equal(8080);
      expect(config.bcryptRounds).to.equal(4);
      expect(config.db.poolMax).to.equal(3);
      expect(config.queue.keepCompleted).to.equal(5000);
    });

    it('When the prunes are not configured, then workers keep refusals a day and retry keys of changes a week, and delete older ones every 10 minutes', function () {
      expect(loadConfig({}).retention).to.deep.equal({
        refusalsKeepHours: 24,
        refusalsPruneMs: 600_000,
        clientChangesKeepHours: 168,
        clientChangesPruneMs: 600_000,
      });
      expect(loadConfig({ CHANGE_REFUSALS_PRUNE_MS: '0' }).retention.refusalsPruneMs, '0: never').to.equal(0);
      expect(loadConfig({ CLIENT_CHANGES_PRUNE_MS: '0' }).retention.clientChangesPruneMs, '0: never').to.equal(0);
      expect(loadConfig({ CLIENT_CHANGES_KEEP_HOURS: '720' }).retention.clientChangesKeepHours).to.equal(720);
    });

    it('When an invalid DATABASE_URL contains a password, then the ConfigError message does not echo it', function () {
      const err = configError({ DATABASE_URL: 'mysql://user:hunter2-secret@h/db' });
      expect(err.message).not.to.include('hunter2-secret');
    });
  });

  describe('JWT secret', function () {
    it('When NODE_ENV=production and JWT_SECRET is missing, then loadConfig refuses with a ConfigError naming JWT_SECRET', function () {
      const err = configError({ NODE_ENV: 'production' });
      expect(err.variable).to.equal('JWT_SECRET');
      expect(err.message).to.include('JWT_SECRET');
      expect(configError({ NODE_ENV: 'production', JWT_SECRET: '' }).variable).to.equal('JWT_SECRET');
    });

    for (const known of KNOWN_DEFAULT_SECRETS) {
      it(`When NODE_ENV=production and JWT_SECRET is the known default "${known}", then loadConfig refuses`, function () {
        expect(configError({ NODE_ENV: 'production', JWT_SECRET: known }).variable).to.equal('JWT_SECRET');
      });
    }

    it('When NODE_ENV=production and JWT_SECRET is the dev default, then loadConfig refuses', function () {
      expect(configError({ NODE_ENV: 'production', JWT_SECRET: DEV_JWT_SECRET }).variable).to.equal('JWT_SECRET');
    });

    it('When NODE_ENV=production and JWT_SECRET is a unique long secret, then it is used', function () {
      const config = loadConfig({ NODE_ENV: 'production', JWT_SECRET: STRONG_SECRET });
      expect(config.nodeEnv).to.equal('production');
      expect(config.jwt.secret).to.equal(STRONG_SECRET);
    });

    it('When NODE_ENV is development or test and JWT_SECRET is missing, then the dev secret is used', function () {
      expect(loadConfig({}).jwt.secret).to.equal(DEV_JWT_SECRET);
      expect(loadConfig({ NODE_ENV: 'test' }).jwt.secret).to.equal(DEV_JWT_SECRET);
    });
  });

  describe('JWT_VERIFY_SECRETS (a rotation)', function () {
    const OTHER = 'Zp4-x8Lq2Vn6Rt0Wy3Bc7Df1Gh5Jk9Mn2Pq';

    it('When JWT_VERIFY_SECRETS is unset, then only JWT_SECRET verifies', function () {
      expect(loadConfig({ JWT_SECRET: STRONG_SECRET }).jwt.verifySecrets).to.deep.equal([]);
    });

    it('When JWT_VERIFY_SECRETS lists secrets separated by commas, then each is accepted, spaces around them dropped, and JWT_SECRET still signs', function () {
      const config = loadConfig({ NODE_ENV: 'production', JWT_SECRET: STRONG_SECRET, JWT_VERIFY_SECRETS: ` ${OTHER} ,${OTHER}x` });
      expect(config.jwt.secret).to.equal(STRONG_SECRET);
      expect(config.jwt.verifySecrets).to.deep.equal([OTHER, `${OTHER}x`]);
      expect(Object.isFrozen(config.jwt.verifySecrets)).to.equal(true);
    });

    const refused: Array<[string, NodeJS.ProcessEnv]> = [
      ['an empty entry', { JWT_VERIFY_SECRETS: `${OTHER},,${OTHER}x` }],
      ['JWT_SECRET again (step 2 without the new JWT_SECRET)', { JWT_SECRET: STRONG_SECRET, JWT_VERIFY_SECRETS: STRONG_SECRET }],
      ['a secret twice', { JWT_VERIFY_SECRETS: `${OTHER},${OTHER}` }],
      ['four secrets', { JWT_VERIFY_SECRETS: [1, 2, 3, 4].map((i) => `${OTHER}${i}`).join(',') }],
      ['a short secret in production', { NODE_ENV: 'production', JWT_SECRET: STRONG_SECRET, JWT_VERIFY_SECRETS: 'short' }],
      ['a known default in production', { NODE_ENV: 'production', JWT_SECRET: STRONG_SECRET, JWT_VERIFY_SECRETS: KNOWN_DEFAULT_SECRETS[0] }],
    ];
    for (const [what, env] of refused) {
      it(`When JWT_VERIFY_SECRETS holds ${what}, then loadConfig refuses, naming JWT_VERIFY_SECRETS`, function () {
        expect(configError(env).variable).to.equal('JWT_VERIFY_SECRETS');
      });
    }
  });

  describe('the result', function () {
    it('When a config is loaded, then it and every nested object are frozen', function () {
      const config = loadConfig({ DB_USER: 'alice' });
      expect(Object.isFrozen(config)).to.equal(true);
      for (const nested of [config.db, config.db.connection, config.redis, config.jwt, config.messages, config.queue]) {
        expect(Object.isFrozen(nested)).to.equal(true);
      }
    });

    it('When code tries to change a loaded config, then it throws and the value is unchanged', function () {
      const config = loadConfig({ PORT: '1234', JWT_SECRET: 'original' });
      expect(() => {
        (config as { port: number }).port = 1;
      }).to.throw(TypeError);
      expect(() => {
        (config.jwt as { secret: string }).secret = 'stolen';
      }).to.throw(TypeError);
      expect(config.port).to.equal(1234);
      expect(config.jwt.secret).to.equal('original');
    });

    it('When loadConfig is given an env object, then it does not modify it', function () {
      const env = Object.freeze({ PORT: '1234', DB_USER: 'alice' });
      expect(() => loadConfig(env)).not.to.throw();
    });
  });

  describe('the documented and deployed configuration', function () {
    it('When docker-compose.yml starts its nodes, workers and migration with only JWT_SECRET set, then each gets a valid production configuration', function () {
      const services = productServices();
      expect(services.map(([, , script]) => script)).to.include.members(['start:server', 'start:worker', 'migrate']);
      for (const [name, service, script] of services) {
        const config = loadConfig(composeEnvironment(service, { JWT_SECRET: STRONG_SECRET }));
        expect(config.nodeEnv, name).to.equal('production');
        expect(config.jwt.secret, name).to.equal(STRONG_SECRET);
        expect(config.admin, `${name}: no operators' pages unless asked for`).to.equal(undefined);
        // The health check and the published port must reach the port the process listens on.
        const listens = script === 'start:server' ? config.port : script === 'start:worker' ? config.workerHttpPort : undefined;
        if (listens !== undefined) expect(service.healthcheck?.test.join(' '), name).to.include(`http://127.0.0.1:${listens}/health/ready`);
        for (const published of service.ports ?? []) expect(published.split(':').at(-1), name).to.equal(String(listens));
      }
    });

    it('When docker-compose.yml is started without JWT_SECRET, then it refuses, naming it', function () {
      for (const [, service] of productServices()) {
        expect(() => composeEnvironment(service, {})).to.throw(/JWT_SECRET/);
      }
    });

    it('When an operator sets ADMIN_USER, ADMIN_PASSWORD and METRICS_TOKEN for docker-compose.yml, then every front node gets them', function () {
      const shell = { JWT_SECRET: STRONG_SECRET, ADMIN_USER: 'ops', ADMIN_PASSWORD: 'correct-horse-battery', METRICS_TOKEN: 'a-metrics-token-0123456789' };
      const fronts = productServices().filter(([, , script]) => script === 'start:server');
      expect(fronts).to.have.length.greaterThan(1);
      for (const [name, service] of fronts) {
        const config = loadConfig(composeEnvironment(service, shell));
        expect(config.admin, name).to.deep.equal({ user: 'ops', password: 'correct-horse-battery' });
        expect(config.metricsToken, name).to.equal(shell.METRICS_TOKEN);
      }
    });

    it('When README.md, .env.example and docker-compose.yml name a variable, then the product reads it, and each it reads is in README.md and .env.example', function () {
      const known = new Set(CONFIG_VARIABLES);
      // README's configuration table: the first cell of each row names one variable or several.
      const readme = [...readRepoFile('README.md').matchAll(/^\| ((?:`[A-Z][A-Z0-9_]*`[^|]*?)+) \|/gm)].flatMap((m) =>
        [...m[1].matchAll(/`([A-Z][A-Z0-9_]*)`/g)].map((v) => v[1]),
      );
      // .env.example: each assignment (an alias, such as DB_USER, may be named in a comment instead).
      const envExample = [...readRepoFile('.env.example').matchAll(/^([A-Z][A-Z0-9_]*)=/gm)].map((m) => m[1]);
      const compose = productServices().flatMap(([, service]) => Object.keys(service.environment ?? {}));
      for (const [file, names] of [['README.md', readme], ['.env.example', envExample], ['docker-compose.yml', compose]] as const) {
        expect(names, file).to.not.be.empty;
        expect(names.filter((v) => !known.has(v)), `${file} names variables the product does not read`).to.deep.equal([]);
      }
      expect(CONFIG_VARIABLES.filter((v) => !readme.includes(v)), "variables missing from README.md's table").to.deep.equal([]);
      const envExampleText = readRepoFile('.env.example');
      expect(CONFIG_VARIABLES.filter((v) => !new RegExp(`\\b${v}\\b`).test(envExampleText)), 'variables missing from .env.example').to.deep.equal([]);
    });
  });

  describe('the server entry point', function () {
    it('When server/main.ts starts with PORT=abc, then it exits non-zero printing one line naming PORT', async function () {
      this.timeout(60_000);
      const child = spawn('npx', ['tsx', 'server/main.ts'], {
        cwd: REPO_ROOT,
        env: { ...process.env, PORT: 'abc' },
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      let stdout = '';
      let stderr = '';
      child.stdout.on('data', (d) => (stdout += d));
      child.stderr.on('data', (d) => (stderr += d));
      const code = await new Promise<number | null>((resolve, reject) => {
        const timer = setTimeout(() => {
          child.kill('SIGKILL');
          reject(new Error(`server/main.ts did not exit; stdout=${stdout} stderr=${stderr}`));
        }, 50_000);
        child.on('exit', (c) => {
          clearTimeout(timer);
          resolve(c);
        });
      });
      expect(code).to.be.a('number').and.not.equal(0);
      const lines = `${stdout}${stderr}`.split('\n').filter((l) => l.trim() !== '');
      expect(lines, `output: ${stdout}${stderr}`).to.have.length(1);
      expect(lines[0]).to.include('PORT');
    });
  });
});
