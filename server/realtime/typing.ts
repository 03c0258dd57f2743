import type { Redis } from 'ioredis';
import { channelRoom } from '../../shared/events.js';
import Joi, { UUID_PATTERN } from '../../shared/validation.js';
import { authorize } from '../../shared/policy.js';
import type { IoServer, IoSocket } from './types.js';

export type TypingAck = { ok: true };

/** `typing:start` and `typing:stop`: the channel, nothing else. */
export const typingSchema = Joi.object<{ channelId: string }>({ channelId: Joi.string().max(64).required() });

/** At most one `typing` per user and channel is passed on in this window, whichever node its sockets are on. */
export const TYPING_THROTTLE_MS = 2000;

/**
 * Typing indicators: ephemeral, so never stored and never queued. They go straight to the channel's room
 * through the Redis adapter (every node), with Socket.IO's `volatile` flag: a receiving socket whose
 * transport is still writing earlier packets (a slow client, a polling client between two polls) drops
 * them, so they never wait behind messages. Clients repeat them while the user types.
 */
export function createTyping(deps: { io: IoServer; redis: Redis; redisPrefix: string }) {
  const { redis } = deps;
  const { io } = deps;
  const throttleKey = (userId: string, channelId: string) => `${deps.redisPrefix}:typing:${userId}:${channelId}`;

  /**
   * The channel the socket may signal in, lower-cased like the rooms. The socket's room stands for its
   * user's membership: it follows membership on every node before a change returns, so no query is needed.
   */
  function channelOf(socket: IoSocket, channelId: string): string {
    const id = UUID_PATTERN.test(channelId) ? channelId.toLowerCase() : '';
    // The rule reads the subscription alone, not the actor's role (a subscribed socket's user is a member).
    authorize({ userId: socket.data.userId, role: null }, 'channel.typing', { subscribed: id !== '' && socket.rooms.has(channelRoom(id)) });
    return id;
  }

  /**
   * The channel's other sockets (issue #12), on every node: all but the one that signalled, the user's own
   * other devices included (a client leaves out its own user); dropped where the transport is busy.
   */
  function toOthers(socket: IoSocket, channelId: string) {
    return io.to(channelRoom(channelId)).except(socket.id).volatile;
  }

  return {
    async start(socket: IoSocket, value: { channelId: string }): Promise<TypingAck> {
      const channelId = channelOf(socket, value.channelId);
      const userId = socket.data.userId;
      // One key per user and channel in Redis: the throttle holds across the user's sockets and nodes.
      const first = await redis.set(throttleKey(userId, channelId), '1', 'PX', TYPING_THROTTLE_MS, 'NX');
      if (first === 'OK') toOthers(socket, channelId).emit('typing', { channelId, userId });
      return { ok: true };
    },

    async stop(socket: IoSocket, value: { channelId: string }): Promise<TypingAck> {
      const channelId = channelOf(socket, value.channelId);
      const userId = socket.data.userId;
      // Typing again right after stopping is news: it is passed on at once.
      await redis.del(throttleKey(userId, channelId));
      toOthers(socket, channelId).emit('typing:stopped', { channelId, userId });
      return { ok: true };
    },
  };
}

export type Typing = ReturnType<typeof createTyping>;
