import type { Knex } from 'knex';
import { NotFoundError } from '../../shared/errors.js';
import { Channel, WorkspaceMember, type WorkspaceRole } from '../../shared/models/index.js';
import { authorize, can, type Action, type Actor, type ChannelResource, type MemberTarget, type Rules } from '../../shared/policy.js';

/**
 * Loading what shared/policy.ts decides on: the caller as an Actor (their role in the workspace
 * concerned, or none) and the resource. The decisions themselves are policy.ts's.
 */

export async function workspaceActor(workspaceId: string, userId: string, trx?: Knex.Transaction): Promise<Actor> {
  const member = await WorkspaceMember.query(trx).findById([workspaceId, userId]);
  return { userId, role: member?.role ?? null };
}

/** The caller in the workspace, once policy allowed `action` on it (NOT_FOUND for outsiders). */
export async function authorizeInWorkspace<A extends Action>(
  userId: string,
  action: A,
  resource: Rules[A] & { workspaceId: string },
  trx?: Knex.Transaction,
): Promise<Actor> {
  const actor = await workspaceActor(resource.workspaceId, userId, trx);
  authorize(actor, action, resource);
  return actor;
}

/**
 * A workspace member as an action's target, with the workspace's owner count. In a transaction, lock the
 * workspace first (lockWorkspace) so that the count holds until it commits.
 */
export async function memberTarget(workspaceId: string, userId: string, trx?: Knex.Transaction): Promise<MemberTarget | null> {
  const member = await WorkspaceMember.query(trx).findById([workspaceId, userId]);
  if (!member) return null;
  const owners = await WorkspaceMember.query(trx).where({ workspace_id: workspaceId, role: 'owner' }).resultSize();
  return { userId, role: member.role, owners };
}

/** Serialises the changes of a workspace's roles and members (the last-owner rule reads the owner count). */
export async function lockWorkspace(workspaceId: string, trx: Knex.Transaction): Promise<void> {
  await trx.raw('SELECT 1 FROM workspaces WHERE id = ? FOR NO KEY UPDATE', [workspaceId]);
}

export interface ChannelAccess extends ChannelResource {
  actor: Actor;
  role: WorkspaceRole | null;
}

/**
 * The channel with the caller's workspace role and channel membership beside it; NOT_FOUND if no such
 * channel. With `lock` (in `trx`), the channel row is locked first, so what policy decides on (archived,
 * creator) holds until the transaction ends: 'share' for joins, 'update' for changes of the channel.
 */
export async function loadChannel(
  channelId: string,
  userId: string,
  trx?: Knex.Transaction,
  lock?: 'share' | 'update',
): Promise<ChannelAccess> {
  if (trx && lock) await trx.raw(`SELECT 1 FROM channels WHERE id = ? FOR ${lock === 'share' ? 'SHARE' : 'NO KEY UPDATE'}`, [channelId]);
  // One round trip: the channel with the caller's workspace role and channel membership beside it.
  const row = await withCaller(Channel.query(trx), userId).where('channels.id', channelId).first();
  if (!row) throw new NotFoundError('Channel');
  return toAccess(row, userId);
}

/** Channels with the caller's workspace role and channel membership beside each. */
function withCaller<Q extends ReturnType<typeof Channel.query>>(query: Q, userId: string): Q {
  return query
    .leftJoin('workspace_members as wm', (j) => j.on('wm.workspace_id', 'channels.workspace_id').andOnVal('wm.user_id', userId))
    .leftJoin('channel_members as cm', (j) => j.on('cm.channel_id', 'channels.id').andOnVal('cm.user_id', userId))
    .select('channels.*', 'wm.role as callerRole', 'cm.user_id as callerMemberId') as Q;
}

function toAccess(row: Channel, userId: string): ChannelAccess {
  const { callerRole, callerMemberId } = row as unknown as { callerRole?: WorkspaceRole | null; callerMemberId?: string | null };
  const role = callerRole ?? null;
  return { channel: row, actor: { userId, role }, role, isMember: Boolean(callerMemberId) };
}

/** Of `channelIds`, those policy allows `action` on to the caller, in one round trip (unknown ones are not). */
export async function allowedChannels(channelIds: string[], userId: string, action: PlainChannelAction): Promise<Set<string>> {
  if (channelIds.length === 0) return new Set();
  const rows = await withCaller(Channel.query(), userId).whereIn('channels.id', channelIds);
  const allowed = rows.map((row) => toAccess(row, userId)).filter((a) => can(a.actor, action, { channel: a.channel, isMember: a.isMember }).allow);
  return new Set(allowed.map((a) => a.channel.id));
}

type ChannelAction = { [A in Action]: Rules[A] extends ChannelResource ? A : never }[Action];
/** Channel actions decided on the channel and the caller's membership alone (no extra resource fields). */
type PlainChannelAction = { [A in ChannelAction]: ChannelResource extends Rules[A] ? A : never }[ChannelAction];

/** The channel as the caller may see it, once policy allowed `action` on it (default: seeing it). */
export async function channelAccess<A extends ChannelAction = 'channel.view'>(
  channelId: string,
  userId: string,
  action?: A,
  options: { extra?: Omit<Rules[A], keyof ChannelResource>; trx?: Knex.Transaction; lock?: 'share' | 'update' } = {},
): Promise<ChannelAccess> {
  if (options.lock) {
    // Nobody who may not even see the channel gets to lock its row (every channel action needs that).
    const seen = await loadChannel(channelId, userId, options.trx);
    authorize(seen.actor, 'channel.view', { channel: seen.channel, isMember: seen.isMember });
  }
  const access = await loadChannel(channelId, userId, options.trx, options.lock);
  const resource = { channel: access.channel, isMember: access.isMember, ...options.extra } as Rules[A];
  authorize(access.actor, action ?? ('channel.view' as A), resource);
  return access;
}
