import { randomUUID } from 'node:crypto';
import bcrypt from 'bcrypt';
import { expect } from 'chai';
import jwt from 'jsonwebtoken';
import { lifetimeSeconds } from '../../server/auth.js';
import { User } from '../../shared/models/index.js';
import { loginUser, registerUser, request, startApi, unique, type RegisteredUser, type StartedApi } from '../support/api.js';
import { watchSession } from '../support/sessions.js';
import { connect, connectError, disconnectAll, sleep, waitFor } from '../support/sockets.js';
import { signToken, TOKEN_AUDIENCE, TOKEN_ISSUER } from '../support/tokens.js';

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

describe('Sessions and tokens (REST, one front node)', function () {
  let api: StartedApi;
  let base: string;
  let secret: string;

  before(async function () {
    api = await startApi();
    base = api.baseUrl;
    secret = api.config.jwt.secret;
  });

  afterEach(function () {
    disconnectAll();
  });

  after(async function () {
    disconnectAll();
    await api?.stop();
  });

  async function expectUnauthorized(token: string, what = 'token'): Promise<void> {
    const res = await request(base, 'GET', '/me', { token });
    expect(res.status, `${what}: ${res.text}`).to.equal(401);
    expect(res.body.error.code).to.equal('UNAUTHORIZED');
  }

  describe('tokens the server issues', function () {
    it('When a token is issued (register, login), then it is HS256 with iss, aud, a random jti, iat and exp one lifetime later', async function () {
      const reg = await registerUser(base);
      const tokens = [reg.token, await loginUser(base, reg)];
      const jtis = new Set<string>();
      for (const token of tokens) {
        const decoded = jwt.decode(token, { complete: true })!;
        expect(decoded.header.alg).to.equal('HS256');
        const claims = decoded.payload as jwt.JwtPayload;
        expect(claims.sub).to.equal(reg.user.id);
        expect(claims.iss).to.equal(TOKEN_ISSUER);
        expect(claims.aud).to.equal(TOKEN_AUDIENCE);
        expect(claims.jti).to.match(UUID);
        expect(claims.exp! - claims.iat!).to.equal(3600);
        expect(Math.abs(claims.iat! - Date.now() / 1000)).to.be.below(60);
        jtis.add(claims.jti!);
      }
      expect(jtis.size).to.equal(2);
    });

    it('When JWT_EXPIRES_IN is a bare number or has a unit, then tokens live that long (a bare number is seconds)', function () {
      // A bare string number used to reach jsonwebtoken as milliseconds: `900` made tokens that expired at once.
      // (One front node per test process: a second one would rebind the models, so this checks the parser.)
      for (const [expiresIn, lifetime] of [['900', 900], ['15m', 900], ['2s', 2], ['12h', 43_200], ['7d', 604_800], ['1500ms', 2]] as const) {
        expect(lifetimeSeconds(expiresIn), `JWT_EXPIRES_IN=${expiresIn}`).to.equal(lifetime);
      }
    });
  });

  describe('refused tokens', function () {
    const now = () => Math.floor(Date.now() / 1000);
    const refused: Array<[string, (userId: string) => string]> = [
      ['has no exp', (id) => signToken(secret, id, { exp: undefined })],
      ['has no iat', (id) => signToken(secret, id, { iat: undefined })],
      ['has a wrong iss', (id) => signToken(secret, id, { iss: 'someone-else' })],
      ['has no iss', (id) => signToken(secret, id, { iss: undefined })],
      ['has a wrong aud', (id) => signToken(secret, id, { aud: 'another-api' })],
      ['has no aud', (id) => signToken(secret, id, { aud: undefined })],
      ['has no jti', (id) => signToken(secret, id, { jti: undefined })],
      ['is signed with HS512', (id) => signToken(secret, id, {}, 'HS512')],
      ['has alg none', (id) => signToken('', id, {}, 'none')],
      ['is signed with another secret', (id) => signToken(`${secret}-other`, id)],
      ['has expired', (id) => signToken(secret, id, { iat: now() - 120, exp: now() - 60 })],
    ];

    let alice: RegisteredUser;
    before(async function () {
      alice = await registerUser(base);
    });

    it('When a token signed by the test has exactly the claims the server issues, then it is accepted (the cases below differ in one thing)', async function () {
      const token = signToken(secret, alice.user.id);
      const res = await request(base, 'GET', '/me', { token });
      expect(res.status).to.equal(200);
      const socket = await connect(base, token);
      expect(socket.connected).to.equal(true);
    });

    for (const [what, make] of refused) {
      it(`When a token ${what}, then REST answers 401 UNAUTHORIZED and a socket gets connect_error UNAUTHORIZED`, async function () {
        const token = make(alice.user.id);
        await expectUnauthorized(token, what);
        expect((await connectError(base, { token })).message).to.equal('UNAUTHORIZED');
      });
    }
  });

  describe('a user deleted from the database', function () {
    it('When an operator deletes a user who was just served, then their token answers 401 UNAUTHORIZED at once on reads and writes (never 500), and a socket gets connect_error UNAUTHORIZED', async function () {
      const reg = await registerUser(base);
      // Served the moment before: nothing the node kept of that answer may let the next request through.
      expect((await request(base, 'GET', '/me', { token: reg.token })).status).to.equal(200);
      expect(await User.query().deleteById(reg.user.id)).to.equal(1);
      await expectUnauthorized(reg.token, 'deleted user');
      const write = await request(base, 'POST', '/workspaces', { token: reg.token, body: { name: unique('ws-') } });
      expect(write.status, write.text).to.equal(401);
      expect(write.body.error.code).to.equal('UNAUTHORIZED');
      expect((await connectError(base, { token: reg.token })).message).to.equal('UNAUTHORIZED');
    });
  });

  describe('a user locked out in the database (docs/OPERATIONS.md, "Locking a user out")', function () {
    it("When an operator runs the runbook's UPDATE, then the user's tokens answer 401 at once over REST and handshakes, and no password logs them in", async function () {
      const reg = await registerUser(base);
      expect((await request(base, 'GET', '/me', { token: reg.token })).status).to.equal(200);
      const locked = await User.knex().raw(
        "UPDATE users SET password_hash = '!', tokens_valid_after = now() + interval '1 second' WHERE lower(email) = lower(?)",
        [reg.email.toUpperCase()],
      );
      expect(locked.rowCount).to.equal(1);
      await expectUnauthorized(reg.token, 'locked-out user');
      expect((await connectError(base, { token: reg.token })).message).to.equal('UNAUTHORIZED');
      for (const password of [reg.password, '!']) {
        const login = await request(base, 'POST', '/auth/login', { body: { email: reg.email, password } });
        expect(login.status, login.text).to.equal(401);
        expect(login.body.error.code).to.equal('INVALID_CREDENTIALS');
      }
    });
  });

  describe('POST /auth/logout', function () {
    it('When a user logs out, then 204 with no body, that token answers 401 at once, and another token of the user still works', async function () {
      const reg = await registerUser(base);
      const other = await loginUser(base, reg);
      expect((await request(base, 'GET', '/me', { token: reg.token })).status).to.equal(200);
      const res = await request(base, 'POST', '/auth/logout', { token: reg.token });
      expect(res.status).to.equal(204);
      expect(res.text).to.equal('');
      await expectUnauthorized(reg.token, 'logged-out token');
      expect((await request(base, 'GET', '/workspaces', { token: reg.token })).status).to.equal(401);
      expect((await request(base, 'GET', '/me', { token: other })).status).to.equal(200);
    });

    it('When a logged-out token logs out again or connects a socket, then 401 UNAUTHORIZED and connect_error UNAUTHORIZED', async function () {
      const reg = await registerUser(base);
      expect((await request(base, 'POST', '/auth/logout', { token: reg.token })).status).to.equal(204);
      const again = await request(base, 'POST', '/auth/logout', { token: reg.token });
      expect(again.status).to.equal(401);
      expect(again.body.error.code).to.equal('UNAUTHORIZED');
      expect((await connectError(base, { token: reg.token })).message).to.equal('UNAUTHORIZED');
    });

    it('When logout is called without a token, then 401 UNAUTHORIZED', async function () {
      const res = await request(base, 'POST', '/auth/logout');
      expect(res.status).to.equal(401);
      expect(res.body.error.code).to.equal('UNAUTHORIZED');
    });

    it("When a token logs out, then its sockets get session:revoked {code:'UNAUTHORIZED'} and are disconnected, and the user's socket with another token stays connected", async function () {
      const reg = await registerUser(base);
      const other = await loginUser(base, reg);
      const mine = [await connect(base, reg.token), await connect(base, reg.token, { transport: 'polling' })];
      const bystander = await connect(base, other);
      const watches = mine.map(watchSession);
      const bystanderWatch = watchSession(bystander);
      const started = Date.now();
      expect((await request(base, 'POST', '/auth/logout', { token: reg.token })).status).to.equal(204);
      await waitFor(() => watches.every((w) => w.disconnectedAt !== undefined), 1000, () => JSON.stringify(watches));
      for (const w of watches) {
        expect(w.revoked).to.deep.include({ code: 'UNAUTHORIZED' });
        expect(w.toldFirst, 'session:revoked before the disconnect').to.equal(true);
        expect(w.reason).to.equal('io server disconnect');
        expect(w.disconnectedAt! - started).to.be.below(1000);
      }
      await sleep(200);
      expect(bystander.connected).to.equal(true);
      expect(bystanderWatch.revoked).to.equal(undefined);
    });
  });

  describe('POST /auth/password', function () {
    it('When the password is changed, then 200 {token} exactly, older tokens answer 401 at once, the new token works, and only the new password logs in', async function () {
      const reg = await registerUser(base);
      const second = await loginUser(base, reg);
      for (const token of [reg.token, second]) expect((await request(base, 'GET', '/me', { token })).status).to.equal(200);
      const newPassword = `new-${unique()}`;
      const res = await request(base, 'POST', '/auth/password', {
        token: reg.token,
        body: { currentPassword: reg.password, newPassword },
      });
      expect(res.status, res.text).to.equal(200);
      expect(res.body).to.have.all.keys('token');
      await expectUnauthorized(reg.token, 'the token that changed the password');
      await expectUnauthorized(second, 'another older token');
      const me = await request(base, 'GET', '/me', { token: res.body.token });
      expect(me.status).to.equal(200);
      expect(me.body.user.id).to.equal(reg.user.id);
      const oldLogin = await request(base, 'POST', '/auth/login', { body: { email: reg.email, password: reg.password } });
      expect(oldLogin.status).to.equal(401);
      expect(oldLogin.body.error.code).to.equal('INVALID_CREDENTIALS');
      const fresh = await loginUser(base, reg, newPassword);
      expect((await request(base, 'GET', '/me', { token: fresh })).status).to.equal(200);
    });

    it('When a user logs in right after changing the password, then that token works too (the cut-off falls before it)', async function () {
      const reg = await registerUser(base);
      const newPassword = `new-${unique()}`;
      const res = await request(base, 'POST', '/auth/password', {
        token: reg.token,
        body: { currentPassword: reg.password, newPassword },
      });
      expect(res.status).to.equal(200);
      const token = await loginUser(base, reg, newPassword);
      expect((await request(base, 'GET', '/me', { token })).status).to.equal(200);
      expect((await request(base, 'GET', '/me', { token: res.body.token })).status).to.equal(200);
    });

    it('When the password is changed twice in a row, then the tokens the first change and a login after it issued answer 401 after the second', async function () {
      const reg = await registerUser(base);
      const change = (token: string, currentPassword: string, newPassword: string) =>
        request(base, 'POST', '/auth/password', { token, body: { currentPassword, newPassword } });
      const first = await change(reg.token, reg.password, 'first new password');
      expect(first.status).to.equal(200);
      const login = await loginUser(base, reg, 'first new password');
      // Most likely within the second of the first: the tokens above carry its cut-off as their iat.
      const second = await change(first.body.token, 'first new password', 'second new password');
      expect(second.status).to.equal(200);
      await expectUnauthorized(first.body.token, "the first change's token");
      await expectUnauthorized(login, 'a login between the changes');
      expect((await request(base, 'GET', '/me', { token: second.body.token })).status).to.equal(200);
    });

    it('When currentPassword is wrong, then 401 INVALID_CREDENTIALS, and the password and the token are unchanged', async function () {
      const reg = await registerUser(base);
      const res = await request(base, 'POST', '/auth/password', {
        token: reg.token,
        body: { currentPassword: 'not-the-password', newPassword: 'whatever-new-1' },
      });
      expect(res.status).to.equal(401);
      expect(res.body.error.code).to.equal('INVALID_CREDENTIALS');
      expect((await request(base, 'GET', '/me', { token: reg.token })).status).to.equal(200);
      await loginUser(base, reg);
    });

    const invalid: Array<[string, Record<string, unknown>]> = [
      ['newPassword is 7 characters', { newPassword: 'a'.repeat(7) }],
      ['newPassword is 129 characters', { newPassword: 'a'.repeat(129) }],
      ['newPassword is missing', { newPassword: undefined }],
      ['currentPassword is missing', { currentPassword: undefined }],
      ['an unknown field is present', { logoutOthers: true }],
    ];
    for (const [what, change] of invalid) {
      it(`When ${what}, then 400 VALIDATION_FAILED and the password is unchanged`, async function () {
        const reg = await registerUser(base);
        const body = { currentPassword: reg.password, newPassword: 'a-good-new-password', ...change };
        const res = await request(base, 'POST', '/auth/password', { token: reg.token, body });
        expect(res.status).to.equal(400);
        expect(res.body.error.code).to.equal('VALIDATION_FAILED');
        expect((await request(base, 'GET', '/me', { token: reg.token })).status).to.equal(200);
        await loginUser(base, reg);
      });
    }

    it('When newPassword is exactly 8 or 128 characters, then the change succeeds', async function () {
      for (const newPassword of ['a'.repeat(8), 'b'.repeat(128)]) {
        const reg = await registerUser(base);
        const res = await request(base, 'POST', '/auth/password', { token: reg.token, body: { currentPassword: reg.password, newPassword } });
        expect(res.status, `newPassword of ${newPassword.length}`).to.equal(200);
      }
    });

    it('When the password is changed without a token, then 401 UNAUTHORIZED', async function () {
      const res = await request(base, 'POST', '/auth/password', { body: { currentPassword: 'x', newPassword: 'y'.repeat(8) } });
      expect(res.status).to.equal(401);
      expect(res.body.error.code).to.equal('UNAUTHORIZED');
    });

    it("When the password is changed, then all the user's sockets (every token) get session:revoked and are disconnected, and the new token connects", async function () {
      const reg = await registerUser(base);
      const other = await loginUser(base, reg);
      const sockets = [await connect(base, reg.token), await connect(base, other), await connect(base, other, { transport: 'polling' })];
      const watches = sockets.map(watchSession);
      const started = Date.now();
      const res = await request(base, 'POST', '/auth/password', {
        token: reg.token,
        body: { currentPassword: reg.password, newPassword: `new-${unique()}` },
      });
      expect(res.status).to.equal(200);
      await waitFor(() => watches.every((w) => w.disconnectedAt !== undefined), 1000, () => JSON.stringify(watches));
      for (const w of watches) {
        expect(w.revoked).to.deep.include({ code: 'UNAUTHORIZED' });
        expect(w.toldFirst).to.equal(true);
        expect(w.disconnectedAt! - started).to.be.below(1000);
      }
      const fresh = await connect(base, res.body.token);
      expect(fresh.connected).to.equal(true);
      expect((await connectError(base, { token: other })).message).to.equal('UNAUTHORIZED');
    });
  });

  describe('token expiry while connected', function () {
    it('When a socket’s token expires while it is connected, then it gets session:revoked and is disconnected at expiry', async function () {
      const reg = await registerUser(base);
      const exp = Math.floor(Date.now() / 1000) + 2;
      const token = signToken(secret, reg.user.id, { exp });
      const socket = await connect(base, token);
      const watch = watchSession(socket);
      await waitFor(() => watch.disconnectedAt !== undefined, 4000);
      expect(watch.revoked).to.deep.include({ code: 'UNAUTHORIZED' });
      expect(watch.toldFirst).to.equal(true);
      expect(watch.reason).to.equal('io server disconnect');
      // Not before its expiry, and within a fraction of a second after it.
      expect(watch.disconnectedAt!).to.be.within(exp * 1000 - 50, exp * 1000 + 700);
    });
  });

  describe('login timing', function () {
    it('When the email is unknown or the password is wrong, then login takes the same path: one bcrypt.compare against a hash of the users’ cost', async function () {
      const reg = await registerUser(base);
      const original = bcrypt.compare as (data: string, hash: string) => Promise<boolean>;
      const calls: Array<{ rounds: number }> = [];
      (bcrypt as { compare: unknown }).compare = (data: string, hash: string) => {
        calls.push({ rounds: bcrypt.getRounds(hash) });
        return original.call(bcrypt, data, hash);
      };
      try {
        const wrongPassword = await request(base, 'POST', '/auth/login', { body: { email: reg.email, password: 'wrong-password' } });
        const afterWrong = calls.splice(0);
        const unknownEmail = await request(base, 'POST', '/auth/login', {
          body: { email: `${unique('ghost-')}@example.test`, password: 'wrong-password' },
        });
        const afterUnknown = calls.splice(0);
        expect(wrongPassword.status).to.equal(401);
        expect(unknownEmail.status).to.equal(401);
        expect(unknownEmail.body).to.deep.equal(wrongPassword.body);
        expect(afterWrong).to.deep.equal([{ rounds: api.config.bcryptRounds }]);
        expect(afterUnknown).to.deep.equal(afterWrong);
      } finally {
        (bcrypt as { compare: unknown }).compare = original;
      }
    });
  });

  it('When the token names a user id that does not exist, then 401 UNAUTHORIZED (no revocation state needed)', async function () {
    await expectUnauthorized(signToken(secret, randomUUID()));
  });
});
