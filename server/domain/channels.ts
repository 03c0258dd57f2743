import { ConflictError, NotFoundError } from '../../shared/errors.js';
import { isUniqueViolation } from '../../shared/db.js';
import { Channel, ChannelMember, User, WorkspaceMember, type ChannelDto } from '../../shared/models/index.js';
import { authorizeInWorkspace, channelAccess } from './access.js';
import { can } from '../../shared/policy.js';
import { mentionCountSql } from './readState.js';
import { joinChange, type Subscriptions } from './subscriptions.js';
import { pageFrom, readTimeIdPage, type Page, type PageRead, type TimeIdKey } from './pages.js';

export interface ChannelListItem extends ChannelDto {
  isMember: boolean;
  /** Only on channels the caller is in. */
  lastSeq?: number;
  lastReadSeq?: number;
  unreadCount?: number;
  mentionCount?: number;
}

export interface ChannelMemberDto {
  userId: string;
  displayName: string;
}

/** Tells the channel's members' sockets, on every front node, that the channel changed (`channel:updated`). */
export type ChannelNotifier = (channel: ChannelDto) => void;

type Deps = { subscriptions: Subscriptions };

export async function createChannel(
  deps: Deps,
  userId: string,
  workspaceId: string,
  input: { name: string; isPrivate: boolean; topic: string },
): Promise<Channel> {
  await authorizeInWorkspace(userId, 'channel.create', { workspaceId });
  let channel: Channel;
  try {
    channel = await Channel.transaction(async (trx) => {
      const created = await Channel.query(trx)
        .insert({ workspaceId, name: input.name, isPrivate: input.isPrivate, topic: input.topic, createdBy: userId })
        .returning('*');
      await ChannelMember.query(trx).insert({ channelId: created.id, userId });
      return created;
    });
  } catch (err) {
    if (isUniqueViolation(err)) throw new ConflictError('A channel with this name already exists in the workspace');
    throw err;
  }
  await deps.subscriptions.apply(joinChange(userId, channel.id, channel.lastRev));
  return channel;
}

/**
 * A page of the channels the caller may see in the workspace, by name: public ones and the private ones
 * the caller is in (to a guest, only theirs), with the caller's read state in those they are in. Not DMs:
 * they are listed by GET /workspaces/:workspaceId/dms (server/domain/dms.ts).
 */
export async function listChannels(userId: string, workspaceId: string, page: Page<string>): Promise<PageRead<ChannelListItem, string>> {
  const actor = await authorizeInWorkspace(userId, 'workspace.view', { workspaceId });
  const all = can(actor, 'channel.listAll', { workspaceId }).allow;
  const query = Channel.query()
    .leftJoin('channel_members as cm', (j) => j.on('cm.channel_id', 'channels.id').andOnVal('cm.user_id', userId))
    .where('channels.workspace_id', workspaceId)
    .where('channels.kind', 'channel')
    .where((q) => (all ? q.where('channels.is_private', false).orWhereNotNull('cm.user_id') : q.whereNotNull('cm.user_id')));
  // Names are unique in a workspace, so the name alone says where a page ends.
  if (page.after !== undefined) query.where('channels.name', '>', page.after);
  const rows = await query
    .orderBy('channels.name')
    .limit(page.limit + 1)
    .select('channels.*', 'cm.user_id as memberUserId', 'cm.last_read_seq as memberLastReadSeq')
    .select(Channel.raw(`CASE WHEN cm.user_id IS NULL THEN NULL ELSE ${mentionCountSql()} END AS "memberMentionCount"`, [userId]));
  const { items, next } = pageFrom(rows, page.limit, (last) => last.name!);
  const channels = items.map((c): ChannelListItem => {
    const { memberUserId, memberLastReadSeq, memberMentionCount } = c as unknown as {
      memberUserId?: string;
      memberLastReadSeq: number;
      memberMentionCount: number;
    };
    if (!memberUserId) return { ...c.toDto(), isMember: false };
    return {
      ...c.toDto(),
      isMember: true,
      lastSeq: c.lastSeq,
      lastReadSeq: memberLastReadSeq,
      unreadCount: c.lastSeq - memberLastReadSeq,
      mentionCount: memberMentionCount,
    };
  });
  return { items: channels, next };
}

export async function getChannel(userId: string, channelId: string): Promise<Channel> {
  return (await channelAccess(channelId, userId)).channel;
}

export async function joinChannel(deps: Deps, userId: string, channelId: string): Promise<Channel> {
  // A private channel is joined only by invitation; to outsiders it does not exist. The channel row is
  // shared-locked: a join racing an archive lands before it or is refused.
  const { channel, isMember } = await Channel.transaction(async (trx) => {
    const access = await channelAccess(channelId, userId, 'channel.join', { trx, lock: 'share' });
    if (!access.isMember) {
      await ChannelMember.query(trx).insert({ channelId, userId }).onConflict(['channel_id', 'user_id']).ignore();
    }
    return access;
  });
  if (!isMember) await deps.subscriptions.apply(joinChange(userId, channelId, channel.lastRev));
  return channel;
}

export async function leaveChannel(deps: Deps, userId: string, channelId: string): Promise<Channel> {
  const { channel, isMember } = await channelAccess(channelId, userId, 'channel.leave');
  if (isMember) {
    await ChannelMember.query().deleteById([channelId, userId]);
    await deps.subscriptions.apply({ userId, join: [], leave: [channelId] });
  }
  return channel;
}

/** A page of a channel's members, in the order they joined. */
export async function listChannelMembers(
  userId: string,
  channelId: string,
  page: Page<TimeIdKey>,
): Promise<PageRead<ChannelMemberDto, TimeIdKey>> {
  await channelAccess(channelId, userId, 'channel.members.list');
  const query = ChannelMember.query()
    .join('users', 'users.id', 'channel_members.user_id')
    .where('channel_members.channel_id', channelId)
    .select('users.id as userId', 'users.display_name as displayName');
  return readTimeIdPage<ChannelMemberDto>(query, 'channel_members.created_at', 'users.id', page);
}

export async function addChannelMember(
  deps: Deps,
  callerId: string,
  channelId: string,
  userId: string,
): Promise<ChannelMemberDto> {
  const { user, rev } = await Channel.transaction(async (trx) => {
    const { channel } = await channelAccess(channelId, callerId, 'channel.members.add', { trx, lock: 'share' });
    const [target, found] = await Promise.all([
      WorkspaceMember.query(trx).findById([channel.workspaceId, userId]),
      User.query(trx).findById(userId),
    ]);
    if (!target || !found) throw new NotFoundError('User');
    const added = await trx('channel_members')
      .insert({ channel_id: channelId, user_id: userId })
      .onConflict(['channel_id', 'user_id'])
      .ignore()
      .returning('user_id');
    if (added.length === 0) throw new ConflictError('User is already a member of this channel');
    return { user: found, rev: channel.lastRev };
  });
  await deps.subscriptions.apply(joinChange(userId, channelId, rev));
  return { userId, displayName: user.displayName };
}

export async function removeChannelMember(deps: Deps, callerId: string, channelId: string, userId: string): Promise<void> {
  await channelAccess(channelId, callerId, 'channel.members.remove', { extra: { userId } });
  const deleted = await ChannelMember.query().deleteById([channelId, userId]);
  if (deleted === 0) throw new NotFoundError('Member');
  await deps.subscriptions.apply({ userId, join: [], leave: [channelId] });
}

/** Renames the channel and/or sets its topic; its creator and workspace owners and admins only. */
export async function updateChannel(
  notify: ChannelNotifier,
  callerId: string,
  channelId: string,
  input: { name?: string; topic?: string },
): Promise<Channel> {
  let channel: Channel;
  try {
    channel = await Channel.transaction(async (trx) => {
      await channelAccess(channelId, callerId, 'channel.update', { trx, lock: 'update' });
      return Channel.query(trx).patchAndFetchById(channelId, input);
    });
  } catch (err) {
    if (isUniqueViolation(err)) throw new ConflictError('A channel with this name already exists in the workspace');
    throw err;
  }
  notify(channel.toDto());
  return channel;
}

/**
 * Archives or unarchives the channel; its creator and workspace owners and admins only. The update locks
 * the channel row, which persist_message_batch locks too: no send is stored in it after the archive.
 */
export async function setChannelArchived(notify: ChannelNotifier, callerId: string, channelId: string, archived: boolean): Promise<Channel> {
  const channel = await Channel.transaction(async (trx) => {
    await channelAccess(channelId, callerId, 'channel.archive', { trx, lock: 'update' });
    return Channel.query(trx).patchAndFetchById(channelId, { archived });
  });
  notify(channel.toDto());
  return channel;
}
