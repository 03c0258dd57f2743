/**
 * Unit tests of Delivery (server/realtime/delivery.ts), the seam between a socket's replay and live
 * delivery, and of SeqSet (server/realtime/seqSet.ts), its memory of what each socket was sent.
 *
 * The Socket.IO server is a fake with exactly what Delivery touches: `io.of('/').adapter.rooms` (room →
 * socket ids) and `io.local.to(room).except(ids).emit(event, message)`, which reaches every socket in the
 * room but the excepted ones, like Socket.IO's (a socket id is a room of its own socket). Sockets are
 * `{id, emit}` recording what they received (every event kind, under its own name). One test at the end
 * checks the fake against a real Socket.IO server and client. The replay source is a fake whose promises
 * the test settles (messagesAfter for a resume by seq, eventsAfter for a resume by `{rev}`), so live
 * events can be interleaved with a pending replay. Most ported scenarios use `message:new` events whose
 * rev equals the message's seq, so their revs read as the seqs they were written with.
 */
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { expect } from 'chai';
import fc from 'fast-check';
import { Server } from 'socket.io';
import { io as connectClient } from 'socket.io-client';
import { eventRev, type ChannelEvent, type ResumePoint } from '../../shared/events.js';
import type { Logger } from '../../shared/logger.js';
import type { MessageDto } from '../../shared/models/Message.js';
import { Delivery, type ReplaySource, type SyncChannelResult } from '../../server/realtime/delivery.js';
import { SeqSet } from '../../server/realtime/seqSet.js';
import { ev, message, msg, msgs } from './events.js';
import type { IoServer, IoSocket } from '../../server/realtime/types.js';
import { propertyRuns, propertySeed } from '../support/properties.js';

const range = (from: number, to: number) => Array.from({ length: Math.max(0, to - from + 1) }, (_, i) => from + i);

type Row = { message: MessageDto; createdRev: number };
type MessagesPage = { messages: Row[]; latestRev: number };

/**
 * What messagesAfter() answers: the messages (a seq alone is a message created at rev = seq, never
 * changed), and the channel's latest rev as of the read.
 */
function page(rows: Array<number | Row>, latestRev: number, channelId = 'c1'): MessagesPage {
  return {
    messages: rows.map((r) => (typeof r === 'number' ? { message: message(r, channelId), createdRev: r } : r)),
    latestRev,
  };
}

type Received = { event: string; payload: { channelId: string; rev: number } };

class FakeSocket {
  readonly received: Received[] = [];
  /** Whether the server closed its connection (the client would reconnect and resume). */
  closed = false;
  readonly conn = { close: () => void (this.closed = true) };
  /** As the handshake leaves it: each channel's rev read with the memberships. */
  readonly data: { channelRevs?: Record<string, number> } = {};
  constructor(readonly id: string) {}
  emit(event: string, payload: Received['payload']): boolean {
    expect(['message:new', 'message:updated', 'message:deleted', 'reaction:added', 'reaction:removed']).to.include(event);
    this.received.push({ event, payload });
    return true;
  }
  private of(channelId: string): Received[] {
    return this.received.filter((r) => r.payload.channelId === channelId);
  }
  /** Revs received for `channelId`, in order (for message:new of a new message, its seq). */
  revs(channelId = 'c1'): number[] {
    return this.of(channelId).map((r) => r.payload.rev);
  }
  /** `event@rev` of each event received for `channelId`, in order. */
  named(channelId = 'c1'): string[] {
    return this.of(channelId).map((r) => `${r.event}@${r.payload.rev}`);
  }
  /** What it received for `channelId`, as events. */
  events(channelId = 'c1'): ChannelEvent[] {
    return this.of(channelId).map((r) => ({ name: r.event, payload: r.payload }) as ChannelEvent);
  }
}

class FakeIo {
  readonly rooms = new Map<string, Set<string>>();
  readonly sockets = new Map<string, FakeSocket>();
  /** Every room broadcast: one serialisation for all its receivers. */
  readonly broadcasts: Array<{ room: string; except: string[]; event: string; rev: number }> = [];

  of(nsp: string) {
    expect(nsp).to.equal('/');
    return { adapter: { rooms: this.rooms } };
  }

  get local() {
    return {
      to: (room: string) => {
        const emitTo = (except: string[]) => ({
          emit: (event: string, payload: Received['payload']) => {
            this.broadcasts.push({ room, except, event, rev: payload.rev });
            for (const id of this.rooms.get(room) ?? []) {
              if (except.some((r) => r === id || this.rooms.get(r)?.has(id))) continue;
              this.sockets.get(id)!.emit(event, payload);
            }
            return true;
          },
        });
        return { ...emitTo([]), except: (ids: string | string[]) => emitTo(Array.isArray(ids) ? ids : [ids]) };
      },
    };
  }

  /** A connected socket in the given channels' rooms (and its own). */
  connect(id: string, channelIds: string[] = ['c1']): FakeSocket {
    const socket = new FakeSocket(id);
    this.sockets.set(id, socket);
    for (const room of [id, ...channelIds.map((c) => `channel:${c}`)]) this.join(id, room);
    return socket;
  }

  join(id: string, room: string): void {
    if (!this.rooms.has(room)) this.rooms.set(room, new Set());
    this.rooms.get(room)!.add(id);
  }
}

interface ReplayCall {
  /** messagesAfter (resume by seq) or eventsAfter (resume by rev). */
  readonly kind: 'messages' | 'events';
  readonly channelId: string;
  /** afterSeq or afterRev. */
  readonly after: number;
  readonly limit: number;
  settled: boolean;
  resolve(answer: MessagesPage | ChannelEvent[]): void;
  reject(err: unknown): void;
}

/** A replay source whose answers the test gives, when it chooses. */
class FakeReplay implements ReplaySource {
  readonly calls: ReplayCall[] = [];
  messagesAfter(channelId: string, afterSeq: number, limit: number): Promise<MessagesPage> {
    return this.call('messages', channelId, afterSeq, limit, (answer) => {
      expect(answer, 'messagesAfter answers a page').to.not.be.an('array');
      return answer as MessagesPage;
    });
  }
  eventsAfter(channelId: string, afterRev: number, limit: number): Promise<ChannelEvent[]> {
    return this.call('events', channelId, afterRev, limit, (answer) => {
      expect(answer, 'eventsAfter answers events').to.be.an('array');
      return answer as ChannelEvent[];
    });
  }
  private call<T>(kind: ReplayCall['kind'], channelId: string, after: number, limit: number, check: (a: MessagesPage | ChannelEvent[]) => T): Promise<T> {
    return new Promise((resolve, reject) => {
      const call: ReplayCall = {
        kind,
        channelId,
        after,
        limit,
        settled: false,
        resolve: (answer) => {
          call.settled = true;
          resolve(check(answer));
        },
        reject: (e) => {
          call.settled = true;
          reject(e);
        },
      };
      this.calls.push(call);
    });
  }
  /** The one pending call; fails the test if there is not exactly one. */
  only(): ReplayCall {
    const pending = this.calls.filter((c) => !c.settled);
    expect(pending, 'pending replays').to.have.length(1);
    return pending[0];
  }
}

const flush = async () => {
  for (let i = 0; i < 3; i++) await new Promise<void>((r) => setImmediate(r));
};

function setup(replayLimit = 1000) {
  const io = new FakeIo();
  const replay = new FakeReplay();
  const delivery = new Delivery(io as unknown as IoServer, {
    replay,
    replayLimit,
    refillRetryMs: [1],
    logger: { warn() {}, error() {}, info() {}, debug() {} } as unknown as Logger,
  });
  const internals = delivery as unknown as { gates: Map<string, Map<string, { mode: string }>>; tracks: Map<string, unknown> };
  /** The socket's gate mode for the channel, if it has one. */
  const gate = (socket: FakeSocket, channelId = 'c1') => internals.gates.get(channelId)?.get(socket.id)?.mode;
  const connect = (id: string, channelIds?: string[], channelRevs?: Record<string, number>) => {
    const socket = io.connect(id, channelIds);
    if (channelRevs) socket.data.channelRevs = channelRevs;
    delivery.register(socket as unknown as IoSocket);
    return socket;
  };
  /** Starts a sync; the result (or error) lands in the returned object. */
  const sync = (
    socket: FakeSocket,
    points: Record<string, ResumePoint>,
    isMember: (ids: string[]) => Promise<Set<string>> = async (ids) => new Set(ids),
  ) => {
    const out: { done: boolean; results?: Map<string, SyncChannelResult>; error?: unknown } = { done: false };
    delivery
      .sync(socket as unknown as IoSocket, new Map(Object.entries(points)), isMember)
      .then((results) => Object.assign(out, { done: true, results }), (error) => Object.assign(out, { done: true, error }));
    return out;
  };
  return { io, replay, delivery, internals, gate, connect, sync };
}

describe('unit: SeqSet', () => {
  it('When seqs are added in order, then they form one range and has() answers for each', () => {
    const s = new SeqSet();
    for (const seq of range(1, 5)) s.add(seq);
    expect(s.toRanges()).to.deep.equal([[1, 5]]);
    for (const seq of range(1, 5)) expect(s.has(seq)).to.equal(true);
    expect(s.has(0)).to.equal(false);
    expect(s.has(6)).to.equal(false);
  });

  it('When seqs are added out of order, then ranges stay sorted and disjoint, and a seq filling a hole merges its neighbours', () => {
    const s = new SeqSet();
    for (const seq of [10, 5, 1, 7]) s.add(seq);
    expect(s.toRanges()).to.deep.equal([[1, 1], [5, 5], [7, 7], [10, 10]]);
    expect([0, 1, 2, 4, 5, 6, 7, 8, 9, 10, 11].map((x) => s.has(x))).to.deep.equal([
      false, true, false, false, true, false, true, false, false, true, false,
    ]);
    s.add(6); // joins both sides
    expect(s.toRanges()).to.deep.equal([[1, 1], [5, 7], [10, 10]]);
    s.add(9); // joins the right only
    expect(s.toRanges()).to.deep.equal([[1, 1], [5, 7], [9, 10]]);
    s.add(2); // joins the left only, in an older range
    expect(s.toRanges()).to.deep.equal([[1, 2], [5, 7], [9, 10]]);
    s.add(8);
    s.add(4);
    s.add(3);
    expect(s.toRanges()).to.deep.equal([[1, 10]]);
  });

  it('When a seq is added again, then nothing changes', () => {
    const s = new SeqSet();
    for (const seq of [3, 4, 5, 9]) s.add(seq);
    for (const seq of [3, 4, 5, 9, 4]) s.add(seq);
    expect(s.toRanges()).to.deep.equal([[3, 5], [9, 9]]);
  });

  it('When any sequence of seqs is added, then has() agrees with a plain set and the ranges are sorted, disjoint and non-adjacent (property)', () => {
    fc.assert(
      fc.property(fc.array(fc.integer({ min: 1, max: 60 }), { maxLength: 80 }), (seqs) => {
        const s = new SeqSet();
        const model = new Set<number>();
        for (const seq of seqs) {
          s.add(seq);
          model.add(seq);
        }
        for (let x = 0; x <= 61; x++) expect(s.has(x), `has(${x}) after ${seqs}`).to.equal(model.has(x));
        const ranges = s.toRanges();
        for (let i = 0; i < ranges.length; i++) {
          expect(ranges[i][0]).to.be.at.most(ranges[i][1]);
          if (i > 0) expect(ranges[i][0], `ranges ${JSON.stringify(ranges)}`).to.be.greaterThan(ranges[i - 1][1] + 1);
        }
      }),
      { seed: propertySeed(20_261_128), numRuns: propertyRuns(500) },
    );
  });
});

describe('unit: Delivery', () => {
  describe('live delivery', () => {
    it('When messages of a channel are delivered, then each socket in its room gets each once, in order, with one broadcast per message, and sockets outside it get nothing', () => {
      const { io, delivery, connect } = setup();
      const a = connect('a');
      const b = connect('b');
      const outside = connect('x', ['c2']);
      delivery.deliver(msgs([1, 2, 3]));
      delivery.deliver(msgs([4]));
      delivery.deliver(msgs([1], 'nobody-here'));
      expect(a.revs()).to.deep.equal([1, 2, 3, 4]);
      expect(b.revs()).to.deep.equal([1, 2, 3, 4]);
      expect(outside.received).to.deep.equal([]);
      expect(io.broadcasts.map((x) => x.rev)).to.deep.equal([1, 2, 3, 4]);
      expect(io.broadcasts.every((x) => x.except.length === 0)).to.equal(true);
    });
  });

  describe('sync', () => {
    it('When live messages arrive while the replay is pending, then they are held and sent after it, only those beyond it, in seq order, each once', async () => {
      const { delivery, replay, connect, sync, gate } = setup();
      const s = connect('s');
      const other = connect('other');
      const run = sync(s, { c1: 3 });
      await flush();
      const call = replay.only();
      expect(call).to.include({ kind: 'messages', channelId: 'c1', after: 3, limit: 1001 });

      delivery.deliver(msgs([6]));
      delivery.deliver(msgs([7, 8]));
      expect(s.received, 'held behind the replay').to.deep.equal([]);
      expect(other.revs(), 'other sockets are not held').to.deep.equal([6, 7, 8]);
      expect(gate(s)).to.equal('buffer');

      call.resolve(page([4, 5, 6, 7], 7)); // the replay read 6 and 7 too
      await flush();
      expect(run.results?.get('c1')).to.deep.equal({ replayed: 4, latestSeq: 8, latestRev: 8, hasMore: false });
      expect(s.revs()).to.deep.equal([4, 5, 6, 7, 8]);
      expect(gate(s)).to.equal('floor');
    });

    it('When late live copies at or below the floor arrive after the gate closed, then they are dropped, and the first message beyond it returns the socket to the fast path', async () => {
      const { io, delivery, replay, connect, sync, gate, internals } = setup();
      const s = connect('s');
      const run = sync(s, { c1: 0 });
      await flush();
      replay.only().resolve(page([1, 2, 3, 4], 4));
      await flush();
      expect(run.results?.get('c1')).to.deep.equal({ replayed: 4, latestSeq: 4, latestRev: 4, hasMore: false });

      // The sequencer's copies of what the replay read from PostgreSQL first.
      delivery.deliver(msgs([3, 4]));
      expect(s.revs()).to.deep.equal([1, 2, 3, 4]);
      expect(gate(s)).to.equal('floor');
      delivery.deliver(msgs([5]));
      delivery.deliver(msgs([6]));
      expect(s.revs()).to.deep.equal([1, 2, 3, 4, 5, 6]);
      expect(gate(s)).to.equal(undefined);
      expect(internals.gates.size, 'no empty per-channel map is left').to.equal(0);
      expect(io.broadcasts.slice(-1)[0].except, 'back on the shared broadcast').to.deep.equal([]);
    });

    it('When a socket syncs after it got messages live, then they are not sent again or counted in replayed, while latestSeq covers the whole page', async () => {
      const { delivery, replay, connect, sync } = setup();
      const s = connect('s');
      delivery.deliver(msgs([1, 2, 3, 4, 5]));
      const run = sync(s, { c1: 2 });
      await flush();
      replay.only().resolve(page([3, 4, 5, 6], 6));
      await flush();
      expect(run.results?.get('c1')).to.deep.equal({ replayed: 1, latestSeq: 6, latestRev: 6, hasMore: false });
      expect(s.revs()).to.deep.equal([1, 2, 3, 4, 5, 6]);
      expect(s.named(), 'nothing as message:updated: their latest revs were sent already').to.deep.equal(range(1, 6).map((r) => `message:new@${r}`));
    });

    it('When the replay is empty but live messages arrived while it ran, then they are sent and latestSeq is the last of them', async () => {
      const { delivery, replay, connect, sync } = setup();
      const s = connect('s');
      const run = sync(s, { c1: 5 });
      await flush();
      delivery.deliver(msgs([4, 5, 6])); // the client already had 4 and 5 (from another node)
      replay.only().resolve(page([], 5)); // read before 6 was committed
      await flush();
      expect(s.revs()).to.deep.equal([6]);
      expect(run.results?.get('c1')).to.deep.equal({ replayed: 0, latestSeq: 6, latestRev: 6, hasMore: false });
    });

    it('When the replay hits its limit (hasMore), then live messages of that channel are dropped until the next sync, which continues without gap or duplicate', async () => {
      const { delivery, replay, connect, sync, gate } = setup(3);
      const s = connect('s', ['c1', 'c2']);
      const other = connect('other');
      const first = sync(s, { c1: 0 });
      await flush();
      const call = replay.only();
      expect(call.limit, 'one more than the limit, to know whether there is more').to.equal(4);
      call.resolve(page([1, 2, 3, 4], 4));
      await flush();
      expect(first.results?.get('c1')).to.deep.equal({ replayed: 3, latestSeq: 3, latestRev: 4, hasMore: true });
      expect(s.revs()).to.deep.equal([1, 2, 3]);
      expect(gate(s)).to.equal('paused');

      delivery.deliver(msgs([6]));
      delivery.deliver(msgs([1], 'c2'));
      expect(s.revs(), 'dropped while paused').to.deep.equal([1, 2, 3]);
      expect(other.revs()).to.deep.equal([6]);
      expect(s.revs('c2'), 'other channels are not paused').to.deep.equal([1]);

      const second = sync(s, { c1: 3 });
      await flush();
      const next = replay.only();
      expect(next).to.include({ kind: 'messages', channelId: 'c1', after: 3 });
      expect(gate(s), 'the next sync buffers again').to.equal('buffer');
      delivery.deliver(msgs([7]));
      next.resolve(page([4, 5, 6], 6));
      await flush();
      expect(second.results?.get('c1')).to.deep.equal({ replayed: 3, latestSeq: 7, latestRev: 7, hasMore: false });
      delivery.deliver(msgs([7]));
      delivery.deliver(msgs([8]));
      expect(s.revs()).to.deep.equal(range(1, 8));
    });

    it('When isMember excludes a channel, then nothing of it is replayed, its gate is dropped, and its held live messages are not sent', async () => {
      const { delivery, replay, connect, sync, internals } = setup();
      const s = connect('s', ['c1', 'c2']);
      let allow!: (ids: Set<string>) => void;
      const run = sync(s, { c1: 0, c2: 0 }, () => new Promise((r) => (allow = r)));
      await flush();
      delivery.deliver(msgs([1], 'c2'));
      expect(s.revs('c2'), 'held while membership is checked').to.deep.equal([]);
      allow(new Set(['c1']));
      await flush();
      expect(replay.only().channelId).to.equal('c1');
      replay.only().resolve(page([], 0));
      await flush();
      expect(internals.gates.has('c2'), 'the non-member channel has no gate').to.equal(false);
      expect([...run.results!.keys()]).to.deep.equal(['c1']);
      expect(s.revs('c2')).to.deep.equal([]);
      expect(replay.calls.map((c) => c.channelId)).to.deep.equal(['c1']);
    });

    it('When isMember throws, then the sync rejects, nothing held is sent past what the client has, live events wait until a sync succeeds, and a channel it is not in never leaks', async () => {
      const { io, delivery, replay, connect, sync, gate } = setup();
      const s = connect('s', ['c1']);
      connect('t', ['c2']);
      io.join('s', 'channel:c3'); // a room the socket is in, but not registered for syncing
      let fail!: (err: Error) => void;
      const run = sync(s, { c1: 0, c2: 0 }, () => new Promise((_, reject) => (fail = reject)));
      await flush();
      delivery.deliver(msgs([1, 2], 'c1'));
      delivery.deliver(msgs([1], 'c2'));
      expect(s.received).to.deep.equal([]);
      fail(new Error('PostgreSQL down'));
      await flush();
      expect((run.error as Error).message).to.equal('PostgreSQL down');
      expect(s.received, 'held events are not sent: the client never had what comes before them').to.deep.equal([]);
      expect([gate(s, 'c1'), gate(s, 'c2')]).to.deep.equal(['paused', 'paused']);
      delivery.deliver(msgs([3], 'c1'));
      expect(s.received, 'paused until a sync succeeds').to.deep.equal([]);
      const again = sync(s, { c1: 0 });
      await flush();
      replay.only().resolve(page([1, 2, 3], 3));
      await flush();
      expect(again.results!.get('c1')).to.deep.equal({ replayed: 3, latestSeq: 3, latestRev: 3, hasMore: false });
      delivery.deliver(msgs([4], 'c1'));
      delivery.deliver(msgs([2], 'c2'));
      expect(s.revs('c1'), 'back on live delivery').to.deep.equal([1, 2, 3, 4]);
      expect(s.revs('c2'), 'never a message of a room it is not in').to.deep.equal([]);
    });

    it('When a replay fails, then that channel and the ones after it send nothing held and are paused until a sync of them succeeds, while channels replayed before keep their floor', async () => {
      const { delivery, replay, connect, sync, gate } = setup();
      const s = connect('s', ['c1', 'c2', 'c3']);
      const run = sync(s, { c1: 0, c2: 0, c3: 0 });
      await flush();
      delivery.deliver(msgs([3], 'c2'));
      delivery.deliver(msgs([5], 'c3'));
      replay.only().resolve(page([1, 2], 2, 'c1'));
      await flush();
      replay.only().reject(new Error('query failed'));
      await flush();
      expect((run.error as Error).message).to.equal('query failed');
      expect(s.revs('c1')).to.deep.equal([1, 2]);
      expect(s.revs('c2'), 'not 3 without 1 and 2').to.deep.equal([]);
      expect(s.revs('c3')).to.deep.equal([]);
      expect([gate(s, 'c1'), gate(s, 'c2'), gate(s, 'c3')]).to.deep.equal(['floor', 'paused', 'paused']);
      delivery.deliver(msgs([4], 'c2'));
      const again = sync(s, { c2: 0, c3: 0 });
      await flush();
      replay.only().resolve(page([1, 2, 3, 4], 4, 'c2'));
      await flush();
      replay.only().resolve(page([1, 2, 3, 4, 5], 5, 'c3'));
      await flush();
      expect(again.done).to.equal(true);
      expect(s.revs('c2')).to.deep.equal([1, 2, 3, 4]);
      expect(s.revs('c3')).to.deep.equal([1, 2, 3, 4, 5]);
    });

    it('When the socket disconnects (forget) during its sync, then the late replay sends nothing and leaves no gate or record behind', async () => {
      const { delivery, replay, connect, sync, internals, io } = setup(2);
      const s = connect('s', ['c1', 'c2']);
      const t = connect('t', ['c1']);
      const run = sync(s, { c1: 0, c2: 0 });
      await flush();
      delivery.deliver(msgs([1]));
      delivery.forget(s as unknown as IoSocket);
      io.rooms.get('channel:c1')!.delete('s');
      io.rooms.get('channel:c2')!.delete('s');
      expect(internals.gates.size).to.equal(0);
      expect(internals.tracks.has('s')).to.equal(false);

      replay.only().resolve(page([1, 2, 3], 3)); // hasMore: would pause
      await flush();
      replay.only().resolve(page([1], 1, 'c2')); // would leave a floor
      await flush();
      expect(run.done).to.equal(true);
      expect(s.received).to.deep.equal([]);
      expect(internals.gates.size, 'no gate for a socket that is gone').to.equal(0);
      expect(internals.tracks.has('s')).to.equal(false);
      delivery.deliver(msgs([2]));
      expect(t.revs()).to.deep.equal([1, 2]);
    });

    it('When a sync starts only after forget() (one the socket queued behind another before disconnecting), then it sends nothing and leaves no gate behind', async () => {
      const { delivery, replay, connect, sync, internals, io } = setup(2);
      const s = connect('s', ['c1', 'c2']);
      delivery.forget(s as unknown as IoSocket);
      for (const room of io.rooms.values()) room.delete('s');

      const run = sync(s, { c1: 0, c2: 0 });
      await flush();
      expect(replay.only().channelId).to.equal('c1');
      replay.only().resolve(page([1, 2, 3], 3)); // hasMore: a paused gate
      await flush();
      expect(replay.only().channelId).to.equal('c2');
      replay.only().resolve(page([], 0)); // a floor gate
      await flush();
      expect(run.done).to.equal(true);
      expect(s.received).to.deep.equal([]);
      // A paused gate (hasMore) is never dropped by live delivery: it would stay for the node's lifetime.
      expect([...internals.gates.keys()], 'gates of a socket that is gone').to.deep.equal([]);
    });
  });

  describe('holes in what a socket has', () => {
    it('When a live event comes past a hole (a publish this node missed, with no sequencer fill), then the sockets that had what came before get nothing past it until the missing events are read, once for all, and then every rev in order, once, back on the fast path', async () => {
      const { io, delivery, replay, connect, gate } = setup();
      const a = connect('a');
      const b = connect('b');
      delivery.deliver(msgs([1, 2]));
      delivery.deliver(msgs([5]));
      delivery.deliver([ev('reaction:added', 6)]);
      expect(a.revs(), 'nothing past the hole').to.deep.equal([1, 2]);
      expect([gate(a), gate(b)]).to.deep.equal(['buffer', 'buffer']);
      await flush();
      const call = replay.only();
      expect(call, 'one read for both sockets').to.include({ kind: 'events', channelId: 'c1', after: 2, limit: 1001 });
      call.resolve([msg(3), msg(4), msg(5)]);
      await flush();
      for (const s of [a, b]) expect(s.named()).to.deep.equal([...[1, 2, 3, 4, 5].map((r) => `message:new@${r}`), 'reaction:added@6']);
      delivery.deliver(msgs([7]));
      expect(a.revs()).to.deep.equal([1, 2, 3, 4, 5, 6, 7]);
      expect(io.broadcasts.at(-1), 'back on the shared broadcast').to.deep.include({ rev: 7, except: [] });
    });

    it('When a socket that just resumed by rev gets a live event past a hole (a node that started without a baseline), then the hole is filled from its floor before the event', async () => {
      const { delivery, replay, connect, sync } = setup();
      const s = connect('s');
      const run = sync(s, { c1: { rev: 0 } });
      await flush();
      replay.only().resolve([msg(1), msg(2)]);
      await flush();
      expect(run.results!.get('c1')).to.deep.equal({ replayed: 2, latestRev: 2, hasMore: false });
      delivery.deliver(msgs([4]));
      expect(s.revs()).to.deep.equal([1, 2]);
      await flush();
      expect(replay.only()).to.include({ kind: 'events', after: 2 });
      replay.only().resolve([msg(3), msg(4)]);
      await flush();
      expect(s.revs()).to.deep.equal([1, 2, 3, 4]);
    });

    it('When events held behind a replay start past a hole, then the ack stops before the hole and the hole is filled next, in rev order', async () => {
      const { delivery, replay, connect, sync, gate } = setup();
      const s = connect('s');
      const run = sync(s, { c1: { rev: 0 } });
      await flush();
      delivery.deliver(msgs([4, 5]));
      replay.only().resolve([msg(1), msg(2)]);
      await flush();
      expect(run.results!.get('c1')).to.deep.equal({ replayed: 2, latestRev: 2, hasMore: false });
      expect(s.revs()).to.deep.equal([1, 2]);
      expect(gate(s)).to.equal('buffer');
      expect(replay.only()).to.include({ kind: 'events', after: 2 });
      replay.only().resolve([msg(3), msg(4)]);
      await flush();
      expect(s.revs(), '5 was held, 3 and 4 read').to.deep.equal([1, 2, 3, 4, 5]);
      expect(gate(s)).to.equal('floor');
    });

    it('When the read of a hole fails, then the socket still gets nothing past it and the read is tried again until it succeeds', async () => {
      const { delivery, replay, connect } = setup();
      const s = connect('s');
      delivery.deliver(msgs([1]));
      delivery.deliver(msgs([3]));
      await flush();
      replay.only().reject(new Error('PostgreSQL down'));
      delivery.deliver(msgs([4]));
      await new Promise((r) => setTimeout(r, 10));
      expect(s.revs()).to.deep.equal([1]);
      expect(replay.only(), 'tried again').to.include({ after: 1 });
      replay.only().resolve([msg(2), msg(3)]);
      await flush();
      expect(s.revs()).to.deep.equal([1, 2, 3, 4]);
      expect(s.closed).to.equal(false);
    });

    it('When a hole is larger than a replay, then the socket gets nothing past it and its connection is closed, for the client to resume from its own mark', async () => {
      const { delivery, replay, connect, gate } = setup(2);
      const s = connect('s');
      delivery.deliver(msgs([1]));
      delivery.deliver(msgs([5]));
      await flush();
      replay.only().resolve([msg(2), msg(3), msg(4)]);
      await flush();
      expect(s.revs(), 'what follows on is sent').to.deep.equal([1, 2, 3]);
      expect(s.closed).to.equal(true);
      expect(gate(s)).to.equal('paused');
      delivery.deliver(msgs([6]));
      expect(s.revs()).to.deep.equal([1, 2, 3]);
    });

    it('When a client syncs while its socket waits for a hole to be filled, then the sync covers the hole and the held events, each once, in rev order', async () => {
      const { delivery, replay, connect, sync } = setup();
      const s = connect('s');
      delivery.deliver(msgs([1]));
      delivery.deliver(msgs([3]));
      const run = sync(s, { c1: { rev: 1 } });
      await flush();
      const fill = replay.only();
      expect(fill).to.include({ after: 1 });
      fill.resolve([msg(2), msg(3)]);
      await flush();
      replay.only().resolve([msg(2), msg(3)]);
      await flush();
      expect(run.results!.get('c1')).to.deep.equal({ replayed: 0, latestRev: 3, hasMore: false });
      expect(s.revs()).to.deep.equal([1, 2, 3]);
    });

    it("When a socket's handshake read a channel at a rev and the node then misses the next event, then the socket gets that event from PostgreSQL before the later one; events up to that rev (before its connect) are not sent to it", async () => {
      const { delivery, replay, connect } = setup();
      const s = connect('s', ['c1'], { c1: 2 });
      delivery.deliver(msgs([2]));
      delivery.deliver(msgs([4]));
      expect(s.revs()).to.deep.equal([]);
      await flush();
      expect(replay.only()).to.include({ kind: 'events', after: 2 });
      replay.only().resolve([msg(3), msg(4)]);
      await flush();
      delivery.deliver(msgs([5]));
      expect(s.revs()).to.deep.equal([3, 4, 5]);
    });

    it('When a socket left a channel during its handshake, after its memberships were read, and is added back later, then it starts afresh there', async () => {
      const { io, delivery, replay } = setup();
      io.rooms.set('channel:c1', new Set());
      const s = new FakeSocket('s');
      io.sockets.set('s', s);
      io.join('s', 's');
      s.data.channelRevs = { c1: 2 }; // read with the memberships; the leave came before the connect
      delivery.register(s as unknown as IoSocket);
      delivery.deliver(msgs([3, 4]));
      io.join('s', 'channel:c1');
      delivery.deliver(msgs([5]));
      await flush();
      expect(s.revs()).to.deep.equal([5]);
      expect(replay.calls).to.deep.equal([]);
    });

    it('When a socket leaves a channel and is added back, then it starts afresh there: what was sent while it was out is not filled in', async () => {
      const { io, delivery, replay, connect } = setup();
      const s = connect('s');
      delivery.deliver(msgs([1, 2]));
      io.rooms.get('channel:c1')!.delete('s');
      delivery.leave('s', 'c1');
      delivery.deliver(msgs([3, 4]));
      io.join('s', 'channel:c1');
      delivery.deliver(msgs([5]));
      await flush();
      expect(s.revs()).to.deep.equal([1, 2, 5]);
      expect(replay.calls).to.deep.equal([]);
    });

    it('When a connected socket joins a channel and its first live event there comes past a hole, then what it is owed from the rev of its membership is read first; what came before that rev is not its', async () => {
      const { io, delivery, replay, connect } = setup();
      const s = connect('s', []);
      delivery.joined('s', { c1: 2 });
      io.join('s', 'channel:c1');
      delivery.deliver(msgs([2]));
      delivery.deliver(msgs([4]));
      expect(s.revs()).to.deep.equal([]);
      await flush();
      expect(replay.only()).to.include({ kind: 'events', channelId: 'c1', after: 2 });
      replay.only().resolve([msg(3), msg(4)]);
      await flush();
      delivery.deliver(msgs([5]));
      expect(s.revs()).to.deep.equal([3, 4, 5]);
    });

    it('When a membership change names a channel whose room the socket is in already (a repeat), or one it has a position in from a replay, then it keeps its position', async () => {
      const { io, delivery, replay, connect, sync } = setup();
      const s = connect('s', ['c1'], { c1: 5 });
      delivery.joined('s', { c1: 2 });
      delivery.deliver(msgs([6]));
      expect(s.revs()).to.deep.equal([6]);
      const t = connect('t', []);
      const run = sync(t, { c2: { rev: 0 } });
      await flush();
      replay.only().resolve([msg(1, 'c2'), msg(2, 'c2'), msg(3, 'c2')]);
      await flush();
      expect(run.results!.get('c2')).to.deep.include({ latestRev: 3 });
      delivery.joined('t', { c2: 1 });
      io.join('t', 'channel:c2');
      delivery.deliver([msg(4, 'c2')]);
      await flush();
      expect(t.revs('c2')).to.deep.equal([1, 2, 3, 4]);
      expect(replay.calls.filter((c) => !c.settled)).to.deep.equal([]);
    });

    it('When a delivered event comes again after the node forgot the channel (a batch published again), then the sockets that had it do not get it twice', () => {
      const { delivery, connect } = setup();
      const s = connect('s');
      delivery.deliver(msgs([1, 2, 3]));
      delivery.deliver(msgs([2, 3]));
      const late = connect('late');
      delivery.deliver(msgs([2]));
      expect(s.revs()).to.deep.equal([1, 2, 3]);
      expect(late.revs(), 'a socket with nothing yet takes what comes').to.deep.equal([2]);
    });

    it('When events are lost, repeated and delivered while clients resume by rev or are added to the channel while connected, reads fail and holes exceed a replay, at random, then each socket gets a gap-free run of revs after its mark (or the rev it was added at), each once, and at the end every client has them all (property)', async () => {
      type Command =
        | { t: 'commit'; lost: boolean[]; repeat: boolean }
        | { t: 'connect'; back: number }
        | { t: 'join' }
        | { t: 'settle'; pick: number; ok: boolean }
        | { t: 'drop'; pick: number };
      const command = fc.oneof(
        fc.record({ t: fc.constant('commit' as const), lost: fc.array(fc.boolean(), { minLength: 1, maxLength: 4 }), repeat: fc.boolean() }),
        fc.record({ t: fc.constant('connect' as const), back: fc.nat(6) }),
        fc.record({ t: fc.constant('join' as const) }),
        fc.record({ t: fc.constant('settle' as const), pick: fc.nat(), ok: fc.boolean() }),
        fc.record({ t: fc.constant('drop' as const), pick: fc.nat() }),
      );
      await fc.assert(
        fc.asyncProperty(fc.array(command, { minLength: 1, maxLength: 40 }), async (commands) => {
          const { io, delivery, replay, connect } = setup(3);
          let committed = 0;
          let delivered = 0;
          type Client = { socket: FakeSocket; from: number; mark: number };
          const clients: Client[] = [];
          let ids = 0;
          const answer = (call: ReplayCall) => call.resolve(range(call.after + 1, Math.min(committed, call.after + call.limit)).map((r) => msg(r)));
          /** A client as docs/API.md has it: mark = highest rev received or acked; sync again on hasMore or an error. */
          const resume = (client: Client) => {
            const settled = (result: SyncChannelResult | undefined) => {
              if (result && !result.hasMore) client.mark = Math.max(client.mark, result.latestRev);
              if (!client.socket.closed && clients.includes(client) && (!result || result.hasMore)) resume(client);
            };
            delivery
              .sync(client.socket as unknown as IoSocket, new Map([['c1', { rev: client.mark }]]), async (ids) => new Set(ids))
              .then((results) => settled(results.get('c1')), () => settled(undefined));
          };
          const open = (mark: number) => {
            const client = { socket: connect(`s${ids++}`), from: mark, mark };
            clients.push(client);
            resume(client);
          };
          /** A connected socket whose user is added to the channel now: owed what is committed after this. */
          const join = () => {
            const socket = connect(`s${ids++}`, []);
            delivery.joined(socket.id, { c1: committed });
            io.join(socket.id, 'channel:c1');
            clients.push({ socket, from: committed, mark: committed });
          };
          const close = (client: Client) => {
            clients.splice(clients.indexOf(client), 1);
            io.rooms.get('channel:c1')!.delete(client.socket.id);
            delivery.forget(client.socket as unknown as IoSocket);
          };
          const check = () => {
            for (const client of [...clients]) {
              const revs = client.socket.revs();
              expect(revs, `${client.socket.id} from ${client.from}`).to.deep.equal(range(client.from + 1, client.from + revs.length));
              client.mark = Math.max(client.mark, revs.at(-1) ?? 0);
              // A closed connection: socket.io-client reconnects and resumes from its mark.
              if (client.socket.closed) {
                close(client);
                open(client.mark);
              }
            }
          };
          for (const c of commands) {
            if (c.t === 'commit') {
              for (const lost of c.lost) {
                committed++;
                if (!lost) delivery.deliver([msg(committed)]);
              }
              if (c.repeat && committed > 0) delivery.deliver([msg(1 + (committed % Math.max(1, delivered)))]);
              delivered = committed;
            } else if (c.t === 'connect') open(Math.max(0, committed - c.back));
            else if (c.t === 'join') join();
            else if (c.t === 'settle') {
              const pending = replay.calls.filter((call) => !call.settled);
              if (pending.length > 0) {
                const call = pending[c.pick % pending.length];
                if (c.ok) answer(call);
                else call.reject(new Error('PostgreSQL down'));
              }
            } else if (clients.length > 0) close(clients[c.pick % clients.length]);
            await flush();
            check();
          }
          // PostgreSQL answers from now on; one more event is published, and every client ends with all.
          committed++;
          delivery.deliver([msg(committed)]);
          for (let round = 0; round < 50 && !clients.every((client) => client.mark === committed); round++) {
            for (const call of replay.calls.filter((x) => !x.settled)) answer(call);
            // A failed read of a hole is tried again after refillRetryMs.
            await new Promise((r) => setTimeout(r, 2));
            await flush();
            check();
          }
          for (const client of clients) expect(client.mark, `${client.socket.id} ends with every rev`).to.equal(committed);
        }),
        { seed: propertySeed(20_261_203), numRuns: propertyRuns(200) },
      );
    });
  });

  describe('live delivery of every event kind', () => {
    it('When events of every kind are delivered, then each goes to the room under its own name with its payload as given, once per socket, in rev order', () => {
      const { io, delivery, connect } = setup();
      const a = connect('a');
      const outside = connect('x', ['c2']);
      const events = [
        ev('message:new', 1, 'c1', 1),
        ev('reaction:added', 2, 'c1', 1),
        ev('message:updated', 3, 'c1', 1),
        ev('reaction:removed', 4, 'c1', 1),
        ev('message:deleted', 5, 'c1', 1),
      ];
      delivery.deliver(events.slice(0, 2));
      delivery.deliver(events.slice(2));
      expect(a.named()).to.deep.equal(events.map((e) => `${e.name}@${eventRev(e)}`));
      a.received.forEach((r, i) => expect(r.payload, `payload ${i}`).to.equal(events[i].payload));
      expect(outside.received).to.deep.equal([]);
      expect(io.broadcasts.map((x) => `${x.event}@${x.rev}`)).to.deep.equal(a.named());
    });
  });

  describe('sync by rev', () => {
    it('When a socket resumes by {rev}, then every event after it is replayed under its own name as emitted, then the live events held beyond the replay, each once, in rev order', async () => {
      const { delivery, replay, connect, sync, gate } = setup();
      const s = connect('s');
      const other = connect('other');
      const run = sync(s, { c1: { rev: 2 } });
      await flush();
      const call = replay.only();
      expect(call).to.include({ kind: 'events', channelId: 'c1', after: 2, limit: 1001 });

      // Live while the replay runs: 7 and 8 the replay will read too, 9 and 10 it will not.
      delivery.deliver([ev('message:deleted', 7, 'c1', 3), ev('reaction:added', 8, 'c1', 1)]);
      delivery.deliver([ev('message:new', 9, 'c1', 4)]);
      delivery.deliver([ev('message:updated', 10, 'c1', 1)]);
      expect(s.received, 'held behind the replay').to.deep.equal([]);
      expect(other.revs(), 'other sockets are not held').to.deep.equal([7, 8, 9, 10]);
      expect(gate(s)).to.equal('buffer');

      const replayed = [
        ev('message:new', 3, 'c1', 3),
        ev('message:updated', 4, 'c1', 1),
        ev('reaction:added', 5, 'c1', 3),
        ev('reaction:removed', 6, 'c1', 3),
        ev('message:deleted', 7, 'c1', 3),
        ev('reaction:added', 8, 'c1', 1),
      ];
      call.resolve(replayed);
      await flush();
      expect(run.results?.get('c1')).to.deep.equal({ replayed: 6, latestRev: 10, hasMore: false });
      expect(s.named()).to.deep.equal([
        'message:new@3',
        'message:updated@4',
        'reaction:added@5',
        'reaction:removed@6',
        'message:deleted@7',
        'reaction:added@8',
        'message:new@9',
        'message:updated@10',
      ]);
      // Replayed events exactly as emitted: same name, same payload.
      expect(s.events().slice(0, 6)).to.deep.equal(replayed);
      expect(gate(s)).to.equal('floor');

      // Late live copies at or below the floor are dropped; the next event returns to the fast path.
      delivery.deliver([ev('message:new', 9, 'c1', 4), ev('message:updated', 10, 'c1', 1)]);
      delivery.deliver([ev('reaction:removed', 11, 'c1', 1)]);
      expect(s.revs()).to.deep.equal(range(3, 11));
      expect(gate(s)).to.equal(undefined);
    });

    it('When the replay by rev hits its limit (hasMore), then live events of that channel are paused until the next sync, which continues from the acked latestRev without gap or duplicate', async () => {
      const { delivery, replay, connect, sync, gate } = setup(3);
      const s = connect('s', ['c1', 'c2']);
      const other = connect('other');
      const first = sync(s, { c1: { rev: 0 } });
      await flush();
      const call = replay.only();
      expect(call).to.include({ kind: 'events', after: 0, limit: 4 });
      call.resolve([ev('message:new', 1, 'c1', 1), ev('reaction:added', 2, 'c1', 1), ev('message:new', 3, 'c1', 2), ev('message:updated', 4, 'c1', 1)]);
      await flush();
      expect(first.results?.get('c1')).to.deep.equal({ replayed: 3, latestRev: 3, hasMore: true });
      expect(s.named()).to.deep.equal(['message:new@1', 'reaction:added@2', 'message:new@3']);
      expect(gate(s)).to.equal('paused');

      delivery.deliver([ev('reaction:removed', 5, 'c1', 1)]);
      delivery.deliver([ev('message:deleted', 6, 'c1', 2)]);
      delivery.deliver([ev('reaction:added', 1, 'c2', 1)]);
      expect(s.revs(), 'dropped while paused').to.deep.equal([1, 2, 3]);
      expect(gate(s), 'still paused: only a sync lifts it').to.equal('paused');
      expect(other.revs()).to.deep.equal([5, 6]);
      expect(s.named('c2'), 'other channels are not paused').to.deep.equal(['reaction:added@1']);

      const second = sync(s, { c1: { rev: 3 } });
      await flush();
      const next = replay.only();
      expect(next).to.include({ kind: 'events', channelId: 'c1', after: 3 });
      expect(gate(s), 'the next sync buffers again').to.equal('buffer');
      delivery.deliver([ev('message:new', 7, 'c1', 3)]);
      next.resolve([ev('message:updated', 4, 'c1', 1), ev('reaction:removed', 5, 'c1', 1), ev('message:deleted', 6, 'c1', 2)]);
      await flush();
      expect(second.results?.get('c1')).to.deep.equal({ replayed: 3, latestRev: 7, hasMore: false });
      delivery.deliver([ev('message:new', 7, 'c1', 3)]);
      delivery.deliver([ev('reaction:added', 8, 'c1', 3)]);
      expect(s.revs()).to.deep.equal(range(1, 8));
      expect(s.named().slice(3)).to.deep.equal([
        'message:updated@4',
        'reaction:removed@5',
        'message:deleted@6',
        'message:new@7',
        'reaction:added@8',
      ]);
    });

    it('When a socket resumes by {rev} from before events it already got live, then those are not replayed again nor counted, and latestRev covers the page', async () => {
      const { delivery, replay, connect, sync } = setup();
      const s = connect('s');
      delivery.deliver([ev('message:new', 1, 'c1', 1), ev('reaction:added', 2, 'c1', 1), ev('message:updated', 3, 'c1', 1), ev('message:deleted', 4, 'c1', 1)]);
      const run = sync(s, { c1: { rev: 1 } });
      await flush();
      replay.only().resolve([ev('reaction:added', 2, 'c1', 1), ev('message:updated', 3, 'c1', 1), ev('message:deleted', 4, 'c1', 1), ev('reaction:removed', 5, 'c1', 1)]);
      await flush();
      expect(run.results?.get('c1')).to.deep.equal({ replayed: 1, latestRev: 5, hasMore: false });
      expect(s.named()).to.deep.equal(['message:new@1', 'reaction:added@2', 'message:updated@3', 'message:deleted@4', 'reaction:removed@5']);
    });

    it('When the replay by rev is empty, then the held live events are sent and latestRev is the last of them, or the resume point when none came', async () => {
      const { delivery, replay, connect, sync } = setup();
      const s = connect('s', ['c1', 'c2']);
      const run = sync(s, { c1: { rev: 5 }, c2: { rev: 4 } });
      await flush();
      delivery.deliver([ev('reaction:added', 5, 'c1', 1), ev('message:updated', 6, 'c1', 1)]); // the client had 5
      replay.only().resolve([]);
      await flush();
      replay.only().resolve([]);
      await flush();
      expect(s.named()).to.deep.equal(['message:updated@6']);
      expect(run.results?.get('c1')).to.deep.equal({ replayed: 0, latestRev: 6, hasMore: false });
      expect(run.results?.get('c2')).to.deep.equal({ replayed: 0, latestRev: 4, hasMore: false });
    });

    it('When one sync mixes a seq and a {rev} resume point, then each channel is replayed from its own source and acked in its own shape', async () => {
      const { replay, connect, sync } = setup();
      const s = connect('s', ['c1', 'c2']);
      const run = sync(s, { c1: 0, c2: { rev: 0 } });
      await flush();
      expect(replay.only()).to.include({ kind: 'messages', channelId: 'c1', after: 0 });
      replay.only().resolve(page([1], 2)); // message 1, then a reaction to it at rev 2
      await flush();
      expect(replay.only()).to.include({ kind: 'events', channelId: 'c2', after: 0 });
      replay.only().resolve([ev('message:new', 1, 'c2', 1), ev('reaction:added', 2, 'c2', 1)]);
      await flush();
      expect(Object.fromEntries(run.results!)).to.deep.equal({
        c1: { replayed: 1, latestSeq: 1, latestRev: 2, hasMore: false },
        c2: { replayed: 2, latestRev: 2, hasMore: false },
      });
      expect(s.named('c1')).to.deep.equal(['message:new@1']);
      expect(s.named('c2')).to.deep.equal(['message:new@1', 'reaction:added@2']);
    });

    it('When a replay fails, then that channel and the ones after it (by rev or by seq) send none of their held events and are paused until a sync of them succeeds, while a channel replayed by rev before keeps its floor', async () => {
      const { delivery, replay, connect, sync, gate, internals } = setup();
      const s = connect('s', ['c1', 'c2', 'c3']);
      const run = sync(s, { c1: { rev: 0 }, c2: { rev: 2 }, c3: 0 });
      await flush();
      delivery.deliver([ev('reaction:added', 3, 'c2', 1), ev('message:deleted', 4, 'c2', 2)]);
      delivery.deliver([ev('message:updated', 5, 'c2', 1)]);
      delivery.deliver([ev('reaction:removed', 7, 'c3', 1)]);
      replay.only().resolve([ev('message:new', 1, 'c1', 1), ev('reaction:added', 2, 'c1', 1)]);
      await flush();
      replay.only().reject(new Error('query failed'));
      await flush();
      expect((run.error as Error).message).to.equal('query failed');
      expect(replay.calls.map((c) => c.channelId), 'c3 is never asked').to.deep.equal(['c1', 'c2']);
      expect(s.named('c1')).to.deep.equal(['message:new@1', 'reaction:added@2']);
      expect(s.named('c2')).to.deep.equal([]);
      expect(s.named('c3')).to.deep.equal([]);
      expect([gate(s, 'c1'), gate(s, 'c2'), gate(s, 'c3')]).to.deep.equal(['floor', 'paused', 'paused']);
      delivery.deliver([ev('reaction:added', 6, 'c2', 1)]);
      expect(s.named('c2'), 'paused').to.deep.equal([]);
      const again = sync(s, { c2: { rev: 2 } });
      await flush();
      replay.only().resolve([ev('reaction:added', 3, 'c2', 1), ev('message:deleted', 4, 'c2', 2), ev('message:updated', 5, 'c2', 1), ev('reaction:added', 6, 'c2', 1)]);
      await flush();
      expect(again.results!.get('c2')).to.deep.equal({ replayed: 4, latestRev: 6, hasMore: false });
      delivery.deliver([ev('reaction:removed', 7, 'c2', 1)]);
      expect(s.revs('c2'), 'back on live delivery').to.deep.equal([3, 4, 5, 6, 7]);
      expect([...internals.gates.keys()]).to.deep.equal(['c1', 'c3']);
    });
  });

  describe('sync by seq, with changes', () => {
    it('When an older message changes while a connected socket resumes by seq, then the change still reaches it, once, whether it comes during the replay or late after it', async () => {
      const { delivery, replay, connect, sync, gate } = setup();
      const s = connect('s');
      delivery.deliver([ev('message:new', 1, 'c1', 1), ev('message:new', 2, 'c1', 2)]);
      const run = sync(s, { c1: 2 }); // the client is up to date
      await flush();
      delivery.deliver([ev('reaction:added', 3, 'c1', 1)]); // live, while the (empty) replay runs
      replay.only().resolve(page([], 4)); // the read saw rev 4, which this node has not delivered yet
      await flush();
      expect(run.results?.get('c1')).to.deep.equal({ replayed: 0, latestSeq: 2, latestRev: 4, hasMore: false });
      expect(s.named()).to.deep.equal(['message:new@1', 'message:new@2', 'reaction:added@3']);
      expect(gate(s)).to.equal('floor');
      // Rev 4 (an edit of message 1) arrives late, below the floor: not covered by the replay, so sent alone.
      delivery.deliver([ev('message:updated', 4, 'c1', 1)]);
      delivery.deliver([ev('reaction:added', 3, 'c1', 1), ev('message:updated', 4, 'c1', 1)]); // copies again
      delivery.deliver([ev('reaction:removed', 5, 'c1', 1)]);
      expect(s.named()).to.deep.equal(['message:new@1', 'message:new@2', 'reaction:added@3', 'message:updated@4', 'reaction:removed@5']);
      expect(gate(s)).to.equal(undefined);
    });

    it('When a message whose creation the socket got live has changed since, then the replay sends it as message:updated at its latest rev (not a second message:new), and live events at or below the acked latestRev are not sent after it', async () => {
      const { delivery, replay, connect, sync, gate } = setup();
      const s = connect('s');
      // Live before the sync: messages 1 and 2 created, message 1 edited.
      delivery.deliver([ev('message:new', 1, 'c1', 1), ev('message:new', 2, 'c1', 2)]);
      delivery.deliver([ev('message:updated', 3, 'c1', 1)]);
      const run = sync(s, { c1: 0 });
      await flush();
      expect(replay.only()).to.include({ kind: 'messages', after: 0 });
      // Live while the replay runs: a reaction on 2, message 3, then (after the replay's read) 1 deleted.
      delivery.deliver([ev('reaction:added', 4, 'c1', 2)]);
      delivery.deliver([ev('message:new', 5, 'c1', 3)]);
      delivery.deliver([ev('message:deleted', 6, 'c1', 1)]);
      expect(s.revs(), 'held behind the replay').to.deep.equal([1, 2, 3]);

      const edited = message(1, 'c1', { rev: 3, body: 'edited at 3', editedAt: new Date(1_700_000_100_003).toISOString() });
      const reacted = message(2, 'c1', { rev: 4, reactions: [{ emoji: 'thumbsup', count: 1, userIds: ['u4'] }] });
      const created = message(3, 'c1', { rev: 5 });
      replay.only().resolve(
        page(
          [
            { message: edited, createdRev: 1 },
            { message: reacted, createdRev: 2 },
            { message: created, createdRev: 5 },
          ],
          5,
        ),
      );
      await flush();
      expect(run.results?.get('c1')).to.deep.equal({ replayed: 2, latestSeq: 3, latestRev: 6, hasMore: false });
      expect(s.named()).to.deep.equal([
        'message:new@1',
        'message:new@2',
        'message:updated@3',
        // message 1 at rev 3 was sent live already: not again. Message 2's reaction comes as its new state:
        'message:updated@4',
        'message:new@5',
        // beyond latestRev 5, from the buffer; reaction:added@4 and message:new@5 were not sent again.
        'message:deleted@6',
      ]);
      expect(s.events()[3]).to.deep.equal({ name: 'message:updated', payload: { channelId: 'c1', rev: 4, message: reacted } });
      expect(s.events()[4]).to.deep.equal({ name: 'message:new', payload: created });
      expect(s.received.filter((r) => r.event === 'message:new').map((r) => (r.payload as MessageDto).id)).to.deep.equal(['c1-1', 'c1-2', 'c1-3']);
      expect(gate(s)).to.equal('floor');

      delivery.deliver([ev('reaction:added', 4, 'c1', 2), ev('message:deleted', 6, 'c1', 1)]); // late copies
      delivery.deliver([ev('reaction:removed', 7, 'c1', 2)]);
      expect(s.revs()).to.deep.equal(range(1, 7));
      expect(gate(s)).to.equal(undefined);
    });
  });

  it('When the same scenario runs on a real Socket.IO server, then the fake used above behaves like it (room broadcast with except, rooms map)', async () => {
    const http = createServer();
    const io = new Server(http);
    await new Promise<void>((r) => http.listen(0, '127.0.0.1', r));
    const port = (http.address() as AddressInfo).port;
    const replay = new FakeReplay();
    const delivery = new Delivery(io as unknown as IoServer, { replay, replayLimit: 10, logger: {} as Logger });
    io.on('connection', (socket) => {
      void socket.join('channel:c1');
      delivery.register(socket as unknown as IoSocket);
    });
    const clients = ['a', 'b'].map(() => connectClient(`http://127.0.0.1:${port}`, { transports: ['websocket'], forceNew: true }));
    try {
      const received = clients.map(() => [] as string[]);
      for (const name of ['message:new', 'message:updated', 'message:deleted', 'reaction:added', 'reaction:removed']) {
        clients.forEach((c, i) => c.on(name, (p: { rev: number }) => received[i].push(`${name}@${p.rev}`)));
      }
      await Promise.all(clients.map((c) => new Promise<void>((r) => c.on('connect', () => r()))));
      const waitFor = async (cond: () => boolean) => {
        for (let i = 0; i < 200 && !cond(); i++) await new Promise((r) => setTimeout(r, 5));
      };
      await waitFor(() => io.of('/').adapter.rooms.get('channel:c1')?.size === 2);
      const serverA = io.of('/').sockets.get(clients[0].id!)!;

      delivery.deliver(msgs([1]));
      const pending = delivery.sync(serverA as unknown as IoSocket, new Map([['c1', 1]]), async (ids) => new Set(ids));
      await flush();
      delivery.deliver(msgs([2, 3]));
      replay.only().resolve(page([2], 2));
      const results = await pending;
      delivery.deliver(msgs([3, 4]));
      delivery.deliver([ev('reaction:added', 5)]);
      await waitFor(() => received[0].length >= 5 && received[1].length >= 5);
      expect(results.get('c1')).to.deep.equal({ replayed: 1, latestSeq: 3, latestRev: 3, hasMore: false });
      const news = (revs: number[]) => revs.map((r) => `message:new@${r}`);
      expect(received[0], 'the syncing socket').to.deep.equal([...news([1, 2, 3, 4]), 'reaction:added@5']);
      expect(received[1], 'the other socket (3 delivered twice live reaches it once)').to.deep.equal([...news([1, 2, 3, 4]), 'reaction:added@5']);
    } finally {
      for (const c of clients) c.disconnect();
      await io.close();
    }
  });
});
