import type { ErrorBody } from './errors.js';
import type { MessageDto } from './models/Message.js';
import type { SendOutcome } from './queues.js';

/** Socket.IO rooms: every socket of a user is in its user room, and in one room per channel it belongs to. */
export const channelRoom = (channelId: string) => `channel:${channelId}`;
export const userRoom = (userId: string) => `user:${userId}`;

export interface SendPayload {
  channelId: string;
  body: string;
  clientMsgId: string;
}

export type Ack<T> = (response: T) => void;
export type ErrorAck = { ok: false; error: ErrorBody };

export interface ClientToServerEvents {
  'message:send': (payload: SendPayload, ack: Ack<SendOutcome>) => void;
}

export interface ServerToClientEvents {
  'message:new': (message: MessageDto) => void;
}

/** A membership change every front node applies to the local sockets of `userId` before acknowledging. */
export interface MembershipChange {
  userId: string;
  join: string[];
  leave: string[];
}

export interface InterServerEvents {
  'membership:change': (change: MembershipChange, ack: (done: true) => void) => void;
}

export interface SocketData {
  userId: string;
}
