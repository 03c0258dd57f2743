/**
 * Proof of isolation (#10): every REST route (read from the Express router, test/support/routes.ts) and
 * every client socket event (read from the listeners a connected server-side socket has) has a row in
 * MATRIX below, or the suite fails naming the ones without. A row says how to build a valid request
 * against the seeded world and, for each kind of caller, the refusal the contract (docs/API.md) demands
 * or why that kind does not apply; then the rightful caller must succeed.
 *
 * The world: workspace W with owner, admin, member, guest, `plain` (role member, in no channel) and
 * `removed` (was a member of W, P and Q, then removed from W); W2 with its own owner, `foreign`.
 * P: public, owner + member + guest. Q: private, owner + member. R: public, owner + member.
 *
 * Every 404 refusal must answer exactly what the same request about a random id, and about a malformed
 * one, answers (ids aside): existence never leaks. No refused call may change anything (the world's rows
 * before and after). Socket events are refused NOT_FOUND the same way, also to a member removed while
 * their socket was open, and no refused caller's socket receives anything of the channel.
 * A worker runs in this process: sends must be persisted.
 */
import { expect } from 'chai';
import { randomUUID } from 'node:crypto';
import pg from 'pg';
import { loadConfig } from '../../shared/config.js';
import { createWorkerNode, type WorkerNode } from '../../worker/app.js';
import {
  addChannelMember,
  addWorkspaceMember,
  createChannel,
  createWorkspace,
  registerUser,
  request,
  startApi,
  unique,
  type ApiResponse,
  type RegisteredUser,
  type StartedApi,
} from '../support/api.js';
import { listRoutes } from '../support/routes.js';
import { connect, connectError, disconnectAll, sleep, waitFor, type ClientSocket } from '../support/sockets.js';

/** The kinds of caller each row must account for. */
const KINDS = ['unauthenticated', 'foreign', 'removed', 'outsider', 'guest', 'lower'] as const;
type Kind = (typeof KINDS)[number];
const KIND_MEANING: Record<Kind, string> = {
  unauthenticated: 'no token, or a bad one (401 UNAUTHORIZED; sockets: connect_error)',
  foreign: "another workspace's user (404 NOT_FOUND, as for a random id)",
  removed: 'a member removed from the workspace (404, as for a random id)',
  outsider: 'a workspace member (plain, or an admin) outside the private channel (404, as for a random id)',
  guest: 'a guest (403 where the contract says so, 404 for private channels)',
  lower: 'a workspace member whose role (or channel membership) does not allow it (403)',
};

type Who = 'owner' | 'admin' | 'member' | 'guest' | 'plain' | 'removed' | 'foreign';
type ChannelKey = 'P' | 'Q' | 'R';

interface World {
  W: string;
  W2: string;
  channels: Record<ChannelKey, string>;
  users: Record<Who, RegisteredUser>;
}

/** What a request is about: the ids its path parameters take. */
interface Target {
  workspaceId: string;
  channelId: string;
}

interface Refusal {
  status: number;
  code: string;
  /** The channel the call is about, when not the row's. */
  on?: ChannelKey;
  /** For `lower` and `outsider`: who calls (default member, plain). */
  as?: Who;
}
type Cell = Refusal | Refusal[] | { na: string };

interface Built {
  /** For `:userId`. */
  userId?: string;
  /** For `:messageId` (a random id when the call is about a channel without one). */
  messageId?: string;
  body?: unknown;
  query?: string;
}

interface Row {
  /** The channel channel-scoped calls are about (default Q, the private one). */
  on?: ChannelKey;
  /** Run once before the row: fresh users the row acts on, so that a success leaves the world as it was. */
  prepare?: (w: World) => Promise<Record<string, RegisteredUser>>;
  /** A valid request (called once per attempt: bodies may need fresh names), about `channelId`. */
  build?: (w: World, extra: Record<string, RegisteredUser>, channelId: string) => Built;
  refuse: Record<Kind, Cell>;
  ok: {
    as: Who | ((extra: Record<string, RegisteredUser>) => RegisteredUser);
    status: number;
    on?: ChannelKey;
    /** Puts the world back after the success. */
    cleanup?: (w: World) => Promise<void>;
  };
}

type PublicRow = { public: string };

const NOT_FOUND = (on?: ChannelKey): Refusal => ({ status: 404, code: 'NOT_FOUND', ...(on && { on }) });
const FORBIDDEN = (extra: Partial<Refusal> = {}): Refusal => ({ status: 403, code: 'FORBIDDEN', ...extra });
const UNAUTHORIZED: Refusal = { status: 401, code: 'UNAUTHORIZED' };
const na = (why: string) => ({ na: why });

const SELF_ONLY = {
  foreign: na('acts on the caller alone'),
  removed: na('acts on the caller alone'),
  outsider: na('acts on the caller alone'),
  guest: na('acts on the caller alone'),
  lower: na('acts on the caller alone'),
};
/** A channel call about Q (private): everyone outside it is told NOT_FOUND, workspace admins included. */
const OUTSIDE_Q = { foreign: NOT_FOUND(), removed: NOT_FOUND(), outsider: [NOT_FOUND(), { ...NOT_FOUND(), as: 'admin' as const }] };
const WORKSPACE_OUTSIDERS = {
  foreign: NOT_FOUND(),
  removed: NOT_FOUND(),
  outsider: na('a workspace call: there is no private channel to be outside of'),
};

/** Fresh users in W, made for one row. */
async function freshMember(base: string, w: World, role?: 'member' | 'guest', channel?: ChannelKey): Promise<RegisteredUser> {
  const user = await registerUser(base);
  await addWorkspaceMember(base, w.users.owner.token, w.W, user.email, role);
  if (channel) await addChannelMember(base, w.users.owner.token, w.channels[channel], user.user.id);
  return user;
}

/** Set in before(): the base URL the row table's prepare steps use. */
let BASE = '';

/** A message by `author` in each of P, Q and R, for the rows about a message: channelId → messageId. */
async function messagesBy(author: RegisteredUser, w: World): Promise<Record<string, string>> {
  const ids: Record<string, string> = {};
  for (const channelId of Object.values(w.channels)) {
    const res = await request(BASE, 'POST', `/channels/${channelId}/messages`, {
      token: author.token,
      body: { body: `matrix target ${randomUUID()}`, clientMsgId: randomUUID() },
    });
    expect(res.status, res.text).to.equal(201);
    ids[channelId] = res.body.message.id;
  }
  return ids;
}

/** Rows about one message of the member's: `prepare` makes them, `build` points at the one in the call's channel. */
let rowMessages: Record<string, string> = {};
const aboutMessage = {
  prepare: async (w: World) => {
    rowMessages = await messagesBy(w.users.member, w);
    return {};
  },
  build: (_w: World, _x: Record<string, RegisteredUser>, channelId: string): Built => ({
    messageId: rowMessages[channelId] ?? randomUUID(),
    body: { clientChangeId: randomUUID() },
  }),
};

const P = '/api/v1';
const REST: Record<string, Row | PublicRow> = {
  'GET /health/live': { public: 'liveness probe' },
  'GET /health/ready': { public: 'readiness probe' },
  [`POST ${P}/auth/register`]: { public: 'sign-up' },
  [`POST ${P}/auth/login`]: { public: 'sign-in' },
  [`POST ${P}/auth/logout`]: {
    prepare: async () => ({ self: await registerUser(BASE) }),
    refuse: { unauthenticated: UNAUTHORIZED, ...SELF_ONLY },
    ok: { as: (x) => x.self, status: 204 },
  },
  [`POST ${P}/auth/password`]: {
    prepare: async () => ({ self: await registerUser(BASE) }),
    build: (_w, x) => ({ body: { currentPassword: x.self.password, newPassword: `new-${randomUUID()}` } }),
    refuse: { unauthenticated: UNAUTHORIZED, ...SELF_ONLY },
    ok: { as: (x) => x.self, status: 200 },
  },
  [`GET ${P}/me`]: { refuse: { unauthenticated: UNAUTHORIZED, ...SELF_ONLY }, ok: { as: 'member', status: 200 } },
  [`GET ${P}/me/unread`]: { refuse: { unauthenticated: UNAUTHORIZED, ...SELF_ONLY }, ok: { as: 'member', status: 200 } },
  [`POST ${P}/workspaces`]: {
    build: () => ({ body: { name: unique('Matrix ') } }),
    refuse: { unauthenticated: UNAUTHORIZED, ...SELF_ONLY },
    ok: { as: 'member', status: 201 },
  },
  [`GET ${P}/workspaces`]: { refuse: { unauthenticated: UNAUTHORIZED, ...SELF_ONLY }, ok: { as: 'member', status: 200 } },
  [`GET ${P}/workspaces/:workspaceId`]: {
    refuse: {
      unauthenticated: UNAUTHORIZED,
      ...WORKSPACE_OUTSIDERS,
      guest: na('guests see their workspace'),
      lower: na('every member sees the workspace'),
    },
    ok: { as: 'guest', status: 200 },
  },
  [`POST ${P}/workspaces/:workspaceId/members`]: {
    prepare: async () => ({ newcomer: await registerUser(BASE) }),
    build: (_w, x) => ({ body: { email: x.newcomer.email } }),
    refuse: { unauthenticated: UNAUTHORIZED, ...WORKSPACE_OUTSIDERS, guest: FORBIDDEN(), lower: FORBIDDEN({ as: 'member' }) },
    ok: { as: 'admin', status: 201 },
  },
  [`GET ${P}/workspaces/:workspaceId/members`]: {
    refuse: {
      unauthenticated: UNAUTHORIZED,
      ...WORKSPACE_OUTSIDERS,
      guest: na('a guest gets the members of their channels (test/rest/roles.test.ts)'),
      lower: na('every member lists the members'),
    },
    ok: { as: 'member', status: 200 },
  },
  [`DELETE ${P}/workspaces/:workspaceId/members/:userId`]: {
    prepare: async (w) => ({ target: await freshMember(BASE, w, 'member', 'P') }),
    build: (_w, x) => ({ userId: x.target.user.id }),
    refuse: { unauthenticated: UNAUTHORIZED, ...WORKSPACE_OUTSIDERS, guest: FORBIDDEN(), lower: FORBIDDEN({ as: 'member' }) },
    ok: { as: 'admin', status: 204 },
  },
  [`PATCH ${P}/workspaces/:workspaceId/members/:userId`]: {
    prepare: async (w) => ({ target: await freshMember(BASE, w, 'guest') }),
    build: (_w, x) => ({ userId: x.target.user.id, body: { role: 'member' } }),
    refuse: { unauthenticated: UNAUTHORIZED, ...WORKSPACE_OUTSIDERS, guest: FORBIDDEN(), lower: FORBIDDEN({ as: 'member' }) },
    ok: { as: 'admin', status: 200 },
  },
  [`POST ${P}/workspaces/:workspaceId/leave`]: {
    prepare: async (w) => ({ self: await freshMember(BASE, w, 'member', 'Q') }),
    refuse: {
      unauthenticated: UNAUTHORIZED,
      ...WORKSPACE_OUTSIDERS,
      guest: na('a guest may leave'),
      lower: na('any member may leave (the last-owner rule is not about a lower role)'),
    },
    ok: { as: (x) => x.self, status: 204 },
  },
  [`POST ${P}/workspaces/:workspaceId/channels`]: {
    build: () => ({ body: { name: unique('m-') } }),
    refuse: {
      unauthenticated: UNAUTHORIZED,
      ...WORKSPACE_OUTSIDERS,
      guest: FORBIDDEN(),
      lower: na('every member but guests creates channels'),
    },
    ok: { as: 'member', status: 201 },
  },
  [`GET ${P}/workspaces/:workspaceId/channels`]: {
    refuse: {
      unauthenticated: UNAUTHORIZED,
      ...WORKSPACE_OUTSIDERS,
      guest: na('a guest gets the channels they are in (test/rest/roles.test.ts)'),
      lower: na('every member lists the channels'),
    },
    ok: { as: 'member', status: 200 },
  },
  [`POST ${P}/workspaces/:workspaceId/dms`]: {
    prepare: async (w) => ({ other: await freshMember(BASE, w, 'member') }),
    build: (_w, x) => ({ body: { userIds: [x.other.user.id] } }),
    refuse: {
      unauthenticated: UNAUTHORIZED,
      ...WORKSPACE_OUTSIDERS,
      guest: na('a guest opens DMs with the people of their channels; anyone else is NOT_FOUND as a random user id (test/rest/dms.test.ts)'),
      lower: na('every member opens DMs'),
    },
    ok: { as: 'member', status: 201 },
  },
  [`GET ${P}/workspaces/:workspaceId/dms`]: {
    refuse: {
      unauthenticated: UNAUTHORIZED,
      ...WORKSPACE_OUTSIDERS,
      guest: na('a guest lists their own DMs'),
      lower: na('every member lists their own DMs'),
    },
    ok: { as: 'guest', status: 200 },
  },
  [`GET ${P}/workspaces/:workspaceId/search`]: {
    build: () => ({ query: 'q=matrix' }),
    refuse: {
      unauthenticated: UNAUTHORIZED,
      ...WORKSPACE_OUTSIDERS,
      guest: na('a guest searches the channels they are in; no other channel ever yields a hit (test/pipeline/search.test.ts)'),
      lower: na('every member searches their own channels'),
    },
    ok: { as: 'guest', status: 200 },
  },
  [`GET ${P}/channels/:channelId`]: {
    refuse: {
      unauthenticated: UNAUTHORIZED,
      ...OUTSIDE_Q,
      guest: [NOT_FOUND(), FORBIDDEN({ on: 'R' })],
      lower: na('seeing a channel depends on membership, not on a role'),
    },
    ok: { as: 'member', status: 200 },
  },
  [`PATCH ${P}/channels/:channelId`]: {
    build: () => ({ body: { topic: unique('topic ') } }),
    refuse: {
      unauthenticated: UNAUTHORIZED,
      ...OUTSIDE_Q,
      guest: [NOT_FOUND(), FORBIDDEN({ on: 'P' })],
      lower: FORBIDDEN({ as: 'member' }),
    },
    ok: { as: 'owner', status: 200 },
  },
  [`POST ${P}/channels/:channelId/archive`]: {
    refuse: {
      unauthenticated: UNAUTHORIZED,
      ...OUTSIDE_Q,
      guest: [NOT_FOUND(), FORBIDDEN({ on: 'P' })],
      lower: FORBIDDEN({ as: 'member' }),
    },
    ok: {
      as: 'owner',
      status: 200,
      cleanup: async (w) => {
        const res = await request(BASE, 'POST', `/channels/${w.channels.Q}/unarchive`, { token: w.users.owner.token });
        expect(res.status, res.text).to.equal(200);
      },
    },
  },
  [`POST ${P}/channels/:channelId/unarchive`]: {
    refuse: {
      unauthenticated: UNAUTHORIZED,
      ...OUTSIDE_Q,
      guest: [NOT_FOUND(), FORBIDDEN({ on: 'P' })],
      lower: FORBIDDEN({ as: 'member' }),
    },
    ok: { as: 'owner', status: 200 },
  },
  [`POST ${P}/channels/:channelId/join`]: {
    refuse: {
      unauthenticated: UNAUTHORIZED,
      ...OUTSIDE_Q,
      guest: [NOT_FOUND(), FORBIDDEN({ on: 'R' })],
      lower: na('every member but guests joins public channels'),
    },
    ok: {
      as: 'plain',
      status: 200,
      on: 'R',
      cleanup: async (w) => {
        const res = await request(BASE, 'POST', `/channels/${w.channels.R}/leave`, { token: w.users.plain.token });
        expect(res.status, res.text).to.equal(200);
      },
    },
  },
  [`POST ${P}/channels/:channelId/leave`]: {
    prepare: async (w) => ({ self: await freshMember(BASE, w, 'member', 'Q') }),
    refuse: {
      unauthenticated: UNAUTHORIZED,
      ...OUTSIDE_Q,
      guest: [NOT_FOUND(), FORBIDDEN({ on: 'R' })],
      lower: na('anyone in a channel may leave it'),
    },
    ok: { as: (x) => x.self, status: 200 },
  },
  [`GET ${P}/channels/:channelId/members`]: {
    refuse: {
      unauthenticated: UNAUTHORIZED,
      ...OUTSIDE_Q,
      guest: [NOT_FOUND(), FORBIDDEN({ on: 'R' })],
      lower: na('seeing the members depends on membership, not on a role'),
    },
    ok: { as: 'member', status: 200 },
  },
  [`POST ${P}/channels/:channelId/members`]: {
    prepare: async (w) => ({ target: await freshMember(BASE, w, 'member') }),
    build: (_w, x) => ({ body: { userId: x.target.user.id } }),
    refuse: {
      unauthenticated: UNAUTHORIZED,
      ...OUTSIDE_Q,
      guest: [NOT_FOUND(), FORBIDDEN({ on: 'P' })],
      // A plain member outside a public channel: only its members and workspace owners/admins add to it.
      lower: FORBIDDEN({ as: 'plain', on: 'P' }),
    },
    ok: { as: 'member', status: 201 },
  },
  [`DELETE ${P}/channels/:channelId/members/:userId`]: {
    prepare: async (w) => {
      const target = await freshMember(BASE, w, 'member', 'Q');
      await addChannelMember(BASE, w.users.owner.token, w.channels.P, target.user.id);
      return { target };
    },
    build: (_w, x) => ({ userId: x.target.user.id }),
    refuse: {
      unauthenticated: UNAUTHORIZED,
      ...OUTSIDE_Q,
      guest: [NOT_FOUND(), FORBIDDEN({ on: 'P' })],
      lower: FORBIDDEN({ as: 'member' }),
    },
    ok: { as: 'admin', status: 204, on: 'P' },
  },
  [`GET ${P}/channels/:channelId/messages`]: {
    refuse: {
      unauthenticated: UNAUTHORIZED,
      ...OUTSIDE_Q,
      guest: [NOT_FOUND(), FORBIDDEN({ on: 'R' })],
      // A workspace admin who has not joined a public channel: members only read its history.
      lower: FORBIDDEN({ as: 'admin', on: 'P' }),
    },
    ok: { as: 'member', status: 200 },
  },
  [`POST ${P}/channels/:channelId/messages`]: {
    build: () => ({ body: { body: `matrix ${randomUUID()}`, clientMsgId: randomUUID() } }),
    refuse: {
      unauthenticated: UNAUTHORIZED,
      ...OUTSIDE_Q,
      // Sends are decided by the worker on channel membership: NOT_FOUND for any channel one is not in.
      guest: [NOT_FOUND(), NOT_FOUND('R')],
      lower: na('sending depends on channel membership, not on a role'),
    },
    ok: { as: 'member', status: 201 },
  },
  [`PATCH ${P}/channels/:channelId/messages/:messageId`]: {
    ...aboutMessage,
    build: (w, x, channelId) => ({ ...aboutMessage.build(w, x, channelId), body: { body: `edited ${randomUUID()}` } }),
    refuse: {
      unauthenticated: UNAUTHORIZED,
      ...OUTSIDE_Q,
      // Changes are for channel members (NOT_FOUND to anyone else, as sends); in P the guest is not the author.
      guest: [NOT_FOUND(), NOT_FOUND('R'), FORBIDDEN({ on: 'P' })],
      // The owner, a manager, is still not the author: only authors edit.
      lower: FORBIDDEN({ as: 'owner' }),
    },
    ok: { as: 'member', status: 200 },
  },
  [`DELETE ${P}/channels/:channelId/messages/:messageId`]: {
    ...aboutMessage,
    refuse: {
      unauthenticated: UNAUTHORIZED,
      ...OUTSIDE_Q,
      guest: [NOT_FOUND(), NOT_FOUND('R'), FORBIDDEN({ on: 'P' })],
      lower: na("deleting depends on authorship or a manager role; the guest's row is a member who may not"),
    },
    ok: { as: 'member', status: 200 },
  },
  [`GET ${P}/channels/:channelId/messages/:messageId/replies`]: {
    ...aboutMessage,
    build: (w, x, channelId) => ({ messageId: aboutMessage.build(w, x, channelId).messageId }),
    refuse: {
      unauthenticated: UNAUTHORIZED,
      ...OUTSIDE_Q,
      guest: [NOT_FOUND(), FORBIDDEN({ on: 'R' })],
      lower: FORBIDDEN({ as: 'admin', on: 'P' }),
    },
    ok: { as: 'member', status: 200 },
  },
  [`PUT ${P}/channels/:channelId/messages/:messageId/reactions/:emoji`]: {
    ...aboutMessage,
    refuse: {
      unauthenticated: UNAUTHORIZED,
      ...OUTSIDE_Q,
      guest: [NOT_FOUND(), NOT_FOUND('R')],
      lower: na('reacting depends on channel membership, not on a role'),
    },
    ok: { as: 'member', status: 200 },
  },
  [`DELETE ${P}/channels/:channelId/messages/:messageId/reactions/:emoji`]: {
    ...aboutMessage,
    refuse: {
      unauthenticated: UNAUTHORIZED,
      ...OUTSIDE_Q,
      guest: [NOT_FOUND(), NOT_FOUND('R')],
      lower: na('removing one\'s reaction depends on channel membership, not on a role'),
    },
    ok: { as: 'member', status: 200 },
  },
  [`POST ${P}/channels/:channelId/read`]: {
    build: () => ({ body: { seq: 1 } }),
    refuse: {
      unauthenticated: UNAUTHORIZED,
      ...OUTSIDE_Q,
      guest: NOT_FOUND(),
      lower: na('a read mark depends on channel membership, not on a role'),
    },
    ok: { as: 'member', status: 200 },
  },
};

/** Client → server socket events: every refused caller is answered NOT_FOUND and gets nothing of Q. */
interface SocketRow {
  emit(channelId: string): unknown;
  /** The refusal as this event answers it, for a channel the caller may not see. */
  refused(ack: any, channelId: string): { code: string | undefined };
  ok(ack: any, channelId: string): void;
  /** Kinds of caller the event has nothing to refuse, and why (the loop skips their cases). */
  na?: Partial<Record<Kind, string>>;
}
/** Set in the socket events' before(): a message by the member in each channel (channelId → messageId). */
let socketMessages: Record<string, string> = {};
/** Set there too: the members of Q and R (channelId → userIds), whom presence events name. */
let channelUsers: Record<string, string[]> = {};
const aboutSocketMessage = (extra: object) => (channelId: string) => ({
  channelId,
  messageId: socketMessages[channelId] ?? randomUUID(),
  clientChangeId: randomUUID(),
  ...extra,
});
const changeAck = {
  refused: (ack: any) => {
    expect(ack.ok).to.equal(false);
    return { code: ack.error?.code };
  },
  ok: (ack: any, channelId: string) => {
    expect(ack.ok, JSON.stringify(ack)).to.equal(true);
    expect(ack.message.channelId).to.equal(channelId);
  },
};
const SOCKET: Record<string, SocketRow> = {
  // The member's own message: the author may edit and delete it; the delete comes last.
  'message:edit': { emit: aboutSocketMessage({ body: 'edited by socket' }), ...changeAck },
  'reaction:add': { emit: aboutSocketMessage({ emoji: 'thumbsup' }), ...changeAck },
  'reaction:remove': { emit: aboutSocketMessage({ emoji: 'thumbsup' }), ...changeAck },
  'message:delete': { emit: aboutSocketMessage({}), ...changeAck },
  'message:send': {
    emit: (channelId) => ({ channelId, body: `socket ${randomUUID()}`, clientMsgId: randomUUID() }),
    refused: (ack) => {
      expect(ack.ok).to.equal(false);
      return { code: ack.error?.code };
    },
    ok: (ack, channelId) => {
      expect(ack.ok, JSON.stringify(ack)).to.equal(true);
      expect(ack.message.channelId).to.equal(channelId);
    },
  },
  sync: {
    emit: (channelId) => ({ channels: { [channelId]: 0 } }),
    refused: (ack, channelId) => {
      expect(ack.ok, JSON.stringify(ack)).to.equal(true);
      expect(Object.keys(ack.channels)).to.deep.equal([channelId]);
      return { code: ack.channels[channelId].error?.code };
    },
    ok: (ack, channelId) => {
      expect(ack.ok, JSON.stringify(ack)).to.equal(true);
      expect(ack.channels[channelId], JSON.stringify(ack)).to.include.keys('replayed', 'latestSeq', 'hasMore');
    },
  },
  'channel:read': {
    emit: (channelId) => ({ channelId, seq: 1 }),
    refused: (ack) => {
      expect(ack.ok).to.equal(false);
      return { code: ack.error?.code };
    },
    ok: (ack, channelId) => {
      expect(ack, JSON.stringify(ack)).to.deep.include({ ok: true, channelId });
    },
  },
  'typing:start': {
    emit: (channelId) => ({ channelId }),
    refused: (ack) => {
      expect(ack.ok).to.equal(false);
      return { code: ack.error?.code };
    },
    ok: (ack) => expect(ack).to.deep.equal({ ok: true }),
  },
  'typing:stop': {
    emit: (channelId) => ({ channelId }),
    refused: (ack) => {
      expect(ack.ok).to.equal(false);
      return { code: ack.error?.code };
    },
    ok: (ack) => expect(ack).to.deep.equal({ ok: true }),
  },
  // Presence names users, not channels: a user the caller may not see is left out of the ack, exactly as
  // an unknown or malformed id is (the NOT_FOUND of this matrix); the channel's members are the users.
  'presence:subscribe': {
    emit: (channelId) => ({ userIds: channelUsers[channelId] ?? [channelId] }),
    refused: (ack) => {
      expect(ack, JSON.stringify(ack)).to.deep.equal({ ok: true, presence: {} });
      return { code: 'NOT_FOUND' };
    },
    ok: (ack, channelId) => {
      expect(ack.ok, JSON.stringify(ack)).to.equal(true);
      expect(Object.keys(ack.presence).sort()).to.deep.equal([...channelUsers[channelId]].sort());
    },
    na: {
      outsider: 'a workspace member sees every member of the workspace, whichever channels they share',
      guest: "a guest sees the members of their channels: Q's and R's share P with the guest (test/realtime/presence.test.ts)",
    },
  },
  'presence:unsubscribe': {
    emit: (channelId) => ({ userIds: channelUsers[channelId] ?? [channelId] }),
    refused: () => expect.fail('unsubscribing refuses nobody'),
    ok: (ack) => expect(ack).to.deep.equal({ ok: true }),
    na: Object.fromEntries(KINDS.map((kind) => [kind, 'unsubscribing reveals nothing: it is {ok:true} to anyone'])),
  },
};
/** Socket.IO's own events, not the product's. */
const RESERVED = new Set(['disconnect', 'disconnecting', 'error', 'connect', 'connect_error', 'newListener', 'removeListener']);

const ID = /[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}/gi;
const withoutIds = (text: string) => text.replace(ID, '<id>');

function difference(a: Iterable<string>, b: Iterable<string>): string[] {
  const other = new Set(b);
  return [...a].filter((x) => !other.has(x)).sort();
}

describe('Isolation matrix (every route and socket event × every kind of caller)', function () {
  this.timeout(60_000);
  let worker: WorkerNode;
  let api: StartedApi;
  let db: pg.Pool;
  let w: World;

  before(async function () {
    const env = { REDIS_PREFIX: `${process.env.REDIS_PREFIX}.isolation-matrix` };
    // The worker first: Objection's models are bound to the knex created last, the front node's.
    worker = createWorkerNode(loadConfig({ ...process.env, ...env }));
    await worker.start();
    api = await startApi(env);
    BASE = api.baseUrl;
    db = new pg.Pool({ connectionString: process.env.DATABASE_URL, max: 2 });
    db.on('error', () => {});

    const names: Who[] = ['owner', 'admin', 'member', 'guest', 'plain', 'removed', 'foreign'];
    const registered = await Promise.all(names.map(() => registerUser(BASE)));
    const users = Object.fromEntries(names.map((n, i) => [n, registered[i]])) as Record<Who, RegisteredUser>;
    const owner = users.owner.token;
    const W = (await createWorkspace(BASE, owner)).id;
    const W2 = (await createWorkspace(BASE, users.foreign.token)).id;
    await addWorkspaceMember(BASE, owner, W, users.admin.email, 'admin');
    await addWorkspaceMember(BASE, owner, W, users.member.email);
    await addWorkspaceMember(BASE, owner, W, users.guest.email, 'guest');
    await addWorkspaceMember(BASE, owner, W, users.plain.email);
    await addWorkspaceMember(BASE, owner, W, users.removed.email);
    const channels = {
      P: (await createChannel(BASE, owner, W, { name: 'p-public' })).id,
      Q: (await createChannel(BASE, owner, W, { name: 'q-private', isPrivate: true })).id,
      R: (await createChannel(BASE, owner, W, { name: 'r-public' })).id,
    };
    for (const c of ['P', 'Q', 'R'] as const) await addChannelMember(BASE, owner, channels[c], users.member.user.id);
    await addChannelMember(BASE, owner, channels.P, users.guest.user.id);
    for (const c of ['P', 'Q'] as const) await addChannelMember(BASE, owner, channels[c], users.removed.user.id);
    // Something to read and replay in Q.
    const sent = await request(BASE, 'POST', `/channels/${channels.Q}/messages`, {
      token: owner,
      body: { body: 'seed', clientMsgId: randomUUID() },
    });
    expect(sent.status, sent.text).to.equal(201);
    const removal = await request(BASE, 'DELETE', `/workspaces/${W}/members/${users.removed.user.id}`, { token: owner });
    expect(removal.status, removal.text).to.equal(204);
    w = { W, W2, channels, users };
  });

  after(async function () {
    disconnectAll();
    await api?.stop();
    await worker?.stop();
    await db?.end();
  });

  /** Everything a call could change in the world (and the global counts), as one comparable value. */
  async function snapshot(): Promise<unknown> {
    const ws = [w.W, w.W2];
    const { rows } = await db.query(
      `SELECT
         (SELECT count(*)::int FROM users) AS users,
         (SELECT count(*)::int FROM workspaces) AS workspaces,
         (SELECT coalesce(string_agg(workspace_id || ':' || user_id || ':' || role, ',' ORDER BY workspace_id, user_id), '')
            FROM workspace_members WHERE workspace_id = ANY($1::uuid[])) AS workspace_members,
         (SELECT coalesce(string_agg(id || ':' || coalesce(name, kind) || ':' || topic || ':' || archived || ':' || last_seq, ',' ORDER BY id), '')
            FROM channels WHERE workspace_id = ANY($1::uuid[])) AS channels,
         (SELECT count(*)::int FROM channels) AS all_channels,
         (SELECT coalesce(string_agg(cm.channel_id || ':' || cm.user_id || ':' || cm.last_read_seq, ',' ORDER BY cm.channel_id, cm.user_id), '')
            FROM channel_members cm JOIN channels c ON c.id = cm.channel_id WHERE c.workspace_id = ANY($1::uuid[])) AS channel_members,
         (SELECT count(*)::int FROM messages) AS messages,
         (SELECT count(*)::int FROM channel_events) AS channel_events,
         (SELECT coalesce(string_agg(id || ':' || rev || ':' || md5(body), ',' ORDER BY id), '') FROM messages m
           WHERE m.channel_id IN (SELECT id FROM channels WHERE workspace_id = ANY($1::uuid[]))) AS message_states`,
      [ws],
    );
    return rows[0];
  }

  const callerOf = (kind: Kind, refusal: Refusal): RegisteredUser | null => {
    const who: Record<Kind, Who | null> = {
      unauthenticated: null,
      foreign: 'foreign',
      removed: 'removed',
      outsider: refusal.as ?? 'plain',
      guest: 'guest',
      lower: refusal.as ?? 'member',
    };
    const name = who[kind];
    return name ? w.users[name] : null;
  };

  const cells = (cell: Cell): Refusal[] => ('na' in cell ? [] : Array.isArray(cell) ? cell : [cell]);

  describe('coverage', function () {
    it('When the router lists its REST routes, then each has exactly one matrix row, and each row a route', function () {
      const listed = listRoutes().map((r) => `${r.method} ${r.path}`);
      expect(listed.length).to.be.greaterThan(20);
      const missing = difference(listed, Object.keys(REST));
      const stale = difference(Object.keys(REST), listed);
      expect(missing, `REST routes without an isolation-matrix row (add one to REST in ${__filename}): ${missing.join(', ')}`).to.deep.equal([]);
      expect(stale, `isolation-matrix rows for routes the router no longer has: ${stale.join(', ')}`).to.deep.equal([]);
    });

    it('When a socket connects, then each event its server-side socket listens to has exactly one matrix row', async function () {
      const socket = await connect(api.baseUrl, w.users.member.token);
      const serverSide = api.node.io.of('/').sockets.get(socket.id!);
      expect(serverSide, 'the in-process node has the connected socket').to.not.equal(undefined);
      const events = serverSide!.eventNames().map(String).filter((e) => !RESERVED.has(e));
      socket.close();
      expect(events).to.include.members(['message:send', 'sync', 'channel:read']);
      const missing = difference(events, Object.keys(SOCKET));
      const stale = difference(Object.keys(SOCKET), events);
      expect(missing, `socket events without an isolation-matrix row (add one to SOCKET in ${__filename}): ${missing.join(', ')}`).to.deep.equal([]);
      expect(stale, `isolation-matrix rows for socket events the server no longer handles: ${stale.join(', ')}`).to.deep.equal([]);
    });

    it('When a row is not public, then it accounts for every kind of caller (a refusal or why it does not apply)', function () {
      for (const [key, row] of Object.entries(REST)) {
        if ('public' in row) continue;
        expect(Object.keys(row.refuse).sort(), key).to.deep.equal([...KINDS].sort());
      }
    });
  });

  describe('REST', function () {
    for (const [key, row] of Object.entries(REST)) {
      if ('public' in row) {
        it(`${key}: public (${row.public}), answers without a token`, async function () {
          const [method, path] = key.split(' ');
          if (path.startsWith('/health')) {
            const res = await request(BASE, method, path);
            expect(res.status, res.text).to.equal(200);
          } else {
            // Reachable without a token: an invalid body is a 400, never a 401.
            const res = await request(BASE, method, path.slice(P.length), { body: {} });
            expect(res.status, res.text).to.equal(400);
            expect(res.body.error.code).to.equal('VALIDATION_FAILED');
          }
        });
        continue;
      }
      const [method, template] = key.split(' ');
      const refusals = KINDS.flatMap((kind) => cells(row.refuse[kind]).map((r) => [kind, r] as const));
      const summary = refusals.map(([kind, r]) => `${kind}${r.as ? ` (${r.as})` : ''}${r.on ? ` on ${r.on}` : ''} ${r.status}`).join(', ');

      it(`${key}: ${summary || 'no refusal'}; the rightful caller ${row.ok.status}; refusals change nothing`, async function () {
        const extra = row.prepare ? await row.prepare(w) : {};
        const call = (target: Target, token: string | undefined) => {
          const built = row.build?.(w, extra, target.channelId) ?? {};
          const path = template
            .slice(P.length)
            .replace(':workspaceId', target.workspaceId)
            .replace(':channelId', target.channelId)
            .replace(':messageId', built.messageId ?? '')
            .replace(':emoji', 'thumbsup')
            .replace(':userId', built.userId ?? '');
          return request(BASE, method, path + (built.query ? `?${built.query}` : ''), { token, body: built.body });
        };
        const targetOn = (on?: ChannelKey): Target => ({ workspaceId: w.W, channelId: w.channels[on ?? row.on ?? 'Q'] });

        for (const [kind, refusal] of refusals) {
          const what = `${key} by ${KIND_MEANING[kind]}${refusal.as ? ` as ${refusal.as}` : ''}${refusal.on ? ` on ${refusal.on}` : ''}`;
          const target = targetOn(refusal.on);
          const tokens = kind === 'unauthenticated' ? [undefined, 'not-a-token'] : [callerOf(kind, refusal)!.token];
          for (const token of tokens) {
            const before = await snapshot();
            const res: ApiResponse = await call(target, token);
            expect(res.status, `${what}: ${res.text}`).to.equal(refusal.status);
            expect(res.body?.error?.code, `${what}: ${res.text}`).to.equal(refusal.code);
            expect(await snapshot(), `${what} changed the world`).to.deep.equal(before);
            if (refusal.status === 404) {
              // Existence never leaks: the same request about ids that do not exist answers the same.
              const random = await call({ workspaceId: randomUUID(), channelId: randomUUID() }, token);
              expect(withoutIds(res.text), `${what}: the answer differs from the one for a random id`).to.equal(withoutIds(random.text));
              expect(random.status).to.equal(res.status);
              // Nor for an id that cannot exist (the contract: malformed ids are NOT_FOUND too).
              const malformed = await call({ workspaceId: 'not-an-id', channelId: 'not-an-id' }, token);
              expect(withoutIds(res.text), `${what}: the answer differs from the one for a malformed id`).to.equal(withoutIds(malformed.text));
            }
          }
        }

        const caller = typeof row.ok.as === 'function' ? row.ok.as(extra) : w.users[row.ok.as];
        const res = await call(targetOn(row.ok.on), caller.token);
        expect(res.status, `${key} by its rightful caller: ${res.text}`).to.equal(row.ok.status);
        await row.ok.cleanup?.(w);
      });
    }
  });

  describe('targets', function () {
    it("When a manager acts on another workspace's user as a member, then the answer is the one for a random user id, and nothing changes", async function () {
      const { owner, member, foreign } = w.users;
      const calls: Array<[string, string, string, (userId: string) => { path: string; body?: unknown }]> = [
        ['POST', '/channels/:channelId/members', member.token, (id) => ({ path: `/channels/${w.channels.Q}/members`, body: { userId: id } })],
        ['DELETE', '/channels/:channelId/members/:userId', owner.token, (id) => ({ path: `/channels/${w.channels.Q}/members/${id}` })],
        ['DELETE', '/workspaces/:workspaceId/members/:userId', owner.token, (id) => ({ path: `/workspaces/${w.W}/members/${id}` })],
        ['PATCH', '/workspaces/:workspaceId/members/:userId', owner.token, (id) => ({ path: `/workspaces/${w.W}/members/${id}`, body: { role: 'member' } })],
      ];
      for (const [method, route, token, build] of calls) {
        const before = await snapshot();
        const real = build(foreign.user.id);
        const res = await request(BASE, method, real.path, { token, body: real.body });
        expect(res.status, `${method} ${route} about a foreign user: ${res.text}`).to.equal(404);
        expect(await snapshot(), `${method} ${route} about a foreign user changed the world`).to.deep.equal(before);
        const fake = build(randomUUID());
        const random = await request(BASE, method, fake.path, { token, body: fake.body });
        expect(withoutIds(res.text), `${method} ${route}: a foreign user answers unlike a random id`).to.equal(withoutIds(random.text));
      }
    });
  });

  describe('socket events', function () {
    /** Who is refused which channel: everyone outside Q (admins too), and a guest outside the public R. */
    type Caller = Who | 'removedWhileConnected';
    const CASES: Array<{ kind: Kind; as: Caller; on: ChannelKey }> = [
      { kind: 'foreign', as: 'foreign', on: 'Q' },
      { kind: 'removed', as: 'removed', on: 'Q' },
      // Was in W, Q and R with a socket open, then removed from W: the socket stays, Q's and R's rooms do not.
      { kind: 'removed', as: 'removedWhileConnected', on: 'Q' },
      { kind: 'removed', as: 'removedWhileConnected', on: 'R' },
      { kind: 'outsider', as: 'plain', on: 'Q' },
      { kind: 'outsider', as: 'admin', on: 'Q' },
      { kind: 'guest', as: 'guest', on: 'Q' },
      { kind: 'guest', as: 'guest', on: 'R' },
    ];
    const sockets = {} as Partial<Record<Caller, ClientSocket>>;
    /** Everything of a refused channel each refused caller's socket received. */
    const leaked: string[] = [];

    before(async function () {
      socketMessages = await messagesBy(w.users.member, w);
      const members = [w.users.owner.user.id, w.users.member.user.id];
      channelUsers = { [w.channels.Q]: members, [w.channels.R]: members };
      const removedLater = await freshMember(BASE, w, 'member', 'Q');
      await addChannelMember(BASE, w.users.owner.token, w.channels.R, removedLater.user.id);
      const tokens: Record<Caller, string> = {
        ...(Object.fromEntries(Object.entries(w.users).map(([who, u]) => [who, u.token])) as Record<Who, string>),
        removedWhileConnected: removedLater.token,
      };
      for (const { as } of CASES) {
        if (sockets[as]) continue;
        const socket = await connect(api.baseUrl, tokens[as]);
        const refused = CASES.filter((c) => c.as === as).map((c) => w.channels[c.on]);
        socket.onAny((event: string, payload: unknown) => {
          const text = JSON.stringify(payload ?? null);
          if (refused.some((id) => text.includes(id))) leaked.push(`${as} got ${event} ${text}`);
        });
        sockets[as] = socket;
      }
      const removal = await request(BASE, 'DELETE', `/workspaces/${w.W}/members/${removedLater.user.id}`, { token: w.users.owner.token });
      expect(removal.status, removal.text).to.equal(204);
    });

    it('When a socket connects without a token or with a bad one, then connect_error UNAUTHORIZED (no event can be emitted)', async function () {
      for (const auth of [{}, { token: 'not-a-token' }]) {
        const err = await connectError(api.baseUrl, auth);
        expect(err.message).to.equal('UNAUTHORIZED');
      }
    });

    for (const [event, row] of Object.entries(SOCKET)) {
      const refusedCases = CASES.filter((c) => !row.na?.[c.kind]);
      it(`${event}: ${refusedCases.map((c) => `${c.kind} (${c.as}) on ${c.on}`).join(', ') || 'nobody'} get NOT_FOUND (as for a random id); a member is answered ok`, async function () {
        for (const { kind, as, on } of CASES) {
          if (row.na?.[kind]) continue;
          const what = `${event} about ${on} by ${KIND_MEANING[kind]} as ${as}`;
          const socket = sockets[as]!;
          const before = await snapshot();
          const ack = await socket.timeout(10_000).emitWithAck(event, row.emit(w.channels[on]));
          expect(row.refused(ack, w.channels[on]).code, `${what}: ${JSON.stringify(ack)}`).to.equal('NOT_FOUND');
          expect(await snapshot(), `${what} changed the world`).to.deep.equal(before);
          const randomId = randomUUID();
          const random = await socket.timeout(10_000).emitWithAck(event, row.emit(randomId));
          expect(withoutIds(JSON.stringify(ack)), `${what}: the answer differs from the one for a random id`).to.equal(
            withoutIds(JSON.stringify(random)),
          );
          const malformed = await socket.timeout(10_000).emitWithAck(event, row.emit('not-an-id'));
          expect(withoutIds(JSON.stringify(ack)), `${what}: the answer differs from the one for a malformed id`).to.equal(
            withoutIds(JSON.stringify(malformed)).replace('not-an-id', '<id>'),
          );
        }
        const member = await connect(api.baseUrl, w.users.member.token);
        const ack = await member.timeout(10_000).emitWithAck(event, row.emit(w.channels.Q));
        row.ok(ack, w.channels.Q);
        member.close();
      });
    }

    it("When the members of Q and R type, send, read and change them, then no refused caller's socket receives anything of them", async function () {
      const owner = await connect(api.baseUrl, w.users.owner.token);
      // A positive control: the member's socket gets what the refused ones must not.
      const member = await connect(api.baseUrl, w.users.member.token);
      const got: string[] = [];
      member.onAny((event: string, payload: { channelId?: string; channel?: { id: string } }) => {
        got.push(`${event} ${payload?.channelId ?? payload?.channel?.id}`);
      });
      // First, while the member's socket is idle: typing is volatile, dropped by a socket busy writing.
      for (const on of ['Q', 'R'] as const) {
        expect(await owner.timeout(10_000).emitWithAck('typing:start', { channelId: w.channels[on] })).to.deep.equal({ ok: true });
      }
      for (const on of ['Q', 'R'] as const) {
        const ack = await owner.timeout(10_000).emitWithAck('message:send', SOCKET['message:send'].emit(w.channels[on]));
        expect(ack.ok, JSON.stringify(ack)).to.equal(true);
        const read = await owner.timeout(10_000).emitWithAck('channel:read', { channelId: w.channels[on], seq: ack.message.seq });
        expect(read.ok, JSON.stringify(read)).to.equal(true);
        const patched = await request(BASE, 'PATCH', `/channels/${w.channels[on]}`, { token: w.users.owner.token, body: { topic: 'last' } });
        expect(patched.status, patched.text).to.equal(200);
      }
      const expected = ['Q', 'R'].flatMap((on) => ['typing', 'message:new', 'channel:updated'].map((e) => `${e} ${w.channels[on as ChannelKey]}`));
      await waitFor(() => expected.every((e) => got.includes(e)), 10_000, () => `the member got ${got.join(', ')}`);
      // Deliveries are pushed to every room at once; leave a margin for any that would (wrongly) trail.
      await sleep(200);
      owner.close();
      member.close();
      expect(leaked).to.deep.equal([]);
    });
  });
});
