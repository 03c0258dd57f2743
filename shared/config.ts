import Joi from 'joi';

/**
 * Configuration is read and validated once, at start-up, from the environment. Every deployable gets the
 * same frozen object; nothing else in the code reads process.env.
 */
export interface Config {
  readonly nodeEnv: 'development' | 'production' | 'test';
  readonly port: number;
  readonly logLevel: string;
  /** When set, `GET /metrics` (front nodes and workers) needs `Authorization: Bearer <metricsToken>`. */
  readonly metricsToken?: string;
  /** Port of a worker's health and metrics HTTP server (0: any free port). */
  readonly workerHttpPort: number;
  /** HTTP basic auth credentials of the operators' pages on front nodes (`/admin/queues`, `/admin/users`); none: neither. */
  readonly admin?: { readonly user: string; readonly password: string };
  /**
   * How long a SIGTERM'd process may take to finish its work in flight (a front node: answer the sends it
   * received and flush their acks; a worker: finish its batch) before it gives up on it and exits.
   */
  readonly shutdownGraceMs: number;
  readonly db: {
    readonly connection: string | {
      readonly host: string;
      readonly port: number;
      readonly user: string;
      readonly password: string;
      readonly database: string;
    };
    readonly poolMax: number;
  };
  readonly redis: {
    readonly url: string;
    /** Prefix of every Redis key and pub/sub channel this deployment uses, so deployments can share a Redis. */
    readonly prefix: string;
  };
  readonly jwt: {
    /** Signs every new token, and verifies. */
    readonly secret: string;
    /** Also accepted when verifying, never used to sign: the secrets of a rotation (docs/OPERATIONS.md). */
    readonly verifySecrets: readonly string[];
    readonly expiresIn: string;
  };
  readonly bcryptRounds: number;
  readonly messages: {
    readonly maxBodyLength: number;
    /** Sends a user may make per second (socket and REST together); 0 disables the limit. */
    readonly ratePerSecond: number;
  };
  readonly queue: {
    /** Channels are spread over this many BullMQ queues; each is processed by one worker at a time. */
    readonly partitions: number;
    /** How long a worker's lock on a batch lasts without renewal: bounds how soon a dead worker's partition resumes. */
    readonly lockMs: number;
    readonly stalledIntervalMs: number;
    /** Most sends a front node packs into one queued batch. */
    readonly maxBatch: number;
    /** Completed batches kept in Redis per partition (up to 5 minutes): what answers a send whose reply was lost. */
    readonly keepCompleted: number;
  };
  readonly sync: {
    /** Most messages one `sync` replays per channel; the client calls again while `hasMore`. */
    readonly replayLimit: number;
  };
  readonly presence: {
    /** How long a front node that stopped heartbeating may leave its users online: its users' bound after it dies. */
    readonly ttlMs: number;
  };
  readonly search: {
    /**
     * The text search configuration (`english`, `simple`, …) messages are indexed in; applied when the
     * search column is built (migrations/20261202060000_message_search.ts), which queries then follow.
     */
    readonly language: string;
    /**
     * How often a worker merges the pending lists of the messages' GIN indexes (search, mentions) into the
     * indexes, so that no batch's insert has to (worker/searchIndexMerge.ts); 0: never, left to inserts and autovacuum.
     */
    readonly indexMergeMs: number;
  };
  /** What workers delete once it serves no more. */
  readonly retention: {
    /**
     * Refusals (`change_refusals`) older than this many hours are deleted: kept until then so that a batch
     * run again answers as its first run did (worker/prune.ts).
     */
    readonly refusalsKeepHours: number;
    /** How often each worker deletes them; 0: never (an operator's statement then, docs/OPERATIONS.md). */
    readonly refusalsPruneMs: number;
    /**
     * Retry keys of changes (`client_changes`, a user's `clientChangeId`) older than this many hours are
     * deleted: a resend with such a key is a new change (docs/API.md).
     */
    readonly clientChangesKeepHours: number;
    /** How often each worker deletes them; 0: never. */
    readonly clientChangesPruneMs: number;
  };
  readonly cors: {
    /** Origins allowed to call the REST API and Socket.IO from a browser; empty: same-origin only. */
    readonly origins: readonly string[];
  };
  /** Abuse budgets, each shared by every front node (Redis); 0 disables one. */
  readonly rateLimits: {
    /** REST requests per token per second (a burst of 10× per 10 s). */
    readonly restPerSecond: number;
    /** Socket events other than sends (`sync`, `channel:read`) per user per second (a burst of 10× per 10 s). */
    readonly socketEventPerSecond: number;
    /** Registrations per client address per minute. */
    readonly registerPerMinute: number;
    /** Login attempts per client address per minute. */
    readonly loginPerMinute: number;
    /** Failed logins per client address per 15 minutes, whatever the email. */
    readonly loginFailuresPerIp: number;
    /** Failed logins per account (email) per 15 minutes, from any address. */
    readonly loginFailuresPerAccount: number;
    /** Failed logins per account (email) and client address per 15 minutes. */
    readonly loginFailuresPerAccountAndIp: number;
    /** Socket connections per user per minute. */
    readonly connectionsPerUserPerMinute: number;
    /** Socket connections per client address per minute. */
    readonly connectionsPerIpPerMinute: number;
  };
}

/** Secrets that appear in examples and must never guard a production deployment. */
export const KNOWN_DEFAULT_SECRETS = ['change-me', 'changeme', 'secret', 'dev-secret-change-me', 'development-secret'];
export const DEV_JWT_SECRET = 'dev-secret-change-me';

export class ConfigError extends Error {
  constructor(readonly variable: string, detail: string) {
    super(`Invalid configuration: ${variable} ${detail}`);
    this.name = 'ConfigError';
  }
}

const durationPattern = /^\d+(ms|s|m|h|d)?$/;

const schema = Joi.object({
  NODE_ENV: Joi.string().valid('development', 'production', 'test').default('development'),
  PORT: Joi.number().integer().min(0).max(65535).default(3000),
  METRICS_TOKEN: Joi.string().min(16).pattern(/^[\x21-\x7e]+$/),
  WORKER_HTTP_PORT: Joi.number().integer().min(0).max(65535).default(9464),
  // Basic auth: a user name cannot hold a colon; the password is a secret, not a word.
  ADMIN_USER: Joi.string().max(64).pattern(/^[\x21-\x39\x3b-\x7e]+$/),
  ADMIN_PASSWORD: Joi.string().min(12).max(256),
  SHUTDOWN_GRACE_MS: Joi.number().integer().min(0).max(600_000).default(10_000),
  LOG_LEVEL: Joi.string().valid('fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent').default('info'),
  DATABASE_URL: Joi.string().uri({ scheme: ['postgres', 'postgresql'] }),
  DB_HOST: Joi.string().hostname().default('127.0.0.1'),
  DB_PORT: Joi.number().port().default(5432),
  DB_USERNAME: Joi.string().default('postgres'),
  DB_USER: Joi.string(),
  DB_PASSWORD: Joi.string().allow('').default(''),
  DB_NAME: Joi.string().pattern(/^[A-Za-z0-9_-]{1,63}$/).default('slack_style'),
  DB_POOL_MAX: Joi.number().integer().min(1).max(200).default(10),
  REDIS_URL: Joi.string().uri({ scheme: ['redis', 'rediss'] }),
  REDIS_HOST: Joi.string().hostname().default('127.0.0.1'),
  REDIS_PORT: Joi.number().port().default(6379),
  REDIS_PREFIX: Joi.string().pattern(/^[A-Za-z0-9_.-]{1,64}$/).default('ssb'),
  JWT_SECRET: Joi.string().min(1),
  // Comma-separated; a secret holding a comma cannot be listed (openssl rand -hex 32 never makes one).
  JWT_VERIFY_SECRETS: Joi.string().custom((raw: string) => raw.split(',').map((secret) => secret.trim())),
  JWT_EXPIRES_IN: Joi.string().pattern(durationPattern).default('1h'),
  BCRYPT_ROUNDS: Joi.number().integer().min(4).max(15).default(10),
  MESSAGE_MAX_LENGTH: Joi.number().integer().min(1).max(40000).default(4000),
  MESSAGE_RATE_PER_SECOND: Joi.number().integer().min(0).default(50),
  QUEUE_PARTITIONS: Joi.number().integer().min(1).max(256).default(2),
  QUEUE_LOCK_MS: Joi.number().integer().min(1000).default(5000),
  QUEUE_STALLED_INTERVAL_MS: Joi.number().integer().min(500).default(2500),
  QUEUE_MAX_BATCH: Joi.number().integer().min(1).max(1000).default(200),
  QUEUE_KEEP_COMPLETED: Joi.number().integer().min(100).max(1_000_000).default(1000),
  SYNC_REPLAY_LIMIT: Joi.number().integer().min(1).max(10_000).default(1000),
  PRESENCE_TTL_MS: Joi.number().integer().min(1000).max(600_000).default(30_000),
  SEARCH_LANGUAGE: Joi.string().pattern(/^[A-Za-z_][A-Za-z0-9_.]{0,62}$/).default('english'),
  SEARCH_INDEX_MERGE_MS: Joi.number().integer().min(0).max(3_600_000).default(1000),
  CHANGE_REFUSALS_KEEP_HOURS: Joi.number().integer().min(1).max(8760).default(24),
  CHANGE_REFUSALS_PRUNE_MS: Joi.number().integer().min(0).max(86_400_000).default(600_000),
  CLIENT_CHANGES_KEEP_HOURS: Joi.number().integer().min(1).max(8760).default(168),
  CLIENT_CHANGES_PRUNE_MS: Joi.number().integer().min(0).max(86_400_000).default(600_000),
  CORS_ORIGINS: Joi.string().default(''),
  REST_RATE_PER_SECOND: Joi.number().integer().min(0).default(100),
  SOCKET_EVENT_RATE_PER_SECOND: Joi.number().integer().min(0).default(50),
  REGISTER_RATE_PER_MINUTE: Joi.number().integer().min(0).default(300),
  LOGIN_RATE_PER_MINUTE: Joi.number().integer().min(0).default(600),
  LOGIN_FAILURES_PER_IP: Joi.number().integer().min(0).default(200),
  LOGIN_FAILURES_PER_ACCOUNT: Joi.number().integer().min(0).default(100),
  LOGIN_FAILURES_PER_ACCOUNT_AND_IP: Joi.number().integer().min(0).default(10),
  SOCKET_CONNECT_PER_USER_PER_MINUTE: Joi.number().integer().min(0).default(300),
  SOCKET_CONNECT_PER_IP_PER_MINUTE: Joi.number().integer().min(0).default(3000),
}).unknown(true);

/** Every environment variable the product reads: the docs and deployment files may name no other. */
export const CONFIG_VARIABLES: readonly string[] = Object.freeze(Object.keys(schema.describe().keys ?? {}));

/**
 * CORS_ORIGINS: comma-separated origins (`scheme://host[:port]`, http or https, no path), as browsers send
 * them in `Origin`; empty means same-origin only.
 */
function parseOrigins(raw: string): string[] {
  const origins: string[] = [];
  for (const item of raw.split(',').map((o) => o.trim()).filter((o) => o !== '')) {
    let url: URL | undefined;
    try {
      url = new URL(item);
    } catch {
      url = undefined;
    }
    if (!url || (url.protocol !== 'http:' && url.protocol !== 'https:') || url.origin !== item) {
      throw new ConfigError('CORS_ORIGINS', `has "${item}", which is not an origin (http[s]://host[:port], no path or trailing slash)`);
    }
    if (!origins.includes(item)) origins.push(item);
  }
  return origins;
}

function redact(url: string): string {
  return url.replace(/\/\/([^:@/]*):[^@/]*@/, '//$1:***@');
}

export function describeDatabase(config: Config): string {
  const c = config.db.connection;
  return typeof c === 'string' ? redact(c) : `postgres://${c.user}@${c.host}:${c.port}/${c.database}`;
}

export function describeRedis(config: Config): string {
  return redact(config.redis.url);
}

function deepFreeze<T>(value: T): T {
  if (value && typeof value === 'object') {
    for (const v of Object.values(value)) deepFreeze(v);
    Object.freeze(value);
  }
  return value;
}

/** At most this many secrets besides JWT_SECRET: a rotation needs one. */
const MAX_VERIFY_SECRETS = 3;

/** What production refuses of any token secret, JWT_SECRET or one of JWT_VERIFY_SECRETS. */
const isWeakSecret = (secret: string) => KNOWN_DEFAULT_SECRETS.includes(secret) || secret.length < 32;

function checkVerifySecrets(secrets: string[], jwtSecret: string, production: boolean): string[] {
  const refuse = (why: string) => {
    throw new ConfigError('JWT_VERIFY_SECRETS', why);
  };
  if (secrets.length > MAX_VERIFY_SECRETS) refuse(`lists ${secrets.length} secrets; at most ${MAX_VERIFY_SECRETS}`);
  for (const [i, secret] of secrets.entries()) {
    if (secret === '') refuse(`has an empty entry (number ${i + 1})`);
    if (secret === jwtSecret) refuse('repeats JWT_SECRET: list only the other secret of the rotation');
    if (secrets.indexOf(secret) !== i) refuse(`lists a secret twice (number ${i + 1})`);
    if (production && isWeakSecret(secret)) {
      refuse(`entry ${i + 1} must be a unique secret of at least 32 characters when NODE_ENV=production`);
    }
  }
  return secrets;
}

export function loadConfig(env: NodeJS.ProcessEnv = process.env): Config {
  // Empty strings in .env files mean "not set", as users expect.
  const input = Object.fromEntries(Object.entries(env).filter(([, v]) => v !== undefined && v !== ''));
  const { value, error } = schema.validate(input, { abortEarly: true, convert: true });
  if (error) {
    const detail = error.details[0];
    const variable = String(detail.path[0] ?? detail.context?.key ?? 'configuration');
    throw new ConfigError(variable, detail.message.replace(/^"[^"]*" ?/, ''));
  }
  const v = value as Record<string, any>;

  let jwtSecret: string | undefined = v.JWT_SECRET;
  if (v.NODE_ENV === 'production') {
    if (!jwtSecret) throw new ConfigError('JWT_SECRET', 'must be set when NODE_ENV=production');
    if (isWeakSecret(jwtSecret)) {
      throw new ConfigError('JWT_SECRET', 'must be a unique secret of at least 32 characters when NODE_ENV=production');
    }
  }
  jwtSecret ??= DEV_JWT_SECRET;
  const verifySecrets = checkVerifySecrets(v.JWT_VERIFY_SECRETS ?? [], jwtSecret, v.NODE_ENV === 'production');
  // Half a credential is a mistake, not a wish for an open or a closed dashboard.
  if ((v.ADMIN_USER === undefined) !== (v.ADMIN_PASSWORD === undefined)) {
    throw new ConfigError(v.ADMIN_USER === undefined ? 'ADMIN_USER' : 'ADMIN_PASSWORD', 'must be set together with the other of ADMIN_USER and ADMIN_PASSWORD');
  }

  const config: Config = {
    nodeEnv: v.NODE_ENV,
    port: v.PORT,
    logLevel: v.LOG_LEVEL,
    ...(v.METRICS_TOKEN !== undefined && { metricsToken: v.METRICS_TOKEN }),
    workerHttpPort: v.WORKER_HTTP_PORT,
    ...(v.ADMIN_USER !== undefined && { admin: { user: v.ADMIN_USER, password: v.ADMIN_PASSWORD } }),
    shutdownGraceMs: v.SHUTDOWN_GRACE_MS,
    db: {
      connection: v.DATABASE_URL ?? {
        host: v.DB_HOST,
        port: v.DB_PORT,
        user: env.DB_USERNAME ? v.DB_USERNAME : (v.DB_USER ?? v.DB_USERNAME),
        password: v.DB_PASSWORD,
        database: v.DB_NAME,
      },
      poolMax: v.DB_POOL_MAX,
    },
    redis: {
      url: v.REDIS_URL ?? `redis://${v.REDIS_HOST}:${v.REDIS_PORT}`,
      prefix: v.REDIS_PREFIX,
    },
    jwt: { secret: jwtSecret, verifySecrets, expiresIn: v.JWT_EXPIRES_IN },
    bcryptRounds: v.BCRYPT_ROUNDS,
    messages: { maxBodyLength: v.MESSAGE_MAX_LENGTH, ratePerSecond: v.MESSAGE_RATE_PER_SECOND },
    queue: {
      partitions: v.QUEUE_PARTITIONS,
      lockMs: v.QUEUE_LOCK_MS,
      stalledIntervalMs: v.QUEUE_STALLED_INTERVAL_MS,
      maxBatch: v.QUEUE_MAX_BATCH,
      keepCompleted: v.QUEUE_KEEP_COMPLETED,
    },
    sync: { replayLimit: v.SYNC_REPLAY_LIMIT },
    presence: { ttlMs: v.PRESENCE_TTL_MS },
    search: { language: v.SEARCH_LANGUAGE, indexMergeMs: v.SEARCH_INDEX_MERGE_MS },
    retention: {
      refusalsKeepHours: v.CHANGE_REFUSALS_KEEP_HOURS,
      refusalsPruneMs: v.CHANGE_REFUSALS_PRUNE_MS,
      clientChangesKeepHours: v.CLIENT_CHANGES_KEEP_HOURS,
      clientChangesPruneMs: v.CLIENT_CHANGES_PRUNE_MS,
    },
    cors: { origins: parseOrigins(v.CORS_ORIGINS) },
    rateLimits: {
      restPerSecond: v.REST_RATE_PER_SECOND,
      socketEventPerSecond: v.SOCKET_EVENT_RATE_PER_SECOND,
      registerPerMinute: v.REGISTER_RATE_PER_MINUTE,
      loginPerMinute: v.LOGIN_RATE_PER_MINUTE,
      loginFailuresPerIp: v.LOGIN_FAILURES_PER_IP,
      loginFailuresPerAccount: v.LOGIN_FAILURES_PER_ACCOUNT,
      loginFailuresPerAccountAndIp: v.LOGIN_FAILURES_PER_ACCOUNT_AND_IP,
      connectionsPerUserPerMinute: v.SOCKET_CONNECT_PER_USER_PER_MINUTE,
      connectionsPerIpPerMinute: v.SOCKET_CONNECT_PER_IP_PER_MINUTE,
    },
  };
  return deepFreeze(config);
}
