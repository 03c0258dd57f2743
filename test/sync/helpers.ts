/**
 * Shared pieces of the sync / read-state / unread tests: a client that follows the documented reconnect
 * algorithm (docs/API.md, "Reconnecting without losing messages"), pipelined senders, and exactness checks.
 */
import { expect } from 'chai';
import { io } from 'socket.io-client';
import type { Cluster } from '../../scripts/cluster.js';
import type { SyncAck, SyncChannelAck } from '../../shared/events.js';
import type { MessageDto } from '../../shared/models/Message.js';
import type { SendOutcome } from '../../shared/queues.js';
import type { ClientSocket } from '../support/sockets.js';
import { sleep, waitFor } from '../support/sockets.js';

export type { SyncAck, SyncChannelAck };

const tracked = new Set<ClientSocket>();

/**
 * A socket that starts connecting at once (so `connect` handlers registered right after the call see the
 * first connect). Tracked for closeSockets(); never reconnects by itself.
 */
export function openSocket(url: string, token: string): ClientSocket {
  const socket = io(url, {
    auth: { token },
    transports: ['websocket'],
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

export async function connectSocket(url: string, token: string): Promise<ClientSocket> {
  const socket = openSocket(url, token);
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
  /** Per channel, the client's highest seq when this session's first sync went out. */
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
 * A client following the reconnect algorithm: it keeps per channel the highest seq received; on every
 * connect its first emit is `sync` with those, and it calls `sync` again for each channel whose ack says
 * `hasMore`, from that ack's latestSeq.
 */
export class SyncClient {
  readonly lastSeq: Record<string, number> = {};
  readonly sessions: Session[] = [];

  constructor(
    private readonly token: string,
    readonly channelIds: string[],
  ) {
    for (const id of channelIds) this.lastSeq[id] = 0;
  }

  get current(): Session | undefined {
    return this.sessions[this.sessions.length - 1];
  }

  /** Opens a new session on `url` (closing the current one first); resolves once connected. */
  async connect(url: string): Promise<Session> {
    this.disconnect();
    const socket = openSocket(url, this.token);
    let resolveSynced!: () => void;
    let rejectSynced!: (err: unknown) => void;
    const session: Session = {
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
    socket.on('connect', () => {
      // The very first thing on connect: sync from what the client has.
      session.from = { ...this.lastSeq };
      this.syncLoop(session, { ...this.lastSeq }).then(resolveSynced, (err) => {
        if (session.closed) resolveSynced();
        else rejectSynced(err);
      });
    });
    await whenConnected(socket);
    return session;
  }

  private async syncLoop(session: Session, first: Record<string, number>): Promise<void> {
    let pending = first;
    const short = (id: string) => `ch${this.channelIds.indexOf(id)}`;
    const describe = (o: Record<string, unknown>) => Object.entries(o).map(([id, v]) => `${short(id)}=${JSON.stringify(v)}`).join(',');
    while (Object.keys(pending).length > 0) {
      session.timeline.push(`sync(${describe(pending)})`);
      const request = pending;
      // The ack callback runs as the ack arrives, before any later packet: what it records is exact.
      const ack = await new Promise<SyncAck>((resolve, reject) => {
        session.socket.timeout(20_000).emit('sync', { channels: request }, (err: Error | null, ack: SyncAck) => {
          if (err) return reject(err);
          const maxAtAck: Record<string, number> = {};
          for (const id of Object.keys(request)) {
            maxAtAck[id] = (session.received.get(id) ?? []).reduce((max, m) => Math.max(max, m.seq), request[id]);
          }
          session.calls.push({ request, ack, maxAtAck });
          session.timeline.push(ack.ok ? `ack(${describe(ack.channels)})` : `ack(${JSON.stringify(ack)})`);
          resolve(ack);
        });
      });
      if (!ack.ok) throw new Error(`sync refused: ${JSON.stringify(ack)}`);
      const next: Record<string, number> = {};
      for (const id of Object.keys(pending)) {
        const result = ack.channels[id];
        if (!result || 'error' in result) throw new Error(`sync of ${id} answered ${JSON.stringify(result)}`);
        if (result.hasMore) next[id] = result.latestSeq;
      }
      pending = next;
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
      expect(r, label).to.have.all.keys('replayed', 'latestSeq', 'hasMore');
      if ('error' in r) continue;
      expect(r.replayed, label).to.be.within(0, replayLimit);
      expect(r.latestSeq, label).to.be.at.least(lastSeq + r.replayed);
      if (r.hasMore) {
        expect(r.replayed, label).to.equal(replayLimit);
        expect(r.latestSeq, label).to.equal(lastSeq + r.replayed);
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
