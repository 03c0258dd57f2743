import type { ErrorBody } from './errors.js';
import type { ChannelDto } from './models/Channel.js';
import type { MessageDto } from './models/Message.js';
import type { SendOutcome } from './queues.js';

/** Socket.IO rooms: every socket of a user is in its user room, and in one room per channel it belongs to. */
export const channelRoom = (channelId: string) => `channel:${channelId}`;
export const userRoom = (userId: string) => `user:${userId}`;
/** Every socket authenticated with the token whose `jti` this is (logout disconnects them, on every node). */
export const tokenRoom = (jti: string) => `token:${jti}`;

/** The Redis channel prefix shared by the front nodes' adapter and the workers' emitter. */
export const socketAdapterKey = (redisPrefix: string) => `${redisPrefix}:socket.io`;

export interface SendPayload {
  channelId: string;
  body: string;
  clientMsgId: string;
}

export interface SyncPayload {
  /** channelId → the last seq the client has. */
  channels: Record<string, number>;
}

export type SyncChannelAck = { replayed: number; latestSeq: number; hasMore: boolean } | { error: ErrorBody };
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
  sync: (payload: SyncPayload, ack: Ack<SyncAck>) => void;
  'channel:read': (payload: ReadPayload, ack?: Ack<ReadAck>) => void;
}

export interface ServerToClientEvents {
  'message:new': (message: MessageDto) => void;
  'channel:read': (read: ReadPayload) => void;
  'sync:done': (done: SyncDone) => void;
  /** To the channel's members' sockets on every node: renamed, topic set, archived or unarchived. */
  'channel:updated': (update: ChannelUpdated) => void;
  /** Just before the server disconnects a socket whose token was revoked (logout, password change) or expired. */
  'session:revoked': (reason: SessionRevoked) => void;
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
}

export const MESSAGES_CREATED = 'messages:created';

export interface InterServerEvents {
  'membership:change': (change: MembershipChange, ack: (done: true) => void) => void;
  /** Published by a worker once per committed batch; each front node delivers to its local rooms. */
  'messages:created': (messages: MessageDto[]) => void;
}

export interface SocketData {
  userId: string;
  /** The handshake token's `jti` and `exp` (seconds since the epoch). */
  jti: string;
  exp: number;
  /** The handshake's `auth.resume`: channelId → last seq the client has. */
  resume?: Record<string, number>;
}
