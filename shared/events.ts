import type { ErrorBody } from './errors.js';
import type { ChannelDto } from './models/Channel.js';
import { toMessageDto, type MessageDto } from './models/Message.js';
import type { SendOutcome } from './queues.js';

/** Socket.IO rooms: every socket of a user is in its user room, and in one room per channel it belongs to. */
const CHANNEL_ROOM = 'channel:';
export const channelRoom = (channelId: string) => `${CHANNEL_ROOM}${channelId}`;
/** The channel whose room this is, or null for any other room. */
export const roomChannel = (room: string): string | null => (room.startsWith(CHANNEL_ROOM) ? room.slice(CHANNEL_ROOM.length) : null);
export const userRoom = (userId: string) => `user:${userId}`;
/** Every socket authenticated with the token whose `jti` this is (logout disconnects them, on every node). */
export const tokenRoom = (jti: string) => `token:${jti}`;

/** The Redis channel prefix shared by the front nodes' adapter and the workers' emitter. */
export const socketAdapterKey = (redisPrefix: string) => `${redisPrefix}:socket.io`;

export interface SendPayload {
  channelId: string;
  body: string;
  clientMsgId?: string;
  /** Makes the message a reply in that message's thread. */
  parentId?: string;
}

export interface EditPayload {
  channelId: string;
  messageId: string;
  body: string;
  clientChangeId?: string;
}

export interface DeletePayload {
  channelId: string;
  messageId: string;
  clientChangeId?: string;
}

export interface ReactionPayload {
  channelId: string;
  messageId: string;
  emoji: string;
  clientChangeId?: string;
}

/** Where a client resumes a channel from: the last seq it has, or the last rev (every change after it). */
export type ResumePoint = number | { rev: number };

export interface SyncPayload {
  channels: Record<string, ResumePoint>;
}

export type SyncChannelAck =
  | { replayed: number; latestSeq: number; latestRev: number; hasMore: boolean }
  | { replayed: number; latestRev: number; hasMore: boolean }
  | { error: ErrorBody };
export type SyncAck = { ok: true; channels: Record<string, SyncChannelAck> } | { ok: false; error: ErrorBody };
/** After a handshake that declared `auth.resume`: what each channel's replay did, as `sync` acks it. */
export interface SyncDone {
  channels: Record<string, SyncChannelAck>;
}

export interface ReadPayload {
  channelId: string;
  seq: number;
}

export type ReadAck = { ok: true; channelId: string; seq: number } | { ok: false; error: ErrorBody };

export type Ack<T> = (response: T) => void;

export interface ClientToServerEvents {
  'message:send': (payload: SendPayload, ack: Ack<SendOutcome>) => void;
  'message:edit': (payload: EditPayload, ack: Ack<SendOutcome>) => void;
  'message:delete': (payload: DeletePayload, ack: Ack<SendOutcome>) => void;
  'reaction:add': (payload: ReactionPayload, ack: Ack<SendOutcome>) => void;
  'reaction:remove': (payload: ReactionPayload, ack: Ack<SendOutcome>) => void;
  sync: (payload: SyncPayload, ack: Ack<SyncAck>) => void;
  'channel:read': (payload: ReadPayload, ack?: Ack<ReadAck>) => void;
}

export interface MessageUpdated {
  channelId: string;
  rev: number;
  message: MessageDto;
}

export interface MessageDeleted {
  channelId: string;
  rev: number;
  messageId: string;
  seq: number;
}

export interface ReactionChanged {
  channelId: string;
  rev: number;
  messageId: string;
  emoji: string;
  userId: string;
}

/**
 * Every change to a channel's messages, as it is emitted to the channel's sockets (and replayed by a
 * resume by rev): `name` is the event name, `payload` what the socket receives. Each carries the
 * channel's rev of the change.
 */
export type ChannelEvent =
  | { name: 'message:new'; payload: MessageDto }
  | { name: 'message:updated'; payload: MessageUpdated }
  | { name: 'message:deleted'; payload: MessageDeleted }
  | { name: 'reaction:added'; payload: ReactionChanged }
  | { name: 'reaction:removed'; payload: ReactionChanged };

export type ChannelEventName = ChannelEvent['name'];

/** A change event as the database functions return it (channel_event_json in migrations/). */
export interface ChannelEventRow {
  rev: number | string;
  kind: ChannelEventName;
  message_id: string;
  user_id: string | null;
  emoji: string | null;
  seq: number | string | null;
  message: Parameters<typeof toMessageDto>[0] | null;
}

/** The one mapping from the change log to what sockets receive: live and replayed events are the same. */
export function toChannelEvent(channelId: string, row: ChannelEventRow): ChannelEvent {
  const rev = Number(row.rev);
  switch (row.kind) {
    case 'message:new':
      return { name: row.kind, payload: toMessageDto(row.message!) };
    case 'message:updated':
      return { name: row.kind, payload: { channelId, rev, message: toMessageDto(row.message!) } };
    case 'message:deleted':
      return { name: row.kind, payload: { channelId, rev, messageId: row.message_id, seq: Number(row.seq) } };
    default:
      return { name: row.kind, payload: { channelId, rev, messageId: row.message_id, emoji: row.emoji!, userId: row.user_id! } };
  }
}

export const eventRev = (event: ChannelEvent): number => event.payload.rev;
export const eventChannel = (event: ChannelEvent): string => event.payload.channelId;

export interface ServerToClientEvents {
  'message:new': (message: MessageDto) => void;
  'message:updated': (update: MessageUpdated) => void;
  'message:deleted': (deleted: MessageDeleted) => void;
  'reaction:added': (reaction: ReactionChanged) => void;
  'reaction:removed': (reaction: ReactionChanged) => void;
  'channel:read': (read: ReadPayload) => void;
  'sync:done': (done: SyncDone) => void;
  /** To the channel's members' sockets on every node: renamed, topic set, archived or unarchived. */
  'channel:updated': (update: ChannelUpdated) => void;
  /** Just before the server disconnects a socket whose token was revoked (logout, password change) or expired. */
  'session:revoked': (reason: SessionRevoked) => void;
  /** To the channel's other members' sockets, volatile (server/realtime/typing.ts). */
  typing: (event: TypingEvent) => void;
  'typing:stopped': (event: TypingEvent) => void;
  /** To the sockets subscribed to the user, on every change of their status (server/realtime/presence.ts). */
  presence: (event: PresenceEvent) => void;
}

/** `typing` and `typing:stopped`. */
export interface TypingEvent {
  channelId: string;
  userId: string;
}

export type PresenceStatus = 'online' | 'offline';

/** `presence`. */
export interface PresenceEvent {
  userId: string;
  status: PresenceStatus;
}

export interface ChannelUpdated {
  channel: ChannelDto;
}

export interface SessionRevoked {
  code: 'UNAUTHORIZED';
  message: string;
}

/** A membership change every front node applies to the local sockets of `userId` before acknowledging. */
export interface MembershipChange {
  userId: string;
  join: string[];
  leave: string[];
  /**
   * Of `join`, channelId → the channel's `last_rev` as of the membership's commit, read under the channel
   * row's share lock (a batch of the channel commits wholly before it or after it): the user's sockets
   * are owed the channel's events after that rev, and one the node misses after it is filled in. Beside
   * `join`, not in it, so that nodes of the previous release, which lack it, still agree on the rooms.
   */
  channelRevs?: Record<string, number>;
  /**
   * The user may now share fewer people than before (removed from or left a workspace, made a guest):
   * every node drops the presence subscriptions, both ways, that policy no longer allows. Implied when
   * `leave` is not empty (a guest sees the members of their channels).
   */
  narrowed?: boolean;
}

export const CHANNEL_EVENTS = 'channel:events';

export interface InterServerEvents {
  'membership:change': (change: MembershipChange, ack: (done: true) => void) => void;
  /** Published by a worker once per committed batch; each front node delivers to its local rooms. */
  'channel:events': (events: ChannelEvent[]) => void;
}

export interface SocketData {
  userId: string;
  /** The handshake token's `jti` and `exp` (seconds since the epoch). */
  jti: string;
  exp: number;
  /** The handshake's `auth.resume`: channelId → where the client resumes it from. */
  resume?: Record<string, ResumePoint>;
  /**
   * channelId → the channel's latest rev, read with the socket's memberships in its handshake: its live
   * events start after it, and one the node misses after it is filled in (server/realtime/delivery.ts).
   */
  channelRevs?: Record<string, number>;
}
