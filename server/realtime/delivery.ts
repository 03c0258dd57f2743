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
 *  - buffer: the replay runs; live events wait behind it;
 *  - paused: the replay was cut at its limit; live events are dropped until the next sync, which
 *    replays them from PostgreSQL without a gap;
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

export class Delivery {
  /** Per connected socket, per channel, the revs it has been sent. */
  private readonly sent = new Map<string, Map<string, SeqSet>>();
  private readonly gates = new Map<string, Map<string, Gate>>();
  /** The registered sockets, for the late events sent to one of them alone. */
  private readonly sockets = new Map<string, IoSocket>();

  constructor(
    private readonly io: IoServer,
    private readonly deps: { replay: ReplaySource; replayLimit: number; logger: Logger },
  ) {}

  /** A socket that just connected: from now on its live messages are counted. */
  register(socket: IoSocket): void {
    this.sockets.set(socket.id, socket);
    this.sent.set(socket.id, new Map());
  }

  forget(socket: IoSocket): void {
    this.sockets.delete(socket.id);
    this.sent.delete(socket.id);
    for (const [channelId, gates] of this.gates) {
      gates.delete(socket.id);
      if (gates.size === 0) this.gates.delete(channelId);
    }
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
      const gates = this.gates.get(channelId);
      if (gates) {
        for (const [socketId, gate] of gates) {
          if (gate.mode === 'floor' && rev > gate.floor) {
            this.dropGate(channelId, socketId);
            continue;
          }
          (except ??= new Set()).add(socketId);
          // Only what the socket would have got live: a gate never lets a channel's events reach a
          // socket that is not in its room.
          if (!members.has(socketId)) continue;
          if (gate.mode === 'buffer') gate.buffer.push(event);
          else if (gate.mode === 'floor' && !gate.covered(event)) (alone ??= []).push(socketId);
        }
      }
      const target = this.io.local.to(room);
      (except ? target.except([...except]) : target).emit(event.name, event.payload as never);
      // A late event the replay did not cover (a change to an older message, after a resume by seq).
      for (const socketId of alone ?? []) {
        const socket = this.sockets.get(socketId);
        if (socket) this.send(socket, event);
      }
      for (const socketId of members) {
        if (!except?.has(socketId)) this.revsOf(socketId, channelId)?.add(rev);
      }
    }
  }

  /**
   * Replays, for each channel, what the client is missing from its resume point that this socket has
   * not been sent yet, then lets live delivery resume exactly where the replay ended. `isMember` says
   * which channels the user may follow; the others are left untouched and reported as not found by the
   * caller.
   */
  async sync(
    socket: IoSocket,
    points: Map<string, ResumePoint>,
    isMember: (channelIds: string[]) => Promise<Set<string>>,
  ): Promise<Map<string, SyncChannelResult>> {
    const channelIds = [...points.keys()];
    // Gates first, synchronously: every live event from here on is caught for the seam.
    for (const channelId of channelIds) this.openGate(channelId, socket.id);

    const results = new Map<string, SyncChannelResult>();
    let members: Set<string>;
    try {
      members = await isMember(channelIds);
    } catch (err) {
      for (const channelId of channelIds) this.closeGate(channelId, socket, null);
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
        for (const id of channelIds.slice(channelIds.indexOf(channelId))) this.closeGate(id, socket, null);
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
    const revs = this.revsOf(socket.id, channelId);
    let replayed = 0;
    for (const { message, createdRev } of page) {
      const event: ChannelEvent = revs?.has(createdRev)
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
    const rows = await this.deps.replay.eventsAfter(channelId, lastRev, limit + 1);
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

  /** Sends one event to one socket unless it was sent it already; says whether it did. */
  private send(socket: IoSocket, event: ChannelEvent): boolean {
    const revs = this.revsOf(socket.id, eventChannel(event));
    const rev = eventRev(event);
    if (!revs || revs.has(rev)) return false;
    revs.add(rev);
    socket.emit(event.name, event.payload as never);
    return true;
  }

  private revsOf(socketId: string, channelId: string): SeqSet | undefined {
    const channels = this.sent.get(socketId);
    if (!channels) return undefined;
    let revs = channels.get(channelId);
    if (!revs) channels.set(channelId, (revs = new SeqSet()));
    return revs;
  }

  private openGate(channelId: string, socketId: string): void {
    // A sync queued behind another may start after its socket disconnected: nothing to gate then.
    if (!this.sent.has(socketId)) return;
    let gates = this.gates.get(channelId);
    if (!gates) this.gates.set(channelId, (gates = new Map()));
    // A paused gate (partial replay) starts buffering again: this sync continues from its lastSeq.
    gates.set(socketId, { mode: 'buffer', buffer: [] });
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
   * Sends what the gate caught that the replay did not cover and the socket was not sent, and leaves a
   * floor at `afterRev` (or the last rev sent beyond it): until a live event beyond it comes, late ones
   * are checked the same way. Returns that rev (and the last seq of a new message sent). With `afterRev`
   * null (the replay failed), sends everything caught and removes the gate: the socket is back on live
   * delivery and the client may sync again.
   */
  private closeGate(
    channelId: string,
    socket: IoSocket,
    afterRev: number | null,
    covered: Covered = () => false,
  ): { lastRev: number; lastSeq: number } {
    const gate = this.gates.get(channelId)?.get(socket.id);
    let lastRev = afterRev ?? 0;
    let lastSeq = 0;
    for (const event of gate?.mode === 'buffer' ? gate.buffer : []) {
      if (afterRev !== null && covered(event)) continue;
      this.send(socket, event);
      lastRev = Math.max(lastRev, eventRev(event));
      if (event.name === 'message:new') lastSeq = Math.max(lastSeq, event.payload.seq);
    }
    if (afterRev === null) this.dropGate(channelId, socket.id);
    else this.replaceGate(channelId, socket.id, { mode: 'floor', floor: lastRev, covered });
    return { lastRev, lastSeq };
  }
}
