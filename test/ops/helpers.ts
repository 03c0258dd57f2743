/**
 * Shared pieces of the outage tests: a redis-server of the test's own (the machine's Redis is shared and
 * must never be stopped), a database of the test's own that can be closed to connections, and a client
 * that behaves as docs/API.md tells clients to: it resends every un-acked send with its `clientMsgId` (and
 * change with its `clientChangeId`) until it is acked, and resumes its channels by seq or by rev in the
 * handshake whenever it (re)connects.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { tmpdir } from 'node:os';
import { expect } from 'chai';
import pg from 'pg';
import { io } from 'socket.io-client';
import { OutputTail, killOnExit } from '../../scripts/child-process.js';
import { connectionUrl, databaseName, dropDatabase, migrateLatest, withDatabase, withMaintenanceClient } from '../../scripts/db-admin.js';
import { freePort } from '../../scripts/net.js';
import { pingRedis } from '../../scripts/redis-admin.js';
import { loadConfig, type Config } from '../../shared/config.js';
import type { ResumePoint, SyncAck, SyncDone } from '../../shared/events.js';
import type { MessageDto } from '../../shared/models/Message.js';
import type { SendOutcome } from '../../shared/queues.js';
import { request, type ChannelDto, type RegisteredUser } from '../support/api.js';
import { CHANGE_EVENTS, CHANGE_KINDS, REV_EVENTS, type ChangeKind } from '../support/changes.js';
import { range, sleep, waitFor, type ClientSocket, type Transport } from '../support/sockets.js';
import { expectHistoryMatchesEvents, latestRev, type ChangeEvent, type Msg } from '../pipeline/changes-harness.js';
import { fullHistory, seedChannel, seedTeam, type StoredMessage, type Team } from '../pipeline/fixtures.js';

/** A redis-server on a free port of its own, without persistence, that a test may kill and start again. */
export class OwnRedis {
  private child?: ChildProcess;
  private disarm = () => {};
  readonly output = new OutputTail(40);

  private constructor(readonly port: number) {}

  static async start(): Promise<OwnRedis> {
    const redis = new OwnRedis(await freePort());
    await redis.start();
    return redis;
  }

  get url(): string {
    return `redis://127.0.0.1:${this.port}`;
  }

  get running(): boolean {
    return this.child !== undefined && this.child.exitCode === null && this.child.signalCode === null;
  }

  /** Starts it (again, on the same port) and resolves once it answers PING. */
  async start(): Promise<void> {
    if (this.running) throw new Error('redis-server is already running');
    const child = spawn(
      'redis-server',
      ['--port', String(this.port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--daemonize', 'no'],
      // Nothing is written with these options; a directory of its own all the same.
      { stdio: ['ignore', 'pipe', 'pipe'], cwd: tmpdir() },
    );
    child.stdout!.on('data', (chunk: Buffer) => this.output.push(chunk));
    child.stderr!.on('data', (chunk: Buffer) => this.output.push(chunk));
    await once(child, 'spawn');
    this.child = child;
    this.disarm = killOnExit(child.pid!, 'SIGKILL');
    await waitFor(
      async () => {
        if (!this.running) throw new Error(`redis-server exited during start-up:\n${this.output}`);
        return pingRedis(this.url, { connectTimeoutMs: 500 }).then(
          () => true,
          () => false,
        );
      },
      10_000,
      () => `redis-server on port ${this.port} does not answer:\n${this.output}`,
      50,
    );
  }

  /** Stops it with `signal` (SIGKILL: as a crash, nothing flushed) and resolves once it is gone. */
  async kill(signal: NodeJS.Signals = 'SIGKILL'): Promise<void> {
    const child = this.child;
    if (!child || !this.running) return;
    const exited = once(child, 'exit');
    child.kill(signal);
    await exited;
    this.disarm();
  }
}

/**
 * A database of the test's own on the run's server, migrated, dropped by drop(): closing it to
 * connections cannot disturb the other test files, which use the run's database.
 */
export class OwnDatabase {
  private constructor(readonly config: Config, readonly name: string) {}

  static async create(suffix: string): Promise<OwnDatabase> {
    const base = loadConfig(process.env);
    const name = `${databaseName(base.db.connection)}_${suffix}`;
    const config = withDatabase(base, name);
    await withMaintenanceClient(config, (c) => c.query(`CREATE DATABASE ${c.escapeIdentifier(name)}`));
    await migrateLatest(config);
    return new OwnDatabase(config, name);
  }

  get url(): string {
    return connectionUrl(this.config.db.connection);
  }

  /** Refuses new connections (55000) and ends the open ones (57P01), as maintenance or a failover does. */
  async close(): Promise<void> {
    await withMaintenanceClient(this.config, async (c) => {
      await c.query(`ALTER DATABASE ${c.escapeIdentifier(this.name)} ALLOW_CONNECTIONS false`);
      await c.query('SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()', [this.name]);
    });
  }

  async open(): Promise<void> {
    await withMaintenanceClient(this.config, (c) => c.query(`ALTER DATABASE ${c.escapeIdentifier(this.name)} ALLOW_CONNECTIONS true`));
  }

  /** The channel's rows in the messages table, by seq. */
  async storedMessages(channelId: string): Promise<StoredMessage[]> {
    const client = new pg.Client({ connectionString: this.url });
    await client.connect();
    try {
      const { rows } = await client.query(
        `SELECT id, seq::int AS seq, user_id AS "userId", body, client_msg_id AS "clientMsgId"
           FROM messages WHERE channel_id = $1 ORDER BY seq`,
        [channelId],
      );
      return rows;
    } finally {
      await client.end();
    }
  }

  /** The channel's last seq as stored. */
  async lastSeq(channelId: string): Promise<number> {
    const rows = await this.storedMessages(channelId);
    return rows.length === 0 ? 0 : rows[rows.length - 1].seq;
  }

  async drop(): Promise<void> {
    await this.open().catch(() => {});
    await dropDatabase(this.config);
  }
}

/** One emission of a send and what came of it. */
export interface Attempt {
  /** The test's phase when it went out (see ResendingClient's `phase`). */
  phase: string;
  at: number;
  answeredAt?: number;
  /** `ok`, the error code of the ack, or `no answer` (no ack within the client's ack timeout, or the socket dropped). */
  outcome?: string;
}

/** A message the client means to send, with every attempt it took. */
export interface OwnSend {
  clientMsgId: string;
  channelId: string;
  body: string;
  attempts: Attempt[];
  /** The stored message, once an attempt was acked ok. */
  acked?: MessageDto;
  /** A refusal that no resend changes (anything but SERVICE_UNAVAILABLE and RATE_LIMITED). */
  refused?: string;
}

const RETRIABLE = new Set(['SERVICE_UNAVAILABLE', 'RATE_LIMITED', 'no answer']);

/** A change the client means to make to one of its own messages, with every attempt it took. */
export interface OwnChange {
  kind: ChangeKind;
  clientChangeId: string;
  channelId: string;
  messageId: string;
  body?: string;
  emoji?: string;
  attempts: Attempt[];
  /** The message as the change left it, once an attempt was acked ok. */
  acked?: MessageDto;
  refused?: string;
}

/** What the client knows of a message of its own: what its changes may do next. */
interface OwnMessage {
  channelId: string;
  reactions: Set<string>;
  deleted: boolean;
  /** A change of it is on its way: the next waits, so that each change is applied as the client meant it. */
  busy: boolean;
}

/** The order a changing client goes through its kinds of change (one a tick); a removal needs an add before it. */
const CHANGE_CYCLE: ChangeKind[] = ['reaction:add', 'edit', 'reaction:add', 'reaction:remove', 'delete'];
const EMOJIS = ['eyes', 'tada', '+1', 'thumbsup'];

/**
 * A client as docs/API.md describes one ("Reconnecting without losing messages"): it keeps the highest
 * seq (or, resuming by rev, the highest rev) received per channel and resumes from those marks in the
 * handshake at every (re)connect (auth is a function), continues with `sync` while a channel says
 * `hasMore`, and resends each un-acked send with its original `clientMsgId`, and each change with its
 * `clientChangeId`, until it is acked or definitively refused. socket.io-client reconnects by
 * itself after a lost connection (its default); a handshake the server refuses during an outage is tried
 * again by the client (see the connect_error handler).
 */
export class ResendingClient {
  readonly socket: ClientSocket;
  readonly lastSeq: Record<string, number> = {};
  /** Every message:new received, per channel, in arrival order, across connections. */
  readonly received = new Map<string, MessageDto[]>();
  readonly sends: OwnSend[] = [];
  readonly changes: OwnChange[] = [];
  /** Every channel event received (all five kinds), per channel, in arrival order, across connections. */
  readonly events = new Map<string, ChangeEvent[]>();
  /** Per channel, how far this client has the channel's events (resume by rev). */
  readonly lastRev: Record<string, number> = {};
  private readonly own = new Map<string, OwnMessage>();
  private changed = 0;
  /** Events replayed at each resume (handshake and `sync`), as their acks counted them. */
  readonly replayed: number[] = [];
  /** connect, disconnect and connect_error, in order: for failure messages. */
  readonly timeline: string[] = [];
  private readonly born = Date.now();
  private sent = 0;
  private stopped = false;
  private readonly loops: Promise<void>[] = [];

  constructor(
    url: string,
    private readonly token: string,
    readonly channelIds: string[],
    readonly options: {
      tag: string;
      /** The test's current phase, recorded with each attempt. */
      phase: () => string;
      transport?: Transport;
      /** How long an attempt may wait for its ack: the bound on an answer. */
      ackTimeoutMs?: number;
      /** Pause before a resend. */
      retryDelayMs?: number;
      /** How the handshake resumes: from the last seq (v1, the default) or the last rev (every change after it). */
      resumeBy?: 'seq' | 'rev';
      /** Also changes its own messages, a change each time startStreams() sends. */
      changes?: boolean;
    },
  ) {
    for (const id of channelIds) {
      this.lastSeq[id] = 0;
      this.lastRev[id] = 0;
      this.received.set(id, []);
      this.events.set(id, []);
    }
    this.socket = io(url, {
      auth: (cb) => cb({ token: this.token, resume: this.resumePoints() }),
      ...(options.transport === 'default' || options.transport === undefined ? {} : { transports: [options.transport] }),
      forceNew: true,
      reconnectionDelay: 200,
      reconnectionDelayMax: 1000,
      timeout: 5_000,
    });
    this.socket.on('message:new', (m: MessageDto) => {
      this.received.get(m.channelId)?.push(m);
      this.lastSeq[m.channelId] = Math.max(this.lastSeq[m.channelId] ?? 0, m.seq);
    });
    for (const name of REV_EVENTS) {
      this.socket.on(name, (payload: { channelId: string; rev: number }) => {
        this.events.get(payload.channelId)?.push({ name, channelId: payload.channelId, rev: payload.rev, payload });
        if (this.options.resumeBy === 'rev') this.lastRev[payload.channelId] = Math.max(this.lastRev[payload.channelId] ?? 0, payload.rev);
      });
    }
    this.socket.on('sync:done', (done: SyncDone) => void this.continueSync(done.channels));
    this.socket.on('connect', () => this.timeline.push(`${this.elapsed()} connect`));
    this.socket.on('disconnect', (reason) => this.timeline.push(`${this.elapsed()} disconnect (${reason})`));
    this.socket.on('connect_error', (err) => {
      this.timeline.push(`${this.elapsed()} connect_error (${err.message})`);
      // A refusal by the server (SERVICE_UNAVAILABLE while Redis or PostgreSQL is down) is not retried by
      // socket.io-client itself, only a transport failure is: the client tries again after a pause.
      if (!this.socket.active && !this.stopped) setTimeout(() => this.stopped || this.socket.connect(), this.options.retryDelayMs ?? 250);
    });
  }

  private elapsed(): string {
    return `+${Date.now() - this.born}ms`;
  }

  /** Resolves once connected (socket.io-client keeps trying meanwhile). */
  connected(timeoutMs = 15_000): Promise<void> {
    return waitFor(() => this.socket.connected, timeoutMs, () => `${this.options.tag} not connected: ${this.timeline.join(', ')}`);
  }

  private resumePoints(): Record<string, ResumePoint> {
    if (this.options.resumeBy !== 'rev') return { ...this.lastSeq };
    return Object.fromEntries(Object.entries(this.lastRev).map(([id, rev]) => [id, { rev }]));
  }

  /**
   * While a channel's replay says `hasMore`, `sync` it again from where that replay stopped; a replay
   * that failed (its channel's live events are held back meanwhile) is tried again from the marks after a
   * pause.
   */
  private async continueSync(channels: SyncDone['channels']): Promise<void> {
    let more = channels;
    for (;;) {
      const pending: Record<string, ResumePoint> = {};
      let failed = false;
      for (const [id, r] of Object.entries(more)) {
        if (!('hasMore' in r)) {
          if (r.error.code !== 'NOT_FOUND') {
            failed = true;
            pending[id] = this.resumePoints()[id];
          }
          continue;
        }
        this.replayed.push(r.replayed);
        if (!r.hasMore) {
          if (!('latestSeq' in r)) this.lastRev[id] = Math.max(this.lastRev[id] ?? 0, r.latestRev);
        } else pending[id] = 'latestSeq' in r ? r.latestSeq : { rev: r.latestRev };
      }
      if (Object.keys(pending).length === 0 || this.stopped) return;
      if (failed) await sleep(this.options.retryDelayMs ?? 250);
      let ack: SyncAck;
      try {
        ack = (await this.socket.timeout(10_000).emitWithAck('sync', { channels: pending })) as SyncAck;
      } catch {
        return; // The connection went: the next handshake resumes from the marks.
      }
      more = ack.ok ? ack.channels : Object.fromEntries(Object.keys(pending).map((id) => [id, { error: ack.error }]));
    }
  }

  /** Queues a send (round-robin over the channels) and keeps (re)sending it until it is acked or refused. */
  send(): OwnSend {
    const n = this.sent++;
    const clientMsgId = `${this.options.tag}-${n}`;
    const own: OwnSend = { clientMsgId, channelId: this.channelIds[n % this.channelIds.length], body: `${this.options.tag} #${n}`, attempts: [] };
    this.sends.push(own);
    this.loops.push(this.deliver(own));
    return own;
  }

  private async deliver(own: OwnSend): Promise<void> {
    await this.untilAnswered(own, 'message:send', { channelId: own.channelId, body: own.body, clientMsgId: own.clientMsgId });
    if (own.acked) this.own.set(own.acked.id, { channelId: own.channelId, reactions: new Set(), deleted: false, busy: false });
  }

  /**
   * Emits `event` until it is acked ok or definitively refused (or the client stops), recording each
   * attempt; an attempt answered SERVICE_UNAVAILABLE, RATE_LIMITED or not at all is made again after a pause.
   */
  private async untilAnswered(own: { attempts: Attempt[]; acked?: MessageDto; refused?: string }, event: string, payload: unknown): Promise<void> {
    const ackTimeoutMs = this.options.ackTimeoutMs ?? 10_000;
    while (!own.acked && !own.refused && !this.stopped) {
      if (!this.socket.connected) {
        await sleep(50);
        continue;
      }
      const attempt: Attempt = { phase: this.options.phase(), at: Date.now() };
      own.attempts.push(attempt);
      try {
        const outcome = (await this.socket.timeout(ackTimeoutMs).emitWithAck(event, payload)) as SendOutcome;
        attempt.outcome = outcome.ok ? 'ok' : outcome.error.code;
        if (outcome.ok) own.acked = outcome.message;
      } catch {
        attempt.outcome = 'no answer';
      }
      attempt.answeredAt = Date.now();
      if (!own.acked && !RETRIABLE.has(attempt.outcome)) own.refused = attempt.outcome;
      // Backing off, as a client should: 250 ms, doubling up to 2 s.
      if (!own.acked && !own.refused) await sleep(Math.min((this.options.retryDelayMs ?? 250) * 2 ** (own.attempts.length - 1), 2_000));
    }
  }

  /**
   * Queues the next change of the cycle to one of the client's own acked messages with none on its way,
   * and keeps (re)sending it until it is acked or refused; none when there is no such message. Each change
   * changes something (an add of an emoji not there, a removal of one that is), so each makes one event.
   */
  change(): OwnChange | undefined {
    const ready = [...this.own].filter(([, m]) => !m.deleted && !m.busy);
    if (ready.length === 0) return undefined;
    const n = this.changed++;
    let kind = CHANGE_CYCLE[n % CHANGE_CYCLE.length];
    const [messageId, message] = ready[n % ready.length];
    if (kind === 'reaction:remove' && message.reactions.size === 0) kind = 'reaction:add';
    if (kind === 'reaction:add' && message.reactions.size === EMOJIS.length) kind = 'reaction:remove';
    const own: OwnChange = { kind, clientChangeId: `${this.options.tag}-c${n}`, channelId: message.channelId, messageId, attempts: [] };
    if (kind === 'edit') own.body = `${this.options.tag} edit ${n}`;
    if (kind === 'reaction:add') own.emoji = EMOJIS.find((e) => !message.reactions.has(e));
    if (kind === 'reaction:remove') own.emoji = [...message.reactions][0];
    message.busy = true;
    this.changes.push(own);
    this.loops.push(this.deliverChange(own, message));
    return own;
  }

  private async deliverChange(own: OwnChange, message: OwnMessage): Promise<void> {
    const payload = { channelId: own.channelId, messageId: own.messageId, clientChangeId: own.clientChangeId, body: own.body, emoji: own.emoji };
    await this.untilAnswered(own, CHANGE_EVENTS[own.kind].emit, payload);
    if (own.acked) {
      if (own.kind === 'delete') message.deleted = true;
      if (own.kind === 'reaction:add') message.reactions.add(own.emoji!);
      if (own.kind === 'reaction:remove') message.reactions.delete(own.emoji!);
    }
    message.busy = false;
  }

  /** Resolves once every send and change so far is acked or refused; rejects after `timeoutMs` listing the others. */
  async settled(timeoutMs = 30_000): Promise<void> {
    await waitFor(
      () => this.sends.every((s) => s.acked || s.refused) && this.changes.every((c) => c.acked || c.refused),
      timeoutMs,
      () =>
        `${this.options.tag}: un-acked ${describeSends([...this.sends, ...this.changes].filter((s) => !s.acked && !s.refused))}; ${this.timeline.join(', ')}`,
      50,
    );
  }

  /** Stops resending and closes the socket. */
  async close(): Promise<void> {
    this.stopped = true;
    this.socket.close();
    await Promise.all(this.loops);
  }
}

/** The first sends or changes of `sends` with their attempts (phase:outcome/ms), for failure messages. */
export function describeSends(sends: Array<OwnSend | OwnChange>, max = 8): string {
  const more = sends.length > max ? ` … and ${sends.length - max} more` : '';
  return sends
    .slice(0, max)
    .map((s) => `${'clientMsgId' in s ? s.clientMsgId : `${s.kind} ${s.clientChangeId}`} [${s.attempts.map((a) => `${a.phase}:${a.outcome ?? 'pending'}${a.answeredAt ? `/${a.answeredAt - a.at}ms` : ''}`).join(' ')}]`)
    .join('; ') + more;
}

/** Who takes part in an outage test, and where. */
export interface OutageWorld {
  team: Team;
  channels: ChannelDto[];
  /**
   * Members who send, one per transport, on alternating nodes; the last of them (default transports, node
   * A, resuming by rev) also edits, deletes and reacts to its own messages as it goes.
   */
  senders: ResendingClient[];
  /** A member that only listens, on node B: it goes away during the outage and comes back by resuming. */
  returning: ResendingClient;
  /**
   * On node A with polling only, resuming by rev: it goes away when the outage starts and comes back only
   * once the product works again and changes were made meanwhile, which it must all be replayed.
   */
  returningByRev: ResendingClient;
  /** A member that only listens, on node A, with the default transports, and stays connected throughout. */
  watcher: ResendingClient;
  /** All of the above clients. */
  clients: ResendingClient[];
}

const WORLD_TRANSPORTS: Transport[] = ['websocket', 'default', 'polling'];

/**
 * The outage tests' world on a cluster's two front nodes: an owner and five members in a public and a
 * private channel, their clients connected. `phase` is the test's, recorded with each attempt.
 */
export async function seedOutageWorld(urls: string[], phase: () => string, ackTimeoutMs: number): Promise<OutageWorld> {
  const [a, b] = urls;
  const team = await seedTeam(a, 7);
  const [s0, s1, s2, r0, w0, c0, r1] = team.members;
  const channels = [await seedChannel(a, team, team.members), await seedChannel(a, team, team.members, { isPrivate: true })];
  const ids = channels.map((c) => c.id);
  const client = (user: RegisteredUser, url: string, tag: string, transport: Transport, more: { resumeBy?: 'rev'; changes?: boolean } = {}) =>
    new ResendingClient(url, user.token, ids, { tag, transport, phase, ackTimeoutMs, ...more });
  const senders = [s0, s1, s2].map((u, i) => client(u, urls[i % 2], `sender${i}-${WORLD_TRANSPORTS[i]}`, WORLD_TRANSPORTS[i]));
  senders.push(client(c0, a, 'changer-default', 'default', { resumeBy: 'rev', changes: true }));
  const returning = client(r0, b, 'returning', 'websocket');
  const returningByRev = client(r1, a, 'returning-by-rev', 'polling', { resumeBy: 'rev' });
  const watcher = client(w0, a, 'watcher', 'default');
  const clients = [...senders, returning, returningByRev, watcher];
  await Promise.all(clients.map((c) => c.connected()));
  return { team, channels, senders, returning, returningByRev, watcher, clients };
}

/**
 * Resolves once the watcher, connected throughout, holds an event of some channel past the marks the
 * world's returning-by-rev client left with: from then on its resume has something to replay, however
 * long the workers took to store again (they retry in place with a back-off of up to 2 s, and the
 * partitions' later sends wait behind them).
 */
export function storedSinceAway(world: OutageWorld, timeoutMs = 20_000): Promise<void> {
  const { watcher, returningByRev: away } = world;
  const past = () => away.channelIds.some((id) => (watcher.events.get(id) ?? []).some((e) => e.rev > away.lastRev[id]));
  return waitFor(past, timeoutMs, () => `no event past ${JSON.stringify(away.lastRev)} reached ${watcher.options.tag}`);
}

/** Each client queues one send (and a change, if it makes them) every `intervalMs`, whatever came of the earlier ones, until stop(). */
export function startStreams(clients: ResendingClient[], intervalMs: number): { stop(): Promise<void> } {
  let streaming = true;
  const loops = clients.map(async (c) => {
    while (streaming) {
      c.send();
      if (c.options.changes) c.change();
      await sleep(intervalMs);
    }
  });
  return {
    async stop() {
      streaming = false;
      await Promise.all(loops);
    },
  };
}

/** `GET /health/ready`'s status, or 0 when the node does not answer within 5 s. */
export async function readiness(url: string): Promise<number> {
  try {
    const res = await fetch(`${url}/health/ready`, { signal: AbortSignal.timeout(5_000) });
    await res.arrayBuffer();
    return res.status;
  } catch {
    return 0;
  }
}

/** Resolves with the time at which every node's readiness was `status` (polled every 100 ms). */
export async function whenReadiness(urls: string[], status: number, timeoutMs: number): Promise<number> {
  await waitFor(async () => (await Promise.all(urls.map(readiness))).every((s) => s === status), timeoutMs, () => `readiness never ${status}`, 100);
  return Date.now();
}

/** One page of REST history; the status and the seqs it returned. */
export async function historyPage(url: string, token: string, channelId: string): Promise<{ status: number; seqs: number[]; text: string }> {
  const res = await request(url, 'GET', `/channels/${channelId}/messages?limit=200`, { token });
  return { status: res.status, seqs: res.status === 200 ? res.body.messages.map((m: MessageDto) => m.seq) : [], text: res.text };
}

/** Waits until every client has received each channel up to its last stored seq. */
export async function caughtUp(clients: ResendingClient[], stored: Map<string, StoredMessage[]>, timeoutMs = 15_000): Promise<void> {
  const target = Object.fromEntries([...stored].map(([id, rows]) => [id, rows.length === 0 ? 0 : rows[rows.length - 1].seq]));
  await waitFor(
    () => clients.every((c) => Object.keys(target).every((id) => c.lastSeq[id] >= target[id])),
    timeoutMs,
    () => `clients behind ${JSON.stringify(target)}: ${clients.map((c) => `${c.options.tag} ${JSON.stringify(c.lastSeq)} (${c.timeline.join(', ')})`).join('; ')}`,
  );
}

/**
 * The outcome every outage test asserts, per channel: each send acked ok is stored exactly once, as the
 * acked message; nothing is stored that was not sent; and every client received the channel's messages
 * 1..N, in seq order, each once, whether it stayed connected or resumed after reconnecting.
 */
export function expectStoredOnceAndDelivered(
  clients: ResendingClient[],
  channelIds: string[],
  stored: Map<string, StoredMessage[]>,
): void {
  const sends = clients.flatMap((c) => c.sends);
  for (const channelId of channelIds) {
    const rows = stored.get(channelId)!;
    expect(rows.map((r) => r.seq), `channel ${channelId}: seqs are 1..N`).to.deep.equal(rows.map((_, i) => i + 1));
    const byClientMsgId = new Map<string, StoredMessage[]>();
    for (const r of rows) byClientMsgId.set(r.clientMsgId!, [...(byClientMsgId.get(r.clientMsgId!) ?? []), r]);
    const mine = sends.filter((s) => s.channelId === channelId);
    for (const s of mine.filter((s) => s.acked)) {
      const copies = byClientMsgId.get(s.clientMsgId) ?? [];
      expect(copies.length, `${s.clientMsgId} acked ok: stored exactly once`).to.equal(1);
      expect(copies[0].id, `${s.clientMsgId}: the acked message is the stored one`).to.equal(s.acked!.id);
      expect(copies[0].seq, `${s.clientMsgId}: acked seq`).to.equal(s.acked!.seq);
    }
    const sentIds = new Set(mine.map((s) => s.clientMsgId));
    expect(rows.filter((r) => !sentIds.has(r.clientMsgId!)).map((r) => r.clientMsgId), 'stored, never sent').to.deep.equal([]);
    for (const client of clients) {
      const seqs = client.received.get(channelId)!.map((m) => m.seq);
      expect(seqs, `${client.options.tag} received channel ${channelId}'s messages 1..${rows.length}, once each, in order (${client.timeline.join(', ')})`).to.deep.equal(
        rows.map((r) => r.seq),
      );
      expect(client.received.get(channelId)!.map((m) => m.id), `${client.options.tag}: the stored messages`).to.deep.equal(rows.map((r) => r.id));
    }
  }
}

/** Whether a client stayed connected from its first connect to now. */
const connectedThroughout = (c: ResendingClient) => c.timeline.length === 1 && c.timeline[0].endsWith(' connect');

/** The clients whose events must make up each channel whole: those resuming by rev, and those that never had to resume. */
export const convergingClients = (clients: ResendingClient[]) => clients.filter((c) => c.options.resumeBy === 'rev' || connectedThroughout(c));

/**
 * Waits until every converging client has each channel's events up to its latest rev (the highest rev of
 * its messages in REST history); returns the histories.
 */
export async function changesCaughtUp(clients: ResendingClient[], url: string, token: string, channelIds: string[], timeoutMs = 15_000): Promise<Map<string, Msg[]>> {
  const histories = new Map<string, Msg[]>();
  for (const id of channelIds) histories.set(id, (await fullHistory(url, token, id)) as unknown as Msg[]);
  const latest = Object.fromEntries([...histories].map(([id, h]) => [id, latestRev(h)]));
  const has = (c: ResendingClient, id: string) => latestRev(c.events.get(id)!);
  await waitFor(
    () => convergingClients(clients).every((c) => channelIds.every((id) => has(c, id) >= latest[id])),
    timeoutMs,
    () => `clients behind revs ${JSON.stringify(latest)}: ${convergingClients(clients).map((c) => `${c.options.tag} ${channelIds.map((id) => has(c, id)).join('/')} (${c.timeline.join(', ')})`).join('; ')}`,
  );
  return histories;
}

/**
 * What changes must keep through an outage (issue #11), per channel: every change made was acked ok and
 * applied exactly once, at the rev its ack reported, as the event of its kind; and every client resuming by
 * rev, or connected throughout, received the channel's events 1..N, in order, each once, whose fold is the
 * channel's history field by field.
 */
export function expectChangesConverged(clients: ResendingClient[], channelIds: string[], histories: Map<string, Msg[]>): void {
  const changes = clients.flatMap((c) => c.changes);
  expect(changes.filter((c) => !c.acked).map((c) => `${c.kind} ${c.clientChangeId}: ${c.refused ?? 'never answered'}`), 'changes not acked ok').to.deep.equal([]);
  const checked = convergingClients(clients);
  for (const channelId of channelIds) {
    const history = histories.get(channelId)!;
    const mine = changes.filter((c) => c.channelId === channelId);
    const sends = clients.flatMap((c) => c.sends).filter((s) => s.channelId === channelId && s.acked);
    for (const client of checked) {
      const what = `${client.options.tag}, channel ${channelId}`;
      const events = client.events.get(channelId)!;
      expect(events.map((e) => e.rev), `${what}: revs in arrival order`).to.deep.equal(range(events.length));
      expect(events.length, `${what}: up to the channel's latest rev`).to.equal(latestRev(history));
      expect(events.filter((e) => e.name === 'message:new').length, `${what}: one message:new per acked send`).to.equal(sends.length);
      for (const kind of CHANGE_KINDS) {
        const at = events.filter((e) => e.name === CHANGE_EVENTS[kind].event).map((e) => e.rev);
        const acked = mine.filter((c) => c.kind === kind).map((c) => c.acked!.rev).sort((x, y) => x - y);
        expect(at, `${what}: each acked ${kind} made one ${CHANGE_EVENTS[kind].event}, at its acked rev`).to.deep.equal(acked);
      }
      expectHistoryMatchesEvents(history, events);
    }
  }
}
