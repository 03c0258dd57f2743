import { expect } from 'chai';
import { randomUUID } from 'node:crypto';
import {
  addChannelMember,
  addWorkspaceMember,
  createChannel,
  createWorkspace,
  expectError,
  registerUser,
  request,
  startApi,
  type RegisteredUser,
  type StartedApi,
  type WorkspaceDto,
} from '../support/api.js';


describe('REST membership', function () {
  let api: StartedApi;
  let base: string;

  before(async function () {
    api = await startApi();
    base = api.baseUrl;
  });

  after(async function () {
    await api?.stop();
  });

  /** A workspace with an owner, an admin and a plain member. */
  async function team(): Promise<{ ws: WorkspaceDto; owner: RegisteredUser; admin: RegisteredUser; member: RegisteredUser }> {
    const [owner, admin, member] = await Promise.all([registerUser(base), registerUser(base), registerUser(base)]);
    const ws = await createWorkspace(base, owner.token);
    await addWorkspaceMember(base, owner.token, ws.id, admin.email, 'admin');
    await addWorkspaceMember(base, owner.token, ws.id, member.email);
    return { ws, owner, admin, member };
  }

  async function workspaceMembers(token: string, workspaceId: string) {
    const res = await request(base, 'GET', `/workspaces/${workspaceId}/members`, { token });
    expect(res.status).to.equal(200);
    return res.body.members as Array<{ userId: string; displayName: string; role: string }>;
  }

  async function channelMemberIds(token: string, channelId: string): Promise<string[]> {
    const res = await request(base, 'GET', `/channels/${channelId}/members`, { token });
    expect(res.status, res.text).to.equal(200);
    return res.body.members.map((m: { userId: string }) => m.userId).sort();
  }

  describe('workspace members', function () {
    it('When the owner adds a user by email without a role, then 201 {member:{userId,displayName,role:"member"}}', async function () {
      const owner = await registerUser(base);
      const newcomer = await registerUser(base);
      const ws = await createWorkspace(base, owner.token);
      const res = await request(base, 'POST', `/workspaces/${ws.id}/members`, {
        token: owner.token,
        body: { email: newcomer.email },
      });
      expect(res.status).to.equal(201);
      expect(res.body).to.deep.equal({
        member: { userId: newcomer.user.id, displayName: newcomer.user.displayName, role: 'member' },
      });
      const ws2 = await request(base, 'GET', `/workspaces/${ws.id}`, { token: newcomer.token });
      expect(ws2.status).to.equal(200);
    });

    it('When the owner adds an admin, then the role is admin in the members list', async function () {
      const { ws, owner, admin, member } = await team();
      const members = await workspaceMembers(member.token, ws.id);
      for (const m of members) expect(m).to.have.all.keys('userId', 'displayName', 'role');
      const sorted = [...members].sort((a, b) => a.userId.localeCompare(b.userId));
      expect(sorted).to.deep.equal(
        [
          { userId: owner.user.id, displayName: owner.user.displayName, role: 'owner' },
          { userId: admin.user.id, displayName: admin.user.displayName, role: 'admin' },
          { userId: member.user.id, displayName: member.user.displayName, role: 'member' },
        ].sort((a, b) => a.userId.localeCompare(b.userId)),
      );
    });

    it('When the email is given in another letter case, then the user is still found and added', async function () {
      const { ws, owner } = await team();
      const newcomer = await registerUser(base);
      const res = await request(base, 'POST', `/workspaces/${ws.id}/members`, {
        token: owner.token,
        body: { email: newcomer.email.toUpperCase() },
      });
      expect(res.status).to.equal(201);
      expect(res.body.member.userId).to.equal(newcomer.user.id);
    });

    it('When an admin adds a user, then 201', async function () {
      const { ws, admin } = await team();
      const newcomer = await registerUser(base);
      const res = await request(base, 'POST', `/workspaces/${ws.id}/members`, {
        token: admin.token,
        body: { email: newcomer.email, role: 'admin' },
      });
      expect(res.status).to.equal(201);
      expect(res.body.member).to.deep.equal({ userId: newcomer.user.id, displayName: newcomer.user.displayName, role: 'admin' });
    });

    it('When a plain member adds a user, then 403 FORBIDDEN and the user is not added', async function () {
      const { ws, owner, member } = await team();
      const newcomer = await registerUser(base);
      const res = await request(base, 'POST', `/workspaces/${ws.id}/members`, {
        token: member.token,
        body: { email: newcomer.email },
      });
      expectError(res, 403, 'FORBIDDEN');
      const ids = (await workspaceMembers(owner.token, ws.id)).map((m) => m.userId);
      expect(ids).not.to.include(newcomer.user.id);
    });

    it('When the email belongs to nobody, then 404 NOT_FOUND', async function () {
      const { ws, owner } = await team();
      const res = await request(base, 'POST', `/workspaces/${ws.id}/members`, {
        token: owner.token,
        body: { email: `nobody-${randomUUID()}@example.test` },
      });
      expectError(res, 404, 'NOT_FOUND');
    });

    it('When the user is already a member, then 409 CONFLICT and their role is unchanged', async function () {
      const { ws, owner, member } = await team();
      const res = await request(base, 'POST', `/workspaces/${ws.id}/members`, {
        token: owner.token,
        body: { email: member.email, role: 'admin' },
      });
      expectError(res, 409, 'CONFLICT');
      const me = (await workspaceMembers(owner.token, ws.id)).find((m) => m.userId === member.user.id);
      expect(me?.role).to.equal('member');
    });

    it('When the owner adds themself again, then 409 CONFLICT', async function () {
      const { ws, owner } = await team();
      const res = await request(base, 'POST', `/workspaces/${ws.id}/members`, { token: owner.token, body: { email: owner.email } });
      expectError(res, 409, 'CONFLICT');
    });

    const invalid: Array<[string, Record<string, unknown>]> = [
      ['the role is "owner"', { role: 'owner' }],
      ['the role is unknown', { role: 'superuser' }],
      ['the email is missing', { email: undefined }],
      ['an unknown field is present', { note: 'hi' }],
    ];
    for (const [what, change] of invalid) {
      it(`When adding a workspace member and ${what}, then 400 VALIDATION_FAILED`, async function () {
        const { ws, owner } = await team();
        const newcomer = await registerUser(base);
        const res = await request(base, 'POST', `/workspaces/${ws.id}/members`, {
          token: owner.token,
          body: { email: newcomer.email, ...change },
        });
        expectError(res, 400, 'VALIDATION_FAILED');
        const ids = (await workspaceMembers(owner.token, ws.id)).map((m) => m.userId);
        expect(ids).not.to.include(newcomer.user.id);
      });
    }

    it('When the owner removes a member, then 204 with no body and the user loses access to the workspace', async function () {
      const { ws, owner, member } = await team();
      const res = await request(base, 'DELETE', `/workspaces/${ws.id}/members/${member.user.id}`, { token: owner.token });
      expect(res.status).to.equal(204);
      expect(res.text).to.equal('');
      const ids = (await workspaceMembers(owner.token, ws.id)).map((m) => m.userId);
      expect(ids).not.to.include(member.user.id);
      expectError(await request(base, 'GET', `/workspaces/${ws.id}`, { token: member.token }), 404, 'NOT_FOUND');
      const list = await request(base, 'GET', '/workspaces', { token: member.token });
      expect(list.body).to.deep.equal({ workspaces: [] });
    });

    it('When a member is removed, then they are also removed from every channel of the workspace, public and private', async function () {
      const { ws, owner, admin, member } = await team();
      const pub = await createChannel(base, owner.token, ws.id);
      const priv = await createChannel(base, owner.token, ws.id, { isPrivate: true });
      const own = await createChannel(base, member.token, ws.id);
      await request(base, 'POST', `/channels/${pub.id}/join`, { token: member.token });
      await addChannelMember(base, owner.token, priv.id, member.user.id);
      // A channel of another workspace the member is also in must be left alone.
      const elsewhere = await createWorkspace(base, member.token);
      const elsewhereChannel = await createChannel(base, member.token, elsewhere.id);

      const res = await request(base, 'DELETE', `/workspaces/${ws.id}/members/${member.user.id}`, { token: admin.token });
      expect(res.status).to.equal(204);
      expect(await channelMemberIds(owner.token, pub.id)).to.deep.equal([owner.user.id]);
      expect(await channelMemberIds(owner.token, priv.id)).to.deep.equal([owner.user.id]);
      expect(await channelMemberIds(owner.token, own.id)).to.deep.equal([]);
      expect(await channelMemberIds(member.token, elsewhereChannel.id)).to.deep.equal([member.user.id]);

      // Added back, they start with no channels.
      await addWorkspaceMember(base, owner.token, ws.id, member.email);
      const channels = await request(base, 'GET', `/workspaces/${ws.id}/channels`, { token: member.token });
      expect(channels.status).to.equal(200);
      expect(channels.body.channels.every((c: { isMember: boolean }) => c.isMember === false)).to.equal(true);
      expect(channels.body.channels.map((c: { id: string }) => c.id)).not.to.include(priv.id);
    });

    it('When a plain member removes someone, then 403 FORBIDDEN and nobody is removed', async function () {
      const { ws, owner, admin, member } = await team();
      for (const target of [admin, owner, member]) {
        const res = await request(base, 'DELETE', `/workspaces/${ws.id}/members/${target.user.id}`, { token: member.token });
        expectError(res, 403, 'FORBIDDEN');
      }
      expect(await workspaceMembers(owner.token, ws.id)).to.have.length(3);
    });

    it('When an admin removes another admin, then 204', async function () {
      const { ws, owner, admin } = await team();
      const admin2 = await registerUser(base);
      await addWorkspaceMember(base, owner.token, ws.id, admin2.email, 'admin');
      const res = await request(base, 'DELETE', `/workspaces/${ws.id}/members/${admin2.user.id}`, { token: admin.token });
      expect(res.status).to.equal(204);
    });

    it('When anyone tries to remove the owner, then 403 FORBIDDEN and the owner stays', async function () {
      const { ws, owner, admin } = await team();
      for (const caller of [admin, owner]) {
        const res = await request(base, 'DELETE', `/workspaces/${ws.id}/members/${owner.user.id}`, { token: caller.token });
        expectError(res, 403, 'FORBIDDEN');
      }
      const me = (await workspaceMembers(owner.token, ws.id)).find((m) => m.userId === owner.user.id);
      expect(me?.role).to.equal('owner');
    });

    it('When the user to remove is not a member (or does not exist, or the id is malformed), then 404 NOT_FOUND', async function () {
      const { ws, owner } = await team();
      const stranger = await registerUser(base);
      for (const id of [stranger.user.id, randomUUID(), 'not-an-id']) {
        const res = await request(base, 'DELETE', `/workspaces/${ws.id}/members/${id}`, { token: owner.token });
        expectError(res, 404, 'NOT_FOUND');
      }
    });
  });

  describe('channel members', function () {
    it('When a channel member adds a workspace member, then 201 and they appear in the channel members', async function () {
      const { ws, owner, member } = await team();
      const ch = await createChannel(base, owner.token, ws.id, { isPrivate: true });
      const res = await request(base, 'POST', `/channels/${ch.id}/members`, { token: owner.token, body: { userId: member.user.id } });
      expect(res.status).to.equal(201);
      expect(res.body.member).to.deep.equal({ userId: member.user.id, displayName: member.user.displayName });
      const list = await request(base, 'GET', `/channels/${ch.id}/members`, { token: member.token });
      expect(list.status).to.equal(200);
      expect(list.body).to.have.all.keys('members');
      for (const m of list.body.members) expect(m).to.have.all.keys('userId', 'displayName');
      expect([...list.body.members].sort((a, b) => a.userId.localeCompare(b.userId))).to.deep.equal(
        [
          { userId: owner.user.id, displayName: owner.user.displayName },
          { userId: member.user.id, displayName: member.user.displayName },
        ].sort((a, b) => a.userId.localeCompare(b.userId)),
      );
      // The added member now sees the private channel.
      const got = await request(base, 'GET', `/channels/${ch.id}`, { token: member.token });
      expect(got.status).to.equal(200);
    });

    it('When a plain member who is in the channel adds someone, then 201', async function () {
      const { ws, owner, admin, member } = await team();
      const ch = await createChannel(base, member.token, ws.id);
      const res = await request(base, 'POST', `/channels/${ch.id}/members`, { token: member.token, body: { userId: admin.user.id } });
      expect(res.status).to.equal(201);
      expect(await channelMemberIds(owner.token, ch.id)).to.deep.equal([member.user.id, admin.user.id].sort());
    });

    it('When a workspace admin who is not in a public channel adds someone, then 201', async function () {
      const { ws, owner, admin, member } = await team();
      const ch = await createChannel(base, owner.token, ws.id);
      const res = await request(base, 'POST', `/channels/${ch.id}/members`, { token: admin.token, body: { userId: member.user.id } });
      expect(res.status).to.equal(201);
      expect(await channelMemberIds(owner.token, ch.id)).to.deep.equal([owner.user.id, member.user.id].sort());
    });

    it('When a plain member who is not in a public channel adds someone, then 403 FORBIDDEN', async function () {
      const { ws, owner, admin, member } = await team();
      const ch = await createChannel(base, owner.token, ws.id);
      const res = await request(base, 'POST', `/channels/${ch.id}/members`, { token: member.token, body: { userId: admin.user.id } });
      expectError(res, 403, 'FORBIDDEN');
      expect(await channelMemberIds(owner.token, ch.id)).to.deep.equal([owner.user.id]);
    });

    it('When a plain member who is not in a private channel adds someone to it, then 404 NOT_FOUND', async function () {
      const { ws, owner, admin, member } = await team();
      const ch = await createChannel(base, owner.token, ws.id, { isPrivate: true });
      const res = await request(base, 'POST', `/channels/${ch.id}/members`, { token: member.token, body: { userId: member.user.id } });
      expectError(res, 404, 'NOT_FOUND');
      const res2 = await request(base, 'POST', `/channels/${ch.id}/members`, { token: member.token, body: { userId: admin.user.id } });
      expectError(res2, 404, 'NOT_FOUND');
      expect(await channelMemberIds(owner.token, ch.id)).to.deep.equal([owner.user.id]);
    });

    it('When the user added is already in the channel, then 409 CONFLICT', async function () {
      const { ws, owner } = await team();
      const ch = await createChannel(base, owner.token, ws.id);
      const res = await request(base, 'POST', `/channels/${ch.id}/members`, { token: owner.token, body: { userId: owner.user.id } });
      expectError(res, 409, 'CONFLICT');
    });

    it('When the user added is not in the workspace (or does not exist), then 404 NOT_FOUND', async function () {
      const { ws, owner } = await team();
      const stranger = await registerUser(base);
      const ch = await createChannel(base, owner.token, ws.id);
      for (const userId of [stranger.user.id, randomUUID(), 'not-a-uuid']) {
        const res = await request(base, 'POST', `/channels/${ch.id}/members`, { token: owner.token, body: { userId } });
        expectError(res, 404, 'NOT_FOUND');
      }
      expect(await channelMemberIds(owner.token, ch.id)).to.deep.equal([owner.user.id]);
    });

    it('When the add-member body is missing userId or has unknown fields, then 400 VALIDATION_FAILED', async function () {
      const { ws, owner, member } = await team();
      const ch = await createChannel(base, owner.token, ws.id);
      for (const body of [{}, { userId: member.user.id, role: 'admin' }, { userId: 7 }]) {
        const res = await request(base, 'POST', `/channels/${ch.id}/members`, { token: owner.token, body });
        expectError(res, 400, 'VALIDATION_FAILED');
      }
    });

    it('When a member removes themself from a channel, then 204 with no body', async function () {
      const { ws, owner, member } = await team();
      const ch = await createChannel(base, owner.token, ws.id);
      await request(base, 'POST', `/channels/${ch.id}/join`, { token: member.token });
      const res = await request(base, 'DELETE', `/channels/${ch.id}/members/${member.user.id}`, { token: member.token });
      expect(res.status).to.equal(204);
      expect(res.text).to.equal('');
      expect(await channelMemberIds(owner.token, ch.id)).to.deep.equal([owner.user.id]);
    });

    it('When a workspace owner or admin removes someone from a channel they are in, then 204', async function () {
      const { ws, owner, admin, member } = await team();
      const ch = await createChannel(base, member.token, ws.id);
      await request(base, 'POST', `/channels/${ch.id}/join`, { token: admin.token });
      await request(base, 'POST', `/channels/${ch.id}/join`, { token: owner.token });
      const third = await registerUser(base);
      await addWorkspaceMember(base, owner.token, ws.id, third.email);
      await addChannelMember(base, member.token, ch.id, third.user.id);

      const byAdmin = await request(base, 'DELETE', `/channels/${ch.id}/members/${member.user.id}`, { token: admin.token });
      expect(byAdmin.status).to.equal(204);
      const byOwner = await request(base, 'DELETE', `/channels/${ch.id}/members/${third.user.id}`, { token: owner.token });
      expect(byOwner.status).to.equal(204);
      expect(await channelMemberIds(owner.token, ch.id)).to.deep.equal([owner.user.id, admin.user.id].sort());
    });

    it('When a workspace admin who is not in a public channel removes a member, then 204', async function () {
      const { ws, owner, admin, member } = await team();
      const ch = await createChannel(base, member.token, ws.id);
      const res = await request(base, 'DELETE', `/channels/${ch.id}/members/${member.user.id}`, { token: admin.token });
      expect(res.status).to.equal(204);
      expect(await channelMemberIds(owner.token, ch.id)).to.deep.equal([]);
    });

    it('When a plain member removes another member from a channel, then 403 FORBIDDEN even if they are in it', async function () {
      const { ws, owner, admin, member } = await team();
      const ch = await createChannel(base, owner.token, ws.id);
      await request(base, 'POST', `/channels/${ch.id}/join`, { token: member.token });
      await request(base, 'POST', `/channels/${ch.id}/join`, { token: admin.token });
      for (const target of [owner, admin]) {
        const res = await request(base, 'DELETE', `/channels/${ch.id}/members/${target.user.id}`, { token: member.token });
        expectError(res, 403, 'FORBIDDEN');
      }
      expect(await channelMemberIds(owner.token, ch.id)).to.deep.equal([owner.user.id, admin.user.id, member.user.id].sort());
    });

    it('When the user to remove is not in the channel (or the id is malformed), then 404 NOT_FOUND', async function () {
      const { ws, owner, member } = await team();
      const ch = await createChannel(base, owner.token, ws.id);
      for (const id of [member.user.id, randomUUID(), 'xyz']) {
        const res = await request(base, 'DELETE', `/channels/${ch.id}/members/${id}`, { token: owner.token });
        expectError(res, 404, 'NOT_FOUND');
      }
      // Removing oneself from a public channel one is not in is a 404 too, unlike leave.
      const self = await request(base, 'DELETE', `/channels/${ch.id}/members/${member.user.id}`, { token: member.token });
      expectError(self, 404, 'NOT_FOUND');
    });

    it('When a workspace member lists the members of a private channel they are not in, then 404 NOT_FOUND', async function () {
      const { ws, owner, member } = await team();
      const ch = await createChannel(base, owner.token, ws.id, { isPrivate: true });
      expectError(await request(base, 'GET', `/channels/${ch.id}/members`, { token: member.token }), 404, 'NOT_FOUND');
    });

    it('When a workspace member lists the members of a public channel they are not in, then 200', async function () {
      const { ws, owner, member } = await team();
      const ch = await createChannel(base, owner.token, ws.id);
      const res = await request(base, 'GET', `/channels/${ch.id}/members`, { token: member.token });
      expect(res.status).to.equal(200);
      expect(res.body).to.deep.equal({ members: [{ userId: owner.user.id, displayName: owner.user.displayName }] });
    });
  });

  describe('tenant isolation', function () {
    let alice: RegisteredUser;
    let aliceFriend: RegisteredUser;
    let mallory: RegisteredUser;
    let wsA: WorkspaceDto;
    let wsM: WorkspaceDto;
    let pubA: { id: string };
    let privA: { id: string };

    before(async function () {
      [alice, aliceFriend, mallory] = await Promise.all([registerUser(base), registerUser(base), registerUser(base)]);
      wsA = await createWorkspace(base, alice.token);
      await addWorkspaceMember(base, alice.token, wsA.id, aliceFriend.email);
      pubA = await createChannel(base, alice.token, wsA.id);
      privA = await createChannel(base, alice.token, wsA.id, { isPrivate: true });
      await request(base, 'POST', `/channels/${pubA.id}/join`, { token: aliceFriend.token });
      // Mallory owns a workspace of her own: she is an admin somewhere, just not in alice's.
      wsM = await createWorkspace(base, mallory.token);
    });

    /** The outsider's answer must be exactly the answer for an id that does not exist. */
    async function expectHidden(method: string, path: string, missingPath: string, body?: unknown): Promise<void> {
      const res = await request(base, method, path, { token: mallory.token, body });
      const missing = await request(base, method, missingPath, { token: mallory.token, body });
      expectError(res, 404, 'NOT_FOUND');
      expect(res.body, `${method} ${path}`).to.deep.equal(missing.body);
    }

    it('When an outsider reads the workspace, its members or its channels, then 404 NOT_FOUND as for a missing workspace', async function () {
      const ghost = randomUUID();
      await expectHidden('GET', `/workspaces/${wsA.id}`, `/workspaces/${ghost}`);
      await expectHidden('GET', `/workspaces/${wsA.id}/members`, `/workspaces/${ghost}/members`);
      await expectHidden('GET', `/workspaces/${wsA.id}/channels`, `/workspaces/${ghost}/channels`);
      const list = await request(base, 'GET', '/workspaces', { token: mallory.token });
      expect(list.body.workspaces.map((w: { id: string }) => w.id)).to.deep.equal([wsM.id]);
    });

    it('When an outsider adds a member or themself to the workspace, then 404 NOT_FOUND and nothing changes', async function () {
      const ghost = randomUUID();
      await expectHidden('POST', `/workspaces/${wsA.id}/members`, `/workspaces/${ghost}/members`, { email: mallory.email });
      await expectHidden('POST', `/workspaces/${wsA.id}/members`, `/workspaces/${ghost}/members`, {
        email: mallory.email,
        role: 'admin',
      });
      const ids = (await workspaceMembers(alice.token, wsA.id)).map((m) => m.userId).sort();
      expect(ids).to.deep.equal([alice.user.id, aliceFriend.user.id].sort());
    });

    it('When an outsider removes a member of the workspace, then 404 NOT_FOUND and the member stays', async function () {
      await expectHidden(
        'DELETE',
        `/workspaces/${wsA.id}/members/${aliceFriend.user.id}`,
        `/workspaces/${randomUUID()}/members/${aliceFriend.user.id}`,
      );
      const ids = (await workspaceMembers(alice.token, wsA.id)).map((m) => m.userId);
      expect(ids).to.include(aliceFriend.user.id);
    });

    it('When an outsider creates a channel in the workspace, then 404 NOT_FOUND', async function () {
      await expectHidden('POST', `/workspaces/${wsA.id}/channels`, `/workspaces/${randomUUID()}/channels`, { name: 'sneaky' });
      const list = await request(base, 'GET', `/workspaces/${wsA.id}/channels`, { token: alice.token });
      expect(list.body.channels.map((c: { name: string }) => c.name)).not.to.include('sneaky');
    });

    it('When an outsider reads a channel or its members, public or private, then 404 NOT_FOUND as for a missing channel', async function () {
      const ghost = randomUUID();
      for (const ch of [pubA, privA]) {
        await expectHidden('GET', `/channels/${ch.id}`, `/channels/${ghost}`);
        await expectHidden('GET', `/channels/${ch.id}/members`, `/channels/${ghost}/members`);
      }
    });

    it('When an outsider joins or leaves a channel, then 404 NOT_FOUND and they are not added', async function () {
      const ghost = randomUUID();
      for (const ch of [pubA, privA]) {
        await expectHidden('POST', `/channels/${ch.id}/join`, `/channels/${ghost}/join`);
        await expectHidden('POST', `/channels/${ch.id}/leave`, `/channels/${ghost}/leave`);
      }
      expect(await channelMemberIds(alice.token, pubA.id)).to.deep.equal([alice.user.id, aliceFriend.user.id].sort());
      expect(await channelMemberIds(alice.token, privA.id)).to.deep.equal([alice.user.id]);
    });

    it('When an outsider adds themself or others to a channel, then 404 NOT_FOUND and nobody is added', async function () {
      const ghost = randomUUID();
      for (const ch of [pubA, privA]) {
        await expectHidden('POST', `/channels/${ch.id}/members`, `/channels/${ghost}/members`, { userId: mallory.user.id });
        await expectHidden('POST', `/channels/${ch.id}/members`, `/channels/${ghost}/members`, { userId: aliceFriend.user.id });
      }
      expect(await channelMemberIds(alice.token, pubA.id)).to.deep.equal([alice.user.id, aliceFriend.user.id].sort());
      expect(await channelMemberIds(alice.token, privA.id)).to.deep.equal([alice.user.id]);
    });

    it('When an outsider removes a member from a channel, then 404 NOT_FOUND and the member stays', async function () {
      await expectHidden(
        'DELETE',
        `/channels/${pubA.id}/members/${aliceFriend.user.id}`,
        `/channels/${randomUUID()}/members/${aliceFriend.user.id}`,
      );
      await expectHidden('DELETE', `/channels/${privA.id}/members/${alice.user.id}`, `/channels/${randomUUID()}/members/${alice.user.id}`);
      expect(await channelMemberIds(alice.token, pubA.id)).to.deep.equal([alice.user.id, aliceFriend.user.id].sort());
      expect(await channelMemberIds(alice.token, privA.id)).to.deep.equal([alice.user.id]);
    });

    it('When a member adds a user of another workspace to their channel, then 404 NOT_FOUND', async function () {
      const res = await request(base, 'POST', `/channels/${pubA.id}/members`, {
        token: alice.token,
        body: { userId: mallory.user.id },
      });
      expectError(res, 404, 'NOT_FOUND');
    });

    it("When an owner of one workspace targets another workspace's members from their own, then 404 NOT_FOUND", async function () {
      // Mallory manages wsM; aliceFriend is not in it. Removing her "from wsM" must not touch wsA.
      const res = await request(base, 'DELETE', `/workspaces/${wsM.id}/members/${aliceFriend.user.id}`, { token: mallory.token });
      expectError(res, 404, 'NOT_FOUND');
      const ids = (await workspaceMembers(alice.token, wsA.id)).map((m) => m.userId);
      expect(ids).to.include(aliceFriend.user.id);
    });
  });
});
