import { ChannelMember } from '../../shared/models/index.js';
import { channelRoom, roomChannel, tokenRoom, userRoom, type MembershipChange } from '../../shared/events.js';
import type { Logger } from '../../shared/logger.js';
import type { Subscriptions } from '../domain/subscriptions.js';
import type { IoServer, IoSocket } from './types.js';

/** Told, on each node, that a user may share fewer people than before (MembershipChange.narrowed). */
export type NarrowedListener = (userId: string) => Promise<void>;
/** Told, on each node, just before a connected socket enters channels' rooms: channelId → rev (MembershipChange.channelRevs). */
export type JoinedListener = (socketId: string, join: Record<string, number>) => void;

/** The users' memberships, each with its channel's latest rev as of this read. */
async function memberships(userIds: string[]): Promise<Array<{ userId: string; channelId: string; lastRev: number }>> {
  const rows = await ChannelMember.query()
    .join('channels', 'channels.id', 'channel_members.channel_id')
    .whereIn('channel_members.user_id', userIds)
    .select('channel_members.user_id', 'channel_members.channel_id', 'channels.last_rev');
  return rows.map((r) => ({ userId: r.userId, channelId: r.channelId, lastRev: (r as unknown as { lastRev: number }).lastRev }));
}

/**
 * Keeps each socket in the rooms of exactly its user's channels, on every front node.
 *
 * A socket is subscribed before its handshake completes, so by the time a client sees `connect` it is in
 * every channel room. Its user room is joined first and membership changes that arrive while its channels
 * are being read are held and applied after, so a change racing a connect is never lost.
 */
export function createSubscriptions(
  io: IoServer,
  logger: Logger,
): Subscriptions & {
  subscribe(socket: IoSocket): Promise<void>;
  resync(): Promise<void>;
  onNarrowed(listener: NarrowedListener): void;
  onJoined(listener: JoinedListener): void;
} {
  const adapter = () => io.of('/').adapter;
  const subscribing = new Map<string, MembershipChange[]>();
  const narrowedListeners: NarrowedListener[] = [];
  const joinedListeners: JoinedListener[] = [];

  function applyTo(socketId: string, change: MembershipChange): void {
    const held = subscribing.get(socketId);
    if (held) {
      held.push(change);
      return;
    }
    if (change.join.length > 0) {
      if (change.channelRevs) for (const listener of joinedListeners) listener(socketId, change.channelRevs);
      // The adapter, not socket.join: a socket still in its handshake is not in the namespace yet.
      void adapter().addAll(socketId, new Set(change.join.map(channelRoom)));
    }
    for (const channelId of change.leave) void adapter().del(socketId, channelRoom(channelId));
  }

  /** The socket's rooms are read: the changes held meanwhile are applied, in order, and no more are held. */
  function release(socketId: string): void {
    const held = subscribing.get(socketId) ?? [];
    subscribing.delete(socketId);
    for (const change of held) applyTo(socketId, change);
  }

  /** Rooms at once; then, when the user may share fewer people, what follows from that on this node. */
  async function applyLocally(change: MembershipChange): Promise<void> {
    for (const socketId of [...(adapter().rooms.get(userRoom(change.userId)) ?? [])]) applyTo(socketId, change);
    if (!change.narrowed && change.leave.length === 0) return;
    try {
      await Promise.all(narrowedListeners.map((listener) => listener(change.userId)));
    } catch (err) {
      logger.warn({ err, userId: change.userId }, 'could not apply a narrowed membership on this node');
    }
  }

  io.on('membership:change', (change, ack) => {
    void applyLocally(change).then(() => ack(true));
  });

  return {
    onNarrowed(listener) {
      narrowedListeners.push(listener);
    },

    onJoined(listener) {
      joinedListeners.push(listener);
    },

    async apply(change) {
      // This node's rooms change at once (before applyLocally's first await); the rest here and on the
      // other nodes proceeds side by side.
      const local = applyLocally(change);
      try {
        await io.serverSideEmitWithAck('membership:change', change);
      } catch (err) {
        // A node that does not answer in time is gone or cut off from Redis; its sockets are too.
        logger.warn({ err, userId: change.userId }, 'not every front node confirmed a membership change');
      }
      await local;
    },

    /**
     * Rebuilds every local socket's channel rooms from PostgreSQL. For when this node's adapter subscription
     * was lost and is back: the membership changes published meanwhile never reached it (the adapter does
     * not even wait for a node that is not subscribed), and without this its sockets would stay out of a
     * channel they joined, or in one they left, until they reconnect. Changes heard during the read are
     * held and applied after it, as during a handshake.
     */
    async resync() {
      const sockets = [...io.of('/').sockets.values()].filter((s) => !subscribing.has(s.id));
      if (sockets.length === 0) return;
      for (const socket of sockets) subscribing.set(socket.id, []);
      try {
        const users = [...new Set(sockets.map((s) => s.data.userId))];
        // Per user, channelId → the channel's rev as of this read.
        const channelsOf = new Map<string, Record<string, number>>(users.map((u) => [u, {}]));
        for (const row of await memberships(users)) channelsOf.get(row.userId)![row.channelId] = row.lastRev;
        for (const socket of sockets) {
          const channelRevs = channelsOf.get(socket.data.userId)!;
          const want = new Set(Object.keys(channelRevs).map(channelRoom));
          for (const room of socket.rooms) if (roomChannel(room) !== null && !want.has(room)) void adapter().del(socket.id, room);
          if (want.size === 0) continue;
          // A channel joined while the node was cut off: its membership's rev is unknown here, and what was
          // committed before this read never reached this node, so it starts at this read's rev; one the
          // socket is in already keeps its own (Delivery.joined).
          for (const listener of joinedListeners) listener(socket.id, channelRevs);
          void adapter().addAll(socket.id, want);
        }
        logger.info({ sockets: sockets.length }, 'channel rooms rebuilt after the adapter subscription came back');
      } finally {
        for (const socket of sockets) release(socket.id);
      }
    },

    async subscribe(socket) {
      const userId = socket.data.userId;
      subscribing.set(socket.id, []);
      try {
        await adapter().addAll(socket.id, new Set([userRoom(userId), tokenRoom(socket.data.jti)]));
        // Each channel's rev with the membership: what the socket's live events follow on from.
        const rows = await memberships([userId]);
        const channelRevs = Object.fromEntries(rows.map((r) => [r.channelId, r.lastRev]));
        await adapter().addAll(socket.id, new Set(rows.map((r) => channelRoom(r.channelId))));
        // A channel joined after the read: its live events follow on from the rev of that join. One the
        // read found keeps the read's, later: what came between was committed before the socket connected.
        for (const change of subscribing.get(socket.id) ?? []) {
          for (const [channelId, rev] of Object.entries(change.channelRevs ?? {})) channelRevs[channelId] ??= rev;
        }
        socket.data.channelRevs = channelRevs;
      } catch (err) {
        subscribing.delete(socket.id);
        await adapter().delAll(socket.id);
        throw err;
      }
      release(socket.id);
    },
  };
}
