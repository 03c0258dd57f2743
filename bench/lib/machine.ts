import os from 'node:os';
import pg from 'pg';
import { Redis } from 'ioredis';
import type { Machine } from '../results.js';

/** What the figures were measured on. */
export async function describeMachine(databaseUrl: string, redisUrl: string): Promise<Machine> {
  const machine: Machine = {
    nproc: os.availableParallelism(),
    cpuModel: os.cpus()[0]?.model ?? 'unknown',
    memTotalGb: Math.round((os.totalmem() / 2 ** 30) * 10) / 10,
    node: process.version,
    platform: `${os.type()} ${os.release()} ${os.arch()}`,
    loadAvgAtStart: Math.round(os.loadavg()[0] * 100) / 100,
  };
  const db = new pg.Client({ connectionString: databaseUrl });
  try {
    await db.connect();
    machine.postgres = (await db.query('SHOW server_version')).rows[0].server_version;
  } catch {
    // left out
  } finally {
    await db.end().catch(() => {});
  }
  const redis = new Redis(redisUrl, { lazyConnect: true, maxRetriesPerRequest: 1 });
  try {
    await redis.connect();
    machine.redis = /redis_version:(\S+)/.exec(await redis.info('server'))?.[1];
  } catch {
    // left out
  } finally {
    redis.disconnect();
  }
  return machine;
}
