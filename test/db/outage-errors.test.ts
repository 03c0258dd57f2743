/**
 * Which PostgreSQL failures are outages (the worker retries the batch in place, REST answers
 * SERVICE_UNAVAILABLE) and which are a request's own fault, told from the errors a real server gives.
 * Each case makes PostgreSQL produce the error: a scratch database of this run that refuses connections,
 * a backend terminated by an operator, a lock timeout, next to a data exception, a syntax error and a
 * reference to a row that is gone.
 */
import { expect } from 'chai';
import { randomBytes } from 'node:crypto';
import pg from 'pg';
import { isTransientDbError } from '../../shared/db.js';
import type { Logger } from '../../shared/logger.js';
import { toClientError } from '../../server/errors.js';
import { isRetriableDbError } from '../../worker/actions/persistMessages.js';

async function failureOf(run: () => Promise<unknown>): Promise<unknown> {
  try {
    await run();
  } catch (err) {
    return err;
  }
  throw new Error('expected PostgreSQL to refuse');
}

describe('PostgreSQL outages vs refusals (real server)', function () {
  this.timeout(20_000);
  let url: URL;
  let scratch: string;
  let admin: pg.Client;

  before(async () => {
    // Set by the global setup, which runs after this file is loaded.
    url = new URL(process.env.DATABASE_URL!);
    scratch = `${url.pathname.slice(1)}_outage_${randomBytes(4).toString('hex')}`;
    admin = new pg.Client({ connectionString: process.env.DATABASE_URL });
    await admin.connect();
    await admin.query(`CREATE DATABASE "${scratch}"`);
  });

  after(async () => {
    await admin.query(`DROP DATABASE IF EXISTS "${scratch}" WITH (FORCE)`);
    await admin.end();
  });

  const scratchUrl = () => Object.assign(new URL(url.toString()), { pathname: `/${scratch}` }).toString();

  it('When a database refuses connections for maintenance (55000), then it is an outage to wait out, not a refusal', async () => {
    await admin.query(`ALTER DATABASE "${scratch}" ALLOW_CONNECTIONS false`);
    try {
      const client = new pg.Client({ connectionString: scratchUrl() });
      client.on('error', () => {});
      const err = await failureOf(() => client.connect());
      expect((err as { code?: string }).code).to.equal('55000');
      expect(isTransientDbError(err)).to.equal(true);
      expect(isRetriableDbError(err)).to.equal(true);
    } finally {
      await admin.query(`ALTER DATABASE "${scratch}" ALLOW_CONNECTIONS true`);
    }
  });

  it('When an operator terminates the connection mid-statement (57P01), then it is an outage', async () => {
    const client = new pg.Client({ connectionString: scratchUrl() });
    client.on('error', () => {});
    await client.connect();
    const { rows } = await client.query<{ pid: number }>('SELECT pg_backend_pid() AS pid');
    const sleeping = failureOf(() => client.query('SELECT pg_sleep(10)'));
    await new Promise((r) => setTimeout(r, 200));
    await admin.query('SELECT pg_terminate_backend($1)', [rows[0].pid]);
    const err = await sleeping;
    expect(isTransientDbError(err), String(err)).to.equal(true);
    await client.end().catch(() => {});
  });

  it('When a lock cannot be had in time (55P03), then it is an outage; a data exception (22P02) and a syntax error (42601) are not', async () => {
    const holder = new pg.Client({ connectionString: scratchUrl() });
    const waiter = new pg.Client({ connectionString: scratchUrl() });
    await holder.connect();
    await waiter.connect();
    try {
      await holder.query('CREATE TABLE t (id int)');
      await holder.query('BEGIN');
      await holder.query('LOCK TABLE t IN ACCESS EXCLUSIVE MODE');
      await waiter.query("SET lock_timeout = '100ms'");
      const locked = await failureOf(() => waiter.query('SELECT * FROM t'));
      expect((locked as { code?: string }).code).to.equal('55P03');
      expect(isTransientDbError(locked)).to.equal(true);
      await holder.query('ROLLBACK');

      const data = await failureOf(() => waiter.query("SELECT 'not-a-uuid'::uuid"));
      expect((data as { code?: string }).code).to.equal('22P02');
      expect(isRetriableDbError(data)).to.equal(false);
      const syntax = await failureOf(() => waiter.query('SELEC 1'));
      expect((syntax as { code?: string }).code).to.equal('42601');
      expect(isRetriableDbError(syntax)).to.equal(false);
    } finally {
      await holder.end();
      await waiter.end();
    }
  });

  it('When a write refers to a row deleted meanwhile (23503), then it is neither an outage nor a bug: a client gets 404 NOT_FOUND, not 500', async () => {
    const client = new pg.Client({ connectionString: scratchUrl() });
    await client.connect();
    try {
      await client.query('CREATE TABLE parent (id int PRIMARY KEY); CREATE TABLE child (parent_id int REFERENCES parent (id))');
      const err = await failureOf(() => client.query('INSERT INTO child VALUES (1)'));
      expect((err as { code?: string }).code).to.equal('23503');
      expect(isRetriableDbError(err)).to.equal(false);
      const logged: string[] = [];
      const logger = { warn: (_: unknown, msg: string) => logged.push(`warn ${msg}`), error: (_: unknown, msg: string) => logged.push(`error ${msg}`) };
      const answer = toClientError(err, logger as unknown as Logger, {});
      expect(answer.toBody().code).to.equal('NOT_FOUND');
      expect(answer.status).to.equal(404);
      expect(logged).to.deep.equal(['warn a row the request refers to was deleted meanwhile']);
    } finally {
      await client.end();
    }
  });
});
