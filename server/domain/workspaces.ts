import type { Knex } from 'knex';
import { ConflictError, NotFoundError } from '../../shared/errors.js';
import { isUniqueViolation } from '../../shared/db.js';
import { ChannelMember, User, Workspace, WorkspaceMember, type WorkspaceRole } from '../../shared/models/index.js';
import { authorizeInWorkspace, lockWorkspace, memberTarget, workspaceActor } from './access.js';
import { authorize, can } from '../../shared/policy.js';
import type { Subscriptions } from './subscriptions.js';
import { readTimeIdPage, type Page, type PageRead, type TimeIdKey } from './pages.js';

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

/** A page of the caller's workspaces, in the order they were created, each with the caller's role. */
export async function listWorkspaces(
  userId: string,
  page: Page<TimeIdKey>,
): Promise<PageRead<{ id: string; name: string; role: WorkspaceRole }, TimeIdKey>> {
  const query = Workspace.query()
    .join('workspace_members as wm', 'wm.workspace_id', 'workspaces.id')
    .where('wm.user_id', userId)
    .select('workspaces.id', 'workspaces.name', 'wm.role');
  return readTimeIdPage(query, 'workspaces.created_at', 'workspaces.id', page);
}

export async function getWorkspace(userId: string, workspaceId: string): Promise<Workspace> {
  await authorizeInWorkspace(userId, 'workspace.view', { workspaceId });
  const workspace = await Workspace.query().findById(workspaceId);
  if (!workspace) throw new NotFoundError('Workspace');
  return workspace;
}

export async function addWorkspaceMember(
  callerId: string,
  workspaceId: string,
  input: { email: string; role: 'member' | 'admin' | 'guest' },
): Promise<MemberDto> {
  await authorizeInWorkspace(callerId, 'workspace.members.add', { workspaceId, role: input.role });
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

/**
 * A page of the members, in the order they joined; to a guest only themself and the members of the
 * channels they are in.
 */
export async function listWorkspaceMembers(
  callerId: string,
  workspaceId: string,
  page: Page<TimeIdKey>,
): Promise<PageRead<MemberDto, TimeIdKey>> {
  const actor = await authorizeInWorkspace(callerId, 'workspace.view', { workspaceId });
  const query = WorkspaceMember.query()
    .join('users', 'users.id', 'workspace_members.user_id')
    .where('workspace_members.workspace_id', workspaceId);
  if (!can(actor, 'workspace.members.listAll', { workspaceId }).allow) {
    query.where((q) =>
      q.where('workspace_members.user_id', callerId).orWhereExists((shared) =>
        shared
          .select(1)
          .from('channel_members as mine')
          .join('channels as c', 'c.id', 'mine.channel_id')
          .join('channel_members as theirs', 'theirs.channel_id', 'mine.channel_id')
          .where('mine.user_id', callerId)
          .where('c.workspace_id', workspaceId)
          .whereRaw('theirs.user_id = workspace_members.user_id'),
      ),
    );
  }
  query.select('users.id as userId', 'users.display_name as displayName', 'workspace_members.role');
  return readTimeIdPage<MemberDto>(query, 'workspace_members.created_at', 'users.id', page);
}

/** Deletes the membership and the user's channel memberships in the workspace; returns the channels left. */
async function dropMembership(trx: Knex.Transaction, workspaceId: string, userId: string): Promise<string[]> {
  const removed = await ChannelMember.query(trx)
    .delete()
    .where('user_id', userId)
    .whereIn('channel_id', (q) => q.select('id').from('channels').where('workspace_id', workspaceId))
    .returning('channel_id');
  await WorkspaceMember.query(trx).deleteById([workspaceId, userId]);
  return (removed as unknown as ChannelMember[]).map((r) => r.channelId);
}

/** Removes the user from the workspace and from every channel in it, then from their rooms everywhere. */
export async function removeWorkspaceMember(
  deps: { subscriptions: Subscriptions },
  callerId: string,
  workspaceId: string,
  userId: string,
): Promise<void> {
  const leftChannels = await WorkspaceMember.transaction(async (trx) => {
    await lockWorkspace(workspaceId, trx);
    const actor = await workspaceActor(workspaceId, callerId, trx);
    authorize(actor, 'workspace.members.remove', { workspaceId, target: await memberTarget(workspaceId, userId, trx) });
    return dropMembership(trx, workspaceId, userId);
  });
  await deps.subscriptions.apply({ userId, join: [], leave: leftChannels, narrowed: true });
}

/** The caller leaves the workspace and its channels, like a removal; the last owner cannot. */
export async function leaveWorkspace(deps: { subscriptions: Subscriptions }, callerId: string, workspaceId: string): Promise<void> {
  const leftChannels = await WorkspaceMember.transaction(async (trx) => {
    await lockWorkspace(workspaceId, trx);
    const target = await memberTarget(workspaceId, callerId, trx);
    const actor = { userId: callerId, role: target?.role ?? null };
    if (!target) {
      authorize(actor, 'workspace.view', { workspaceId });
      return null;
    }
    authorize(actor, 'workspace.leave', { workspaceId, target });
    return dropMembership(trx, workspaceId, callerId);
  });
  if (leftChannels !== null) await deps.subscriptions.apply({ userId: callerId, join: [], leave: leftChannels, narrowed: true });
}

/** Changes a member's role: owners any role, admins members and guests (to anything but owner). */
export async function setMemberRole(
  deps: { subscriptions: Subscriptions },
  callerId: string,
  workspaceId: string,
  userId: string,
  role: WorkspaceRole,
): Promise<MemberDto> {
  const { member, demotedToGuest } = await WorkspaceMember.transaction(async (trx) => {
    await lockWorkspace(workspaceId, trx);
    const actor = await workspaceActor(workspaceId, callerId, trx);
    const target = await memberTarget(workspaceId, userId, trx);
    authorize(actor, 'workspace.members.setRole', { workspaceId, role, target });
    await WorkspaceMember.query(trx).findById([workspaceId, userId]).patch({ role });
    const user = await User.query(trx).findById(userId);
    if (!user) throw new NotFoundError('Member');
    return { member: { userId, displayName: user.displayName, role }, demotedToGuest: role === 'guest' && target?.role !== 'guest' };
  });
  // A guest sees only the members of their channels, no longer everyone in the workspace.
  if (demotedToGuest) await deps.subscriptions.apply({ userId, join: [], leave: [], narrowed: true });
  return member;
}
