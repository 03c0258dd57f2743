/**
 * Shared pieces of the sync / read-state / unread tests: a client that follows the documented reconnect
 * algorithm (docs/API.md, "Reconnecting without losing messages"), pipelined senders, and exactness checks.
 */
import { expect } from 'chai';
import { io } from 'socket.io-client';
import type { Cluster } from '../../scripts/cluster.js';
import type { SyncAck, SyncChannelAck, SyncDone } from '../../shared/events.js';
import type { MessageDto } from '../../shared/models/Message.js';
import type { SendOutcome } from '../../shared/queues.js';
import type { ClientSocket, Transport } from '../support/sockets.js';
import { sleep, waitFor } from '../support/sockets.js';

export type { SyncAck, SyncChannelAck, SyncDone };

const tracked = new Set<ClientSocket>();

/**
 * A socket that starts connecting at once (so `connect` handlers registered right after the call see the
 * first connect). Tracked for closeSockets(); never reconnects by itself. `auth` may be a function, as
 * socket.io-client allows: it is called at each connection attempt.
 */
export function openSocket(
  url: string,
  token: string,
  { transport = 'websocket', auth }: { transport?: Transport; auth?: (cb: (data: object) => void) => void } = {},
): ClientSocket {
  const socket = io(url, {
    auth: auth ?? { token },
    // `default`: socket.io-client's own defaults (long-polling, then the WebSocket upgrade).
    ...(transport === 'default' ? {} : { transports: [transport] }),
    forceNew: true,
    reconnection: false,
    timeout: 10_000,
  });
  tracked.add(socket);
  return socket;
}

/** Resolves once the socket is connected; rejects on connect_error or after timeoutMs. */
export function whenConnected(socket: ClientSocket, timeoutMs = 10_000): Promise<void> {
  if (socket.connected) return Promise.resolve();
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`socket did not connect within ${timeoutMs} ms`)), timeoutMs);
    socket.once('connect', () => {
      clearTimeout(timer);
      resolve();
    });
    socket.once('connect_error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
  });
}

export async function connectSocket(url: string, token: string, transport: Transport = 'websocket'): Promise<ClientSocket> {
  const socket = openSocket(url, token, { transport });
  await whenConnected(socket);
  return socket;
}

export function closeSockets(): void {
  for (const socket of tracked) socket.close();
  tracked.clear();
}

/** The base URLs of the front nodes that are still running. */
export function liveUrls(cluster: Cluster): string[] {
  return cluster.servers.filter((p) => p.alive).map((p) => p.url!);
}

export interface SyncCall {
  /** `sync:done` for the handshake's resume, `sync` for the calls after it. */
  kind: 'handshake' | 'sync';
  request: Record<string, number>;
  ack: SyncAck;
  /** Per requested channel, the highest seq this session had received when the ack arrived. */
  maxAtAck: Record<string, number>;
}

/** One connection of a SyncClient: what it asked for and what it got. */
export interface Session {
  readonly index: number;
  readonly url: string;
  readonly socket: ClientSocket;
  /** Per channel, the client's highest seq when this session's first resume (handshake or sync) went out. */
  from: Record<string, number>;
  /** Per channel, every message:new of this session in arrival order. */
  readonly received: Map<string, MessageDto[]>;
  readonly calls: SyncCall[];
  /** Resolves when no channel has `hasMore` left (or the session was closed first); rejects on a bad ack. */
  synced: Promise<void>;
  closed: boolean;
  /** What happened on this session, in order: for failure reports. */
  readonly timeline: string[];
}

/**
 * How a SyncClient resumes after connecting (docs/API.md, "Reconnecting without losing messages"):
 * - `handshake`: it declares its marks in `auth.resume` (auth is a function, so every connect sends the
 *   current ones); the node replays before any live message of those channels and reports in `sync:done`;
 *   replay and live are in seq order, each once.
 * - `sync`: it emits `sync` first thing after `connect`; each message once, but a live message may come
 *   before the replay of older ones.
 */
export type ResumeMode = 'handshake' | 'sync';

/**
 * A client following the reconnect algorithm: it keeps per channel the highest seq received, resumes
 * from those on every connect (`mode`), and calls `sync` again for each channel whose answer says
 * `hasMore`, from that answer's latestSeq. With `sendOnResume`, it also sends (and resends) its own
 * messages the moment it has asked to resume, as a client with a queue of un-acked sends does.
 */
export class SyncClient {
  readonly lastSeq: Record<string, number> = {};
  readonly sessions: Session[] = [];
  /** Its own sends acked ok, by clientMsgId. */
  readonly ownAcked = new Map<string, MessageDto>();
  private ownSent = 0;

  constructor(
    private readonly token: string,
    readonly channelIds: string[],
    readonly options: { mode?: ResumeMode; transport?: Transport; sendOnResume?: number; tag?: string } = {},
  ) {
    for (const id of channelIds) this.lastSeq[id] = 0;
  }

  get mode(): ResumeMode {
    return this.options.mode ?? 'handshake';
  }

  get current(): Session | undefined {
    return this.sessions[this.sessions.length - 1];
  }

  /** Opens a new session on `url` (closing the current one first); resolves once connected. */
  async connect(url: string): Promise<Session> {
    this.disconnect();
    let session!: Session;
    const socket = openSocket(url, this.token, {
      transport: this.options.transport,
      auth:
        this.mode === 'handshake'
          ? (cb) => {
              // Read at the connection attempt: nothing reaches this socket before it.
              session.from = { ...this.lastSeq };
              session.timeline.push(`resume(${this.describe(session.from)})`);
              cb({ token: this.token, resume: { ...session.from } });
            }
          : undefined,
    });
    let resolveSynced!: () => void;
    let rejectSynced!: (err: unknown) => void;
    session = {
      index: this.sessions.length,
      url,
      socket,
      from: {},
      received: new Map(this.channelIds.map((id) => [id, []])),
      calls: [],
      synced: new Promise<void>((resolve, reject) => {
        resolveSynced = resolve;
        rejectSynced = reject;
      }),
      closed: false,
      timeline: [],
    };
    const short = (id: string) => `ch${this.channelIds.indexOf(id)}`;
    // Unhandled until someone awaits it; a rejection must not crash the process before that.
    session.synced.catch(() => {});
    this.sessions.push(session);
    const settle = (work: Promise<void>) =>
      work.then(resolveSynced, (err) => {
        if (session.closed) resolveSynced();
        else rejectSynced(err);
      });
    socket.on('message:new', (m: MessageDto) => {
      if (session.closed) return;
      const list = session.received.get(m.channelId);
      if (!list) throw new Error(`message:new for a channel the client does not follow: ${m.channelId}`);
      list.push(m);
      session.timeline.push(`${short(m.channelId)}:${m.seq}`);
      this.lastSeq[m.channelId] = Math.max(this.lastSeq[m.channelId], m.seq);
    });
    socket.on('disconnect', (reason) => {
      session.timeline.push(`disconnect(${reason})`);
      session.closed = true;
      resolveSynced();
    });
    if (this.mode === 'handshake') {
      socket.once('sync:done', (done: SyncDone) => {
        session.calls.push({ kind: 'handshake', request: session.from, ack: { ok: true, channels: done.channels }, maxAtAck: this.maxAt(session, session.from) });
        session.timeline.push(`sync:done(${this.describe(done.channels)})`);
        settle(this.continueSync(session, session.from, { ok: true, channels: done.channels }));
      });
      socket.on('connect', () => this.sendOwn(session));
    } else {
      socket.on('connect', () => {
        // The very first thing on connect: sync from what the client has, then its own sends at once.
        session.from = { ...this.lastSeq };
        settle(this.syncLoop(session, { ...this.lastSeq }));
        this.sendOwn(session);
      });
    }
    await whenConnected(socket);
    return session;
  }

  private describe(o: Record<string, unknown>): string {
    return Object.entries(o)
      .map(([id, v]) => `ch${this.channelIds.indexOf(id)}=${JSON.stringify(v)}`)
      .join(',');
  }

  private maxAt(session: Session, request: Record<string, number>): Record<string, number> {
    const maxAtAck: Record<string, number> = {};
    for (const id of Object.keys(request)) {
      maxAtAck[id] = (session.received.get(id) ?? []).reduce((max, m) => Math.max(max, m.seq), request[id]);
    }
    return maxAtAck;
  }

  /** Its own sends, each with a fresh clientMsgId, emitted without waiting (the ack is recorded). */
  private sendOwn(session: Session): void {
    const count = this.options.sendOnResume ?? 0;
    for (let i = 0; i < count; i++) {
      const channelId = this.channelIds[this.ownSent % this.channelIds.length];
      const clientMsgId = `${this.options.tag ?? 'client'}-${this.ownSent++}`;
      session.socket
        .timeout(20_000)
        .emitWithAck('message:send', { channelId, body: clientMsgId, clientMsgId })
        .then(
          (outcome: SendOutcome) => {
            if (outcome.ok) this.ownAcked.set(clientMsgId, outcome.message);
          },
          () => {},
        );
    }
  }

  private async syncLoop(session: Session, first: Record<string, number>): Promise<void> {
    session.timeline.push(`sync(${this.describe(first)})`);
    const ack = await this.syncCall(session, first);
    await this.continueSync(session, first, ack);
  }

  /** One `sync` call; the ack callback runs as the ack arrives, before any later packet: what it records is exact. */
  private syncCall(session: Session, request: Record<string, number>): Promise<SyncAck> {
    return new Promise<SyncAck>((resolve, reject) => {
      session.socket.timeout(20_000).emit('sync', { channels: request }, (err: Error | null, ack: SyncAck) => {
        if (err) return reject(err);
        session.calls.push({ kind: 'sync', request, ack, maxAtAck: this.maxAt(session, request) });
        session.timeline.push(ack.ok ? `ack(${this.describe(ack.channels)})` : `ack(${JSON.stringify(ack)})`);
        resolve(ack);
      });
    });
  }

  /** While an answer says `hasMore`, `sync` again from its latestSeq. */
  private async continueSync(session: Session, request: Record<string, number>, first: SyncAck): Promise<void> {
    let pending = request;
    let ack = first;
    for (;;) {
      if (!ack.ok) throw new Error(`sync refused: ${JSON.stringify(ack)}`);
      const next: Record<string, number> = {};
      for (const id of Object.keys(pending)) {
        const result = ack.channels[id];
        if (!result || 'error' in result) throw new Error(`sync of ${id} answered ${JSON.stringify(result)}`);
        if (result.hasMore && 'latestSeq' in result) next[id] = result.latestSeq;
      }
      pending = next;
      if (Object.keys(pending).length === 0) return;
      session.timeline.push(`sync(${this.describe(pending)})`);
      ack = await this.syncCall(session, pending);
    }
  }

  /** Closes the current session (if any); what it received so far stays recorded. */
  disconnect(): void {
    const session = this.current;
    if (!session || session.closed) return;
    session.closed = true;
    session.socket.close();
  }

  /** Waits until the current session reached `target` seq in every channel. */
  async caughtUp(target: Record<string, number>, timeoutMs = 15_000): Promise<void> {
    const session = this.current!;
    await session.synced;
    await waitFor(
      () => this.channelIds.every((id) => this.lastSeq[id] >= target[id]),
      timeoutMs,
      () => `client has ${JSON.stringify(this.lastSeq)}, channels are at ${JSON.stringify(target)}`,
    );
  }
}

/** `what`'s messages as `seq:id` strings: a mismatch prints readably. */
const keys = (messages: MessageDto[]) => messages.map((m) => `${m.seq}:${m.id}`);

/**
 * `received` is exactly the channel's history after `from` (complete) or its beginning (prefix): in order,
 * without duplicates or gaps, each with the stored id and body.
 */
export function expectTail(received: MessageDto[], history: MessageDto[], from: number, mode: 'complete' | 'prefix', what: string): void {
  const tail = history.filter((m) => m.seq > from);
  const expected = mode === 'complete' ? tail : tail.slice(0, received.length);
  const got = keys(received);
  const want = keys(expected);
  const at = got.findIndex((k, i) => k !== want[i]);
  const context = (list: string[]) => list.slice(Math.max(0, at - 3), at + 4).join(' ');
  expect(got, `${what}: first difference at #${at}: received … ${context(got)} …, expected … ${context(want)} …`).to.deep.equal(want);
  expect(received.map((m) => m.body), `${what}: bodies`).to.deep.equal(expected.map((m) => m.body));
}

/**
 * For a client that resumes with `sync` after connecting: `received` holds each message of the history
 * after `from` exactly once (all of them when `complete`; for a session cut short, a set with nothing
 * outside the history and no duplicate), and the replayed ones, those below the first live one, in order.
 */
export function expectExactlyOnce(received: MessageDto[], history: MessageDto[], from: number, mode: 'complete' | 'prefix', what: string): void {
  const seqs = received.map((m) => m.seq);
  const duplicates = seqs.filter((s, i) => seqs.indexOf(s) !== i);
  expect(duplicates, `${what}: received twice (arrival order ${seqs.join(' ')})`).to.deep.equal([]);
  const bySeq = new Map(history.map((m) => [m.seq, m]));
  for (const m of received) {
    expect(m.seq, `${what}: seq ${m.seq} is not after the resume mark`).to.be.above(from);
    expect(bySeq.get(m.seq)?.id, `${what}: seq ${m.seq} is the stored message`).to.equal(m.id);
    expect(bySeq.get(m.seq)?.body, `${what}: seq ${m.seq} body`).to.equal(m.body);
  }
  if (mode === 'complete') {
    const want = history.filter((m) => m.seq > from).map((m) => m.seq);
    expect([...seqs].sort((a, b) => a - b), `${what}: every message after the mark (arrival order ${seqs.join(' ')})`).to.deep.equal(want);
  }
}

/**
 * Checks the acks of a session against what it received: `replayed` never exceeds the limit, `hasMore`
 * only with a full page, and everything up to `latestSeq` had arrived before the ack (replay before ack).
 */
export function expectSaneAcks(session: Session, replayLimit: number, what: string): void {
  for (const [i, call] of session.calls.entries()) {
    expect(call.ack.ok, `${what}, sync #${i}`).to.equal(true);
    if (!call.ack.ok) continue;
    for (const [id, lastSeq] of Object.entries(call.request)) {
      const r = call.ack.channels[id];
      const label = `${what}, sync #${i}, channel ${id}: ${JSON.stringify(r)} for lastSeq ${lastSeq}`;
      expect(r, label).to.have.all.keys('replayed', 'latestSeq', 'latestRev', 'hasMore');
      if ('error' in r || !('latestSeq' in r)) continue;
      expect(r.replayed, label).to.be.within(0, replayLimit);
      expect(r.latestSeq, label).to.be.at.least(lastSeq + r.replayed);
      if (r.hasMore) {
        // A full page; what this socket already had live is in it but not sent again, nor counted.
        expect(r.latestSeq, label).to.equal(lastSeq + replayLimit);
        if (call.kind === 'handshake') expect(r.replayed, label).to.equal(replayLimit);
      }
      expect(call.maxAtAck[id], `${label}: the ack came before messages up to latestSeq`).to.be.at.least(r.latestSeq);
    }
  }
}

/**
 * A user sending into channels continuously: `window` sends in flight at any time, round-robin over the
 * channels, until stop(). Failed sends (its node going away) end its loop; the stored history is the truth.
 */
export class PipelinedSender {
  private stopped = false;
  private loops: Promise<void>[] = [];
  private next = 0;
  readonly acked: MessageDto[] = [];
  readonly failures: string[] = [];

  constructor(
    readonly socket: ClientSocket,
    private readonly channelIds: string[],
    private readonly tag: string,
    private readonly window = 3,
  ) {}

  start(): void {
    this.stopped = false;
    this.loops = Array.from({ length: this.window }, () => this.loop());
  }

  private async loop(): Promise<void> {
    while (!this.stopped && this.socket.connected) {
      const n = this.next++;
      const channelId = this.channelIds[n % this.channelIds.length];
      try {
        const outcome = (await this.socket
          .timeout(20_000)
          .emitWithAck('message:send', { channelId, body: `${this.tag} #${n}`, clientMsgId: `${this.tag}-${n}` })) as SendOutcome;
        if (outcome.ok) this.acked.push(outcome.message);
        else this.failures.push(JSON.stringify(outcome.error));
      } catch (err) {
        this.failures.push(String(err));
        return;
      }
    }
  }

  /** Stops sending and waits for the sends in flight. */
  async stop(): Promise<void> {
    this.stopped = true;
    await Promise.all(this.loops);
  }
}

/** Sends `count` messages into `channelId`, `window` at a time; resolves with the stored messages in seq order. */
export async function sendMany(socket: ClientSocket, channelId: string, count: number, tag: string, window = 10): Promise<MessageDto[]> {
  const out: MessageDto[] = [];
  for (let i = 0; i < count; i += window) {
    const batch = Array.from({ length: Math.min(window, count - i) }, (_, k) => i + k);
    const outcomes = await Promise.all(
      batch.map(
        (n) =>
          socket
            .timeout(20_000)
            .emitWithAck('message:send', { channelId, body: `${tag} #${n}`, clientMsgId: `${tag}-${n}` }) as Promise<SendOutcome>,
      ),
    );
    for (const o of outcomes) {
      if (!o.ok) throw new Error(`send refused: ${JSON.stringify(o.error)}`);
      out.push(o.message);
    }
  }
  return out.sort((a, b) => a.seq - b.seq);
}

/** Every `event` a socket receives, in arrival order. */
export function record<T = any>(socket: ClientSocket, event: string): T[] {
  const seen: T[] = [];
  socket.on(event, (payload: T) => seen.push(payload));
  return seen;
}

export { sleep, waitFor };
