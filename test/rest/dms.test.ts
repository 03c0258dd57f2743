/**
 * Direct messages (issue #12): `POST /workspaces/:id/dms {userIds}` opens the one DM of a set of 2 to 9
 * people of a workspace (201 new, 200 the one there is, never two, however concurrent the opens), `GET
 * /workspaces/:id/dms` lists the caller's, newest activity first. A DM is a private, nameless channel of
 * kind "dm" whose members are fixed (joins, leaves, additions, removals: 403); messages, history, read
 * state, reactions, edits and threads work as in any channel; anyone else, and anyone removed from the
 * workspace, is told 404. A worker runs in this process: sends need one. (Across front nodes:
 * test/pipeline/dms.test.ts.)
 */
import { expect } from 'chai';
import { randomUUID } from 'node:crypto';
import { loadConfig } from '../../shared/config.js';
import { createWorkerNode, type WorkerNode } from '../../worker/app.js';
import {
  addChannelMember,
  addWorkspaceMember,
  createChannel,
  createWorkspace,
  expectError,
  openDm,
  registerUser,
  request,
  startApi,
  type DmDto,
  type RegisteredUser,
  type StartedApi,
  type WorkspaceDto,
} from '../support/api.js';
import { connect, disconnectAll, send } from '../support/sockets.js';

describe('REST direct messages', function () {
  this.timeout(60_000);
  let worker: WorkerNode;
  let api: StartedApi;
  let base: string;

  before(async function () {
    // A Redis prefix of its own (queues, and its registrations' per-address budget).
    const env = { REDIS_PREFIX: `${process.env.REDIS_PREFIX}.dms` };
    // The worker first: Objection's models are bound to the knex created last, the front node's.
    worker = createWorkerNode(loadConfig({ ...process.env, ...env }));
    await worker.start();
    api = await startApi(env);
    base = api.baseUrl;
  });

  after(async function () {
    disconnectAll();
    await api?.stop();
    await worker?.stop();
  });

  interface Team {
    ws: WorkspaceDto;
    owner: RegisteredUser;
    /** Workspace members (role member). */
    members: RegisteredUser[];
    /** In a workspace of their own only. */
    outsider: RegisteredUser;
  }

  async function team(count = 3): Promise<Team> {
    const [owner, outsider, ...members] = await Promise.all(Array.from({ length: count + 2 }, () => registerUser(base)));
    const ws = await createWorkspace(base, owner.token);
    for (const m of members) await addWorkspaceMember(base, owner.token, ws.id, m.email);
    await createWorkspace(base, outsider.token);
    return { ws, owner, members, outsider };
  }

  const dmsPath = (ws: WorkspaceDto) => `/workspaces/${ws.id}/dms`;
  const open = (ws: WorkspaceDto, as: RegisteredUser, userIds: string[]) => request(base, 'POST', dmsPath(ws), { token: as.token, body: { userIds } });
  const list = async (ws: WorkspaceDto, as: RegisteredUser): Promise<Array<DmDto & Record<string, unknown>>> => {
    const res = await request(base, 'GET', dmsPath(ws), { token: as.token });
    expect(res.status, res.text).to.equal(200);
    return res.body.channels;
  };
  const post = async (as: RegisteredUser, channelId: string, body: string, extra: object = {}) => {
    const res = await request(base, 'POST', `/channels/${channelId}/messages`, { token: as.token, body: { body, clientMsgId: randomUUID(), ...extra } });
    expect(res.status, res.text).to.equal(201);
    return res.body.message;
  };
  const ids = (users: RegisteredUser[]) => users.map((u) => u.user.id);

  it('When a member opens a DM with another, then 201 with a private, nameless channel of kind dm and both as members; every later open of the same people answers 200 with it', async function () {
    const { ws, members: [ada, bob] } = await team(2);
    const first = await open(ws, ada, [bob.user.id]);
    expect(first.status, first.text).to.equal(201);
    const dm: DmDto = first.body.channel;
    expect(dm).to.include({ workspaceId: ws.id, kind: 'dm', name: null, isPrivate: true, archived: false });
    expect(dm.members.map((m) => m.userId).sort()).to.deep.equal(ids([ada, bob]).sort());
    expect(dm.members.find((m) => m.userId === bob.user.id)!.displayName).to.equal(bob.user.displayName);

    for (const [as, userIds] of [
      [ada, [bob.user.id]],
      [ada, [bob.user.id, ada.user.id]],
      [bob, [ada.user.id]],
      [bob, [bob.user.id, ada.user.id, ada.user.id.toUpperCase()]],
    ] as const) {
      const again = await open(ws, as, [...userIds]);
      expect(again.status, again.text).to.equal(200);
      expect(again.body.channel).to.deep.equal(dm);
    }
    const got = await request(base, 'GET', `/channels/${dm.id}`, { token: bob.token });
    expect(got.status, got.text).to.equal(200);
    expect(got.body.channel).to.include({ id: dm.id, kind: 'dm', name: null });
  });

  it('When many opens of the same people race (different callers of the set, different orders, the caller listed or not), then one DM exists and every answer is it', async function () {
    const { ws, members } = await team(4);
    const group = members.slice(0, 3);
    const pair = members.slice(3).concat(members[0]);
    const calls: Array<Promise<Awaited<ReturnType<typeof open>>>> = [];
    for (let round = 0; round < 6; round++) {
      for (const set of [group, pair]) {
        for (const [i, caller] of set.entries()) {
          const others = set.filter((u) => u !== caller).map((u) => u.user.id);
          const userIds = round % 2 === 0 ? others.reverse() : [caller.user.id, ...others];
          calls.push(open(ws, caller, (i + round) % 3 === 0 ? userIds.reverse() : userIds));
        }
      }
    }
    const answers = await Promise.all(calls);
    for (const res of answers) expect(res.status, res.text).to.be.oneOf([200, 201]);
    for (const set of [group, pair]) {
      const key = ids(set).sort().join();
      const mine = answers.filter((r) => r.body.channel.members.map((m: { userId: string }) => m.userId).sort().join() === key);
      expect(mine.length).to.equal(6 * set.length);
      expect(new Set(mine.map((r) => r.body.channel.id)).size, 'DMs of one set').to.equal(1);
      expect(mine.filter((r) => r.status === 201).length, 'answers that created it').to.equal(1);
      for (const u of set) {
        const dms = (await list(ws, u)).filter((d) => d.members.map((m) => m.userId).sort().join() === key);
        expect(dms.map((d) => d.id)).to.deep.equal([mine[0].body.channel.id]);
      }
    }
  });

  it('When userIds does not make 2 to 9 people with the caller, or is malformed, then 400 VALIDATION_FAILED and nothing is opened; 9 people are fine', async function () {
    const t = await team(9);
    const [ada] = t.members;
    const others = ids(t.members.slice(1));
    expect(others.length).to.equal(8);
    for (const body of [
      {},
      { userIds: [] },
      { userIds: [ada.user.id] },
      { userIds: [...others, t.owner.user.id] },
      { userIds: [...others, t.owner.user.id, ada.user.id] },
      { userIds: ada.user.id },
      { userIds: [42] },
      { userIds: [others[0]], extra: true },
    ]) {
      const res = await request(base, 'POST', dmsPath(t.ws), { token: ada.token, body });
      expectError(res, 400, 'VALIDATION_FAILED');
    }
    expect(await list(t.ws, ada)).to.deep.equal([]);
    const nine = await open(t.ws, ada, others.concat(t.owner.user.id).slice(0, 8));
    expect(nine.status, nine.text).to.equal(201);
    expect(nine.body.channel.members).to.have.length(9);
  });

  it('When someone of userIds is not a member of the workspace, or the caller is not, then 404 NOT_FOUND as for a random id, and nothing is opened', async function () {
    const t = await team(2);
    const [ada, bob] = t.members;
    const random = await open(t.ws, ada, [randomUUID()]);
    expectError(random, 404, 'NOT_FOUND');
    for (const userIds of [[t.outsider.user.id], [bob.user.id, t.outsider.user.id], ['not-an-id']]) {
      const res = await open(t.ws, ada, userIds);
      expectError(res, 404, 'NOT_FOUND');
      expect(res.body).to.deep.equal(random.body);
    }
    // A caller outside the workspace: as for a workspace that does not exist.
    const outside = await open(t.ws, t.outsider, [ada.user.id]);
    expectError(outside, 404, 'NOT_FOUND');
    const nowhere = await request(base, 'POST', `/workspaces/${randomUUID()}/dms`, { token: t.outsider.token, body: { userIds: [ada.user.id] } });
    expect(outside.body).to.deep.equal(nowhere.body);
    expectError(await request(base, 'GET', dmsPath(t.ws), { token: t.outsider.token }), 404, 'NOT_FOUND');
    expect(await list(t.ws, ada)).to.deep.equal([]);
    expect(await list(t.ws, bob)).to.deep.equal([]);
  });

  it('When a DM member joins, leaves, adds or removes a member, renames or archives it, then 403 FORBIDDEN and its members stay; to anyone else it is 404', async function () {
    const t = await team(3);
    const [ada, bob, carol] = t.members;
    const dm = await openDm(base, ada.token, t.ws.id, [bob.user.id]);
    const path = `/channels/${dm.id}`;
    for (const as of [ada, bob]) {
      expectError(await request(base, 'POST', `${path}/join`, { token: as.token }), 403, 'FORBIDDEN');
      expectError(await request(base, 'POST', `${path}/leave`, { token: as.token }), 403, 'FORBIDDEN');
      expectError(await request(base, 'POST', `${path}/members`, { token: as.token, body: { userId: carol.user.id } }), 403, 'FORBIDDEN');
      for (const target of [ada, bob]) {
        expectError(await request(base, 'DELETE', `${path}/members/${target.user.id}`, { token: as.token }), 403, 'FORBIDDEN');
      }
      expectError(await request(base, 'PATCH', path, { token: as.token, body: { topic: 'ours' } }), 403, 'FORBIDDEN');
      expectError(await request(base, 'POST', `${path}/archive`, { token: as.token }), 403, 'FORBIDDEN');
    }
    // The workspace owner, a manager, is not in it: the DM does not exist for them.
    for (const as of [carol, t.owner]) {
      expectError(await request(base, 'POST', `${path}/join`, { token: as.token }), 404, 'NOT_FOUND');
      expectError(await request(base, 'DELETE', `${path}/members/${bob.user.id}`, { token: as.token }), 404, 'NOT_FOUND');
    }
    const members = await request(base, 'GET', `${path}/members`, { token: bob.token });
    expect(members.status, members.text).to.equal(200);
    expect(members.body.members.map((m: { userId: string }) => m.userId).sort()).to.deep.equal(ids([ada, bob]).sort());
    expect((await request(base, 'GET', path, { token: ada.token })).body.channel).to.include({ archived: false, topic: '', name: null });
  });

  it("When a third workspace member (or the workspace's owner) reads, sends into, follows or lists the members of a DM, then 404 NOT_FOUND as for a private channel they are not in", async function () {
    const t = await team(3);
    const [ada, bob, carol] = t.members;
    const dm = await openDm(base, ada.token, t.ws.id, [bob.user.id]);
    await post(ada, dm.id, 'between us');
    const calls = (channelId: string): Array<[string, string, object | undefined]> => [
      ['GET', `/channels/${channelId}`, undefined],
      ['GET', `/channels/${channelId}/messages`, undefined],
      ['GET', `/channels/${channelId}/members`, undefined],
      ['POST', `/channels/${channelId}/messages`, { body: 'let me in', clientMsgId: randomUUID() }],
      ['POST', `/channels/${channelId}/read`, { seq: 1 }],
    ];
    for (const as of [carol, t.owner]) {
      const random = calls(randomUUID());
      for (const [i, [method, path, body]] of calls(dm.id).entries()) {
        const res = await request(base, method, path, { token: as.token, body });
        expectError(res, 404, 'NOT_FOUND');
        const other = await request(base, random[i][0], random[i][1], { token: as.token, body: random[i][2] });
        expect(res.body, `${method} ${path}`).to.deep.equal(other.body);
      }
      const socket = await connect(base, as.token);
      const ack = await send(socket, { channelId: dm.id, body: 'over a socket', clientMsgId: randomUUID() });
      expect(ack).to.deep.include({ ok: false });
      expect(ack.ok === false && ack.error.code).to.equal('NOT_FOUND');
      socket.close();
      expect(await list(t.ws, as)).to.deep.equal([]);
    }
    const history = await request(base, 'GET', `/channels/${dm.id}/messages`, { token: bob.token });
    expect(history.body.messages.map((m: { body: string }) => m.body)).to.deep.equal(['between us']);
  });

  it('When DM members send, read, react, edit and reply, then it all works as in a channel, and the DM counts in /me/unread', async function () {
    const t = await team(3);
    const [ada, bob, carol] = t.members;
    const dm = await openDm(base, ada.token, t.ws.id, ids([bob, carol]));
    const hello = await post(ada, dm.id, `hello <@${bob.user.id}>`);
    expect(hello).to.include({ channelId: dm.id, seq: 1 });
    expect(hello.mentions).to.deep.equal([bob.user.id]);
    const unread = await request(base, 'GET', '/me/unread', { token: bob.token });
    expect(unread.body.channels).to.deep.include({
      channelId: dm.id,
      workspaceId: t.ws.id,
      kind: 'dm',
      name: null,
      lastSeq: 1,
      lastReadSeq: 0,
      unreadCount: 1,
      mentionCount: 1,
    });
    const reply = await post(bob, dm.id, 'hi back', { parentId: hello.id });
    expect(reply).to.include({ seq: 2, parentId: hello.id });
    const carolUnread = await request(base, 'GET', '/me/unread', { token: carol.token });
    expect(carolUnread.body.channels).to.deep.include({ channelId: dm.id, workspaceId: t.ws.id, kind: 'dm', name: null, lastSeq: 2, lastReadSeq: 0, unreadCount: 2, mentionCount: 0 });

    const edited = await request(base, 'PATCH', `/channels/${dm.id}/messages/${hello.id}`, { token: ada.token, body: { body: 'hello all' } });
    expect(edited.status, edited.text).to.equal(200);
    const reacted = await request(base, 'PUT', `/channels/${dm.id}/messages/${hello.id}/reactions/wave`, { token: carol.token });
    expect(reacted.status, reacted.text).to.equal(200);
    expect(reacted.body.message.reactions).to.deep.equal([{ emoji: 'wave', count: 1, userIds: [carol.user.id] }]);
    const read = await request(base, 'POST', `/channels/${dm.id}/read`, { token: carol.token, body: { seq: 2 } });
    expect(read.body).to.deep.equal({ channelId: dm.id, seq: 2 });

    const history = await request(base, 'GET', `/channels/${dm.id}/messages`, { token: carol.token });
    expect(history.body.messages.map((m: { body: string }) => m.body)).to.deep.equal(['hello all', 'hi back']);
    expect(history.body.messages[0]).to.include({ replyCount: 1 });
    const replies = await request(base, 'GET', `/channels/${dm.id}/messages/${hello.id}/replies`, { token: ada.token });
    expect(replies.body.messages.map((m: { id: string }) => m.id)).to.deep.equal([reply.id]);
    const [listed] = await list(t.ws, carol);
    expect(listed).to.include({ id: dm.id, lastSeq: 2, lastReadSeq: 2, unreadCount: 0, mentionCount: 0 });
  });

  it('When a DM member is removed from the workspace, then they lose access to it; once added back, opening the same people again gives them the same DM', async function () {
    const t = await team(2);
    const [ada, bob] = t.members;
    const dm = await openDm(base, ada.token, t.ws.id, [bob.user.id]);
    await post(bob, dm.id, 'before');
    const removed = await request(base, 'DELETE', `/workspaces/${t.ws.id}/members/${bob.user.id}`, { token: t.owner.token });
    expect(removed.status, removed.text).to.equal(204);

    expectError(await request(base, 'GET', `/channels/${dm.id}/messages`, { token: bob.token }), 404, 'NOT_FOUND');
    expectError(await request(base, 'GET', dmsPath(t.ws), { token: bob.token }), 404, 'NOT_FOUND');
    expectError(await request(base, 'POST', `/channels/${dm.id}/messages`, { token: bob.token, body: { body: 'still here?' } }), 404, 'NOT_FOUND');
    const socket = await connect(base, bob.token);
    const ack = await send(socket, { channelId: dm.id, body: 'still here?', clientMsgId: randomUUID() });
    expect(ack.ok === false && ack.error.code).to.equal('NOT_FOUND');
    socket.close();
    expect((await request(base, 'GET', '/me/unread', { token: bob.token })).body.channels).to.deep.equal([]);
    // Nobody opens a DM with someone outside the workspace; the one there is stays the other member's.
    expectError(await open(t.ws, ada, [bob.user.id]), 404, 'NOT_FOUND');
    await post(ada, dm.id, 'while away');
    const [adaDm] = await list(t.ws, ada);
    expect(adaDm.id).to.equal(dm.id);
    expect(adaDm.members.map((m) => m.userId)).to.deep.equal([ada.user.id]);

    await addWorkspaceMember(base, t.owner.token, t.ws.id, bob.email);
    expectError(await request(base, 'GET', `/channels/${dm.id}/messages`, { token: bob.token }), 404, 'NOT_FOUND');
    const again = await open(t.ws, bob, [ada.user.id]);
    expect(again.status, again.text).to.equal(200);
    expect(again.body.channel.id).to.equal(dm.id);
    expect(again.body.channel.members.map((m: { userId: string }) => m.userId).sort()).to.deep.equal(ids([ada, bob]).sort());
    const history = await request(base, 'GET', `/channels/${dm.id}/messages`, { token: bob.token });
    expect(history.body.messages.map((m: { body: string }) => m.body)).to.deep.equal(['before', 'while away']);
  });

  it('When DMs get messages, then GET …/dms lists the caller\'s DMs newest activity first, with their members, and the channel list shows none of them', async function () {
    const t = await team(4);
    const [ada, bob, carol, dan] = t.members;
    const withBob = await openDm(base, ada.token, t.ws.id, [bob.user.id]);
    const withCarol = await openDm(base, carol.token, t.ws.id, [ada.user.id]);
    const group = await openDm(base, dan.token, t.ws.id, ids([ada, bob, carol]));
    await openDm(base, bob.token, t.ws.id, [carol.user.id]);
    const order = async () => (await list(t.ws, ada)).map((d) => d.id);
    // Never written to: by when each was opened.
    expect(await order()).to.deep.equal([group.id, withCarol.id, withBob.id]);
    await post(bob, withBob.id, 'one');
    expect(await order()).to.deep.equal([withBob.id, group.id, withCarol.id]);
    await post(ada, withCarol.id, 'two');
    await post(carol, group.id, 'three');
    expect(await order()).to.deep.equal([group.id, withCarol.id, withBob.id]);
    await post(bob, withBob.id, 'four');
    const listed = await list(t.ws, ada);
    expect(listed.map((d) => d.id)).to.deep.equal([withBob.id, group.id, withCarol.id]);
    expect(listed.map((d) => d.lastActivityAt)).to.deep.equal([...listed.map((d) => d.lastActivityAt)].sort().reverse());
    const groupItem = listed.find((d) => d.id === group.id)!;
    expect(groupItem).to.include({ kind: 'dm', name: null, isPrivate: true, lastSeq: 1, lastReadSeq: 0, unreadCount: 1, mentionCount: 0 });
    expect(groupItem.members.map((m) => m.userId).sort()).to.deep.equal(ids([ada, bob, carol, dan]).sort());

    const channels = await request(base, 'GET', `/workspaces/${t.ws.id}/channels`, { token: ada.token });
    expect(channels.status, channels.text).to.equal(200);
    expect(channels.body.channels.filter((c: { kind: string }) => c.kind !== 'channel')).to.deep.equal([]);
    const created = await createChannel(base, t.owner.token, t.ws.id);
    expect(created.kind).to.equal('channel');
  });

  it('When a guest opens a DM, then only with people of their channels (else 404 as for a random id); anyone may open one with a guest', async function () {
    const t = await team(3);
    const [ada, bob, guest] = [t.members[0], t.members[1], await registerUser(base)];
    await addWorkspaceMember(base, t.owner.token, t.ws.id, guest.email, 'guest');
    const shared = await createChannel(base, t.owner.token, t.ws.id);
    await addChannelMember(base, t.owner.token, shared.id, guest.user.id);
    await addChannelMember(base, t.owner.token, shared.id, ada.user.id);

    const withBob = await open(t.ws, guest, [bob.user.id]);
    expectError(withBob, 404, 'NOT_FOUND');
    expect(withBob.body).to.deep.equal((await open(t.ws, guest, [randomUUID()])).body);
    const withAda = await open(t.ws, guest, [ada.user.id]);
    expect(withAda.status, withAda.text).to.equal(201);
    const byBob = await open(t.ws, bob, [guest.user.id]);
    expect(byBob.status, byBob.text).to.equal(201);
    // Bob shares a DM with the guest now: the guest may open one with him.
    const back = await open(t.ws, guest, [bob.user.id, ada.user.id]);
    expect(back.status, back.text).to.equal(201);
  });
});
