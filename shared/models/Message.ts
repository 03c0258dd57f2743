import { BaseModel } from './BaseModel.js';

export interface ReactionDto {
  emoji: string;
  count: number;
  /** The first 50 users who reacted with it, in the order they did. */
  userIds: string[];
}

export interface MessageDto {
  id: string;
  channelId: string;
  seq: number;
  /** The channel rev of the message's latest change. */
  rev: number;
  userId: string;
  /** "" once deleted. */
  body: string;
  clientMsgId: string | null;
  /** The thread's top-level message, for a reply. */
  parentId: string | null;
  createdAt: string;
  editedAt: string | null;
  deleted: boolean;
  replyCount: number;
  lastReplyAt: string | null;
  reactions: ReactionDto[];
  mentions: string[];
}

export class Message extends BaseModel {
  static override tableName = 'messages';

  id!: string;
  channelId!: string;
  seq!: number;
  userId!: string;
  body!: string;
  clientMsgId!: string | null;
  createdAt!: Date;
  rev!: number;
  parentId!: string | null;
  editedAt!: Date | null;
  deletedAt!: Date | null;
  replyCount!: number;
  lastReplyAt!: Date | null;
  reactions!: ReactionDto[];
  mentions!: string[];

  toDto(): MessageDto {
    return toMessageDto(this);
  }
}

type Time = Date | string;
const iso = (t: Time) => (t instanceof Date ? t.toISOString() : new Date(t).toISOString());
const isoOrNull = (t: Time | null | undefined) => (t === null || t === undefined ? null : iso(t));

/**
 * Rows read with knex or returned as JSON by the database functions (snake_case), or by Objection
 * (camelCase), become the one message shape clients see.
 */
export function toMessageDto(row: {
  id: string;
  channelId?: string;
  channel_id?: string;
  seq: number | string;
  rev?: number | string;
  userId?: string;
  user_id?: string;
  body: string;
  clientMsgId?: string | null;
  client_msg_id?: string | null;
  parentId?: string | null;
  parent_id?: string | null;
  createdAt?: Time;
  created_at?: Time;
  editedAt?: Time | null;
  edited_at?: Time | null;
  deletedAt?: Time | null;
  deleted_at?: Time | null;
  replyCount?: number;
  reply_count?: number;
  lastReplyAt?: Time | null;
  last_reply_at?: Time | null;
  reactions?: ReactionDto[];
  mentions?: string[];
}): MessageDto {
  return {
    id: row.id,
    channelId: (row.channelId ?? row.channel_id)!,
    seq: Number(row.seq),
    rev: Number(row.rev ?? 0),
    userId: (row.userId ?? row.user_id)!,
    body: row.body,
    clientMsgId: row.clientMsgId ?? row.client_msg_id ?? null,
    parentId: row.parentId ?? row.parent_id ?? null,
    createdAt: iso((row.createdAt ?? row.created_at)!),
    editedAt: isoOrNull(row.editedAt ?? row.edited_at),
    deleted: (row.deletedAt ?? row.deleted_at ?? null) !== null,
    replyCount: Number(row.replyCount ?? row.reply_count ?? 0),
    lastReplyAt: isoOrNull(row.lastReplyAt ?? row.last_reply_at),
    reactions: row.reactions ?? [],
    mentions: row.mentions ?? [],
  };
}
