import type { Knex } from 'knex';
import { ForbiddenError, NotFoundError } from '../../shared/errors.js';
import { Channel, ChannelMember, WorkspaceMember, type WorkspaceRole } from '../../shared/models/index.js';

/**
 * Who may see what. Anything in a workspace the caller does not belong to, and any private channel the
 * caller is not in, is NOT_FOUND: existence never leaks across tenants.
 */
export async function workspaceRole(workspaceId: string, userId: string, trx?: Knex.Transaction): Promise<WorkspaceRole> {
  const member = await WorkspaceMember.query(trx).findById([workspaceId, userId]);
  if (!member) throw new NotFoundError('Workspace');
  return member.role;
}

export function isManager(role: WorkspaceRole): boolean {
  return role === 'owner' || role === 'admin';
}

export function requireManager(role: WorkspaceRole): void {
  if (!isManager(role)) throw new ForbiddenError('Only workspace owners and admins may do this');
}

export interface ChannelAccess {
  channel: Channel;
  role: WorkspaceRole;
  isMember: boolean;
}

/** The channel as the caller may see it: public ones to every workspace member, private ones to their members. */
export async function channelAccess(channelId: string, userId: string, trx?: Knex.Transaction): Promise<ChannelAccess> {
  const channel = await Channel.query(trx).findById(channelId);
  if (!channel) throw new NotFoundError('Channel');
  const [member, channelMember] = await Promise.all([
    WorkspaceMember.query(trx).findById([channel.workspaceId, userId]),
    ChannelMember.query(trx).findById([channelId, userId]),
  ]);
  if (!member) throw new NotFoundError('Channel');
  if (channel.isPrivate && !channelMember) throw new NotFoundError('Channel');
  return { channel, role: member.role, isMember: Boolean(channelMember) };
}

export async function requireChannelMember(channelId: string, userId: string): Promise<ChannelAccess> {
  const access = await channelAccess(channelId, userId);
  if (!access.isMember) throw new NotFoundError('Channel');
  return access;
}
