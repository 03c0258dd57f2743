import type { Knex } from 'knex';
import { NotFoundError } from '../../shared/errors.js';
import { Channel, ChannelMember, type ChannelKind } from '../../shared/models/index.js';
import { channelAccess } from './access.js';
import { pageFrom, type Page, type PageRead, type UnreadPageKey } from './pages.js';

export interface ReadState {
  channelId: string;
  seq: number;
}

/** Tells every socket of the user, on every front node, that a channel's read mark moved. */
export type ReadNotifier = (userId: string, read: ReadState) => void;

/**
 * Moves the caller's read mark forward to `seq` (never back, never past the channel's last seq) and
 * returns where it stands. Other devices hear of it only when it moved.
 */
export async function markRead(notify: ReadNotifier, userId: string, channelId: string, seq: number): Promise<ReadState> {
  await channelAccess(channelId, userId, 'channel.follow');
  const knex = ChannelMember.knex() as Knex;
  // The condition is re-checked on the locked row, so of racing reads only those that move the mark
  // update it, and each move is announced once.
  const moved = await knex.raw<{ rows: Array<{ last_read_seq: number }> }>(
    `UPDATE channel_members cm SET last_read_seq = LEAST(?::bigint, c.last_seq)
       FROM channels c
      WHERE cm.channel_id = ? AND cm.user_id = ? AND c.id = cm.channel_id
        AND cm.last_read_seq < LEAST(?::bigint, c.last_seq)
      RETURNING cm.last_read_seq`,
    [seq, channelId, userId, seq],
  );
  if (moved.rows[0]) {
    const read = { channelId, seq: moved.rows[0].last_read_seq };
    notify(userId, read);
    return read;
  }
  const member = await ChannelMember.query().findById([channelId, userId]);
  // Removed since policy allowed it: as if it had been refused.
  if (!member) throw new NotFoundError('Channel');
  return { channelId, seq: member.lastReadSeq };
}

export interface UnreadChannel {
  channelId: string;
  workspaceId: string;
  kind: ChannelKind;
  /** Null for a DM. */
  name: string | null;
  lastSeq: number;
  lastReadSeq: number;
  unreadCount: number;
  /** Unread messages, not deleted, that mention the reader. */
  mentionCount: number;
}

/**
 * SQL for a channel member's mentionCount, over `channels` joined with their membership row as `cm`:
 * a scan of the unread messages only, and none when there are none.
 */
export function mentionCountSql(userIdParam = '?'): string {
  return `CASE WHEN channels.last_seq > cm.last_read_seq THEN (
    SELECT count(*)::int FROM messages m
     WHERE m.channel_id = channels.id AND m.seq > cm.last_read_seq AND m.deleted_at IS NULL
       AND m.mentions @> ARRAY[${userIdParam}::uuid]
  ) ELSE 0 END`;
}

/** The order of the unread list: by workspace, then channels by name, then DMs (no name), each by id. */
const UNREAD_ORDER = ['channels.workspace_id', 'channels.name IS NULL', "coalesce(channels.name, '')", 'channels.id'];

/**
 * A page of the channels with unread messages across all the user's workspaces. Seqs are gap-free, so the
 * count is a subtraction on the membership row, not a scan of messages.
 */
export async function listUnread(userId: string, page: Page<UnreadPageKey>): Promise<PageRead<UnreadChannel, UnreadPageKey>> {
  const query = Channel.query()
    .join('channel_members as cm', 'cm.channel_id', 'channels.id')
    .where('cm.user_id', userId)
    .whereRaw('channels.last_seq > cm.last_read_seq');
  if (page.after) {
    const { workspaceId, name, channelId } = page.after;
    query.whereRaw(`(${UNREAD_ORDER.join(', ')}) > (?::uuid, ?::boolean, ?::text, ?::uuid)`, [workspaceId, name === null, name ?? '', channelId]);
  }
  const rows = await query
    .orderByRaw(UNREAD_ORDER.join(', '))
    .limit(page.limit + 1)
    .select(
      'channels.id as channelId',
      'channels.workspace_id as workspaceId',
      'channels.kind',
      'channels.name',
      'channels.last_seq as lastSeq',
      'cm.last_read_seq as lastReadSeq',
      Channel.raw(`${mentionCountSql()} AS "mentionCount"`, [userId]),
    )
    .castTo<Array<Omit<UnreadChannel, 'unreadCount'>>>();
  const { items, next } = pageFrom(rows, page.limit, (last) => ({ workspaceId: last.workspaceId, name: last.name, channelId: last.channelId }));
  return { items: items.map((r) => ({ ...r, unreadCount: r.lastSeq - r.lastReadSeq })), next };
}
