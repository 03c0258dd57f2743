import { ConflictError, ForbiddenError, NotFoundError } from '../../shared/errors.js';
import { isUniqueViolation } from '../../shared/db.js';
import { Channel, ChannelMember, User, WorkspaceMember, type ChannelDto } from '../../shared/models/index.js';
import { channelAccess, isManager, workspaceRole } from './access.js';
import type { Subscriptions } from './subscriptions.js';

export interface ChannelListItem extends ChannelDto {
  isMember: boolean;
  /** Only on channels the caller is in. */
  lastSeq?: number;
  lastReadSeq?: number;
  unreadCount?: number;
}

export interface ChannelMemberDto {
  userId: string;
  displayName: string;
}

type Deps = { subscriptions: Subscriptions };

export async function createChannel(
  deps: Deps,
  userId: string,
  workspaceId: string,
  input: { name: string; isPrivate: boolean; topic: string },
): Promise<Channel> {
  await workspaceRole(workspaceId, userId);
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
  await deps.subscriptions.apply({ userId, join: [channel.id], leave: [] });
  return channel;
}

export async function listChannels(userId: string, workspaceId: string): Promise<ChannelListItem[]> {
  await workspaceRole(workspaceId, userId);
  const rows = await Channel.query()
    .leftJoin('channel_members as cm', (j) => j.on('cm.channel_id', 'channels.id').andOnVal('cm.user_id', userId))
    .where('channels.workspace_id', workspaceId)
    .where((q) => q.where('channels.is_private', false).orWhereNotNull('cm.user_id'))
    .orderBy('channels.name')
    .select('channels.*', 'cm.user_id as memberUserId', 'cm.last_read_seq as memberLastReadSeq');
  return rows.map((c) => {
    const { memberUserId, memberLastReadSeq } = c as unknown as { memberUserId?: string; memberLastReadSeq: number };
    if (!memberUserId) return { ...c.toDto(), isMember: false };
    return {
      ...c.toDto(),
      isMember: true,
      lastSeq: c.lastSeq,
      lastReadSeq: memberLastReadSeq,
      unreadCount: c.lastSeq - memberLastReadSeq,
    };
  });
}

export async function getChannel(userId: string, channelId: string): Promise<Channel> {
  return (await channelAccess(channelId, userId)).channel;
}

export async function joinChannel(deps: Deps, userId: string, channelId: string): Promise<Channel> {
  const { channel, isMember } = await channelAccess(channelId, userId);
  // A private channel is joined only by invitation; to outsiders it does not exist (channelAccess said so).
  if (!isMember) {
    await ChannelMember.query().insert({ channelId, userId }).onConflict(['channel_id', 'user_id']).ignore();
    await deps.subscriptions.apply({ userId, join: [channelId], leave: [] });
  }
  return channel;
}

export async function leaveChannel(deps: Deps, userId: string, channelId: string): Promise<Channel> {
  const { channel, isMember } = await channelAccess(channelId, userId);
  if (isMember) {
    await ChannelMember.query().deleteById([channelId, userId]);
    await deps.subscriptions.apply({ userId, join: [], leave: [channelId] });
  }
  return channel;
}

export async function listChannelMembers(userId: string, channelId: string): Promise<ChannelMemberDto[]> {
  await channelAccess(channelId, userId);
  return ChannelMember.query()
    .join('users', 'users.id', 'channel_members.user_id')
    .where('channel_members.channel_id', channelId)
    .orderBy('channel_members.created_at')
    .orderBy('users.id')
    .select('users.id as userId', 'users.display_name as displayName')
    .castTo<ChannelMemberDto[]>();
}

export async function addChannelMember(
  deps: Deps,
  callerId: string,
  channelId: string,
  userId: string,
): Promise<ChannelMemberDto> {
  const { channel, role, isMember } = await channelAccess(channelId, callerId);
  if (!isMember && !isManager(role)) throw new ForbiddenError('Only channel members or workspace admins may add members');
  const [target, user] = await Promise.all([
    WorkspaceMember.query().findById([channel.workspaceId, userId]),
    User.query().findById(userId),
  ]);
  if (!target || !user) throw new NotFoundError('User');
  try {
    await ChannelMember.query().insert({ channelId, userId });
  } catch (err) {
    if (isUniqueViolation(err)) throw new ConflictError('User is already a member of this channel');
    throw err;
  }
  await deps.subscriptions.apply({ userId, join: [channelId], leave: [] });
  return { userId, displayName: user.displayName };
}

export async function removeChannelMember(deps: Deps, callerId: string, channelId: string, userId: string): Promise<void> {
  const { role } = await channelAccess(channelId, callerId);
  if (callerId !== userId && !isManager(role)) {
    throw new ForbiddenError('Only the member themself or a workspace admin may remove a channel member');
  }
  const deleted = await ChannelMember.query().deleteById([channelId, userId]);
  if (deleted === 0) throw new NotFoundError('Member');
  await deps.subscriptions.apply({ userId, join: [], leave: [channelId] });
}
