/**
 * What the test files of message changes share (message-edits, reactions, threads, mentions): a log of
 * every change event a socket receives, checks of acks, answers and history against the events, and one
 * cluster per file with a team whose channels ("rooms") get sockets of their members on both front nodes.
 */
import { expect } from 'chai';
import type { Cluster } from '../../scripts/cluster.js';
import type { MessageDto, ReactionDto } from '../../shared/models/Message.js';
import {
  addWorkspaceMember,
  createWorkspace,
  registerUser,
  request,
  unique,
  type ApiResponse,
  type ChannelDto,
  type RegisteredUser,
} from '../support/api.js';
import { connect, disconnectAll, range, waitFor, type ClientSocket } from '../support/sockets.js';
import { REV_EVENTS, type RevEvent } from '../support/changes.js';
import { closeDb, deadProcesses, fullHistory, seedChannel, seedTeam, startPipelineCluster, type Team } from './fixtures.js';

// ---------------------------------------------------------------------------------------------------
// The contract's shapes, as the product defines them (shared/).

export type Reaction = ReactionDto;
export type Msg = MessageDto;

export const MESSAGE_KEYS = [
  'id', 'channelId', 'seq', 'rev', 'userId', 'body', 'clientMsgId', 'parentId', 'createdAt',
  'editedAt', 'deleted', 'replyCount', 'lastReplyAt', 'reactions', 'mentions',
].sort();

export interface Refusal {
  ok: false;
  error: { code: string; message: string };
}
export type Ack = { ok: true; message: Msg } | Refusal;

export interface ChangeEvent {
  name: RevEvent;
  channelId: string;
  rev: number;
  payload: any;
}

/** Every change event one socket receives, in arrival order. */
export class EventLog {
  readonly all: ChangeEvent[] = [];

  constructor(
    readonly label: string,
    socket: ClientSocket,
  ) {
    for (const name of REV_EVENTS) {
      socket.on(name, (payload: any) => this.all.push({ name, channelId: payload?.channelId, rev: payload?.rev, payload }));
    }
  }

  of(channelId: string): ChangeEvent[] {
    return this.all.filter((e) => e.channelId === channelId);
  }

  trace(channelId: string): string[] {
    return this.of(channelId).map((e) => `${e.name}@${e.rev}`);
  }
}

export async function emit(socket: ClientSocket, event: string, payload: unknown): Promise<Ack> {
  return (await socket.timeout(15_000).emitWithAck(event, payload)) as Ack;
}

export function expectMessage(m: Msg, what: string): void {
  expect(Object.keys(m ?? {}).sort(), `${what}: the message's keys`).to.deep.equal(MESSAGE_KEYS);
  expect(m.rev, `${what}: rev`).to.be.a('number').and.at.least(1);
  if (m.deleted) {
    expect({ body: m.body, mentions: m.mentions, reactions: m.reactions }, `${what}: a deleted message is erased`).to.deep.equal({
      body: '',
      mentions: [],
      reactions: [],
    });
  }
}

/** The message of an accepted ack: exactly `{ok: true, message}`. */
export function acked(ack: Ack, what: string): Msg {
  if (!ack || ack.ok !== true) expect.fail(`${what}: expected {ok: true, message}, got ${JSON.stringify(ack)}`);
  expect(Object.keys(ack).sort(), what).to.deep.equal(['message', 'ok']);
  expectMessage(ack.message, what);
  return ack.message;
}

export function expectRefused(ack: Ack, code: string, what: string): void {
  expect(ack?.ok, `${what}: ${JSON.stringify(ack)}`).to.equal(false);
  expect((ack as Refusal).error?.code, `${what}: ${JSON.stringify(ack)}`).to.equal(code);
}

/** The message of an answer: exactly `{message}` with `status`. */
export function answered(res: ApiResponse, what: string, status = 200): Msg {
  expect(res.status, `${what}: ${res.text}`).to.equal(status);
  expect(Object.keys(res.body), what).to.deep.equal(['message']);
  expectMessage(res.body.message, what);
  return res.body.message;
}

/**
 * A channel's latest rev: the highest rev among its messages (each carries its latest change's) or among
 * its events; 0 for none.
 */
export function latestRev(items: ReadonlyArray<{ rev: number }>): number {
  return items.reduce((max, m) => Math.max(max, m.rev), 0);
}

/**
 * The channel's messages as its change events describe them, by seq: what its history must show.
 * Reactions are rebuilt from reaction:added / reaction:removed with the contract's order rules.
 */
export function fold(events: ChangeEvent[]): Msg[] {
  const byId = new Map<string, Msg>();
  const reactors = new Map<string, Array<{ emoji: string; userId: string; rev: number }>>();
  const reactionsOf = (id: string): Reaction[] => {
    const groups = new Map<string, string[]>();
    for (const r of [...(reactors.get(id) ?? [])].sort((a, b) => a.rev - b.rev)) groups.set(r.emoji, [...(groups.get(r.emoji) ?? []), r.userId]);
    return [...groups].map(([emoji, userIds]) => ({ emoji, count: userIds.length, userIds: userIds.slice(0, 50) }));
  };
  const known = (id: string, e: ChangeEvent): Msg => {
    const m = byId.get(id);
    if (!m) expect.fail(`${e.name}@${e.rev} for a message never announced: ${JSON.stringify(e.payload)}`);
    return m;
  };
  for (const e of events) {
    const p = e.payload;
    if (e.name === 'message:new') byId.set(p.id, p);
    else if (e.name === 'message:updated') byId.set(p.message.id, p.message);
    else if (e.name === 'message:deleted') {
      byId.set(p.messageId, { ...known(p.messageId, e), rev: p.rev, deleted: true, body: '', mentions: [], reactions: [] });
      reactors.set(p.messageId, []);
    } else {
      const m = known(p.messageId, e);
      const list = (reactors.get(p.messageId) ?? []).filter((r) => !(r.emoji === p.emoji && r.userId === p.userId));
      if (e.name === 'reaction:added') list.push({ emoji: p.emoji, userId: p.userId, rev: p.rev });
      reactors.set(p.messageId, list);
      byId.set(p.messageId, { ...m, rev: p.rev, reactions: reactionsOf(p.messageId) });
    }
  }
  return [...byId.values()].sort((a, b) => a.seq - b.seq);
}

/** History equals what the events said, field by field (a delete's editedAt is not the contract's business). */
export function expectHistoryMatchesEvents(history: Msg[], events: ChangeEvent[]): void {
  history.forEach((m, i) => expectMessage(m, `history #${i}`));
  const expected = fold(events);
  const got = history.map((m, i) => (m.deleted && expected[i]?.deleted ? { ...m, editedAt: expected[i].editedAt } : m));
  expect(got, 'history against the events').to.deep.equal(expected);
}

// ---------------------------------------------------------------------------------------------------

// ---------------------------------------------------------------------------------------------------
// Rooms, and the calls and events of the contract.

export interface Room {
  channel: ChannelDto;
  id: string;
  /** Alice's sockets: one on each node. */
  aliceA: ClientSocket;
  aliceB: ClientSocket;
  bobB: ClientSocket;
  ownerB: ClientSocket;
  adminA: ClientSocket;
  carolA: ClientSocket;
  /** The logs of every socket of a channel member. */
  logs: EventLog[];
  /** Carol's sockets (a workspace member outside the channel), on both nodes. */
  strangers: EventLog[];
}

export async function settle(room: Room, rev: number): Promise<void> {
  await waitFor(
    () => room.logs.every((l) => l.of(room.id).some((e) => e.rev >= rev)),
    10_000,
    () => `waiting for rev ${rev}: ${room.logs.map((l) => `${l.label} [${l.trace(room.id).join(' ')}]`).join('; ')}`,
  );
}

/**
 * Every member socket got the same events, once each, with revs 1, 2, 3 … in arrival order, and the
 * strangers none; returns them.
 */
export function expectOneGapFreeStream(room: Room): ChangeEvent[] {
  const [first, ...others] = room.logs;
  const events = first.of(room.id);
  expect(events.map((e) => e.rev), `${first.label}: revs in arrival order (${first.trace(room.id).join(' ')})`).to.deep.equal(
    range(events.length),
  );
  for (const l of others) expect(l.of(room.id), `${l.label} got exactly what ${first.label} got`).to.deep.equal(events);
  for (const s of room.strangers) expect(s.of(room.id), `${s.label} (not a member) got nothing`).to.deep.equal([]);
  return events;
}

export function expectEvents(room: Room, expected: Array<[RevEvent, unknown]>): ChangeEvent[] {
  const events = expectOneGapFreeStream(room);
  expect(events.map((e) => [e.name, e.payload])).to.deep.equal(expected);
  return events;
}

/** A channel, by id: a Room or any other. */
export type Where = { id: string };

export async function say(socket: ClientSocket, room: Where, body: string): Promise<Msg> {
  return acked(await emit(socket, 'message:send', { channelId: room.id, body, clientMsgId: unique('m-') }), `send ${body}`);
}

/** A later change everyone must get; once it is there, anything emitted before it is there too. */
export async function marker(room: Room): Promise<Msg> {
  const m = await say(room.aliceA, room, `marker ${unique()}`);
  await settle(room, m.rev);
  return m;
}


export const edit = (socket: ClientSocket, room: Where, messageId: string, body: unknown, extra: Record<string, unknown> = {}) =>
  emit(socket, 'message:edit', { channelId: room.id, messageId, body, ...extra });
export const remove = (socket: ClientSocket, room: Where, messageId: string, extra: Record<string, unknown> = {}) =>
  emit(socket, 'message:delete', { channelId: room.id, messageId, ...extra });
export const restEdit = (url: string, token: string, channelId: string, messageId: string, body: unknown) =>
  request(url, 'PATCH', `/channels/${channelId}/messages/${messageId}`, { token, body });
export const restDelete = (url: string, token: string, channelId: string, messageId: string, body?: unknown) =>
  request(url, 'DELETE', `/channels/${channelId}/messages/${messageId}`, { token, body });

export const react = (socket: ClientSocket, room: Where, messageId: string, emoji: unknown, extra: Record<string, unknown> = {}) =>
  emit(socket, 'reaction:add', { channelId: room.id, messageId, emoji, ...extra });
export const unreact = (socket: ClientSocket, room: Where, messageId: string, emoji: unknown, extra: Record<string, unknown> = {}) =>
  emit(socket, 'reaction:remove', { channelId: room.id, messageId, emoji, ...extra });
export const reactionPath = (channelId: string, messageId: string, emoji: string) =>
  `/channels/${channelId}/messages/${messageId}/reactions/${encodeURIComponent(emoji)}`;
export const restReact = (url: string, token: string, channelId: string, messageId: string, emoji: string, body?: unknown) =>
  request(url, 'PUT', reactionPath(channelId, messageId, emoji), { token, body });
export const restUnreact = (url: string, token: string, channelId: string, messageId: string, emoji: string, body?: unknown) =>
  request(url, 'DELETE', reactionPath(channelId, messageId, emoji), { token, body });

export const newMsg = (m: Msg): [RevEvent, unknown] => ['message:new', m];
export const updated = (m: Msg): [RevEvent, unknown] => ['message:updated', { channelId: m.channelId, rev: m.rev, message: m }];
export const deletedEvent = (m: Msg): [RevEvent, unknown] => [
  'message:deleted',
  { channelId: m.channelId, rev: m.rev, messageId: m.id, seq: m.seq },
];
/** reaction:added / reaction:removed of `user` with `emoji`, as the answer `m` to that change. */
export const reactionEvent = (kind: 'added' | 'removed', m: Msg, emoji: string, user: RegisteredUser): [RevEvent, unknown] => [
  `reaction:${kind}`,
  { channelId: m.channelId, rev: m.rev, messageId: m.id, emoji, userId: user.user.id },
];

// ---------------------------------------------------------------------------------------------------
// One cluster per file, and its people.

export interface World {
  /** Front node URLs. */
  A: string;
  B: string;
  team: Team;
  owner: RegisteredUser;
  admin: RegisteredUser;
  alice: RegisteredUser;
  bob: RegisteredUser;
  /** In the workspace, never in the test channels. */
  carol: RegisteredUser;
  /** In no workspace of the team. */
  outsider: RegisteredUser;
}

/**
 * Starts the file's cluster (2 front nodes, 2 workers) and its team in before(), checks after each test
 * that no process died, stops it in after(). Call it inside the file's describe(); `world` is set once
 * the before() hook ran. `members`: the team's workspace members (alice, bob, carol, then the file's own).
 */
export function useChangesCluster(name: string, members = 3) {
  let cluster: Cluster | undefined;
  let world!: World;

  before(async () => {
    cluster = await startPipelineCluster(name);
    const [A, B] = cluster.urls;
    const team = await seedTeam(A, members);
    const [alice, bob, carol] = team.members;
    const admin = await registerUser(A);
    await addWorkspaceMember(A, team.owner.token, team.workspace.id, admin.email, 'admin');
    const outsider = await registerUser(A);
    await createWorkspace(A, outsider.token);
    world = { A, B, team, owner: team.owner, admin, alice, bob, carol, outsider };
  });

  afterEach(function () {
    disconnectAll();
    const dead = deadProcesses(cluster);
    if (dead.length > 0) throw new Error(dead.join('\n'));
  });

  after(async () => {
    disconnectAll();
    await cluster?.stop();
    await closeDb();
  });

  /** A fresh channel (rev starts at 1) of owner, alice, bob, admin and `extra`, with sockets of the first four on both nodes. */
  async function openRoom(extra: RegisteredUser[] = []): Promise<Room> {
    const { A, B, team, owner, admin, alice, bob, carol } = world;
    const channel = await seedChannel(A, team, [alice, bob, admin, ...extra]);
    const [aliceA, aliceB, bobB, ownerB, adminA, carolA, carolB] = await Promise.all([
      connect(A, alice.token),
      connect(B, alice.token),
      connect(B, bob.token),
      connect(B, owner.token),
      connect(A, admin.token),
      connect(A, carol.token),
      connect(B, carol.token),
    ]);
    return {
      channel,
      id: channel.id,
      aliceA,
      aliceB,
      bobB,
      ownerB,
      adminA,
      carolA,
      logs: [
        new EventLog('alice@A', aliceA),
        new EventLog('alice@B', aliceB),
        new EventLog('bob@B', bobB),
        new EventLog('owner@B', ownerB),
        new EventLog('admin@A', adminA),
      ],
      strangers: [new EventLog('carol@A', carolA), new EventLog('carol@B', carolB)],
    };
  }

  /** A channel's whole history, read on node B (alice's view by default). */
  async function history(room: Where, token = world.alice.token): Promise<Msg[]> {
    return (await fullHistory(world.B, token, room.id)) as unknown as Msg[];
  }

  return {
    get world(): World {
      return world;
    },
    openRoom,
    history,
  };
}
