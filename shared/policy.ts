import { ForbiddenError, NotFoundError, type AppError } from './errors.js';
import type { Channel, WorkspaceRole } from './models/index.js';

/**
 * Who may do what: the one place the product's authorization rules live. Domain actions load the actor
 * and the resource (server/domain/access.ts), then ask `authorize()`; no handler decides by itself.
 *
 * Existence never leaks: anything in a workspace the actor does not belong to, and any private channel
 * the actor is not in, is NOT_FOUND, whatever the action. Inside the actor's workspace a refusal is
 * FORBIDDEN.
 *
 * Roles, highest first: owner > admin > member > guest. Owners and admins are the workspace's managers.
 * A guest sees only the channels they were added to: not the public channel list, not the members of
 * the workspace beyond the channels they share, and creates and joins no channel.
 *
 * A DM (channel kind 'dm') is a private channel whose members are fixed when it is opened: nobody joins,
 * leaves, adds or removes members of it, renames or archives it (FORBIDDEN to its members).
 */

/** The caller, with their role in the workspace the resource belongs to: null when they are not in it. */
export interface Actor {
  userId: string;
  role: WorkspaceRole | null;
}

export interface WorkspaceResource {
  workspaceId: string;
}

/** A workspace member an action is about; null when there is no such member. */
export interface MemberTarget {
  userId: string;
  role: WorkspaceRole;
  /** How many owners the workspace has (read in the transaction that acts on it). */
  owners: number;
}

export interface ChannelResource {
  channel: Channel;
  /** Whether the actor is a member of the channel. */
  isMember: boolean;
}

/** A stored message an action is about, as the author and its state; null when the channel has no such message. */
export interface MessageTarget {
  authorId: string;
  deleted: boolean;
}

export type MessageResource = ChannelResource & { message: MessageTarget | null };

/**
 * Whether the actor's socket is subscribed to the channel (in its room). Subscriptions follow channel
 * membership on every front node before a membership change returns, so this is membership, known
 * without a query.
 */
export interface SubscriptionResource {
  subscribed: boolean;
}

/** One of the people a DM is opened for, as the actor may know them. */
export interface DmPerson {
  userId: string;
  /** Their role in the workspace; null when they are not in it. */
  role: WorkspaceRole | null;
  /** Whether they are in a channel (a DM too) of the workspace with the actor. */
  sharesChannel: boolean;
}

/** Each action with the resource it is decided on. */
export interface Rules {
  'workspace.view': WorkspaceResource;
  /** Every member of the workspace (denied: only those sharing a channel with the actor). */
  'workspace.members.listAll': WorkspaceResource;
  'workspace.members.add': WorkspaceResource & { role: WorkspaceRole };
  /** Searching in the channels a query names (`in:`): `readable` when the actor is a member of each, in this workspace. */
  'workspace.search.in': WorkspaceResource & { readable: boolean };
  'workspace.members.remove': WorkspaceResource & { target: MemberTarget | null };
  'workspace.members.setRole': WorkspaceResource & { target: MemberTarget | null; role: WorkspaceRole };
  /** The actor leaving: `target` is their own membership. */
  'workspace.leave': WorkspaceResource & { target: MemberTarget };
  'channel.create': WorkspaceResource;
  /** Opening (or finding) the DM of the actor and `people` (the actor may be among them). */
  'dm.open': WorkspaceResource & { people: DmPerson[] };
  /** Every public channel of the workspace (denied: only the actor's own channels). */
  'channel.listAll': WorkspaceResource;
  'channel.view': ChannelResource;
  'channel.join': ChannelResource;
  'channel.leave': ChannelResource;
  'channel.members.list': ChannelResource;
  /** Reading its messages (archived channels too). */
  'channel.history': ChannelResource;
  'channel.members.add': ChannelResource;
  'channel.members.remove': ChannelResource & { userId: string };
  /** Rename, topic. */
  'channel.update': ChannelResource;
  /** Archive and unarchive. */
  'channel.archive': ChannelResource;
  /** Following it as one of its members: moving one's read mark, replaying its messages (socket `sync`, resume). */
  'channel.follow': ChannelResource;
  /** Telling its other members one is typing: decided on the socket's subscription alone (the role is not read). */
  'channel.typing': SubscriptionResource;
  /** Changing a message's body: its author. */
  'message.edit': MessageResource;
  /** Its author, or a workspace owner or admin. */
  'message.delete': MessageResource;
  /** Adding or removing one's own reaction: any member. */
  'message.react': MessageResource;
}

export type Action = keyof Rules;

export type Decision = { allow: true } | { allow: false; error: AppError };

const ALLOW: Decision = { allow: true };
const deny = (error: AppError): Decision => ({ allow: false, error });
const forbidden = (message: string) => deny(new ForbiddenError(message));

export function isManager(role: WorkspaceRole | null): boolean {
  return role === 'owner' || role === 'admin';
}

function workspaceRule(rule: (actor: Actor & { role: WorkspaceRole }, resource: any) => Decision) {
  return (actor: Actor, resource: unknown): Decision =>
    actor.role === null ? deny(new NotFoundError('Workspace')) : rule(actor as Actor & { role: WorkspaceRole }, resource);
}

const MANAGERS_ONLY = 'Only workspace owners and admins may do this';
const DM_FIXED = 'The members of a direct message are fixed when it is opened';
const LAST_OWNER = 'The last owner of a workspace can neither leave, be removed nor be demoted';

/** Seeing a channel at all: NOT_FOUND outside its workspace and for private channels one is not in. */
function viewChannel(actor: Actor, { channel, isMember }: ChannelResource): Decision {
  if (actor.role === null) return deny(new NotFoundError('Channel'));
  if (channel.isPrivate && !isMember) return deny(new NotFoundError('Channel'));
  if (actor.role === 'guest' && !isMember) return forbidden('Guests only see the channels they were added to');
  return ALLOW;
}

function channelRule(rule: (actor: Actor & { role: WorkspaceRole }, resource: any) => Decision) {
  return (actor: Actor, resource: ChannelResource): Decision => {
    const seen = viewChannel(actor, resource);
    return seen.allow ? rule(actor as Actor & { role: WorkspaceRole }, resource) : seen;
  };
}

const RULES: { [A in Action]: (actor: Actor, resource: Rules[A]) => Decision } = {
  'workspace.view': workspaceRule(() => ALLOW),

  'workspace.members.listAll': workspaceRule((actor) =>
    actor.role === 'guest' ? forbidden('Guests only see the members of their channels') : ALLOW,
  ),

  'workspace.members.add': workspaceRule((actor, { role }: Rules['workspace.members.add']) => {
    if (!isManager(actor.role)) return forbidden(MANAGERS_ONLY);
    if (role === 'owner' && actor.role !== 'owner') return forbidden('Only owners may make owners');
    return ALLOW;
  }),

  // As typing in it: NOT_FOUND for a channel one is not in, public ones too (issue #12), whatever the reason.
  'workspace.search.in': workspaceRule((_actor, { readable }: Rules['workspace.search.in']) =>
    readable ? ALLOW : deny(new NotFoundError('Channel')),
  ),

  'workspace.members.remove': workspaceRule((actor, { target }: Rules['workspace.members.remove']) => {
    if (!isManager(actor.role)) return forbidden(MANAGERS_ONLY);
    if (!target) return deny(new NotFoundError('Member'));
    if (target.role === 'owner') {
      if (actor.role !== 'owner') return forbidden('Only owners may remove an owner');
      if (target.owners <= 1) return forbidden(LAST_OWNER);
    }
    return ALLOW;
  }),

  'workspace.members.setRole': workspaceRule((actor, { target, role }: Rules['workspace.members.setRole']) => {
    if (!isManager(actor.role)) return forbidden(MANAGERS_ONLY);
    if (!target) return deny(new NotFoundError('Member'));
    if (actor.role === 'owner') {
      if (target.role === 'owner' && role !== 'owner' && target.owners <= 1) return forbidden(LAST_OWNER);
      return ALLOW;
    }
    // Admins change members and guests (issue #10), to any role but owner: what an admin may add someone
    // as (POST …/members, issue #2), an admin may make a member or a guest.
    if (target.role !== 'member' && target.role !== 'guest') return forbidden('Admins may only change members and guests');
    if (role === 'owner') return forbidden('Only owners may make owners');
    return ALLOW;
  }),

  'workspace.leave': workspaceRule((_actor, { target }: Rules['workspace.leave']) =>
    target.role === 'owner' && target.owners <= 1 ? forbidden(LAST_OWNER) : ALLOW,
  ),

  'channel.create': workspaceRule((actor) => (actor.role === 'guest' ? forbidden('Guests may not create channels') : ALLOW)),

  // Someone outside the workspace, or to a guest someone outside the guest's channels, is not found, as
  // a random id is: a DM reveals no more of the workspace than its member list does.
  'dm.open': workspaceRule((actor, { people }: Rules['dm.open']) => {
    for (const person of people) {
      if (person.userId === actor.userId) continue;
      if (person.role === null || (actor.role === 'guest' && !person.sharesChannel)) return deny(new NotFoundError('User'));
    }
    return ALLOW;
  }),

  'channel.listAll': workspaceRule((actor) =>
    actor.role === 'guest' ? forbidden('Guests only see the channels they were added to') : ALLOW,
  ),

  'channel.view': channelRule(() => ALLOW),

  'channel.join': channelRule((_actor, { channel }: ChannelResource) => {
    if (channel.kind === 'dm') return forbidden(DM_FIXED);
    return channel.archived ? forbidden('The channel is archived') : ALLOW;
  }),

  'channel.leave': channelRule((_actor, { channel }: ChannelResource) => (channel.kind === 'dm' ? forbidden(DM_FIXED) : ALLOW)),

  'channel.members.list': channelRule(() => ALLOW),

  'channel.history': channelRule((_actor, { isMember }: ChannelResource) =>
    isMember ? ALLOW : forbidden('Only channel members may read its history'),
  ),

  'channel.members.add': channelRule((actor, { channel, isMember }: ChannelResource) => {
    if (channel.kind === 'dm') return forbidden(DM_FIXED);
    if (actor.role === 'guest') return forbidden('Guests may not add channel members');
    if (channel.archived) return forbidden('The channel is archived');
    // Private channels are invite-only: their members invite (non-members were told NOT_FOUND above).
    if (channel.isPrivate) return isMember ? ALLOW : deny(new NotFoundError('Channel'));
    if (!isMember && !isManager(actor.role)) return forbidden('Only channel members or workspace admins may add members');
    return ALLOW;
  }),

  'channel.members.remove': channelRule((actor, { channel, userId }: Rules['channel.members.remove']) => {
    if (channel.kind === 'dm') return forbidden(DM_FIXED);
    return actor.userId === userId || isManager(actor.role)
      ? ALLOW
      : forbidden('Only the member themself or a workspace admin may remove a channel member');
  }),

  'channel.update': channelRule((actor, resource: ChannelResource) =>
    resource.channel.kind === 'dm' ? forbidden('A direct message has no name or topic to change') : creatorOrManager(actor, resource),
  ),

  'channel.archive': channelRule((actor, resource: ChannelResource) =>
    resource.channel.kind === 'dm' ? forbidden('A direct message cannot be archived') : creatorOrManager(actor, resource),
  ),

  // Members only; to anyone else the channel is NOT_FOUND, public or not, as a send to it is (the worker
  // decides sends on channel membership alike).
  'channel.follow': (actor, { isMember }) => (actor.role !== null && isMember ? ALLOW : deny(new NotFoundError('Channel'))),

  // Members only, NOT_FOUND to anyone else, as following it is.
  'channel.typing': (_actor, { subscribed }) => (subscribed ? ALLOW : deny(new NotFoundError('Channel'))),

  'message.edit': messageRule((actor, message) =>
    message.authorId === actor.userId ? ALLOW : forbidden('Only its author may edit a message'),
  ),

  'message.delete': messageRule((actor, message) =>
    message.authorId === actor.userId || isManager(actor.role)
      ? ALLOW
      : forbidden('Only its author or a workspace owner or admin may delete a message'),
  ),

  'message.react': messageRule(() => ALLOW),
};

/**
 * Changing a channel's messages, as sending to it: members only (anyone else is told NOT_FOUND, public
 * channel or not), a message that exists and is not deleted (NOT_FOUND), a channel that is not archived.
 */
function messageRule(rule: (actor: Actor & { role: WorkspaceRole }, message: MessageTarget) => Decision) {
  return (actor: Actor, { channel, isMember, message }: MessageResource): Decision => {
    if (actor.role === null || !isMember) return deny(new NotFoundError('Channel'));
    if (!message || message.deleted) return deny(new NotFoundError('Message'));
    if (channel.archived) return forbidden('The channel is archived');
    return rule(actor as Actor & { role: WorkspaceRole }, message);
  };
}

function creatorOrManager(actor: Actor, { channel }: ChannelResource): Decision {
  if (isManager(actor.role)) return ALLOW;
  if (channel.createdBy !== null && channel.createdBy === actor.userId && actor.role !== 'guest') return ALLOW;
  return forbidden("Only the channel's creator or a workspace owner or admin may do this");
}

/** Whether `actor` may do `action` on `resource`, and if not, the error to answer. */
export function can<A extends Action>(actor: Actor, action: A, resource: Rules[A]): Decision {
  return RULES[action](actor, resource);
}

/** Throws the refusal's error (NOT_FOUND or FORBIDDEN) unless `actor` may do `action` on `resource`. */
export function authorize<A extends Action>(actor: Actor, action: A, resource: Rules[A]): void {
  const decision = can(actor, action, resource);
  if (!decision.allow) throw decision.error;
}
