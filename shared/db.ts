import knexFactory, { type Knex } from 'knex';
import { Model } from 'objection';
import pg from 'pg';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Config } from './config.js';

// seq and counts are BIGINT; they stay far below 2^53, and the contract says seq is a number.
pg.types.setTypeParser(pg.types.builtins.INT8, (v: string) => Number(v));

export const MIGRATIONS_DIR = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', 'migrations');

export function knexConfig(config: Config, overrides: Partial<Knex.Config> = {}): Knex.Config {
  return {
    client: 'pg',
    connection: typeof config.db.connection === 'string' ? config.db.connection : { ...config.db.connection },
    pool: { min: 0, max: config.db.poolMax },
    acquireConnectionTimeout: 10_000,
    // knex would write a failed statement's parameters (message bodies, password hashes) into the error
    // message, and errors are logged.
    compileSqlOnError: false,
    migrations: { directory: MIGRATIONS_DIR, loadExtensions: ['.ts'], tableName: 'knex_migrations' },
    ...overrides,
  };
}

/** One knex pool per process, bound to Objection's models. */
export function createDb(config: Config): Knex {
  const knex = knexFactory(knexConfig(config));
  Model.knex(knex);
  return knex;
}

/** The driver's error: Objection wraps it (db-errors) and keeps the original as `nativeError`. */
function pgError(err: unknown): { code?: string; constraint?: string; name?: string; message?: string } | undefined {
  const e = err as { nativeError?: unknown } | undefined;
  return (e?.nativeError ?? e) as ReturnType<typeof pgError>;
}

/** pg sends a JS array as one array parameter (`?::uuid[]`); knex's types do not know that. */
export const arrayBindings = (...values: unknown[][]) => values as unknown as Knex.RawBinding[];

export function isUniqueViolation(err: unknown, constraint?: string): boolean {
  const e = pgError(err);
  return e?.code === '23505' && (constraint === undefined || e.constraint === constraint);
}

/** A row the statement refers to (a user, a channel …) is not there: deleted while the request was on its way. */
export function isForeignKeyViolation(err: unknown): boolean {
  return pgError(err)?.code === '23503';
}

/** PostgreSQL unreachable, restarting or out of connections: worth retrying, never the user's fault. */
export function isTransientDbError(err: unknown): boolean {
  if ((err as { name?: string })?.name === 'KnexTimeoutError') return true;
  const e = pgError(err);
  if (!e) return false;
  if (typeof e.code === 'string') {
    if (['ECONNREFUSED', 'ECONNRESET', 'ETIMEDOUT', 'EPIPE', 'ENOTFOUND', 'EAI_AGAIN'].includes(e.code)) return true;
    // 08: connection exception; 53: insufficient resources; 57P: operator intervention (shutdown); 40: rollback (serialization, deadlock).
    if (/^(08|53|57P|40)/.test(e.code)) return true;
    // A lock or statement timeout: the same call succeeds once the other side lets go.
    if (e.code === '55P03' || e.code === '57014') return true;
    // 55000 is a class of its own ("object not in prerequisite state"); only a database refusing
    // connections (ALTER DATABASE … ALLOW_CONNECTIONS false, as during maintenance) is an outage.
    if (e.code === '55000' && /not currently accepting connections/i.test(e.message ?? '')) return true;
  }
  return /Connection terminated|connection timeout|terminating connection/i.test(e.message ?? '');
}
