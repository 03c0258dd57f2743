import type { Knex } from 'knex';
import { ValidationError } from '../../shared/errors.js';
import { Channel, ChannelMember, WorkspaceMember, type ChannelDto } from '../../shared/models/index.js';
import { authorizeInWorkspace, workspaceActor } from './access.js';
import type { ChannelMemberDto } from './channels.js';
import { authorize, type DmPerson } from '../../shared/policy.js';
import { microsIso, pageFrom, type Page, type PageRead, type TimeIdKey } from './pages.js';
import { mentionCountSql } from './readState.js';
import { joinChange, type Subscriptions } from './subscriptions.js';

/** How many people a DM has, the caller included. */
export const DM_MIN_PEOPLE = 2;
export const DM_MAX_PEOPLE = 9;

export interface DmDto extends ChannelDto {
  members: ChannelMemberDto[];
}

export interface DmListItem extends DmDto {
  /** When its latest message was sent, or when it was opened if it has none. */
  lastActivityAt: string;
  lastSeq: number;
  lastReadSeq: number;
  unreadCount: number;
  mentionCount: number;
}

type Deps = { subscriptions: Subscriptions };

/**
 * The DM of the caller and `userIds` in the workspace: the one there is for that set of people, or a new
 * one (`created`). Concurrent opens of the same set find the same DM: the insert is ON CONFLICT on the
 * workspace and the sorted set (a unique index), so one row wins and the others read it.
 *
 * Someone of the set who has no membership row (removed from the workspace, then added back) gets it back
 * here: the same people find the same conversation, history included.
 */
export async function openDm(
  deps: Deps,
  callerId: string,
  workspaceId: string,
  userIds: string[],
): Promise<{ channel: DmDto; created: boolean }> {
  const people = [...new Set([callerId, ...userIds])];
  if (people.length < DM_MIN_PEOPLE || people.length > DM_MAX_PEOPLE) {
    throw new ValidationError(
      `"userIds" with the caller must make ${DM_MIN_PEOPLE} to ${DM_MAX_PEOPLE} different people, not ${people.length}`,
      [{ field: 'userIds' }],
    );
  }
  const { channel, created, joined } = await Channel.transaction(async (trx) => {
    // Shared with other opens, exclusive of a removal from the workspace (lockWorkspace): nobody removed
    // meanwhile keeps a membership row in a DM opened with them.
    await trx.raw('SELECT 1 FROM workspaces WHERE id = ? FOR SHARE', [workspaceId]);
    const actor = await workspaceActor(workspaceId, callerId, trx);
    authorize(actor, 'dm.open', { workspaceId, people: actor.role === null ? [] : await dmPeople(trx, workspaceId, callerId, people) });
    const sortedIds = trx.raw('ARRAY(SELECT DISTINCT u FROM unnest(?::uuid[]) AS u ORDER BY u)', [people]);
    const inserted = await trx.raw<{ rows: Array<{ id: string }> }>(
      `INSERT INTO channels (workspace_id, kind, name, is_private, dm_user_ids, created_by)
       VALUES (?, 'dm', NULL, true, ?, ?)
       ON CONFLICT (workspace_id, dm_user_ids) WHERE kind = 'dm' DO NOTHING
       RETURNING id`,
      [workspaceId, sortedIds, callerId],
    );
    // Share-locked, as a join locks its channel: no batch of the DM commits between its rev read here
    // and the memberships' commit.
    const found = await Channel.query(trx)
      .where({ workspace_id: workspaceId, kind: 'dm' })
      .whereRaw('dm_user_ids = ?', [sortedIds])
      .forShare()
      .first();
    if (!found) throw new Error('the DM row is neither inserted nor found');
    const rows = await trx('channel_members')
      .insert(people.map((userId) => ({ channel_id: found.id, user_id: userId })))
      .onConflict(['channel_id', 'user_id'])
      .ignore()
      .returning('user_id');
    return { channel: found, created: inserted.rows.length > 0, joined: rows.map((r: { user_id: string }) => r.user_id) };
  });
  await Promise.all(joined.map((userId) => deps.subscriptions.apply(joinChange(userId, channel.id, channel.lastRev))));
  const [members] = await membersOf([channel.id]);
  return { channel: { ...channel.toDto(), members: members ?? [] }, created };
}

/** The people of a DM as policy decides on them: their role in the workspace, and whether they share a channel with the caller. */
async function dmPeople(trx: Knex.Transaction, workspaceId: string, callerId: string, people: string[]): Promise<DmPerson[]> {
  const [members, sharing] = await Promise.all([
    WorkspaceMember.query(trx).where('workspace_id', workspaceId).whereIn('user_id', people),
    trx('channel_members as mine')
      .join('channels as c', 'c.id', 'mine.channel_id')
      .join('channel_members as theirs', 'theirs.channel_id', 'mine.channel_id')
      .where('mine.user_id', callerId)
      .where('c.workspace_id', workspaceId)
      .whereIn('theirs.user_id', people)
      .distinct('theirs.user_id as userId') as Promise<Array<{ userId: string }>>,
  ]);
  const roles = new Map(members.map((m) => [m.userId, m.role]));
  const shares = new Set(sharing.map((s) => s.userId));
  return people.map((userId) => ({ userId, role: roles.get(userId) ?? null, sharesChannel: shares.has(userId) }));
}

/** The members of each channel, by `channelIds`' order, each list in the order they joined. */
async function membersOf(channelIds: string[]): Promise<ChannelMemberDto[][]> {
  const rows = await ChannelMember.query()
    .join('users', 'users.id', 'channel_members.user_id')
    .whereIn('channel_members.channel_id', channelIds)
    .orderBy('channel_members.created_at')
    .orderBy('users.id')
    .select('channel_members.channel_id as channelId', 'users.id as userId', 'users.display_name as displayName')
    .castTo<Array<ChannelMemberDto & { channelId: string }>>();
  const byChannel = new Map<string, ChannelMemberDto[]>(channelIds.map((id) => [id, []]));
  for (const { channelId, ...member } of rows) byChannel.get(channelId)!.push(member);
  return channelIds.map((id) => byChannel.get(id)!);
}

/** The caller's DMs in the workspace with their members, the most recently active first. */
export async function listDms(userId: string, workspaceId: string, page: Page<TimeIdKey>): Promise<PageRead<DmListItem, TimeIdKey>> {
  await authorizeInWorkspace(userId, 'workspace.view', { workspaceId });
  // A message's seq is its channel's last_seq when it is the latest: one index lookup per DM.
  const activity = `coalesce(
        (SELECT m.created_at FROM messages m WHERE m.channel_id = channels.id AND m.seq = channels.last_seq),
        channels.created_at)`;
  const query = Channel.query()
    .join('channel_members as cm', 'cm.channel_id', 'channels.id')
    .where('cm.user_id', userId)
    .where('channels.workspace_id', workspaceId)
    .where('channels.kind', 'dm');
  if (page.after) query.whereRaw(`(${activity}, channels.id) < (?::timestamptz, ?::uuid)`, [page.after.time, page.after.id]);
  // PostgreSQL computes the counts of the page's rows only, after the sort and the limit.
  const { items: rows, next } = pageFrom(
    await query
      .select('channels.*', 'cm.last_read_seq as memberLastReadSeq')
      .select(Channel.raw(`${mentionCountSql()} AS "memberMentionCount"`, [userId]))
      .select(Channel.raw(`${activity} AS "lastActivityAt"`), Channel.raw(`${microsIso(activity)} AS "pageActiveAt"`))
      .orderByRaw(`${activity} DESC, channels.id DESC`)
      .limit(page.limit + 1),
    page.limit,
    (last) => ({ time: (last as unknown as { pageActiveAt: string }).pageActiveAt, id: last.id }),
  );
  const members = await membersOf(rows.map((c) => c.id));
  const items = rows.map((c, i) => {
    const { memberLastReadSeq, memberMentionCount, lastActivityAt } = c as unknown as {
      memberLastReadSeq: number;
      memberMentionCount: number;
      lastActivityAt: Date;
    };
    return {
      ...c.toDto(),
      members: members[i],
      lastActivityAt: new Date(lastActivityAt).toISOString(),
      lastSeq: c.lastSeq,
      lastReadSeq: memberLastReadSeq,
      unreadCount: c.lastSeq - memberLastReadSeq,
      mentionCount: memberMentionCount,
    };
  });
  return { items, next };
}
