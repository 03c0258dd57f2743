import { expect } from 'chai';
import { randomUUID } from 'node:crypto';
import { registerUser, request, startApi, unique, type StartedApi } from '../support/api.js';
import { signToken } from '../support/tokens.js';
import { User } from '../../shared/models/index.js';

const ISO = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?Z$/;

/** No response may ever carry a password or its bcrypt hash. */
function expectNoSecrets(text: string, password?: string): void {
  expect(text).not.to.match(/\$2[aby]\$\d\d\$/);
  expect(text.toLowerCase()).not.to.include('passwordhash');
  expect(text.toLowerCase()).not.to.include('password_hash');
  if (password) expect(text).not.to.include(password);
}

describe('REST auth', function () {
  let api: StartedApi;
  let base: string;

  before(async function () {
    api = await startApi();
    base = api.baseUrl;
  });

  after(async function () {
    await api?.stop();
  });

  describe('POST /auth/register', function () {
    it('When a new user registers, then 201 returns exactly {user:{id,email,displayName,createdAt}, token} and no password hash', async function () {
      const email = `${unique('reg-')}@example.test`;
      const password = 'correct horse battery';
      const res = await request(base, 'POST', '/auth/register', {
        body: { email, password, displayName: 'Ada Lovelace' },
      });
      expect(res.status).to.equal(201);
      expect(res.body).to.have.all.keys('user', 'token');
      expect(res.body.user).to.have.all.keys('id', 'email', 'displayName', 'createdAt');
      expect(res.body.user.id).to.be.a('string').and.not.empty;
      expect(res.body.user.email).to.equal(email);
      expect(res.body.user.displayName).to.equal('Ada Lovelace');
      expect(res.body.user.createdAt).to.match(ISO);
      expect(Math.abs(Date.parse(res.body.user.createdAt) - Date.now())).to.be.below(60_000);
      expect(res.body.token).to.be.a('string');
      expect(res.body.token.split('.')).to.have.length(3);
      expect(res.headers.get('content-type')).to.match(/^application\/json/);
      expectNoSecrets(res.text, password);
    });

    it('When the token returned by register is used, then GET /me returns the same user', async function () {
      const { user, token } = await registerUser(base);
      const me = await request(base, 'GET', '/me', { token });
      expect(me.status).to.equal(200);
      expect(me.body).to.deep.equal({ user });
    });

    it('When the email is already registered in another letter case, then 409 CONFLICT', async function () {
      const local = unique('dup-');
      await registerUser(base, { email: `${local}@example.test` });
      const res = await request(base, 'POST', '/auth/register', {
        body: { email: `${local.toUpperCase()}@EXAMPLE.TEST`, password: 'password123', displayName: 'Dup' },
      });
      expect(res.status).to.equal(409);
      expect(res.body.error.code).to.equal('CONFLICT');
      expect(res.body.error.message).to.be.a('string').and.not.empty;
    });

    it('When the email is registered twice with the same spelling, then the second gets 409 CONFLICT', async function () {
      const { email } = await registerUser(base);
      const res = await request(base, 'POST', '/auth/register', {
        body: { email, password: 'password123', displayName: 'Again' },
      });
      expect(res.status).to.equal(409);
      expect(res.body).to.have.all.keys('error');
      expect(res.body.error.code).to.equal('CONFLICT');
    });

    it('When the password is exactly 8 or 128 characters, then registration succeeds', async function () {
      for (const password of ['a'.repeat(8), 'b'.repeat(128)]) {
        const res = await request(base, 'POST', '/auth/register', {
          body: { email: `${unique('len-')}@example.test`, password, displayName: 'Len' },
        });
        expect(res.status, `password of ${password.length}`).to.equal(201);
      }
    });

    it('When the displayName is exactly 1 or 80 characters, then registration succeeds', async function () {
      for (const displayName of ['x', 'y'.repeat(80)]) {
        const res = await request(base, 'POST', '/auth/register', {
          body: { email: `${unique('dn-')}@example.test`, password: 'password123', displayName },
        });
        expect(res.status, `displayName of ${displayName.length}`).to.equal(201);
        expect(res.body.user.displayName).to.equal(displayName);
      }
    });

    const invalid: Array<[string, Record<string, unknown>]> = [
      ['the password is 7 characters', { password: 'a'.repeat(7) }],
      ['the password is 129 characters', { password: 'a'.repeat(129) }],
      ['the displayName is empty', { displayName: '' }],
      ['the displayName is only spaces', { displayName: '   ' }],
      ['the displayName is 81 characters', { displayName: 'z'.repeat(81) }],
      ['the email is not an email', { email: 'not-an-email' }],
      ['the email is missing', { email: undefined }],
      ['the password is missing', { password: undefined }],
      ['the displayName is missing', { displayName: undefined }],
      ['the password is a number', { password: 12345678 }],
      ['an unknown field is present', { isAdmin: true }],
    ];
    for (const [what, change] of invalid) {
      it(`When ${what}, then 400 VALIDATION_FAILED and nobody is registered`, async function () {
        const email = `${unique('bad-')}@example.test`;
        const body: Record<string, unknown> = { email, password: 'password123', displayName: 'Bad', ...change };
        const res = await request(base, 'POST', '/auth/register', { body });
        expect(res.status).to.equal(400);
        expect(res.body.error.code).to.equal('VALIDATION_FAILED');
        expect(res.body.error.message).to.be.a('string').and.not.empty;
        // Nothing was created: the same email, valid this time, registers fine (unless it was the bad field).
        if (!('email' in change)) {
          const retry = await request(base, 'POST', '/auth/register', {
            body: { email, password: 'password123', displayName: 'Good' },
          });
          expect(retry.status).to.equal(201);
        }
      });
    }

    it('When several fields are invalid, then the 400 details list each one', async function () {
      const res = await request(base, 'POST', '/auth/register', {
        body: { email: 'nope', password: 'short', displayName: '' },
      });
      expect(res.status).to.equal(400);
      expect(res.body.error.code).to.equal('VALIDATION_FAILED');
      expect(res.body.error.details).to.be.an('array');
      const fields = (res.body.error.details as Array<{ field: string }>).map((d) => d.field).sort();
      expect(fields).to.deep.equal(['displayName', 'email', 'password']);
    });
  });

  describe('POST /auth/login', function () {
    it('When the credentials are right, then 200 {user, token} with the registered user and a working token', async function () {
      const reg = await registerUser(base);
      const res = await request(base, 'POST', '/auth/login', { body: { email: reg.email, password: reg.password } });
      expect(res.status).to.equal(200);
      expect(res.body).to.have.all.keys('user', 'token');
      expect(res.body.user).to.deep.equal(reg.user);
      expectNoSecrets(res.text, reg.password);
      const me = await request(base, 'GET', '/me', { token: res.body.token });
      expect(me.status).to.equal(200);
      expect(me.body.user.id).to.equal(reg.user.id);
    });

    it('When the email is typed in another letter case, then login still succeeds', async function () {
      const reg = await registerUser(base);
      const res = await request(base, 'POST', '/auth/login', {
        body: { email: reg.email.toUpperCase(), password: reg.password },
      });
      expect(res.status).to.equal(200);
      expect(res.body.user.id).to.equal(reg.user.id);
    });

    it('When the password is wrong, then 401 INVALID_CREDENTIALS', async function () {
      const reg = await registerUser(base);
      const res = await request(base, 'POST', '/auth/login', { body: { email: reg.email, password: 'wrong-password' } });
      expect(res.status).to.equal(401);
      expect(res.body).to.have.all.keys('error');
      expect(res.body.error.code).to.equal('INVALID_CREDENTIALS');
      expect(res.body.error.message).to.be.a('string').and.not.empty;
      expectNoSecrets(res.text, reg.password);
    });

    it('When the email is unknown, then the same 401 INVALID_CREDENTIALS as for a wrong password', async function () {
      const reg = await registerUser(base);
      const wrongPassword = await request(base, 'POST', '/auth/login', {
        body: { email: reg.email, password: 'wrong-password' },
      });
      const unknownEmail = await request(base, 'POST', '/auth/login', {
        body: { email: `${unique('ghost-')}@example.test`, password: 'wrong-password' },
      });
      expect(unknownEmail.status).to.equal(401);
      expect(unknownEmail.body).to.deep.equal(wrongPassword.body);
    });

    it('When the login body has an unknown field or misses the password, then 400 VALIDATION_FAILED', async function () {
      const reg = await registerUser(base);
      const extra = await request(base, 'POST', '/auth/login', {
        body: { email: reg.email, password: reg.password, remember: true },
      });
      expect(extra.status).to.equal(400);
      expect(extra.body.error.code).to.equal('VALIDATION_FAILED');
      const missing = await request(base, 'POST', '/auth/login', { body: { email: reg.email } });
      expect(missing.status).to.equal(400);
      expect(missing.body.error.code).to.equal('VALIDATION_FAILED');
    });

    it('When 10 logins for an email have failed, then the 11th gets 429 RATE_LIMITED with a Retry-After header', async function () {
      const reg = await registerUser(base);
      for (let i = 1; i <= 10; i++) {
        const res = await request(base, 'POST', '/auth/login', { body: { email: reg.email, password: `wrong-${i}` } });
        expect(res.status, `failure #${i}`).to.equal(401);
        expect(res.body.error.code).to.equal('INVALID_CREDENTIALS');
      }
      const eleventh = await request(base, 'POST', '/auth/login', { body: { email: reg.email, password: 'wrong-11' } });
      expect(eleventh.status).to.equal(429);
      expect(eleventh.body.error.code).to.equal('RATE_LIMITED');
      expect(eleventh.body.error.message).to.be.a('string').and.not.empty;
      const retryAfter = eleventh.headers.get('retry-after');
      expect(retryAfter).to.match(/^\d+$/);
      expect(Number(retryAfter)).to.be.within(1, 15 * 60);
    });

    it('When the limit is reached for one email, then another email from the same address can still log in', async function () {
      const victim = await registerUser(base);
      const other = await registerUser(base);
      for (let i = 0; i < 11; i++) {
        await request(base, 'POST', '/auth/login', { body: { email: victim.email, password: 'wrong-password' } });
      }
      const res = await request(base, 'POST', '/auth/login', { body: { email: other.email, password: other.password } });
      expect(res.status).to.equal(200);
    });

    it('When the limit is reached, then the email in another letter case is limited too', async function () {
      const reg = await registerUser(base);
      for (let i = 0; i < 10; i++) {
        await request(base, 'POST', '/auth/login', { body: { email: reg.email, password: 'wrong-password' } });
      }
      const res = await request(base, 'POST', '/auth/login', {
        body: { email: reg.email.toUpperCase(), password: 'wrong-password' },
      });
      expect(res.status).to.equal(429);
      expect(res.body.error.code).to.equal('RATE_LIMITED');
    });

    it('When 10 logins have failed, then an 11th attempt with the right password is refused with 429 too', async function () {
      // Otherwise the limit does not stop a brute force: the guesser still learns when a guess is right.
      const reg = await registerUser(base);
      for (let i = 0; i < 10; i++) {
        await request(base, 'POST', '/auth/login', { body: { email: reg.email, password: 'wrong-password' } });
      }
      const res = await request(base, 'POST', '/auth/login', { body: { email: reg.email, password: reg.password } });
      expect(res.status).to.equal(429);
      expect(res.body.error.code).to.equal('RATE_LIMITED');
      expect(res.headers.get('retry-after')).to.match(/^\d+$/);
      expect(res.body).not.to.have.property('token');
    });
  });

  describe('GET /me and bearer tokens', function () {
    let alice: Awaited<ReturnType<typeof registerUser>>;
    let secret: string;

    before(async function () {
      alice = await registerUser(base);
      secret = api.config.jwt.secret;
    });

    async function expectUnauthorized(headers: Record<string, string>): Promise<void> {
      const res = await request(base, 'GET', '/me', { headers });
      expect(res.status).to.equal(401);
      expect(res.body).to.have.all.keys('error');
      expect(res.body.error.code).to.equal('UNAUTHORIZED');
      expect(res.body.error.message).to.be.a('string').and.not.empty;
    }

    it('When the token is valid, then 200 {user} exactly, without a password hash', async function () {
      const res = await request(base, 'GET', '/me', { token: alice.token });
      expect(res.status).to.equal(200);
      expect(res.body).to.have.all.keys('user');
      expect(res.body.user).to.have.all.keys('id', 'email', 'displayName', 'createdAt');
      expect(res.body.user).to.deep.equal(alice.user);
      expectNoSecrets(res.text, alice.password);
    });

    it('When there is no Authorization header, then 401 UNAUTHORIZED', async function () {
      await expectUnauthorized({});
    });

    it('When the Authorization header is not a Bearer token, then 401 UNAUTHORIZED', async function () {
      await expectUnauthorized({ authorization: `Basic ${Buffer.from(`${alice.email}:${alice.password}`).toString('base64')}` });
      await expectUnauthorized({ authorization: 'Bearer' });
      await expectUnauthorized({ authorization: alice.token });
    });

    it('When the token is garbage or tampered with, then 401 UNAUTHORIZED', async function () {
      await expectUnauthorized({ authorization: 'Bearer not.a.jwt' });
      const [header, , signature] = alice.token.split('.');
      const otherPayload = Buffer.from(JSON.stringify({ sub: randomUUID(), exp: Math.floor(Date.now() / 1000) + 3600 })).toString('base64url');
      await expectUnauthorized({ authorization: `Bearer ${header}.${otherPayload}.${signature}` });
    });

    it('When the token has expired, then 401 UNAUTHORIZED', async function () {
      const expired = signToken(secret, alice.user.id, { exp: Math.floor(Date.now() / 1000) - 60 });
      await expectUnauthorized({ authorization: `Bearer ${expired}` });
      // The same claims, unexpired, are accepted: the expiry alone made the difference.
      const fresh = signToken(secret, alice.user.id, { exp: Math.floor(Date.now() / 1000) + 60 });
      const ok = await request(base, 'GET', '/me', { token: fresh });
      expect(ok.status).to.equal(200);
    });

    it('When the token is signed with another secret, then 401 UNAUTHORIZED', async function () {
      const forged = signToken(`${secret}-but-not-quite`, alice.user.id);
      await expectUnauthorized({ authorization: `Bearer ${forged}` });
    });

    it('When the token is signed with another algorithm (HS512, or none), then 401 UNAUTHORIZED', async function () {
      const hs512 = signToken(secret, alice.user.id, {}, 'HS512');
      await expectUnauthorized({ authorization: `Bearer ${hs512}` });
      const none = signToken('', alice.user.id, {}, 'none');
      await expectUnauthorized({ authorization: `Bearer ${none}` });
    });

    it('When the token names a user id that does not exist, then 401 UNAUTHORIZED', async function () {
      const ghost = signToken(secret, randomUUID());
      await expectUnauthorized({ authorization: `Bearer ${ghost}` });
      const notAnId = signToken(secret, 'admin');
      await expectUnauthorized({ authorization: `Bearer ${notAnId}` });
      const noSub = signToken(secret, alice.user.id, { sub: undefined });
      await expectUnauthorized({ authorization: `Bearer ${noSub}` });
    });

    it('When a protected route other than /me is called without a valid token, then 401 UNAUTHORIZED', async function () {
      for (const [method, path] of [
        ['GET', '/workspaces'],
        ['POST', '/workspaces'],
        ['GET', `/workspaces/${randomUUID()}`],
        ['GET', `/channels/${randomUUID()}`],
        ['POST', `/channels/${randomUUID()}/join`],
      ] as const) {
        const res = await request(base, method, path, { body: method === 'POST' ? { name: 'x' } : undefined });
        expect(res.status, `${method} ${path}`).to.equal(401);
        expect(res.body.error.code).to.equal('UNAUTHORIZED');
      }
    });
  });
});

// A node of its own, started last: Objection's models follow the knex of the node created last
// (test/support/api.ts), so a second node inside the suite above would leave them on a stopped pool.
describe('REST auth at the default password hashing cost', function () {
  it('When a node runs the default BCRYPT_ROUNDS (the suite runs 4), then a password is stored at cost 10, and it alone logs in', async function () {
    const defaults = await startApi({ BCRYPT_ROUNDS: undefined });
    try {
      expect(defaults.config.bcryptRounds).to.equal(10);
      const user = await registerUser(defaults.baseUrl);
      const stored = await User.query().findById(user.user.id);
      expect(stored?.passwordHash).to.match(/^\$2b\$10\$/);
      const right = await request(defaults.baseUrl, 'POST', '/auth/login', { body: { email: user.email, password: user.password } });
      expect(right.status, right.text).to.equal(200);
      const wrong = await request(defaults.baseUrl, 'POST', '/auth/login', { body: { email: user.email, password: `${user.password}x` } });
      expect(wrong.status).to.equal(401);
    } finally {
      await defaults.stop();
    }
  });
});
