/**
 * Workspace roles (owner > admin > member > guest): adding guests, what a guest sees and may do, role
 * changes (PATCH /workspaces/:id/members/:userId), the last-owner rule, and leaving a workspace.
 * Refusals: 404 NOT_FOUND across workspaces and for private channels one is not in, 403 FORBIDDEN inside.
 */
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
import { connect, disconnectAll, sleep, waitFor } from '../support/sockets.js';


describe('REST roles', function () {
  let api: StartedApi;
  let base: string;

  before(async function () {
    // A Redis prefix of its own: its ~130 registrations count against its own per-address budget, not
    // the one the other REST files share.
    api = await startApi({ REDIS_PREFIX: `${process.env.REDIS_PREFIX}.roles` });
    base = api.baseUrl;
  });

  after(async function () {
    disconnectAll();
    await api?.stop();
  });

  interface Team {
    ws: WorkspaceDto;
    owner: RegisteredUser;
    admin: RegisteredUser;
    member: RegisteredUser;
    guest: RegisteredUser;
    /** In a workspace of their own only. */
    outsider: RegisteredUser;
  }

  async function team(): Promise<Team> {
    const [owner, admin, member, guest, outsider] = await Promise.all(Array.from({ length: 5 }, () => registerUser(base)));
    const ws = await createWorkspace(base, owner.token);
    await addWorkspaceMember(base, owner.token, ws.id, admin.email, 'admin');
    await addWorkspaceMember(base, owner.token, ws.id, member.email);
    await addWorkspaceMember(base, owner.token, ws.id, guest.email, 'guest');
    await createWorkspace(base, outsider.token);
    return { ws, owner, admin, member, guest, outsider };
  }

  async function roles(t: Team): Promise<Record<string, string>> {
    const res = await request(base, 'GET', `/workspaces/${t.ws.id}/members`, { token: t.owner.token });
    expect(res.status, res.text).to.equal(200);
    return Object.fromEntries(res.body.members.map((m: { userId: string; role: string }) => [m.userId, m.role]));
  }

  async function channelMemberIds(token: string, channelId: string): Promise<string[]> {
    const res = await request(base, 'GET', `/channels/${channelId}/members`, { token });
    expect(res.status, res.text).to.equal(200);
    return res.body.members.map((m: { userId: string }) => m.userId).sort();
  }

  const patchRole = (token: string, workspaceId: string, userId: string, role: unknown) =>
    request(base, 'PATCH', `/workspaces/${workspaceId}/members/${userId}`, { token, body: { role } });

  describe('guests', function () {
    it('When an owner or admin adds a user with role guest, then 201 {member:{userId,displayName,role:"guest"}}', async function () {
      const t = await team();
      for (const caller of [t.owner, t.admin]) {
        const newcomer = await registerUser(base);
        const res = await request(base, 'POST', `/workspaces/${t.ws.id}/members`, {
          token: caller.token,
          body: { email: newcomer.email, role: 'guest' },
        });
        expect(res.status, res.text).to.equal(201);
        expect(res.body).to.deep.equal({ member: { userId: newcomer.user.id, displayName: newcomer.user.displayName, role: 'guest' } });
      }
      const list = await request(base, 'GET', '/workspaces', { token: t.guest.token });
      expect(list.body.workspaces).to.deep.equal([{ id: t.ws.id, name: t.ws.name, role: 'guest' }]);
    });

    it('When a guest lists the channels, then only the channels they were added to appear, never other public ones', async function () {
      const t = await team();
      const added = await createChannel(base, t.owner.token, t.ws.id, { name: 'a-added' });
      const addedPrivate = await createChannel(base, t.owner.token, t.ws.id, { name: 'b-added-private', isPrivate: true });
      const other = await createChannel(base, t.owner.token, t.ws.id, { name: 'c-other-public' });
      await addChannelMember(base, t.owner.token, added.id, t.guest.user.id);
      await addChannelMember(base, t.owner.token, addedPrivate.id, t.guest.user.id);
      const res = await request(base, 'GET', `/workspaces/${t.ws.id}/channels`, { token: t.guest.token });
      expect(res.status).to.equal(200);
      expect(res.body.channels.map((c: { id: string; isMember: boolean }) => [c.id, c.isMember])).to.deep.equal([
        [added.id, true],
        [addedPrivate.id, true],
      ]);
      // A member sees every public channel.
      const memberView = await request(base, 'GET', `/workspaces/${t.ws.id}/channels`, { token: t.member.token });
      expect(memberView.body.channels.map((c: { id: string }) => c.id)).to.include.members([added.id, other.id]);
    });

    it('When a guest reads, joins or lists the members of a public channel they are not in, then 403 FORBIDDEN and they are not added', async function () {
      const t = await team();
      const pub = await createChannel(base, t.owner.token, t.ws.id);
      expectError(await request(base, 'GET', `/channels/${pub.id}`, { token: t.guest.token }), 403, 'FORBIDDEN');
      expectError(await request(base, 'POST', `/channels/${pub.id}/join`, { token: t.guest.token }), 403, 'FORBIDDEN');
      expectError(await request(base, 'GET', `/channels/${pub.id}/members`, { token: t.guest.token }), 403, 'FORBIDDEN');
      expectError(await request(base, 'GET', `/channels/${pub.id}/messages`, { token: t.guest.token }), 403, 'FORBIDDEN');
      expect(await channelMemberIds(t.owner.token, pub.id)).to.deep.equal([t.owner.user.id]);
    });

    it('When a guest reads a private channel they are not in, then 404 NOT_FOUND', async function () {
      const t = await team();
      const priv = await createChannel(base, t.owner.token, t.ws.id, { isPrivate: true });
      expectError(await request(base, 'GET', `/channels/${priv.id}`, { token: t.guest.token }), 404, 'NOT_FOUND');
      expectError(await request(base, 'POST', `/channels/${priv.id}/join`, { token: t.guest.token }), 404, 'NOT_FOUND');
    });

    it('When a guest creates a channel, then 403 FORBIDDEN and nothing is created', async function () {
      const t = await team();
      const name = `guest-${randomUUID().slice(0, 8)}`;
      const res = await request(base, 'POST', `/workspaces/${t.ws.id}/channels`, { token: t.guest.token, body: { name } });
      expectError(res, 403, 'FORBIDDEN');
      const list = await request(base, 'GET', `/workspaces/${t.ws.id}/channels`, { token: t.owner.token });
      expect(list.body.channels.map((c: { name: string }) => c.name)).not.to.include(name);
    });

    it('When a guest lists the workspace members, then only themself and the members of the channels they share appear', async function () {
      const t = await team();
      const shared = await createChannel(base, t.member.token, t.ws.id);
      await addChannelMember(base, t.member.token, shared.id, t.guest.user.id);
      await createChannel(base, t.admin.token, t.ws.id);
      const res = await request(base, 'GET', `/workspaces/${t.ws.id}/members`, { token: t.guest.token });
      expect(res.status).to.equal(200);
      expect(res.body.members.map((m: { userId: string }) => m.userId).sort()).to.deep.equal([t.member.user.id, t.guest.user.id].sort());
      expect(res.body.members.find((m: { userId: string }) => m.userId === t.guest.user.id).role).to.equal('guest');
      // Everyone else still sees every member.
      const full = await request(base, 'GET', `/workspaces/${t.ws.id}/members`, { token: t.member.token });
      expect(full.body.members).to.have.length(4);
    });

    it('When a guest in a channel lists its members or adds someone to it, then 200 for the list and 403 FORBIDDEN for the add', async function () {
      const t = await team();
      const ch = await createChannel(base, t.owner.token, t.ws.id, { isPrivate: true });
      await addChannelMember(base, t.owner.token, ch.id, t.guest.user.id);
      expect(await channelMemberIds(t.guest.token, ch.id)).to.deep.equal([t.owner.user.id, t.guest.user.id].sort());
      const res = await request(base, 'POST', `/channels/${ch.id}/members`, { token: t.guest.token, body: { userId: t.member.user.id } });
      expectError(res, 403, 'FORBIDDEN');
      expect(await channelMemberIds(t.owner.token, ch.id)).to.deep.equal([t.owner.user.id, t.guest.user.id].sort());
    });

    it('When a guest adds a user to the workspace, as member or guest, then 403 FORBIDDEN and nobody is added', async function () {
      const t = await team();
      const newcomer = await registerUser(base);
      for (const role of ['guest', 'member']) {
        const res = await request(base, 'POST', `/workspaces/${t.ws.id}/members`, { token: t.guest.token, body: { email: newcomer.email, role } });
        expectError(res, 403, 'FORBIDDEN');
      }
      expect(Object.keys(await roles(t))).not.to.include(newcomer.user.id);
    });

    it('When a member is added with role owner through POST, then 400 VALIDATION_FAILED', async function () {
      const t = await team();
      const newcomer = await registerUser(base);
      const res = await request(base, 'POST', `/workspaces/${t.ws.id}/members`, { token: t.owner.token, body: { email: newcomer.email, role: 'owner' } });
      expectError(res, 400, 'VALIDATION_FAILED');
    });
  });

  describe('PATCH /workspaces/:workspaceId/members/:userId', function () {
    it('When an owner changes roles, any to any, then 200 {member:{userId,displayName,role}} and the role is in force', async function () {
      const t = await team();
      const steps: Array<[RegisteredUser, string]> = [
        [t.member, 'admin'],
        [t.admin, 'guest'],
        [t.guest, 'member'],
        [t.member, 'owner'],
      ];
      for (const [target, role] of steps) {
        const res = await patchRole(t.owner.token, t.ws.id, target.user.id, role);
        expect(res.status, res.text).to.equal(200);
        expect(res.body).to.deep.equal({ member: { userId: target.user.id, displayName: target.user.displayName, role } });
      }
      expect(await roles(t)).to.deep.equal({
        [t.owner.user.id]: 'owner',
        [t.member.user.id]: 'owner',
        [t.admin.user.id]: 'guest',
        [t.guest.user.id]: 'member',
      });
      // The new owner may demote the first one now that there are two.
      const res = await patchRole(t.member.token, t.ws.id, t.owner.user.id, 'admin');
      expect(res.status, res.text).to.equal(200);
      expect((await roles(t))[t.owner.user.id]).to.equal('admin');
    });

    it('When an admin changes a member or a guest to member, guest or admin (what an admin may add someone as), then 200', async function () {
      const t = await team();
      let res = await patchRole(t.admin.token, t.ws.id, t.member.user.id, 'guest');
      expect(res.status, res.text).to.equal(200);
      expect(res.body.member.role).to.equal('guest');
      res = await patchRole(t.admin.token, t.ws.id, t.guest.user.id, 'member');
      expect(res.status, res.text).to.equal(200);
      expect(await roles(t)).to.include({ [t.member.user.id]: 'guest', [t.guest.user.id]: 'member' });
      res = await patchRole(t.admin.token, t.ws.id, t.guest.user.id, 'admin');
      expect(res.status, res.text).to.equal(200);
      expect(await roles(t)).to.include({ [t.guest.user.id]: 'admin' });
    });

    it('When an admin promotes to owner, or changes an admin or an owner, then 403 FORBIDDEN and nothing changes', async function () {
      const t = await team();
      const admin2 = await registerUser(base);
      await addWorkspaceMember(base, t.owner.token, t.ws.id, admin2.email, 'admin');
      const before = await roles(t);
      const attempts: Array<[RegisteredUser, string]> = [
        [t.member, 'owner'],
        [t.guest, 'owner'],
        [admin2, 'member'],
        [t.admin, 'guest'],
        [t.owner, 'member'],
      ];
      for (const [target, role] of attempts) expectError(await patchRole(t.admin.token, t.ws.id, target.user.id, role), 403, 'FORBIDDEN');
      expect(await roles(t)).to.deep.equal(before);
    });

    it('When a member or a guest changes a role, then 403 FORBIDDEN and nothing changes', async function () {
      const t = await team();
      const before = await roles(t);
      expectError(await patchRole(t.member.token, t.ws.id, t.guest.user.id, 'member'), 403, 'FORBIDDEN');
      expectError(await patchRole(t.member.token, t.ws.id, t.member.user.id, 'admin'), 403, 'FORBIDDEN');
      expectError(await patchRole(t.guest.token, t.ws.id, t.guest.user.id, 'member'), 403, 'FORBIDDEN');
      expect(await roles(t)).to.deep.equal(before);
    });

    it('When the last owner demotes themself, then 403 FORBIDDEN and they stay owner', async function () {
      const t = await team();
      for (const role of ['admin', 'member', 'guest']) {
        expectError(await patchRole(t.owner.token, t.ws.id, t.owner.user.id, role), 403, 'FORBIDDEN');
      }
      expect((await roles(t))[t.owner.user.id]).to.equal('owner');
      // Setting owner on the owner changes nothing and is fine.
      expect((await patchRole(t.owner.token, t.ws.id, t.owner.user.id, 'owner')).status).to.equal(200);
    });

    it('When two owners demote each other at the same time, then at most one succeeds and an owner remains', async function () {
      const t = await team();
      await patchRole(t.owner.token, t.ws.id, t.admin.user.id, 'owner');
      const [a, b] = await Promise.all([
        patchRole(t.owner.token, t.ws.id, t.admin.user.id, 'member'),
        patchRole(t.admin.token, t.ws.id, t.owner.user.id, 'member'),
      ]);
      expect([a.status, b.status].sort()).to.deep.equal([200, 403]);
      expect(Object.values(await rolesAs(t, a.status === 200 ? t.owner : t.admin))).to.include('owner');
    });

    async function rolesAs(t: Team, caller: RegisteredUser): Promise<Record<string, string>> {
      const res = await request(base, 'GET', `/workspaces/${t.ws.id}/members`, { token: caller.token });
      return Object.fromEntries(res.body.members.map((m: { userId: string; role: string }) => [m.userId, m.role]));
    }

    it('When the role is missing or unknown, or fields are extra, then 400 VALIDATION_FAILED', async function () {
      const t = await team();
      for (const body of [{}, { role: 'superuser' }, { role: 'member', extra: 1 }, { role: 3 }]) {
        const res = await request(base, 'PATCH', `/workspaces/${t.ws.id}/members/${t.member.user.id}`, { token: t.owner.token, body });
        expectError(res, 400, 'VALIDATION_FAILED');
      }
    });

    it('When the target is not a member (or does not exist, or the id is malformed), then 404 NOT_FOUND', async function () {
      const t = await team();
      for (const id of [t.outsider.user.id, randomUUID(), 'not-an-id']) {
        expectError(await patchRole(t.owner.token, t.ws.id, id, 'member'), 404, 'NOT_FOUND');
      }
    });

    it('When an outsider changes a role in the workspace, then 404 NOT_FOUND and nothing changes', async function () {
      const t = await team();
      const before = await roles(t);
      expectError(await patchRole(t.outsider.token, t.ws.id, t.member.user.id, 'admin'), 404, 'NOT_FOUND');
      expectError(await patchRole(t.outsider.token, t.ws.id, t.outsider.user.id, 'owner'), 404, 'NOT_FOUND');
      expect(await roles(t)).to.deep.equal(before);
    });

    it('When a member is demoted to guest, then their channel list shrinks to the channels they are in', async function () {
      const t = await team();
      const mine = await createChannel(base, t.member.token, t.ws.id);
      const other = await createChannel(base, t.owner.token, t.ws.id);
      await patchRole(t.owner.token, t.ws.id, t.member.user.id, 'guest');
      const res = await request(base, 'GET', `/workspaces/${t.ws.id}/channels`, { token: t.member.token });
      expect(res.body.channels.map((c: { id: string }) => c.id)).to.deep.equal([mine.id]);
      expectError(await request(base, 'POST', `/channels/${other.id}/join`, { token: t.member.token }), 403, 'FORBIDDEN');
    });
  });

  describe('removing owners', function () {
    it('When an owner removes another owner while more than one is left, then 204', async function () {
      const t = await team();
      await patchRole(t.owner.token, t.ws.id, t.admin.user.id, 'owner');
      const res = await request(base, 'DELETE', `/workspaces/${t.ws.id}/members/${t.admin.user.id}`, { token: t.owner.token });
      expect(res.status, res.text).to.equal(204);
      expect(Object.keys(await roles(t))).not.to.include(t.admin.user.id);
    });

    it('When an admin removes an owner, or the last owner removes themself, then 403 FORBIDDEN and the owner stays', async function () {
      const t = await team();
      await patchRole(t.owner.token, t.ws.id, t.member.user.id, 'owner');
      expectError(await request(base, 'DELETE', `/workspaces/${t.ws.id}/members/${t.member.user.id}`, { token: t.admin.token }), 403, 'FORBIDDEN');
      await patchRole(t.owner.token, t.ws.id, t.member.user.id, 'member');
      expectError(await request(base, 'DELETE', `/workspaces/${t.ws.id}/members/${t.owner.user.id}`, { token: t.owner.token }), 403, 'FORBIDDEN');
      expect((await roles(t))[t.owner.user.id]).to.equal('owner');
      expect((await roles(t))[t.member.user.id]).to.equal('member');
    });

    it('When an admin removes a guest, then 204', async function () {
      const t = await team();
      const res = await request(base, 'DELETE', `/workspaces/${t.ws.id}/members/${t.guest.user.id}`, { token: t.admin.token });
      expect(res.status).to.equal(204);
    });
  });

  describe('POST /workspaces/:workspaceId/leave', function () {
    it('When a member, admin or guest leaves, then 204 and they are out of the workspace and of its channels', async function () {
      const t = await team();
      const pub = await createChannel(base, t.owner.token, t.ws.id);
      const priv = await createChannel(base, t.owner.token, t.ws.id, { isPrivate: true });
      for (const u of [t.member, t.admin, t.guest]) {
        await addChannelMember(base, t.owner.token, pub.id, u.user.id);
        await addChannelMember(base, t.owner.token, priv.id, u.user.id);
      }
      for (const u of [t.member, t.admin, t.guest]) {
        const res = await request(base, 'POST', `/workspaces/${t.ws.id}/leave`, { token: u.token });
        expect(res.status, res.text).to.equal(204);
        expect(res.text).to.equal('');
        expectError(await request(base, 'GET', `/workspaces/${t.ws.id}`, { token: u.token }), 404, 'NOT_FOUND');
      }
      expect(await roles(t)).to.deep.equal({ [t.owner.user.id]: 'owner' });
      expect(await channelMemberIds(t.owner.token, pub.id)).to.deep.equal([t.owner.user.id]);
      expect(await channelMemberIds(t.owner.token, priv.id)).to.deep.equal([t.owner.user.id]);
    });

    it('When the last owner leaves, then 403 FORBIDDEN and they stay; with a second owner, then 204', async function () {
      const t = await team();
      expectError(await request(base, 'POST', `/workspaces/${t.ws.id}/leave`, { token: t.owner.token }), 403, 'FORBIDDEN');
      expect((await roles(t))[t.owner.user.id]).to.equal('owner');
      await patchRole(t.owner.token, t.ws.id, t.admin.user.id, 'owner');
      const res = await request(base, 'POST', `/workspaces/${t.ws.id}/leave`, { token: t.owner.token });
      expect(res.status, res.text).to.equal(204);
      expect(await rolesOf(t.admin, t.ws.id)).to.deep.equal({ [t.admin.user.id]: 'owner', [t.member.user.id]: 'member', [t.guest.user.id]: 'guest' });
    });

    async function rolesOf(caller: RegisteredUser, workspaceId: string): Promise<Record<string, string>> {
      const res = await request(base, 'GET', `/workspaces/${workspaceId}/members`, { token: caller.token });
      return Object.fromEntries(res.body.members.map((m: { userId: string; role: string }) => [m.userId, m.role]));
    }

    it('When an outsider leaves a workspace (or it does not exist, or the id is malformed), then 404 NOT_FOUND', async function () {
      const t = await team();
      for (const id of [t.ws.id, randomUUID(), 'nope']) {
        expectError(await request(base, 'POST', `/workspaces/${id}/leave`, { token: t.outsider.token }), 404, 'NOT_FOUND');
      }
      expect(Object.keys(await roles(t))).to.have.length(4);
    });

    it("When a member leaves, then their sockets leave the workspace's channel rooms (no channel:updated reaches them)", async function () {
      const t = await team();
      const ch = await createChannel(base, t.owner.token, t.ws.id);
      await addChannelMember(base, t.owner.token, ch.id, t.member.user.id);
      await addChannelMember(base, t.owner.token, ch.id, t.admin.user.id);
      const leaver = await connect(base, t.member.token);
      const stayer = await connect(base, t.admin.token);
      const heard = { leaver: 0, stayer: 0 };
      leaver.on('channel:updated', () => heard.leaver++);
      stayer.on('channel:updated', () => heard.stayer++);
      expect((await request(base, 'POST', `/workspaces/${t.ws.id}/leave`, { token: t.member.token })).status).to.equal(204);
      const res = await request(base, 'PATCH', `/channels/${ch.id}`, { token: t.owner.token, body: { topic: 'after the leave' } });
      expect(res.status, res.text).to.equal(200);
      await waitFor(() => heard.stayer === 1);
      await sleep(200);
      expect(heard.leaver).to.equal(0);
    });
  });
});
