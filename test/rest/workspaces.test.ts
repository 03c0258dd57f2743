import { expect } from 'chai';
import { randomUUID } from 'node:crypto';
import {
  addWorkspaceMember,
  createWorkspace,
  registerUser,
  request,
  startApi,
  unique,
  type RegisteredUser,
  type StartedApi,
} from '../support/api.js';

const ISO = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?Z$/;

describe('REST workspaces', function () {
  let api: StartedApi;
  let base: string;
  let owner: RegisteredUser;

  before(async function () {
    api = await startApi();
    base = api.baseUrl;
    owner = await registerUser(base);
  });

  after(async function () {
    await api?.stop();
  });

  describe('POST /workspaces', function () {
    it('When a user creates a workspace, then 201 returns exactly {workspace:{id,name,createdAt}}', async function () {
      const name = unique('Acme ');
      const res = await request(base, 'POST', '/workspaces', { token: owner.token, body: { name } });
      expect(res.status).to.equal(201);
      expect(res.body).to.have.all.keys('workspace');
      expect(res.body.workspace).to.have.all.keys('id', 'name', 'createdAt');
      expect(res.body.workspace.id).to.be.a('string').and.not.empty;
      expect(res.body.workspace.name).to.equal(name);
      expect(res.body.workspace.createdAt).to.match(ISO);
    });

    it('When a user creates a workspace, then they are its owner', async function () {
      const ws = await createWorkspace(base, owner.token);
      const members = await request(base, 'GET', `/workspaces/${ws.id}/members`, { token: owner.token });
      expect(members.status).to.equal(200);
      expect(members.body).to.deep.equal({
        members: [{ userId: owner.user.id, displayName: owner.user.displayName, role: 'owner' }],
      });
      const list = await request(base, 'GET', '/workspaces', { token: owner.token });
      expect(list.body.workspaces).to.deep.include({ id: ws.id, name: ws.name, role: 'owner' });
    });

    it('When two workspaces get the same name, then both are created with distinct ids', async function () {
      const name = unique('Same ');
      const a = await createWorkspace(base, owner.token, name);
      const b = await createWorkspace(base, owner.token, name);
      expect(a.id).not.to.equal(b.id);
    });

    it('When the name is exactly 1 or 80 characters, then 201', async function () {
      for (const name of ['a', 'n'.repeat(80)]) {
        const res = await request(base, 'POST', '/workspaces', { token: owner.token, body: { name } });
        expect(res.status, `name of ${name.length}`).to.equal(201);
        expect(res.body.workspace.name).to.equal(name);
      }
    });

    const invalid: Array<[string, unknown]> = [
      ['the name is empty', { name: '' }],
      ['the name is only spaces', { name: '   ' }],
      ['the name is 81 characters', { name: 'n'.repeat(81) }],
      ['the name is missing', {}],
      ['the name is not a string', { name: 42 }],
      ['an unknown field is present', { name: 'Fine', plan: 'enterprise' }],
      ['the body is an array', [{ name: 'Fine' }]],
    ];
    for (const [what, body] of invalid) {
      it(`When ${what}, then 400 VALIDATION_FAILED and no workspace is created`, async function () {
        const user = await registerUser(base);
        const res = await request(base, 'POST', '/workspaces', { token: user.token, body });
        expect(res.status).to.equal(400);
        expect(res.body).to.have.all.keys('error');
        expect(res.body.error.code).to.equal('VALIDATION_FAILED');
        const list = await request(base, 'GET', '/workspaces', { token: user.token });
        expect(list.body).to.deep.equal({ workspaces: [] });
      });
    }
  });

  describe('GET /workspaces', function () {
    it('When a user belongs to nothing, then 200 {workspaces: []}', async function () {
      const loner = await registerUser(base);
      const res = await request(base, 'GET', '/workspaces', { token: loner.token });
      expect(res.status).to.equal(200);
      expect(res.body).to.deep.equal({ workspaces: [] });
    });

    it('When a user owns one workspace and was added to others, then exactly those are listed with their role', async function () {
      const me = await registerUser(base);
      const other = await registerUser(base);
      const mine = await createWorkspace(base, me.token, unique('Mine '));
      const asMember = await createWorkspace(base, other.token, unique('Member of '));
      const asAdmin = await createWorkspace(base, other.token, unique('Admin of '));
      const notMine = await createWorkspace(base, other.token, unique('Not mine '));
      await addWorkspaceMember(base, other.token, asMember.id, me.email);
      await addWorkspaceMember(base, other.token, asAdmin.id, me.email, 'admin');

      const res = await request(base, 'GET', '/workspaces', { token: me.token });
      expect(res.status).to.equal(200);
      expect(res.body).to.have.all.keys('workspaces');
      for (const w of res.body.workspaces) expect(w).to.have.all.keys('id', 'name', 'role');
      const byId = (a: { id: string }, b: { id: string }) => a.id.localeCompare(b.id);
      expect([...res.body.workspaces].sort(byId)).to.deep.equal(
        [
          { id: mine.id, name: mine.name, role: 'owner' },
          { id: asMember.id, name: asMember.name, role: 'member' },
          { id: asAdmin.id, name: asAdmin.name, role: 'admin' },
        ].sort(byId),
      );
      expect(res.body.workspaces.map((w: { id: string }) => w.id)).not.to.include(notMine.id);
    });
  });

  describe('GET /workspaces/:workspaceId', function () {
    it('When a member asks for their workspace, then 200 {workspace} equal to what creation returned', async function () {
      const ws = await createWorkspace(base, owner.token);
      const member = await registerUser(base);
      await addWorkspaceMember(base, owner.token, ws.id, member.email);
      for (const token of [owner.token, member.token]) {
        const res = await request(base, 'GET', `/workspaces/${ws.id}`, { token });
        expect(res.status).to.equal(200);
        expect(res.body).to.deep.equal({ workspace: ws });
      }
    });

    it('When a non-member asks for a workspace, then 404 NOT_FOUND, identical to a workspace that does not exist', async function () {
      const ws = await createWorkspace(base, owner.token);
      const outsider = await registerUser(base);
      const existing = await request(base, 'GET', `/workspaces/${ws.id}`, { token: outsider.token });
      const missing = await request(base, 'GET', `/workspaces/${randomUUID()}`, { token: outsider.token });
      expect(existing.status).to.equal(404);
      expect(existing.body.error.code).to.equal('NOT_FOUND');
      expect(existing.body).to.deep.equal(missing.body);
    });

    it('When the workspace id is malformed, then 404 NOT_FOUND', async function () {
      for (const id of ['not-a-uuid', '123', `${randomUUID()}x`, "1' or '1'='1"]) {
        const res = await request(base, 'GET', `/workspaces/${encodeURIComponent(id)}`, { token: owner.token });
        expect(res.status, id).to.equal(404);
        expect(res.body.error.code).to.equal('NOT_FOUND');
      }
    });
  });
});
