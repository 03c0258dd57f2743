/**
 * Channel administration: rename and topic (PATCH /channels/:id), archive and unarchive, `archived` in
 * the DTOs, `channel:updated` to the members' sockets, private channels invite-only. An archived channel
 * refuses sends (REST and socket, decided by the worker) and joins with FORBIDDEN, and keeps its history
 * and members. A worker runs in this process: sends need one.
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
  expectError,
  registerUser,
  request,
  startApi,
  unique,
  type ChannelDto,
  type RegisteredUser,
  type StartedApi,
  type WorkspaceDto,
} from '../support/api.js';
import { connect, disconnectAll, send, sendOk, sleep, waitFor, type ClientSocket } from '../support/sockets.js';


describe('REST channel administration', function () {
  this.timeout(60_000);
  let worker: WorkerNode;
  let api: StartedApi;
  let base: string;
  let db: pg.Pool;

  before(async function () {
    // A Redis prefix of its own (queues, and its ~150 registrations' per-address budget).
    const env = { REDIS_PREFIX: `${process.env.REDIS_PREFIX}.channel-admin` };
    // The worker first: Objection's models are bound to the knex created last, the front node's.
    worker = createWorkerNode(loadConfig({ ...process.env, ...env }));
    await worker.start();
    api = await startApi(env);
    base = api.baseUrl;
    db = new pg.Pool({ connectionString: process.env.DATABASE_URL, max: 2 });
    db.on('error', () => {});
  });

  after(async function () {
    disconnectAll();
    await api?.stop();
    await worker?.stop();
    await db?.end();
  });

  interface Team {
    ws: WorkspaceDto;
    owner: RegisteredUser;
    admin: RegisteredUser;
    /** Creator of `channel`. */
    creator: RegisteredUser;
    /** A plain member who is in `channel` but did not create it. */
    member: RegisteredUser;
    /** A guest in `channel`. */
    guest: RegisteredUser;
    outsider: RegisteredUser;
    channel: ChannelDto;
  }

  async function team(options: { isPrivate?: boolean } = {}): Promise<Team> {
    const [owner, admin, creator, member, guest, outsider] = await Promise.all(Array.from({ length: 6 }, () => registerUser(base)));
    const ws = await createWorkspace(base, owner.token);
    await addWorkspaceMember(base, owner.token, ws.id, admin.email, 'admin');
    await addWorkspaceMember(base, owner.token, ws.id, creator.email);
    await addWorkspaceMember(base, owner.token, ws.id, member.email);
    await addWorkspaceMember(base, owner.token, ws.id, guest.email, 'guest');
    await createWorkspace(base, outsider.token);
    const channel = await createChannel(base, creator.token, ws.id, { isPrivate: options.isPrivate, topic: 'first topic' });
    await addChannelMember(base, creator.token, channel.id, member.user.id);
    await addChannelMember(base, creator.token, channel.id, guest.user.id);
    return { ws, owner, admin, creator, member, guest, outsider, channel };
  }

  async function stored(channelId: string): Promise<{ name: string; topic: string; archived: boolean; messages: number }> {
    const { rows } = await db.query(
      `SELECT name, topic, archived, (SELECT count(*)::int FROM messages WHERE channel_id = $1) AS messages FROM channels WHERE id = $1`,
      [channelId],
    );
    return rows[0];
  }

  async function channelMemberIds(token: string, channelId: string): Promise<string[]> {
    const res = await request(base, 'GET', `/channels/${channelId}/members`, { token });
    expect(res.status, res.text).to.equal(200);
    return res.body.members.map((m: { userId: string }) => m.userId).sort();
  }

  const patch = (token: string, channelId: string, body: unknown) => request(base, 'PATCH', `/channels/${channelId}`, { token, body });
  const archive = (token: string, channelId: string, verb: 'archive' | 'unarchive' = 'archive') =>
    request(base, 'POST', `/channels/${channelId}/${verb}`, { token });
  const restSend = (token: string, channelId: string, body: string) =>
    request(base, 'POST', `/channels/${channelId}/messages`, { token, body: { body, clientMsgId: randomUUID() } });

  describe('DTOs', function () {
    it('When a channel is created, read or listed, then it carries archived: false', async function () {
      const t = await team();
      expect(t.channel.archived).to.equal(false);
      const got = await request(base, 'GET', `/channels/${t.channel.id}`, { token: t.member.token });
      expect(got.body.channel).to.deep.equal(t.channel);
      const list = await request(base, 'GET', `/workspaces/${t.ws.id}/channels`, { token: t.member.token });
      expect(list.body.channels.find((c: { id: string }) => c.id === t.channel.id).archived).to.equal(false);
    });
  });

  describe('PATCH /channels/:channelId', function () {
    it("When the channel's creator renames it and sets its topic, then 200 {channel} with both, and reads agree", async function () {
      const t = await team();
      const name = unique('renamed-');
      const res = await patch(t.creator.token, t.channel.id, { name, topic: 'new topic' });
      expect(res.status, res.text).to.equal(200);
      expect(res.body).to.deep.equal({ channel: { ...t.channel, name, topic: 'new topic' } });
      const got = await request(base, 'GET', `/channels/${t.channel.id}`, { token: t.member.token });
      expect(got.body.channel).to.deep.equal(res.body.channel);
    });

    it('When a workspace owner or admin not in the (public) channel changes it, then 200; one field at a time works', async function () {
      const t = await team();
      let res = await patch(t.owner.token, t.channel.id, { topic: '' });
      expect(res.status, res.text).to.equal(200);
      expect(res.body.channel).to.include({ name: t.channel.name, topic: '' });
      const name = unique('admin-');
      res = await patch(t.admin.token, t.channel.id, { name });
      expect(res.status, res.text).to.equal(200);
      expect(res.body.channel).to.include({ name, topic: '' });
    });

    it('When a channel member who is not its creator, or a guest in it, changes it, then 403 FORBIDDEN and nothing changes', async function () {
      const t = await team();
      const before = await stored(t.channel.id);
      for (const caller of [t.member, t.guest]) {
        expectError(await patch(caller.token, t.channel.id, { name: unique('nope-'), topic: 'x' }), 403, 'FORBIDDEN');
      }
      expect(await stored(t.channel.id)).to.deep.equal(before);
    });

    it('When an outsider changes it, or an owner changes a private channel they are not in, then 404 NOT_FOUND and nothing changes', async function () {
      const t = await team({ isPrivate: true });
      const before = await stored(t.channel.id);
      expectError(await patch(t.outsider.token, t.channel.id, { topic: 'x' }), 404, 'NOT_FOUND');
      expectError(await patch(t.owner.token, t.channel.id, { topic: 'x' }), 404, 'NOT_FOUND');
      expectError(await patch(t.admin.token, t.channel.id, { topic: 'x' }), 404, 'NOT_FOUND');
      expectError(await patch(t.owner.token, randomUUID(), { topic: 'x' }), 404, 'NOT_FOUND');
      expectError(await patch(t.owner.token, 'not-an-id', { topic: 'x' }), 404, 'NOT_FOUND');
      expect(await stored(t.channel.id)).to.deep.equal(before);
      // Its creator may.
      expect((await patch(t.creator.token, t.channel.id, { topic: 'mine' })).status).to.equal(200);
    });

    it('When the new name is taken in the workspace, then 409 CONFLICT and nothing changes', async function () {
      const t = await team();
      const other = await createChannel(base, t.owner.token, t.ws.id);
      expectError(await patch(t.creator.token, t.channel.id, { name: other.name }), 409, 'CONFLICT');
      expect((await stored(t.channel.id)).name).to.equal(t.channel.name);
    });

    for (const [what, body] of [
      ['the body is empty', {}],
      ['the name is invalid', { name: 'Not Valid' }],
      ['the name is empty', { name: '' }],
      ['the name is 81 characters', { name: 'a'.repeat(81) }],
      ['the topic is 251 characters', { topic: 't'.repeat(251) }],
      ['the topic is not a string', { topic: 5 }],
      ['an unknown field is present', { topic: 'ok', isPrivate: true }],
    ] as Array<[string, unknown]>) {
      it(`When ${what}, then 400 VALIDATION_FAILED and nothing changes`, async function () {
        const t = await team();
        const before = await stored(t.channel.id);
        expectError(await patch(t.creator.token, t.channel.id, body), 400, 'VALIDATION_FAILED');
        expect(await stored(t.channel.id)).to.deep.equal(before);
      });
    }
  });

  describe('archive and unarchive', function () {
    it('When the creator, an owner or an admin archives and unarchives, then 200 {channel} with archived true, then false', async function () {
      const t = await team();
      for (const caller of [t.creator, t.owner, t.admin]) {
        let res = await archive(caller.token, t.channel.id);
        expect(res.status, res.text).to.equal(200);
        expect(res.body).to.deep.equal({ channel: { ...t.channel, archived: true } });
        const list = await request(base, 'GET', `/workspaces/${t.ws.id}/channels`, { token: t.member.token });
        expect(list.body.channels.find((c: { id: string }) => c.id === t.channel.id).archived).to.equal(true);
        res = await archive(caller.token, t.channel.id, 'unarchive');
        expect(res.status, res.text).to.equal(200);
        expect(res.body).to.deep.equal({ channel: { ...t.channel, archived: false } });
      }
    });

    it('When a member who did not create it, or a guest, archives or unarchives, then 403 FORBIDDEN and nothing changes', async function () {
      const t = await team();
      for (const caller of [t.member, t.guest]) expectError(await archive(caller.token, t.channel.id), 403, 'FORBIDDEN');
      expect((await stored(t.channel.id)).archived).to.equal(false);
      await archive(t.creator.token, t.channel.id);
      for (const caller of [t.member, t.guest]) expectError(await archive(caller.token, t.channel.id, 'unarchive'), 403, 'FORBIDDEN');
      expect((await stored(t.channel.id)).archived).to.equal(true);
    });

    it('When an outsider, or an admin outside a private channel, archives it, then 404 NOT_FOUND and nothing changes', async function () {
      const t = await team({ isPrivate: true });
      expectError(await archive(t.outsider.token, t.channel.id), 404, 'NOT_FOUND');
      expectError(await archive(t.admin.token, t.channel.id), 404, 'NOT_FOUND');
      expectError(await archive(t.owner.token, t.channel.id, 'unarchive'), 404, 'NOT_FOUND');
      expect((await stored(t.channel.id)).archived).to.equal(false);
    });

    it('When a channel is archived, then REST sends answer 403 FORBIDDEN, nothing is stored, and its history stays readable', async function () {
      const t = await team();
      const before = await restSend(t.member.token, t.channel.id, 'before the archive');
      expect(before.status, before.text).to.equal(201);
      await archive(t.creator.token, t.channel.id);
      for (const sender of [t.member, t.creator, t.guest]) {
        expectError(await restSend(sender.token, t.channel.id, 'after the archive'), 403, 'FORBIDDEN');
      }
      expect((await stored(t.channel.id)).messages).to.equal(1);
      for (const reader of [t.member, t.guest, t.creator]) {
        const history = await request(base, 'GET', `/channels/${t.channel.id}/messages`, { token: reader.token });
        expect(history.status, history.text).to.equal(200);
        expect(history.body).to.deep.equal({ messages: [before.body.message], hasMore: false });
      }
      // Its members are kept.
      expect(await channelMemberIds(t.owner.token, t.channel.id)).to.deep.equal(
        [t.creator.user.id, t.member.user.id, t.guest.user.id].sort(),
      );
      // A non-member of the workspace is still NOT_FOUND, whatever the archive.
      expectError(await restSend(t.outsider.token, t.channel.id, 'x'), 404, 'NOT_FOUND');
    });

    it('When a channel is archived, then a socket send is acked {ok:false, error:{code:"FORBIDDEN"}} and nothing is stored', async function () {
      const t = await team();
      const socket = await connect(base, t.member.token);
      await sendOk(socket, { channelId: t.channel.id, body: 'live before', clientMsgId: randomUUID() });
      await archive(t.owner.token, t.channel.id);
      const outcome = await send(socket, { channelId: t.channel.id, body: 'live after', clientMsgId: randomUUID() });
      expect(outcome.ok).to.equal(false);
      if (!outcome.ok) expect(outcome.error.code).to.equal('FORBIDDEN');
      expect((await stored(t.channel.id)).messages).to.equal(1);
      // Unarchived, it takes sends again.
      await archive(t.owner.token, t.channel.id, 'unarchive');
      const again = await sendOk(socket, { channelId: t.channel.id, body: 'live again', clientMsgId: randomUUID() });
      expect(again.seq).to.equal(2);
      const rest = await restSend(t.member.token, t.channel.id, 'rest again');
      expect(rest.status, rest.text).to.equal(201);
    });

    it('When sends race an archive, then each is stored or FORBIDDEN, none is stored after the archive answered', async function () {
      const t = await team();
      const socket = await connect(base, t.member.token);
      const sends = Array.from({ length: 40 }, (_, k) => send(socket, { channelId: t.channel.id, body: `race ${k}`, clientMsgId: randomUUID() }));
      await sleep(5);
      const archived = await archive(t.owner.token, t.channel.id);
      expect(archived.status).to.equal(200);
      const afterArchive = (await stored(t.channel.id)).messages;
      const outcomes = await Promise.all(sends);
      const codes = outcomes.map((o) => (o.ok ? 'ok' : o.error.code));
      expect(codes.every((c) => c === 'ok' || c === 'FORBIDDEN'), codes.join(',')).to.equal(true);
      const accepted = codes.filter((c) => c === 'ok').length;
      // Every accepted send was stored before the archive committed; nothing landed after it.
      expect((await stored(t.channel.id)).messages).to.equal(accepted);
      expect(afterArchive).to.equal(accepted);
      // Stored ones are gap-free from 1.
      const seqs = outcomes.flatMap((o) => (o.ok ? [o.message.seq] : [])).sort((a, b) => a - b);
      expect(seqs).to.deep.equal(Array.from({ length: accepted }, (_, i) => i + 1));
    });

    it('When a channel is archived, then joining and adding members answer 403 FORBIDDEN and nobody is added', async function () {
      const t = await team();
      const newcomer = await registerUser(base);
      await addWorkspaceMember(base, t.owner.token, t.ws.id, newcomer.email);
      await archive(t.creator.token, t.channel.id);
      expectError(await request(base, 'POST', `/channels/${t.channel.id}/join`, { token: newcomer.token }), 403, 'FORBIDDEN');
      expectError(await request(base, 'POST', `/channels/${t.channel.id}/join`, { token: t.admin.token }), 403, 'FORBIDDEN');
      expectError(
        await request(base, 'POST', `/channels/${t.channel.id}/members`, { token: t.creator.token, body: { userId: newcomer.user.id } }),
        403,
        'FORBIDDEN',
      );
      expect(await channelMemberIds(t.owner.token, t.channel.id)).to.deep.equal([t.creator.user.id, t.member.user.id, t.guest.user.id].sort());
      // Leaving still works.
      expect((await request(base, 'POST', `/channels/${t.channel.id}/leave`, { token: t.member.token })).status).to.equal(200);
    });
  });

  describe('private channels are invite-only', function () {
    it('When a member of a private channel adds a workspace member, then 201', async function () {
      const t = await team({ isPrivate: true });
      const newcomer = await registerUser(base);
      await addWorkspaceMember(base, t.owner.token, t.ws.id, newcomer.email);
      const res = await request(base, 'POST', `/channels/${t.channel.id}/members`, { token: t.member.token, body: { userId: newcomer.user.id } });
      expect(res.status, res.text).to.equal(201);
    });

    it('When a workspace owner or admin who is not in a private channel adds someone (themself included), then 404 NOT_FOUND and nobody is added', async function () {
      const t = await team({ isPrivate: true });
      for (const caller of [t.owner, t.admin]) {
        for (const userId of [caller.user.id, t.outsider.user.id]) {
          const res = await request(base, 'POST', `/channels/${t.channel.id}/members`, { token: caller.token, body: { userId } });
          expectError(res, 404, 'NOT_FOUND');
        }
      }
      expect(await channelMemberIds(t.creator.token, t.channel.id)).to.deep.equal([t.creator.user.id, t.member.user.id, t.guest.user.id].sort());
    });

    it('When a guest in a private channel adds someone, then 403 FORBIDDEN', async function () {
      const t = await team({ isPrivate: true });
      const res = await request(base, 'POST', `/channels/${t.channel.id}/members`, { token: t.guest.token, body: { userId: t.admin.user.id } });
      expectError(res, 403, 'FORBIDDEN');
    });
  });

  describe('channel:updated', function () {
    it("When a channel is renamed, its topic set, archived or unarchived, then its members' sockets get channel:updated {channel}, others' do not", async function () {
      const t = await team();
      const listen = (socket: ClientSocket) => {
        const got: ChannelDto[] = [];
        socket.on('channel:updated', (payload: { channel: ChannelDto }) => {
          expect(payload).to.have.all.keys('channel');
          got.push(payload.channel);
        });
        return got;
      };
      const memberHeard = listen(await connect(base, t.member.token));
      const guestHeard = listen(await connect(base, t.guest.token));
      // The owner and the admin are in the workspace but not in the channel.
      const ownerHeard = listen(await connect(base, t.owner.token));
      const outsiderHeard = listen(await connect(base, t.outsider.token));
      const name = unique('evt-');
      const answers: ChannelDto[] = [];
      for (const res of [
        await patch(t.owner.token, t.channel.id, { name }),
        await patch(t.creator.token, t.channel.id, { topic: 'evt topic' }),
        await archive(t.admin.token, t.channel.id),
        await archive(t.creator.token, t.channel.id, 'unarchive'),
      ]) {
        expect(res.status, res.text).to.equal(200);
        answers.push(res.body.channel);
      }
      await waitFor(() => memberHeard.length === 4 && guestHeard.length === 4, 5000, () => `${memberHeard.length}/${guestHeard.length}`);
      expect(memberHeard).to.deep.equal(answers);
      expect(guestHeard).to.deep.equal(answers);
      expect(answers.map((c) => [c.name, c.topic, c.archived])).to.deep.equal([
        [name, 'first topic', false],
        [name, 'evt topic', false],
        [name, 'evt topic', true],
        [name, 'evt topic', false],
      ]);
      await sleep(200);
      expect(ownerHeard).to.deep.equal([]);
      expect(outsiderHeard).to.deep.equal([]);
    });

    it('When a change is refused, then no channel:updated is sent', async function () {
      const t = await team();
      const heard: unknown[] = [];
      (await connect(base, t.creator.token)).on('channel:updated', (p: unknown) => heard.push(p));
      expectError(await patch(t.member.token, t.channel.id, { topic: 'no' }), 403, 'FORBIDDEN');
      expectError(await archive(t.guest.token, t.channel.id), 403, 'FORBIDDEN');
      await sleep(200);
      expect(heard).to.deep.equal([]);
    });
  });
});
