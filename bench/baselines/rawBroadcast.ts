/**
 * Raw Socket.IO broadcast through the Redis adapter, with no application logic: plain servers
 * (plainServer.ts), the same load agents as receivers, and a @socket.io/redis-emitter publisher here,
 * as the product's worker publishes. Two measurements:
 *  - fan-out capacity: one room, closed loop (a window of messages not yet written to the last socket of
 *    every server), deliveries/s;
 *  - latency at a given offered rate, in the same room layout as the product's throughput scenario.
 */
import { randomUUID } from 'node:crypto';
import { Emitter } from '@socket.io/redis-emitter';
import { Redis } from 'ioredis';
import { io, type Socket } from 'socket.io-client';
import type { AgentPool } from '../agents/pool.js';
import type { SocketSpec } from '../agents/protocol.js';
import { toSendOutcome } from '../../shared/queues.js';
import { nowUs } from '../lib/clock.js';
import { spawnHelper, type HelperProc } from '../lib/proc.js';
import type { CpuGroups } from '../lib/procfs.js';
import { runPhase, type PhaseResult } from '../scenarios/phase.js';

export interface RawEnv {
  redisUrl: string;
  /** Redis channel prefix of this baseline's adapter (under the bench's prefix). */
  adapterKey: string;
  pool: AgentPool;
  bodyBytes: number;
  cpu: (extra: Record<string, number[]>) => CpuGroups;
}

class Publisher {
  private readonly redis: Redis;
  private readonly emitter: Emitter;
  private readonly seqs = new Map<string, number>();
  private readonly pad: string;
  private readonly userId = randomUUID();
  published = 0;
  firstPublishUs = 0;

  constructor(env: RawEnv) {
    this.redis = new Redis(env.redisUrl, { maxRetriesPerRequest: null });
    this.emitter = new Emitter(this.redis, { key: env.adapterKey });
    this.pad = 'x'.repeat(Math.max(0, env.bodyBytes - 40));
  }

  /** Counts from zero for the next phase. */
  reset(): void {
    this.published = 0;
    this.firstPublishUs = 0;
  }

  seq(room: string): number {
    return this.seqs.get(room) ?? 0;
  }

  /**
   * A new message as the product builds one (its ack's `toSendOutcome`, every field of MessageDto), stamped
   * with its (scheduled) send time.
   */
  publish(room: string, sentAtUs: number | null): number {
    const seq = this.seq(room) + 1;
    this.seqs.set(room, seq);
    const body = sentAtUs === null ? 'warm-up' : `${Math.round(sentAtUs)}|raw|${seq}|${this.pad}`;
    const sent = toSendOutcome(
      { kind: 'send', id: randomUUID(), channelId: room, userId: this.userId, body, clientMsgId: `raw-${seq}` },
      { ok: true, seq, rev: seq, createdAt: new Date().toISOString(), mentions: [] },
    );
    if (!sent.ok) throw new Error('a stored send is always ok');
    this.emitter.to(room).emit('message:new', sent.message);
    if (sentAtUs !== null) {
      if (this.published++ === 0) this.firstPublishUs = sentAtUs;
    }
    return seq;
  }

  probe(rooms: string[]): Record<string, number> {
    return Object.fromEntries(rooms.map((room) => [room, this.publish(room, null)]));
  }

  /** `rate` messages/s spread over the rooms in turn, each stamped with its scheduled time. */
  openLoop(rooms: string[], rate: number, durationMs: number): void {
    const intervalUs = 1e6 / rate;
    const start = nowUs();
    const end = start + durationMs * 1000;
    let due = start;
    let next = 0;
    const tick = () => {
      const now = nowUs();
      while (due <= now && due < end) {
        this.publish(rooms[next++ % rooms.length], due);
        due += intervalUs;
      }
      if (due < end) setTimeout(tick, 1);
    };
    tick();
  }

  /** Keeps `window` messages beyond what every tail socket has received, for `durationMs`. */
  closedLoop(room: string, window: number, durationMs: number, tails: Socket[]): void {
    const end = nowUs() + durationMs * 1000;
    const seen = tails.map(() => this.seq(room));
    const pump = () => {
      const done = Math.min(...seen);
      while (nowUs() < end && this.seq(room) - done < window) this.publish(room, nowUs());
    };
    tails.forEach((tail, i) => {
      tail.on('message:new', (m: { channelId: string; seq: number }) => {
        if (m.channelId !== room) return;
        seen[i] = Math.max(seen[i], m.seq);
        pump();
      });
    });
    pump();
  }

  close(): void {
    this.redis.disconnect();
  }
}

async function startPlainServers(env: RawEnv, count: number): Promise<HelperProc[]> {
  const childEnv = { ...process.env, BENCH_REDIS_URL: env.redisUrl, BENCH_ADAPTER_KEY: env.adapterKey };
  return Promise.all(Array.from({ length: count }, () => spawnHelper('bench/baselines/plainServer.ts', childEnv, 'plain listening')));
}

const urlOf = (server: HelperProc) => `http://127.0.0.1:${server.ready.port}`;

function connectTail(url: string, rooms: string[]): Promise<Socket> {
  const socket = io(url, { auth: { rooms }, transports: ['websocket'], forceNew: true, reconnection: false });
  return new Promise((resolve, reject) => {
    socket.once('connect', () => resolve(socket));
    socket.once('connect_error', reject);
  });
}

async function withRaw<T>(env: RawEnv, servers: number, use: (s: HelperProc[], p: Publisher) => Promise<T>): Promise<T> {
  const plain = await startPlainServers(env, servers);
  const publisher = new Publisher(env);
  try {
    return await use(plain, publisher);
  } finally {
    publisher.close();
    await env.pool.disconnect().catch(() => {});
    await Promise.all(plain.map((s) => s.stop()));
  }
}

/** Deliveries/s of one room of `sockets` sockets spread over `servers` plain servers, closed loop. */
export function rawFanout(env: RawEnv, o: { servers: number; sockets: number; window: number; durationMs: number }): Promise<PhaseResult> {
  return withRaw(env, o.servers, async (plain, publisher) => {
    const room = 'fanout';
    const specs: SocketSpec[] = Array.from({ length: o.sockets }, (_, i) => ({
      key: `raw-fan-${i}`,
      url: urlOf(plain[i % plain.length]),
      auth: { rooms: [room] },
      channels: [room],
    }));
    await env.pool.connect(specs);
    // Joined after every receiver: last in the room on each server, so their receipt ends a broadcast.
    const tails = await Promise.all(plain.map((s) => connectTail(urlOf(s), [room])));
    try {
      return await runPhase({
        label: 'raw fan-out',
        pool: env.pool,
        receivers: { [room]: o.sockets },
        probe: async () => publisher.probe([room]),
        start: async () => {
          publisher.reset();
          publisher.closedLoop(room, o.window, o.durationMs, tails);
        },
        finals: async () => ({ [room]: publisher.seq(room) }),
        counts: () => ({ sent: publisher.published, settled: publisher.published, firstSendUs: publisher.firstPublishUs }),
        durationMs: o.durationMs,
        cpu: env.cpu({ 'plain servers': plain.map((s) => s.pid) }),
      });
    } finally {
      for (const tail of tails) tail.close();
    }
  });
}

/** Emit → deliver latency at `rate` messages/s over `rooms` rooms of `socketsPerRoom` sockets each. */
export function rawLatency(
  env: RawEnv,
  o: { servers: number; rooms: number; socketsPerRoom: number; rates: number[]; durationMs: number },
): Promise<Array<PhaseResult & { offeredRate: number }>> {
  return withRaw(env, o.servers, async (plain, publisher) => {
    const rooms = Array.from({ length: o.rooms }, (_, i) => `room-${i}`);
    const specs: SocketSpec[] = [];
    for (const room of rooms) {
      for (let k = 0; k < o.socketsPerRoom; k++) {
        specs.push({ key: `raw-${room}-${k}`, url: urlOf(plain[specs.length % plain.length]), auth: { rooms: [room] }, channels: [room] });
      }
    }
    await env.pool.connect(specs);
    const results: Array<PhaseResult & { offeredRate: number }> = [];
    for (const rate of o.rates) {
      const phase = await runPhase({
        label: `raw latency @${Math.round(rate)}/s`,
        pool: env.pool,
        receivers: Object.fromEntries(rooms.map((r) => [r, o.socketsPerRoom])),
        probe: async () => publisher.probe(rooms),
        start: async () => {
          publisher.reset();
          publisher.openLoop(rooms, rate, o.durationMs);
        },
        finals: async () => Object.fromEntries(rooms.map((r) => [r, publisher.seq(r)])),
        counts: () => ({ sent: publisher.published, settled: publisher.published, firstSendUs: publisher.firstPublishUs }),
        durationMs: o.durationMs,
        cpu: env.cpu({ 'plain servers': plain.map((s) => s.pid) }),
      });
      results.push({ ...phase, offeredRate: rate });
    }
    return results;
  });
}
