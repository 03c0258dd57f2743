import { ConflictError, ForbiddenError, NotFoundError } from '../../shared/errors.js';
import { isUniqueViolation } from '../../shared/db.js';
import { ChannelMember, User, Workspace, WorkspaceMember, type WorkspaceRole } from '../../shared/models/index.js';
import { requireManager, workspaceRole } from './access.js';
import type { Subscriptions } from './subscriptions.js';

export interface MemberDto {
  userId: string;
  displayName: string;
  role: WorkspaceRole;
}

export async function createWorkspace(userId: string, name: string): Promise<Workspace> {
  return Workspace.transaction(async (trx) => {
    const workspace = await Workspace.query(trx).insert({ name }).returning('*');
    await WorkspaceMember.query(trx).insert({ workspaceId: workspace.id, userId, role: 'owner' });
    return workspace;
  });
}

export async function listWorkspaces(userId: string): Promise<Array<{ id: string; name: string; role: WorkspaceRole }>> {
  return Workspace.query()
    .join('workspace_members as wm', 'wm.workspace_id', 'workspaces.id')
    .where('wm.user_id', userId)
    .orderBy('workspaces.created_at')
    .orderBy('workspaces.id')
    .select('workspaces.id', 'workspaces.name', 'wm.role')
    .castTo<Array<{ id: string; name: string; role: WorkspaceRole }>>();
}

export async function getWorkspace(userId: string, workspaceId: string): Promise<Workspace> {
  await workspaceRole(workspaceId, userId);
  const workspace = await Workspace.query().findById(workspaceId);
  if (!workspace) throw new NotFoundError('Workspace');
  return workspace;
}

export async function addWorkspaceMember(
  callerId: string,
  workspaceId: string,
  input: { email: string; role: 'member' | 'admin' },
): Promise<MemberDto> {
  requireManager(await workspaceRole(workspaceId, callerId));
  const user = await User.query().whereRaw('lower(email) = lower(?)', [input.email]).first();
  if (!user) throw new NotFoundError('User');
  try {
    await WorkspaceMember.query().insert({ workspaceId, userId: user.id, role: input.role });
  } catch (err) {
    if (isUniqueViolation(err)) throw new ConflictError('User is already a member of this workspace');
    throw err;
  }
  return { userId: user.id, displayName: user.displayName, role: input.role };
}

export async function listWorkspaceMembers(callerId: string, workspaceId: string): Promise<MemberDto[]> {
  await workspaceRole(workspaceId, callerId);
  return WorkspaceMember.query()
    .join('users', 'users.id', 'workspace_members.user_id')
    .where('workspace_members.workspace_id', workspaceId)
    .orderBy('workspace_members.created_at')
    .orderBy('users.id')
    .select('users.id as userId', 'users.display_name as displayName', 'workspace_members.role')
    .castTo<MemberDto[]>();
}

/** Removes the user from the workspace and from every channel in it, then from their rooms everywhere. */
export async function removeWorkspaceMember(
  deps: { subscriptions: Subscriptions },
  callerId: string,
  workspaceId: string,
  userId: string,
): Promise<void> {
  requireManager(await workspaceRole(workspaceId, callerId));
  const leftChannels = await WorkspaceMember.transaction(async (trx) => {
    const target = await WorkspaceMember.query(trx).findById([workspaceId, userId]).forUpdate();
    if (!target) throw new NotFoundError('Member');
    if (target.role === 'owner') throw new ForbiddenError('The workspace owner cannot be removed');
    const removed = await ChannelMember.query(trx)
      .delete()
      .where('user_id', userId)
      .whereIn('channel_id', (q) => q.select('id').from('channels').where('workspace_id', workspaceId))
      .returning('channel_id');
    await WorkspaceMember.query(trx).deleteById([workspaceId, userId]);
    return (removed as unknown as ChannelMember[]).map((r) => r.channelId);
  });
  if (leftChannels.length > 0) await deps.subscriptions.apply({ userId, join: [], leave: leftChannels });
}
