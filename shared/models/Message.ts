import { BaseModel } from './BaseModel.js';

export interface MessageDto {
  id: string;
  channelId: string;
  seq: number;
  userId: string;
  body: string;
  clientMsgId: string | null;
  createdAt: string;
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

  toDto(): MessageDto {
    return toMessageDto(this);
  }
}

/** Rows read with knex (snake_case) or Objection (camelCase) become the one message shape clients see. */
export function toMessageDto(row: {
  id: string;
  channelId?: string;
  channel_id?: string;
  seq: number;
  userId?: string;
  user_id?: string;
  body: string;
  clientMsgId?: string | null;
  client_msg_id?: string | null;
  createdAt?: Date | string;
  created_at?: Date | string;
}): MessageDto {
  const createdAt = row.createdAt ?? row.created_at!;
  return {
    id: row.id,
    channelId: (row.channelId ?? row.channel_id)!,
    seq: Number(row.seq),
    userId: (row.userId ?? row.user_id)!,
    body: row.body,
    clientMsgId: row.clientMsgId ?? row.client_msg_id ?? null,
    createdAt: createdAt instanceof Date ? createdAt.toISOString() : new Date(createdAt).toISOString(),
  };
}
