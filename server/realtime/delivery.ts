import type { Logger } from '../../shared/logger.js';
import { channelRoom } from '../../shared/events.js';
import type { MessageDto } from '../../shared/models/index.js';
import { SeqSet } from './seqSet.js';
import type { IoServer, IoSocket } from './types.js';

/**
 * Live delivery of `message:new` on one front node, and the seam between replay and live for resumes.
 *
 * Workers publish each committed batch once; the sequencer hands each channel's messages here in seq
 * order, and each goes to its local channel room, serialised once for all receivers. A socket joins that
 * fast path the moment it connects: nothing is held for sockets that do not resume.
 *
 * A socket that resumes a channel (in its handshake, or with `sync`) is held out of the fast path for
 * that channel only, while its replay runs: live messages wait behind the replay, then those it did not
 * cover follow. Every seq sent to a socket is remembered per channel, so nothing is sent to it twice,
 * whichever of live delivery and replay got there first.
 */
export interface ReplaySource {
  /** Up to `limit` messages of the channel with seq > afterSeq, ascending. */
  after(channelId: string, afterSeq: number, limit: number): Promise<MessageDto[]>;
}

export interface SyncChannelResult {
  /** Messages this replay sent (those the socket already had are not counted or sent again). */
  replayed: number;
  latestSeq: number;
  hasMore: boolean;
}

/**
 * How one socket's live messages of one channel are handled around a replay:
 *  - buffer: the replay runs; live messages wait behind it;
 *  - paused: the replay was cut at its limit; live messages are dropped until the next sync, which
 *    replays them from PostgreSQL without a gap;
 *  - floor: the replay is done; live messages up to `floor` are late copies of what was sent and are
 *    dropped, and the first one beyond it returns the socket to the shared fast path.
 */
type Gate = { mode: 'buffer'; buffer: MessageDto[] } | { mode: 'paused' } | { mode: 'floor'; floor: number };

export class Delivery {
  /** Per connected socket, per channel, the seqs it has been sent. */
  private readonly sent = new Map<string, Map<string, SeqSet>>();
  private readonly gates = new Map<string, Map<string, Gate>>();

  constructor(
    private readonly io: IoServer,
    private readonly deps: { replay: ReplaySource; replayLimit: number; logger: Logger },
  ) {}

  /** A socket that just connected: from now on its live messages are counted. */
  register(socket: IoSocket): void {
    this.sent.set(socket.id, new Map());
  }

  forget(socket: IoSocket): void {
    this.sent.delete(socket.id);
    for (const [channelId, gates] of this.gates) {
      gates.delete(socket.id);
      if (gates.size === 0) this.gates.delete(channelId);
    }
  }

  /** Messages of one committed batch, each channel's in seq order. */
  deliver(messages: MessageDto[]): void {
    const rooms = this.io.of('/').adapter.rooms;
    for (const message of messages) {
      const room = channelRoom(message.channelId);
      const members = rooms.get(room);
      if (!members) continue;
      let except: Set<string> | undefined;
      const gates = this.gates.get(message.channelId);
      if (gates) {
        for (const [socketId, gate] of gates) {
          if (gate.mode === 'floor' && message.seq > gate.floor) {
            this.dropGate(message.channelId, socketId);
            continue;
          }
          (except ??= new Set()).add(socketId);
          // Only what the socket would have got live: a gate never lets a channel's messages reach a
          // socket that is not in its room.
          if (gate.mode === 'buffer' && members.has(socketId)) gate.buffer.push(message);
        }
      }
      const target = this.io.local.to(room);
      (except ? target.except([...except]) : target).emit('message:new', message);
      for (const socketId of members) {
        if (!except?.has(socketId)) this.seqsOf(socketId, message.channelId)?.add(message.seq);
      }
    }
  }

  /**
   * Replays, for each channel, the messages after the client's lastSeq that this socket has not been
   * sent yet, then lets live delivery resume exactly where the replay ended. `isMember` says which
   * channels the user may read; the others are left untouched and reported as not found by the caller.
   */
  async sync(
    socket: IoSocket,
    lastSeqs: Map<string, number>,
    isMember: (channelIds: string[]) => Promise<Set<string>>,
  ): Promise<Map<string, SyncChannelResult>> {
    const channelIds = [...lastSeqs.keys()];
    // Gates first, synchronously: every live message from here on is caught for the seam.
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
        results.set(channelId, await this.replayChannel(socket, channelId, lastSeqs.get(channelId)!));
      } catch (err) {
        for (const id of channelIds.slice(channelIds.indexOf(channelId))) this.closeGate(id, socket, null);
        throw err;
      }
    }
    return results;
  }

  private async replayChannel(socket: IoSocket, channelId: string, lastSeq: number): Promise<SyncChannelResult> {
    const limit = this.deps.replayLimit;
    const rows = await this.deps.replay.after(channelId, lastSeq, limit + 1);
    const hasMore = rows.length > limit;
    const page = rows.slice(0, limit);
    let replayed = 0;
    for (const message of page) if (this.send(socket, message)) replayed++;
    const replayedUpTo = page.length > 0 ? page[page.length - 1].seq : lastSeq;
    if (hasMore) {
      this.replaceGate(channelId, socket.id, { mode: 'paused' });
      return { replayed, latestSeq: replayedUpTo, hasMore };
    }
    const latestSeq = this.closeGate(channelId, socket, replayedUpTo);
    return { replayed, latestSeq, hasMore };
  }

  /** Sends one message to one socket unless it was sent it already; says whether it did. */
  private send(socket: IoSocket, message: MessageDto): boolean {
    const seqs = this.seqsOf(socket.id, message.channelId);
    if (!seqs || seqs.has(message.seq)) return false;
    seqs.add(message.seq);
    socket.emit('message:new', message);
    return true;
  }

  private seqsOf(socketId: string, channelId: string): SeqSet | undefined {
    const channels = this.sent.get(socketId);
    if (!channels) return undefined;
    let seqs = channels.get(channelId);
    if (!seqs) channels.set(channelId, (seqs = new SeqSet()));
    return seqs;
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
   * Sends what the gate caught beyond `afterSeq` and leaves a floor at the last seq sent, so late live
   * copies are dropped; returns that seq. With `afterSeq` null (the replay failed), sends everything
   * caught and removes the gate: the socket is back on live delivery and the client may sync again.
   */
  private closeGate(channelId: string, socket: IoSocket, afterSeq: number | null): number {
    const gate = this.gates.get(channelId)?.get(socket.id);
    let last = afterSeq ?? 0;
    for (const message of gate?.mode === 'buffer' ? gate.buffer : []) {
      if (afterSeq !== null && message.seq <= last) continue;
      this.send(socket, message);
      last = Math.max(last, message.seq);
    }
    if (afterSeq === null) this.dropGate(channelId, socket.id);
    else this.replaceGate(channelId, socket.id, { mode: 'floor', floor: last });
    return last;
  }
}
