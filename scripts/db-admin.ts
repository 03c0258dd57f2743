import knexFactory, { type Knex } from 'knex';
import pg from 'pg';
import type { Config } from '../shared/config.js';
import { knexConfig } from '../shared/db.js';

type Connection = Config['db']['connection'];

/** The database PostgreSQL-wide commands (CREATE/DROP DATABASE) connect to. */
const MAINTENANCE_DATABASE = 'postgres';

/** The database a connection names. */
export function databaseName(connection: Connection): string {
  if (typeof connection !== 'string') return connection.database;
  const name = decodeURIComponent(new URL(connection).pathname.slice(1));
  if (!name) throw new Error('DATABASE_URL must name a database, e.g. postgres://user:password@host:5432/slack_style');
  return name;
}

/** The same server and credentials as `connection`, as a URL naming `database` (by default the one it names). */
export function connectionUrl(connection: Connection, database = databaseName(connection)): string {
  let url: URL;
  if (typeof connection === 'string') {
    url = new URL(connection);
  } else {
    url = new URL('postgres://localhost');
    url.hostname = connection.host.includes(':') ? `[${connection.host}]` : connection.host;
    url.port = String(connection.port);
    // The URL setters leave '%' alone, so encode first: node-postgres percent-decodes credentials.
    url.username = encodeURIComponent(connection.user);
    url.password = encodeURIComponent(connection.password);
  }
  url.pathname = `/${encodeURIComponent(database)}`;
  return url.toString();
}

/** `config` pointed at another database on the same server. */
export function withDatabase(config: Config, database: string): Config {
  return Object.freeze({
    ...config,
    db: Object.freeze({ ...config.db, connection: connectionUrl(config.db.connection, database) }),
  });
}

async function withClient<T>(
  connection: Connection,
  database: string,
  connectTimeoutMs: number,
  use: (client: pg.Client) => Promise<T>,
): Promise<T> {
  const client = new pg.Client({
    connectionString: connectionUrl(connection, database),
    connectionTimeoutMillis: connectTimeoutMs,
  });
  // A connection that drops after connect() reports through the pending query; without a listener the
  // 'error' event would crash the process instead.
  client.on('error', () => {});
  await client.connect();
  try {
    return await use(client);
  } finally {
    await client.end().catch(() => {});
  }
}

const INVALID_CATALOG_NAME = '3D000';
const DUPLICATE_DATABASE = '42P04';
const UNIQUE_VIOLATION = '23505';

export interface ConnectOptions {
  /** How long to wait for the server to accept a connection. */
  readonly connectTimeoutMs?: number;
}

/** Runs `use` on a connection to the server's maintenance database, for statements about a database itself. */
export function withMaintenanceClient<T>(
  config: Config,
  use: (client: pg.Client) => Promise<T>,
  { connectTimeoutMs = 10_000 }: ConnectOptions = {},
): Promise<T> {
  return withClient(config.db.connection, MAINTENANCE_DATABASE, connectTimeoutMs, use);
}

/**
 * Creates the database `config` names unless it exists. Connecting to it first means a role without CREATEDB
 * works as long as someone created the database. Resolves to whether it was created; rejects with the
 * connection error (see isUnreachable) when the server does not answer.
 */
export async function createDatabaseIfMissing(config: Config, { connectTimeoutMs = 10_000 }: ConnectOptions = {}): Promise<boolean> {
  const { connection } = config.db;
  const name = databaseName(connection);
  try {
    await withClient(connection, name, connectTimeoutMs, async () => {});
    return false;
  } catch (err) {
    if ((err as { code?: string }).code !== INVALID_CATALOG_NAME) throw err;
  }
  return withClient(connection, MAINTENANCE_DATABASE, connectTimeoutMs, async (client) => {
    try {
      await client.query(`CREATE DATABASE ${client.escapeIdentifier(name)}`);
      return true;
    } catch (err) {
      // Another process created it between our check and CREATE DATABASE.
      const code = (err as { code?: string }).code;
      if (code === DUPLICATE_DATABASE || code === UNIQUE_VIOLATION) return false;
      throw err;
    }
  });
}

/** Drops the database `config` names, disconnecting its remaining sessions (PostgreSQL 13+). */
export async function dropDatabase(config: Config, { connectTimeoutMs = 10_000 }: ConnectOptions = {}): Promise<void> {
  const { connection } = config.db;
  const name = databaseName(connection);
  await withClient(connection, MAINTENANCE_DATABASE, connectTimeoutMs, (client) =>
    client.query(`DROP DATABASE IF EXISTS ${client.escapeIdentifier(name)} WITH (FORCE)`),
  );
}

export interface MigrationResult {
  /** The batch number knex recorded; 0 when nothing was applied or rolled back. */
  readonly batch: number;
  /** Migration file names, in the order they ran. */
  readonly files: readonly string[];
}

async function withKnex<T>(config: Config, use: (knex: Knex) => Promise<T>): Promise<T> {
  const knex = knexFactory(knexConfig(config));
  try {
    return await use(knex);
  } finally {
    await knex.destroy();
  }
}

/** Applies every pending migration to the database `config` names. */
export function migrateLatest(config: Config): Promise<MigrationResult> {
  return withKnex(config, async (knex) => {
    const [batch, files]: [number, string[]] = await knex.migrate.latest();
    return { batch: files.length > 0 ? batch : 0, files };
  });
}

/** Reverts the most recent batch of migrations. */
export function migrateRollback(config: Config): Promise<MigrationResult> {
  return withKnex(config, async (knex) => {
    const [batch, files]: [number, string[]] = await knex.migrate.rollback();
    return { batch: files.length > 0 ? batch : 0, files };
  });
}
