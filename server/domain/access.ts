import type { Knex } from 'knex';
import { ForbiddenError, NotFoundError } from '../../shared/errors.js';
import { Channel, WorkspaceMember, type WorkspaceRole } from '../../shared/models/index.js';

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
  // One round trip: the channel with the caller's workspace role and channel membership beside it.
  const row = await Channel.query(trx)
    .leftJoin('workspace_members as wm', (j) => j.on('wm.workspace_id', 'channels.workspace_id').andOnVal('wm.user_id', userId))
    .leftJoin('channel_members as cm', (j) => j.on('cm.channel_id', 'channels.id').andOnVal('cm.user_id', userId))
    .where('channels.id', channelId)
    .select('channels.*', 'wm.role as callerRole', 'cm.user_id as callerMemberId')
    .first();
  const { callerRole, callerMemberId } = (row ?? {}) as { callerRole?: WorkspaceRole | null; callerMemberId?: string | null };
  if (!row || !callerRole) throw new NotFoundError('Channel');
  if (row.isPrivate && !callerMemberId) throw new NotFoundError('Channel');
  return { channel: row, role: callerRole, isMember: Boolean(callerMemberId) };
}
