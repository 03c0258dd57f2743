import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { setTimeout as sleep } from 'node:timers/promises';
import { Redis } from 'ioredis';
import { OutputTail, killOnExit, terminate } from './child-process.js';

const START_TIMEOUT_MS = 10_000;

/** Resolves once Redis at `url` answers PING; rejects with the connection error otherwise (see isUnreachable). */
export async function pingRedis(url: string, { connectTimeoutMs = 2_000 } = {}): Promise<void> {
  const redis = new Redis(url, {
    lazyConnect: true,
    connectTimeout: connectTimeoutMs,
    retryStrategy: () => null,
    maxRetriesPerRequest: 0,
    enableOfflineQueue: false,
  });
  // Without retries connect() rejects with a bare "Connection is closed."; the cause arrives as an 'error' event.
  let cause: unknown;
  redis.on('error', (err: unknown) => {
    cause = err;
  });
  try {
    await redis.connect();
    await redis.ping();
  } catch (err) {
    throw cause ?? err;
  } finally {
    redis.disconnect();
  }
}

export interface LocalRedis {
  readonly url: string;
  stop(): Promise<void>;
}

/** Runs `redis-server` from PATH on 127.0.0.1:`port`, without persistence, until stop(). */
export async function startRedisServer(port: number): Promise<LocalRedis> {
  const output = new OutputTail();
  const child = spawn(
    'redis-server',
    ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--daemonize', 'no'],
    {
      stdio: ['ignore', 'pipe', 'pipe'],
      // Its own process group: Ctrl+C in a terminal must not take Redis away before its users have stopped.
      detached: true,
    },
  );
  child.stdout.on('data', (chunk: Buffer) => output.push(chunk));
  child.stderr.on('data', (chunk: Buffer) => output.push(chunk));
  try {
    await once(child, 'spawn');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
    throw new Error(
      'No Redis is reachable and redis-server is not on PATH: install it (Debian/Ubuntu: apt-get install redis-server; macOS: brew install redis) or set REDIS_URL',
    );
  }
  const pid = child.pid!;
  const disarm = killOnExit(pid, 'SIGTERM');
  const stop = async () => {
    await terminate(pid, [['SIGTERM', 10_000], ['SIGKILL', 5_000]]);
    disarm();
  };

  const url = `redis://127.0.0.1:${port}`;
  const deadline = Date.now() + START_TIMEOUT_MS;
  for (;;) {
    if (child.exitCode !== null || child.signalCode !== null) {
      disarm();
      throw new Error(`redis-server exited during start-up:\n${output}`);
    }
    try {
      await pingRedis(url, { connectTimeoutMs: 500 });
      return { url, stop };
    } catch {
      if (Date.now() > deadline) {
        await stop();
        throw new Error(`redis-server did not answer on port ${port} within ${START_TIMEOUT_MS / 1000} s:\n${output}`);
      }
      await sleep(100);
    }
  }
}

/** Deletes every key that starts with `prefix`, in batches so a large keyspace never blocks Redis. */
export async function deleteKeysWithPrefix(url: string, prefix: string): Promise<number> {
  const redis = new Redis(url, { lazyConnect: true, maxRetriesPerRequest: 1 });
  redis.on('error', () => {});
  await redis.connect();
  try {
    const pattern = `${prefix.replace(/[*?[\]\\]/g, '\\$&')}*`;
    let deleted = 0;
    let cursor = '0';
    do {
      const [next, keys] = await redis.scan(cursor, 'MATCH', pattern, 'COUNT', 1000);
      if (keys.length > 0) deleted += await redis.unlink(...keys);
      cursor = next;
    } while (cursor !== '0');
    return deleted;
  } finally {
    redis.disconnect();
  }
}
