import { expect } from 'chai';
import { randomUUID } from 'node:crypto';
import {
  addChannelMember,
  addWorkspaceMember,
  createChannel,
  createWorkspace,
  registerUser,
  request,
  startApi,
  unique,
  type RegisteredUser,
  type StartedApi,
  type WorkspaceDto,
} from '../support/api.js';

const ISO = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?Z$/;
const CHANNEL_KEYS = ['id', 'workspaceId', 'kind', 'name', 'isPrivate', 'topic', 'archived', 'createdAt'];

/**
 * A channel list item reduced to the contract's fields ({...channel, isMember}). Items may carry more
 * (the read-state extension adds lastSeq, lastReadSeq and unreadCount to channels the caller is in).
 */
function contractView(items: Array<Record<string, unknown>>): Array<Record<string, unknown> & { id: string; name: string }> {
  return items.map((item) => {
    const picked: Record<string, unknown> = {};
    for (const key of [...CHANNEL_KEYS, 'isMember']) picked[key] = item[key];
    return picked as Record<string, unknown> & { id: string; name: string };
  });
}

describe('REST channels', function () {
  let api: StartedApi;
  let base: string;
  let owner: RegisteredUser;
  let member: RegisteredUser;
  let ws: WorkspaceDto;

  before(async function () {
    api = await startApi();
    base = api.baseUrl;
    owner = await registerUser(base);
    member = await registerUser(base);
    ws = await createWorkspace(base, owner.token);
    await addWorkspaceMember(base, owner.token, ws.id, member.email);
  });

  after(async function () {
    await api?.stop();
  });

  async function channelMemberIds(token: string, channelId: string): Promise<string[]> {
    const res = await request(base, 'GET', `/channels/${channelId}/members`, { token });
    expect(res.status).to.equal(200);
    return res.body.members.map((m: { userId: string }) => m.userId).sort();
  }

  describe('POST /workspaces/:workspaceId/channels', function () {
    it('When a member creates a channel with only a name, then 201 with exactly the channel fields and defaults', async function () {
      const name = unique('general-');
      const res = await request(base, 'POST', `/workspaces/${ws.id}/channels`, { token: member.token, body: { name } });
      expect(res.status).to.equal(201);
      expect(res.body).to.have.all.keys('channel');
      expect(res.body.channel).to.have.all.keys(...CHANNEL_KEYS);
      expect(res.body.channel.id).to.be.a('string').and.not.empty;
      expect(res.body.channel).to.deep.include({ workspaceId: ws.id, name, isPrivate: false, topic: '' });
      expect(res.body.channel.createdAt).to.match(ISO);
    });

    it('When a channel is created private with a topic, then both are returned', async function () {
      const name = unique('secret-');
      const res = await request(base, 'POST', `/workspaces/${ws.id}/channels`, {
        token: owner.token,
        body: { name, isPrivate: true, topic: 'Plans for world domination' },
      });
      expect(res.status).to.equal(201);
      expect(res.body.channel).to.deep.include({ name, isPrivate: true, topic: 'Plans for world domination' });
    });

    it('When a user creates a channel, then they are its only member', async function () {
      const ch = await createChannel(base, member.token, ws.id);
      expect(await channelMemberIds(member.token, ch.id)).to.deep.equal([member.user.id]);
      const got = await request(base, 'GET', `/channels/${ch.id}/members`, { token: member.token });
      expect(got.body).to.deep.equal({ members: [{ userId: member.user.id, displayName: member.user.displayName }] });
    });

    it('When the name is already taken in the workspace, then 409 CONFLICT', async function () {
      const name = unique('dup-');
      await createChannel(base, owner.token, ws.id, { name });
      const res = await request(base, 'POST', `/workspaces/${ws.id}/channels`, {
        token: member.token,
        body: { name, isPrivate: true },
      });
      expect(res.status).to.equal(409);
      expect(res.body).to.have.all.keys('error');
      expect(res.body.error.code).to.equal('CONFLICT');
    });

    it('When the same name is used in another workspace, then 201', async function () {
      const name = unique('shared-');
      await createChannel(base, owner.token, ws.id, { name });
      const other = await createWorkspace(base, owner.token);
      const res = await request(base, 'POST', `/workspaces/${other.id}/channels`, { token: owner.token, body: { name } });
      expect(res.status).to.equal(201);
      expect(res.body.channel.workspaceId).to.equal(other.id);
    });

    it('When the name is 1 or 80 valid characters, with digits, _ and -, then 201', async function () {
      const other = await createWorkspace(base, owner.token);
      for (const name of ['a', '7', `a${'b'.repeat(78)}9`, '0_x-y']) {
        const res = await request(base, 'POST', `/workspaces/${other.id}/channels`, { token: owner.token, body: { name } });
        expect(res.status, name).to.equal(201);
        expect(res.body.channel.name).to.equal(name);
      }
    });

    const invalid: Array<[string, Record<string, unknown>]> = [
      ['the name has upper case letters', { name: 'General' }],
      ['the name starts with a dash', { name: '-general' }],
      ['the name starts with an underscore', { name: '_general' }],
      ['the name contains a space', { name: 'two words' }],
      ['the name contains a dot', { name: 'a.b' }],
      ['the name is empty', { name: '' }],
      ['the name is 81 characters', { name: `a${'b'.repeat(80)}` }],
      ['the name is missing', { topic: 'no name' }],
      ['isPrivate is a string', { name: unique('x-'), isPrivate: 'true' }],
      ['topic is a number', { name: unique('x-'), topic: 5 }],
      ['an unknown field is present', { name: unique('x-'), archived: false }],
    ];
    for (const [what, body] of invalid) {
      it(`When ${what}, then 400 VALIDATION_FAILED and nothing is created`, async function () {
        const fresh = await createWorkspace(base, owner.token);
        const res = await request(base, 'POST', `/workspaces/${fresh.id}/channels`, { token: owner.token, body });
        expect(res.status).to.equal(400);
        expect(res.body.error.code).to.equal('VALIDATION_FAILED');
        const list = await request(base, 'GET', `/workspaces/${fresh.id}/channels`, { token: owner.token });
        expect(list.body).to.deep.equal({ channels: [] });
      });
    }

    it('When a non-member of the workspace creates a channel in it, then 404 NOT_FOUND and nothing is created', async function () {
      const outsider = await registerUser(base);
      const fresh = await createWorkspace(base, owner.token);
      const res = await request(base, 'POST', `/workspaces/${fresh.id}/channels`, {
        token: outsider.token,
        body: { name: 'intruder' },
      });
      expect(res.status).to.equal(404);
      expect(res.body.error.code).to.equal('NOT_FOUND');
      const list = await request(base, 'GET', `/workspaces/${fresh.id}/channels`, { token: owner.token });
      expect(list.body).to.deep.equal({ channels: [] });
    });
  });

  describe('GET /workspaces/:workspaceId/channels', function () {
    it('When listing, then public channels and only the private channels the caller is in appear, with isMember', async function () {
      const w = await createWorkspace(base, owner.token);
      const bob = await registerUser(base);
      await addWorkspaceMember(base, owner.token, w.id, bob.email);
      const pubJoined = await createChannel(base, owner.token, w.id, { name: 'a-public-joined' });
      const pubNotJoined = await createChannel(base, owner.token, w.id, { name: 'b-public-not-joined' });
      const privIn = await createChannel(base, owner.token, w.id, { name: 'c-private-in', isPrivate: true });
      const privOut = await createChannel(base, owner.token, w.id, { name: 'd-private-out', isPrivate: true });
      const bobsOwn = await createChannel(base, bob.token, w.id, { name: 'e-bobs-own' });
      await request(base, 'POST', `/channels/${pubJoined.id}/join`, { token: bob.token });
      await addChannelMember(base, owner.token, privIn.id, bob.user.id);

      const res = await request(base, 'GET', `/workspaces/${w.id}/channels`, { token: bob.token });
      expect(res.status).to.equal(200);
      expect(res.body).to.have.all.keys('channels');
      for (const c of res.body.channels) expect(c).to.include.all.keys(...CHANNEL_KEYS, 'isMember');
      const byName = (a: { name: string }, b: { name: string }) => a.name.localeCompare(b.name);
      expect(contractView(res.body.channels).sort(byName)).to.deep.equal([
        { ...pubJoined, isMember: true },
        { ...pubNotJoined, isMember: false },
        { ...privIn, isMember: true },
        { ...bobsOwn, isMember: true },
      ]);
      expect(res.body.channels.map((c: { id: string }) => c.id)).not.to.include(privOut.id);

      // The owner sees their own private channels, and is not a member of bob's.
      const ownerView = await request(base, 'GET', `/workspaces/${w.id}/channels`, { token: owner.token });
      expect(contractView(ownerView.body.channels).sort(byName)).to.deep.equal([
        { ...pubJoined, isMember: true },
        { ...pubNotJoined, isMember: true },
        { ...privIn, isMember: true },
        { ...privOut, isMember: true },
        { ...bobsOwn, isMember: false },
      ]);
    });

    it('When the workspace has no channels, then 200 {channels: []}', async function () {
      const w = await createWorkspace(base, owner.token);
      const res = await request(base, 'GET', `/workspaces/${w.id}/channels`, { token: owner.token });
      expect(res.status).to.equal(200);
      expect(res.body).to.deep.equal({ channels: [] });
    });
  });

  describe('GET /channels/:channelId', function () {
    it('When a workspace member asks for a public channel they are not in, then 200 {channel}', async function () {
      const ch = await createChannel(base, owner.token, ws.id);
      const res = await request(base, 'GET', `/channels/${ch.id}`, { token: member.token });
      expect(res.status).to.equal(200);
      expect(res.body).to.deep.equal({ channel: ch });
    });

    it('When a channel member asks for a private channel, then 200 {channel}', async function () {
      const ch = await createChannel(base, owner.token, ws.id, { isPrivate: true });
      const res = await request(base, 'GET', `/channels/${ch.id}`, { token: owner.token });
      expect(res.status).to.equal(200);
      expect(res.body).to.deep.equal({ channel: ch });
    });

    it('When a workspace member outside a private channel asks for it, then 404 NOT_FOUND, same as a missing channel', async function () {
      const ch = await createChannel(base, owner.token, ws.id, { isPrivate: true });
      const res = await request(base, 'GET', `/channels/${ch.id}`, { token: member.token });
      const missing = await request(base, 'GET', `/channels/${randomUUID()}`, { token: member.token });
      expect(res.status).to.equal(404);
      expect(res.body.error.code).to.equal('NOT_FOUND');
      expect(res.body).to.deep.equal(missing.body);
    });

    it('When the channel id is malformed, then 404 NOT_FOUND', async function () {
      for (const id of ['nope', '42', randomUUID().slice(0, 35)]) {
        const res = await request(base, 'GET', `/channels/${id}`, { token: owner.token });
        expect(res.status, id).to.equal(404);
        expect(res.body.error.code).to.equal('NOT_FOUND');
      }
    });
  });

  describe('POST /channels/:channelId/join and /leave', function () {
    it('When a workspace member joins a public channel, then 200 {channel} and they are listed as a member', async function () {
      const ch = await createChannel(base, owner.token, ws.id);
      const res = await request(base, 'POST', `/channels/${ch.id}/join`, { token: member.token });
      expect(res.status).to.equal(200);
      expect(res.body).to.deep.equal({ channel: ch });
      expect(await channelMemberIds(owner.token, ch.id)).to.deep.equal([owner.user.id, member.user.id].sort());
    });

    it('When a member joins a channel twice, then the second join is 200 and membership is not duplicated', async function () {
      const ch = await createChannel(base, owner.token, ws.id);
      await request(base, 'POST', `/channels/${ch.id}/join`, { token: member.token });
      const again = await request(base, 'POST', `/channels/${ch.id}/join`, { token: member.token });
      expect(again.status).to.equal(200);
      expect(again.body).to.deep.equal({ channel: ch });
      expect(await channelMemberIds(owner.token, ch.id)).to.deep.equal([owner.user.id, member.user.id].sort());
    });

    it('When a workspace member tries to join a private channel, then 404 NOT_FOUND and they are not added', async function () {
      const ch = await createChannel(base, owner.token, ws.id, { isPrivate: true });
      const res = await request(base, 'POST', `/channels/${ch.id}/join`, { token: member.token });
      expect(res.status).to.equal(404);
      expect(res.body.error.code).to.equal('NOT_FOUND');
      expect(await channelMemberIds(owner.token, ch.id)).to.deep.equal([owner.user.id]);
    });

    it('When a member leaves a public channel, then 200 and they are no longer listed, and isMember turns false', async function () {
      const ch = await createChannel(base, owner.token, ws.id);
      await request(base, 'POST', `/channels/${ch.id}/join`, { token: member.token });
      const res = await request(base, 'POST', `/channels/${ch.id}/leave`, { token: member.token });
      expect(res.status).to.equal(200);
      expect(await channelMemberIds(owner.token, ch.id)).to.deep.equal([owner.user.id]);
      const list = await request(base, 'GET', `/workspaces/${ws.id}/channels`, { token: member.token });
      const item = contractView(list.body.channels).find((c) => c.id === ch.id);
      expect(item).to.deep.equal({ ...ch, isMember: false });
    });

    it('When a user leaves a public channel they are not in, then 200 and nothing changes', async function () {
      const ch = await createChannel(base, owner.token, ws.id);
      const res = await request(base, 'POST', `/channels/${ch.id}/leave`, { token: member.token });
      expect(res.status).to.equal(200);
      expect(await channelMemberIds(owner.token, ch.id)).to.deep.equal([owner.user.id]);
    });

    it('When a member leaves a private channel, then 200 and the channel disappears for them (404)', async function () {
      const ch = await createChannel(base, owner.token, ws.id, { isPrivate: true });
      await addChannelMember(base, owner.token, ch.id, member.user.id);
      const res = await request(base, 'POST', `/channels/${ch.id}/leave`, { token: member.token });
      expect(res.status).to.equal(200);
      const after = await request(base, 'GET', `/channels/${ch.id}`, { token: member.token });
      expect(after.status).to.equal(404);
      expect(after.body.error.code).to.equal('NOT_FOUND');
      const list = await request(base, 'GET', `/workspaces/${ws.id}/channels`, { token: member.token });
      expect(list.body.channels.map((c: { id: string }) => c.id)).not.to.include(ch.id);
    });

    it('When a user joins or leaves a channel that does not exist or has a malformed id, then 404 NOT_FOUND', async function () {
      for (const id of [randomUUID(), 'bogus']) {
        for (const action of ['join', 'leave']) {
          const res = await request(base, 'POST', `/channels/${id}/${action}`, { token: member.token });
          expect(res.status, `${action} ${id}`).to.equal(404);
          expect(res.body.error.code).to.equal('NOT_FOUND');
        }
      }
    });
  });
});
