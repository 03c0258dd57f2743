import type { Logger } from '../../shared/logger.js';
import { channelRoom } from '../../shared/events.js';
import type { MessageDto } from '../../shared/models/index.js';
import type { IoServer, IoSocket } from './types.js';

/**
 * Live delivery of `message:new` on one front node, and the seam between replay and live for `sync`.
 *
 * Workers publish each committed batch once; every front node hands each message to its local channel
 * room in seq order, serialised once for all receivers. Two kinds of sockets are held out of that fast
 * path and served one by one:
 *  - a socket that just connected, for a short hold, so a reconnecting client's `sync` can come first and
 *    nothing live overtakes the messages it missed;
 *  - a socket with a `sync` in progress for a channel: live messages of that channel are buffered behind
 *    the replay, then only those with a seq beyond it are sent.
 */
export interface ReplaySource {
  /** Up to `limit` messages of the channel with seq > afterSeq, ascending. */
  after(channelId: string, afterSeq: number, limit: number): Promise<MessageDto[]>;
}

export interface SyncChannelResult {
  replayed: number;
  latestSeq: number;
  hasMore: boolean;
}

interface Hold {
  buffer: MessageDto[];
  timer: NodeJS.Timeout;
}

/**
 * How one socket's live messages of one channel are handled around a `sync`:
 *  - buffer: the replay runs; live messages wait behind it;
 *  - paused: the replay was cut at its limit; live messages are dropped until the next sync;
 *  - floor: the replay is done; live messages up to `floor` are late copies of replayed ones and are
 *    dropped, and the first one beyond it returns the socket to the shared fast path.
 */
type Gate = { mode: 'buffer'; buffer: MessageDto[] } | { mode: 'paused' } | { mode: 'floor'; floor: number };

const MAX_HELD_MESSAGES = 2000;

export class Delivery {
  private readonly holds = new Map<string, Hold>();
  private readonly gates = new Map<string, Map<string, Gate>>();

  constructor(
    private readonly io: IoServer,
    private readonly deps: { replay: ReplaySource; holdMs: number; replayLimit: number; logger: Logger },
  ) {}

  /** Messages of one committed batch, each channel's in seq order. */
  deliver(messages: MessageDto[]): void {
    for (const message of messages) {
      const room = channelRoom(message.channelId);
      const except: string[] = [];
      const gates = this.gates.get(message.channelId);
      if (gates) {
        for (const [socketId, gate] of gates) {
          if (gate.mode === 'floor' && message.seq > gate.floor) {
            this.dropGate(message.channelId, socketId);
            continue;
          }
          except.push(socketId);
          if (gate.mode === 'buffer') gate.buffer.push(message);
        }
      }
      for (const [socketId, hold] of this.holds) {
        const socket = this.io.of('/').sockets.get(socketId);
        if (!socket?.rooms.has(room) || gates?.has(socketId)) continue;
        except.push(socketId);
        hold.buffer.push(message);
        if (hold.buffer.length > MAX_HELD_MESSAGES) this.release(socket);
      }
      const target = this.io.local.to(room);
      (except.length > 0 ? target.except(except) : target).emit('message:new', message);
    }
  }

  /** A new socket: live messages wait for its first `sync` or any other event, at most holdMs. */
  hold(socket: IoSocket): void {
    if (this.deps.holdMs <= 0) return;
    const timer = setTimeout(() => this.release(socket), this.deps.holdMs);
    timer.unref();
    this.holds.set(socket.id, { buffer: [], timer });
  }

  /** Ends the socket's hold: what was held goes out now, in order, except channels about to be replayed. */
  release(socket: IoSocket, replaying: Set<string> = new Set()): void {
    const hold = this.holds.get(socket.id);
    if (!hold) return;
    this.holds.delete(socket.id);
    clearTimeout(hold.timer);
    for (const message of hold.buffer) {
      const gate = this.gates.get(message.channelId)?.get(socket.id);
      if (gate?.mode === 'buffer' && replaying.has(message.channelId)) gate.buffer.push(message);
      else socket.emit('message:new', message);
    }
  }

  forget(socket: IoSocket): void {
    const hold = this.holds.get(socket.id);
    if (hold) clearTimeout(hold.timer);
    this.holds.delete(socket.id);
    for (const [channelId, gates] of this.gates) {
      gates.delete(socket.id);
      if (gates.size === 0) this.gates.delete(channelId);
    }
  }

  /**
   * Replays, for each channel, the messages after the client's lastSeq, then lets live delivery resume
   * exactly where the replay ended. `isMember` says which channels the user may read; the others are
   * left untouched and reported as not found by the caller.
   */
  async sync(
    socket: IoSocket,
    lastSeqs: Map<string, number>,
    isMember: (channelIds: string[]) => Promise<Set<string>>,
  ): Promise<Map<string, SyncChannelResult>> {
    const channelIds = [...lastSeqs.keys()];
    // Gates first, synchronously: every live message from here on is caught for the seam.
    for (const channelId of channelIds) this.openGate(channelId, socket.id);
    this.release(socket, new Set(channelIds));

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
      // Subscribed now even if the connect-time subscription has not landed yet.
      socket.join(channelRoom(channelId));
      try {
        results.set(channelId, await this.replayChannel(socket, channelId, lastSeqs.get(channelId)!));
      } catch (err) {
        this.closeGate(channelId, socket, null);
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
    for (const message of page) socket.emit('message:new', message);
    const replayedUpTo = page.length > 0 ? page[page.length - 1].seq : lastSeq;
    if (hasMore) {
      // The client is still behind: live messages of this channel would open a gap, so they are
      // dropped until its next sync picks up from replayedUpTo.
      this.replaceGate(channelId, socket.id, { mode: 'paused' });
      return { replayed: page.length, latestSeq: replayedUpTo, hasMore };
    }
    const latestSeq = this.closeGate(channelId, socket, replayedUpTo);
    return { replayed: page.length, latestSeq, hasMore };
  }

  private openGate(channelId: string, socketId: string): void {
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
   * Sends what the gate caught beyond `afterSeq` and leaves a floor there, so late live copies of what
   * was just sent are dropped; returns the last seq sent. With `afterSeq` null (the replay failed),
   * sends everything caught and removes the gate.
   */
  private closeGate(channelId: string, socket: IoSocket, afterSeq: number | null): number {
    const gate = this.gates.get(channelId)?.get(socket.id);
    let last = afterSeq ?? 0;
    for (const message of gate?.mode === 'buffer' ? gate.buffer : []) {
      if (afterSeq !== null && message.seq <= last) continue;
      socket.emit('message:new', message);
      last = Math.max(last, message.seq);
    }
    if (afterSeq === null) this.dropGate(channelId, socket.id);
    else this.replaceGate(channelId, socket.id, { mode: 'floor', floor: last });
    return last;
  }
}
