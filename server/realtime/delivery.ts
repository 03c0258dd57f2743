import type { Logger } from '../../shared/logger.js';
import { channelRoom, eventChannel, eventRev, type ChannelEvent, type ResumePoint } from '../../shared/events.js';
import type { MessageDto } from '../../shared/models/index.js';
import { SeqSet } from './seqSet.js';
import type { IoServer, IoSocket } from './types.js';

/**
 * Live delivery of a channel's events on one front node, and the seam between replay and live for
 * resumes.
 *
 * Workers publish each committed batch's events once; the sequencer hands each channel's events here in
 * rev order, and each goes to its local channel room, serialised once for all receivers. A socket joins
 * that fast path the moment it connects: nothing is held for sockets that do not resume.
 *
 * A socket that resumes a channel (in its handshake, or with `sync`) is held out of the fast path for
 * that channel only, while its replay runs: live events wait behind the replay, then those it did not
 * cover follow. Every rev sent to a socket is remembered per channel, so nothing is sent to it twice,
 * whichever of live delivery and replay got there first.
 *
 * Each socket also has, per channel, the rev up to which it has everything it is owed (`at`). An event
 * beyond the next one never reaches it: whatever the node missed (a publish lost on its way, a node that
 * starts without a baseline, a fill that failed), the socket is held out of the fast path while what it
 * lacks is read from PostgreSQL, as for a resume. A client takes the highest rev it received as its mark
 * (docs/API.md), so a rev sent past a hole would lose the hole for good.
 */
export interface ReplaySource {
  /**
   * Up to `limit` messages of the channel with seq > afterSeq, ascending, in their current state, each
   * with the rev it was created at, and the channel's latest rev as of that read.
   */
  messagesAfter(
    channelId: string,
    afterSeq: number,
    limit: number,
  ): Promise<{ messages: Array<{ message: MessageDto; createdRev: number }>; latestRev: number }>;
  /** Up to `limit` events of the channel with rev > afterRev, ascending, as they were emitted. */
  eventsAfter(channelId: string, afterRev: number, limit: number): Promise<ChannelEvent[]>;
}

/** What a replay did, as `sync` acks it per channel (resume by seq, or by rev). */
export type SyncChannelResult =
  | { replayed: number; latestSeq: number; latestRev: number; hasMore: boolean }
  | { replayed: number; latestRev: number; hasMore: boolean };

/**
 * How one socket's live events of one channel are handled around a replay:
 *  - buffer: a replay runs, or is due (a hole); live events wait behind it;
 *  - paused: the replay was cut at its limit, or failed; live events are dropped until the next sync,
 *    which replays them from PostgreSQL without a gap;
 *  - floor: the replay is done; a live event up to rev `floor` is sent to the socket alone unless it
 *    was sent already or the replay covered it (`covered`), and the first one beyond `floor` returns
 *    the socket to the shared fast path.
 */
type Gate =
  | { mode: 'buffer'; buffer: ChannelEvent[] }
  | { mode: 'paused' }
  | { mode: 'floor'; floor: number; covered: Covered };

/** Whether a replay already gave the client what an event says (so it must not be sent). */
type Covered = (event: ChannelEvent) => boolean;

/** What one socket was given of one channel. */
interface Track {
  /** The revs it was sent. */
  sent: SeqSet;
  /**
   * It has every event it is owed up to this rev: from its handshake's read, or the channel's rev as of a
   * membership it gained since (joined()); then its replays and live events. Undefined where the node
   * knows no such rev (a membership change from a node of the previous release): its first live event
   * there is its start.
   */
  at: number | undefined;
}

/** Pauses between attempts to fill a socket's hole while PostgreSQL does not answer. */
const REFILL_RETRY_MS = [250, 500, 1000, 2000, 5000];

/** The message an event is about. */
function messageIdOf(event: ChannelEvent): string {
  switch (event.name) {
    case 'message:new':
      return event.payload.id;
    case 'message:updated':
      return event.payload.message.id;
    default:
      return event.payload.messageId;
  }
}

const byRev = (a: ChannelEvent, b: ChannelEvent) => eventRev(a) - eventRev(b);

export class Delivery {
  /** Per connected socket, per channel, what it was given. */
  private readonly tracks = new Map<string, Map<string, Track>>();
  private readonly gates = new Map<string, Map<string, Gate>>();
  /** The registered sockets, for the late events sent to one of them alone. */
  private readonly sockets = new Map<string, IoSocket>();
  /** Per socket, its replays one after another: each continues from where the one before left the gates. */
  private readonly queues = new Map<string, Promise<unknown>>();
  /** Reads of the same events for many sockets at once (a hole every socket of a room has) are one read. */
  private readonly reads = new Map<string, Promise<ChannelEvent[]>>();

  constructor(
    private readonly io: IoServer,
    private readonly deps: {
      replay: ReplaySource;
      replayLimit: number;
      logger: Logger;
      /** Pauses between attempts to fill a hole (tests shorten them). */
      refillRetryMs?: readonly number[];
    },
  ) {}

  /**
   * A socket that just connected: from now on its live messages are counted, each channel's from the rev
   * its handshake read (`channelRevs`), so that an event this node misses after it is filled in.
   */
  register(socket: IoSocket): void {
    this.sockets.set(socket.id, socket);
    const tracks = new Map<string, Track>();
    const rooms = this.io.of('/').adapter.rooms;
    for (const [channelId, rev] of Object.entries(socket.data?.channelRevs ?? {})) {
      // Not a channel it left during its handshake: back in it later, it starts afresh there.
      if (rooms.get(channelRoom(channelId))?.has(socket.id)) tracks.set(channelId, { sent: new SeqSet(), at: rev });
    }
    this.tracks.set(socket.id, tracks);
  }

  /**
   * A connected socket is about to enter channels' rooms (its user joined or was added): channelId → the
   * channel's rev as of that membership. Its live events there follow on from that rev, as a handshake's
   * do from the rev it read. A channel whose room it is in already, or where it has a position from a
   * replay, keeps what it has.
   */
  joined(socketId: string, join: Record<string, number>): void {
    if (!this.tracks.has(socketId)) return; // Still in its handshake: register() seeds it.
    const rooms = this.io.of('/').adapter.rooms;
    for (const [channelId, rev] of Object.entries(join)) {
      if (rooms.get(channelRoom(channelId))?.has(socketId)) continue;
      const track = this.trackOf(socketId, channelId)!;
      track.at ??= rev;
    }
  }

  forget(socket: IoSocket): void {
    this.sockets.delete(socket.id);
    this.tracks.delete(socket.id);
    this.queues.delete(socket.id);
    for (const [channelId, gates] of this.gates) {
      gates.delete(socket.id);
      if (gates.size === 0) this.gates.delete(channelId);
    }
  }

  /**
   * The socket left the channel's room (a leave or a removal): what it was given there no longer says
   * what it is owed. Back in the room, it starts afresh, as a socket that just connected; events of the
   * time between are not its to get from this node.
   */
  leave(socketId: string, channelId: string): void {
    this.tracks.get(socketId)?.delete(channelId);
    this.dropGate(channelId, socketId);
  }

  /** Events of one committed batch, each channel's in rev order. */
  deliver(events: ChannelEvent[]): void {
    const rooms = this.io.of('/').adapter.rooms;
    for (const event of events) {
      const channelId = eventChannel(event);
      const rev = eventRev(event);
      const room = channelRoom(channelId);
      const members = rooms.get(room);
      if (!members) continue;
      let except: Set<string> | undefined;
      let alone: string[] | undefined;
      let holes: string[] | undefined;
      const reached: Track[] = [];
      const gates = this.gates.get(channelId);
      for (const socketId of members) {
        const gate = gates?.get(socketId);
        if (gate && !(gate.mode === 'floor' && rev > gate.floor)) {
          (except ??= new Set()).add(socketId);
          if (gate.mode === 'buffer') gate.buffer.push(event);
          else if (gate.mode === 'floor' && !gate.covered(event)) (alone ??= []).push(socketId);
          continue;
        }
        if (gate) this.dropGate(channelId, socketId);
        const track = this.trackOf(socketId, channelId);
        // Not registered yet (still in its handshake): the room's emit does not reach it either.
        if (!track) continue;
        if (track.at === undefined || rev === track.at + 1) {
          reached.push(track);
        } else {
          (except ??= new Set()).add(socketId);
          if (rev > track.at) (holes ??= []).push(socketId);
        }
      }
      const target = this.io.local.to(room);
      if (reached.length > 0) (except ? target.except([...except]) : target).emit(event.name, event.payload as never);
      for (const track of reached) {
        track.sent.add(rev);
        track.at = rev;
      }
      // A late event the replay did not cover (a change to an older message, after a resume by seq).
      for (const socketId of alone ?? []) {
        const socket = this.sockets.get(socketId);
        if (socket) this.send(socket, event);
      }
      for (const socketId of holes ?? []) {
        this.gatesOf(channelId).set(socketId, { mode: 'buffer', buffer: [event] });
        void this.enqueue(socketId, () => this.refill(socketId, channelId, 0));
      }
    }
  }

  /**
   * Replays, for each channel, what the client is missing from its resume point that this socket has
   * not been sent yet, then lets live delivery resume exactly where the replay ended. `isMember` says
   * which channels the user may follow; the others are left untouched and reported as not found by the
   * caller. A socket's syncs run one after another. When one fails, the channels it had not replayed
   * are paused (nothing live is sent past what the client has) until a later sync of them succeeds.
   */
  sync(
    socket: IoSocket,
    points: Map<string, ResumePoint>,
    isMember: (channelIds: string[]) => Promise<Set<string>>,
  ): Promise<Map<string, SyncChannelResult>> {
    // Gates first, in the caller's tick: every live event from here on is caught for the seam, even while
    // an earlier replay of this socket still runs.
    for (const channelId of points.keys()) this.openGate(channelId, socket.id);
    return this.enqueue(socket.id, () => this.runSync(socket, points, isMember));
  }

  private async runSync(
    socket: IoSocket,
    points: Map<string, ResumePoint>,
    isMember: (channelIds: string[]) => Promise<Set<string>>,
  ): Promise<Map<string, SyncChannelResult>> {
    const channelIds = [...points.keys()];
    // Again: a replay that ran before this one closed the gates it shared with it.
    for (const channelId of channelIds) this.openGate(channelId, socket.id);

    const results = new Map<string, SyncChannelResult>();
    let members: Set<string>;
    try {
      members = await isMember(channelIds);
    } catch (err) {
      for (const channelId of channelIds) this.replaceGate(channelId, socket.id, { mode: 'paused' });
      throw err;
    }
    for (const channelId of channelIds) {
      if (!members.has(channelId)) {
        this.dropGate(channelId, socket.id);
        continue;
      }
      try {
        const point = points.get(channelId)!;
        results.set(
          channelId,
          typeof point === 'number'
            ? await this.replayMessages(socket, channelId, point)
            : await this.replayEvents(socket, channelId, point.rev),
        );
      } catch (err) {
        for (const id of channelIds.slice(channelIds.indexOf(channelId))) this.replaceGate(id, socket.id, { mode: 'paused' });
        throw err;
      }
    }
    return results;
  }

  /**
   * Resume by seq: each message after lastSeq in its current state, as `message:new`, or as
   * `message:updated` when this socket was sent its creation live but not its latest change. Live
   * events follow from the channel's rev as of the read: changes to older messages before it are not
   * the client's to get in this mode (docs/API.md).
   */
  private async replayMessages(socket: IoSocket, channelId: string, lastSeq: number): Promise<SyncChannelResult> {
    const limit = this.deps.replayLimit;
    const { messages: rows, latestRev } = await this.deps.replay.messagesAfter(channelId, lastSeq, limit + 1);
    const hasMore = rows.length > limit;
    const page = rows.slice(0, limit);
    const sent = this.trackOf(socket.id, channelId)?.sent;
    let replayed = 0;
    for (const { message, createdRev } of page) {
      const event: ChannelEvent = sent?.has(createdRev)
        ? { name: 'message:updated', payload: { channelId, rev: message.rev, message } }
        : { name: 'message:new', payload: message };
      if (this.send(socket, event)) replayed++;
    }
    const replayedUpTo = page.length > 0 ? page[page.length - 1].message.seq : lastSeq;
    if (hasMore) {
      this.replaceGate(channelId, socket.id, { mode: 'paused' });
      return { replayed, latestSeq: replayedUpTo, latestRev, hasMore };
    }
    // The replay gave each of its messages as of latestRev; changes to older messages are still due.
    // A new message at or below lastSeq the client has.
    const replayedIds = new Set(page.map(({ message }) => message.id));
    const covered: Covered = (event) =>
      (event.name === 'message:new' && event.payload.seq <= lastSeq) ||
      (eventRev(event) <= latestRev && replayedIds.has(messageIdOf(event)));
    const after = this.closeGate(channelId, socket, latestRev, covered);
    return { replayed, latestSeq: Math.max(replayedUpTo, after.lastSeq), latestRev: after.lastRev, hasMore };
  }

  /** Resume by rev: every event after lastRev, as it was emitted live. */
  private async replayEvents(socket: IoSocket, channelId: string, lastRev: number): Promise<SyncChannelResult> {
    const limit = this.deps.replayLimit;
    const rows = await this.eventsAfter(channelId, lastRev, limit + 1);
    const hasMore = rows.length > limit;
    const page = rows.slice(0, limit);
    let replayed = 0;
    for (const event of page) if (this.send(socket, event)) replayed++;
    const replayedUpTo = page.length > 0 ? eventRev(page[page.length - 1]) : lastRev;
    if (hasMore) {
      this.replaceGate(channelId, socket.id, { mode: 'paused' });
      return { replayed, latestRev: replayedUpTo, hasMore };
    }
    // Everything up to lastRev the client has; everything after it up to replayedUpTo it was just sent.
    const covered: Covered = (event) => eventRev(event) <= lastRev;
    return { replayed, latestRev: this.closeGate(channelId, socket, replayedUpTo, covered).lastRev, hasMore };
  }

  /**
   * Fills a hole in what a live socket was given (its gate holds what came after the hole): what it
   * lacks is read from PostgreSQL and sent, then the held events, as for a resume by rev from its `at`.
   * While PostgreSQL does not answer, the socket waits and the read is tried again. A hole larger than a
   * replay, or more held than one, closes the connection instead: the client's reconnect resumes from
   * its own marks, which never passed the hole.
   */
  private async refill(socketId: string, channelId: string, attempt: number): Promise<void> {
    const socket = this.sockets.get(socketId);
    const gate = this.gates.get(channelId)?.get(socketId);
    const at = this.trackOf(socketId, channelId)?.at;
    // A sync since, or the socket gone or out of the room: nothing left to fill.
    if (!socket || gate?.mode !== 'buffer' || at === undefined) return;
    try {
      const { hasMore } = await this.replayEvents(socket, channelId, at);
      if (!hasMore) return;
      this.deps.logger.warn({ channelId, socketId, after: at }, 'a live hole larger than a replay: the connection is closed for the client to resume');
    } catch (err) {
      const held = this.gates.get(channelId)?.get(socketId);
      if (held?.mode === 'buffer' && held.buffer.length <= this.deps.replayLimit) {
        this.deps.logger.warn({ err, channelId, socketId, after: at }, 'could not fill a live hole yet');
        const pauses = this.deps.refillRetryMs ?? REFILL_RETRY_MS;
        const delay = pauses[Math.min(attempt, pauses.length - 1)];
        setTimeout(() => void this.enqueue(socketId, () => this.refill(socketId, channelId, attempt + 1)), delay).unref();
        return;
      }
      this.deps.logger.warn({ err, channelId, socketId, after: at }, 'could not fill a live hole: the connection is closed for the client to resume');
    }
    this.replaceGate(channelId, socketId, { mode: 'paused' });
    socket.conn.close();
  }

  /** eventsAfter, one read for every socket that asks the same at once. */
  private eventsAfter(channelId: string, afterRev: number, limit: number): Promise<ChannelEvent[]> {
    const key = `${channelId}:${afterRev}:${limit}`;
    let read = this.reads.get(key);
    if (!read) {
      read = this.deps.replay.eventsAfter(channelId, afterRev, limit);
      this.reads.set(key, read);
      const done = () => this.reads.delete(key);
      read.then(done, done);
    }
    return read;
  }

  private enqueue<T>(socketId: string, job: () => Promise<T>): Promise<T> {
    const done = (this.queues.get(socketId) ?? Promise.resolve()).then(job);
    const tail = done.then(
      () => {},
      () => {},
    );
    if (this.sockets.has(socketId)) this.queues.set(socketId, tail);
    void tail.then(() => {
      if (this.queues.get(socketId) === tail) this.queues.delete(socketId);
    });
    return done;
  }

  /** Sends one event to one socket unless it was sent it already; says whether it did. */
  private send(socket: IoSocket, event: ChannelEvent): boolean {
    const sent = this.trackOf(socket.id, eventChannel(event))?.sent;
    const rev = eventRev(event);
    if (!sent || sent.has(rev)) return false;
    sent.add(rev);
    socket.emit(event.name, event.payload as never);
    return true;
  }

  private trackOf(socketId: string, channelId: string): Track | undefined {
    const channels = this.tracks.get(socketId);
    if (!channels) return undefined;
    let track = channels.get(channelId);
    if (!track) channels.set(channelId, (track = { sent: new SeqSet(), at: undefined }));
    return track;
  }

  private gatesOf(channelId: string): Map<string, Gate> {
    let gates = this.gates.get(channelId);
    if (!gates) this.gates.set(channelId, (gates = new Map()));
    return gates;
  }

  private openGate(channelId: string, socketId: string): void {
    // A sync queued behind another may start after its socket disconnected: nothing to gate then.
    if (!this.tracks.has(socketId)) return;
    const gates = this.gatesOf(channelId);
    // A hole's gate keeps what it holds: this replay covers the hole and sends the rest after it. A paused
    // gate (partial replay) starts buffering again: this sync continues from its lastSeq.
    if (gates.get(socketId)?.mode !== 'buffer') gates.set(socketId, { mode: 'buffer', buffer: [] });
  }

  /** Only a gate still there: a socket that disconnected mid-sync must not be given a new one. */
  private replaceGate(channelId: string, socketId: string, gate: Gate): void {
    const gates = this.gates.get(channelId);
    if (gates?.has(socketId)) gates.set(socketId, gate);
  }

  private dropGate(channelId: string, socketId: string): void {
    const gates = this.gates.get(channelId);
    gates?.delete(socketId);
    if (gates?.size === 0) this.gates.delete(channelId);
  }

  /**
   * After a replay that reached `afterRev`: sends, in rev order, what the gate caught that the replay
   * did not cover and the socket was not sent, as long as each follows on from the one before; leaves a
   * floor at the last rev so reached. Until a live event beyond it comes, late ones are checked the same
   * way. A held event beyond a hole stays held, and the hole is filled next (refill). Returns that rev
   * (and the last seq of a new message sent).
   */
  private closeGate(channelId: string, socket: IoSocket, afterRev: number, covered: Covered): { lastRev: number; lastSeq: number } {
    const gate = this.gates.get(channelId)?.get(socket.id);
    const track = this.trackOf(socket.id, channelId);
    let at = Math.max(afterRev, track?.at ?? 0);
    let lastSeq = 0;
    const held = gate?.mode === 'buffer' ? [...gate.buffer].sort(byRev) : [];
    const beyond: ChannelEvent[] = [];
    for (const event of held) {
      const rev = eventRev(event);
      if (rev <= at) {
        if (!covered(event)) this.send(socket, event);
      } else if (beyond.length === 0 && rev === at + 1) {
        this.send(socket, event);
        at = rev;
        if (event.name === 'message:new') lastSeq = Math.max(lastSeq, event.payload.seq);
      } else beyond.push(event);
    }
    if (track) track.at = at;
    if (beyond.length > 0) {
      this.replaceGate(channelId, socket.id, { mode: 'buffer', buffer: beyond });
      void this.enqueue(socket.id, () => this.refill(socket.id, channelId, 0));
    } else this.replaceGate(channelId, socket.id, { mode: 'floor', floor: at, covered });
    return { lastRev: at, lastSeq };
  }
}
