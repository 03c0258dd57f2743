/**
 * Rotating JWT_SECRET without logging everyone out (docs/OPERATIONS.md, "Rotating JWT_SECRET"): front nodes
 * in each step of the rotation, side by side on one database and Redis, as during a rolling restart.
 */
import { randomBytes } from 'node:crypto';
import { expect } from 'chai';
import jwt from 'jsonwebtoken';
import { loginUser, registerUser, request, startApi, type StartedApi } from '../support/api.js';
import { connect, connectError, disconnectAll, TRANSPORTS } from '../support/sockets.js';
import { signToken } from '../support/tokens.js';

describe('Rotating JWT_SECRET (REST and sockets, front nodes in each step)', function () {
  const OLD = randomBytes(32).toString('hex');
  const NEW = randomBytes(32).toString('hex');
  /** Not yet rotating: signs and verifies with the old secret only. */
  let unrotated: StartedApi;
  /** Step 1: still signs with the old secret, already accepts the new one. */
  let step1: StartedApi;
  /** Step 2: signs with the new secret, still accepts the old one. */
  let step2: StartedApi;
  /** Step 3: the old secret dropped. */
  let rotated: StartedApi;
  let credentials: { email: string; password: string };
  let userId: string;
  let oldToken: string;
  let newToken: string;

  async function expectMe(api: StartedApi, token: string, status: 200 | 401, what: string): Promise<void> {
    const res = await request(api.baseUrl, 'GET', '/me', { token });
    expect(res.status, `${what}: ${res.text}`).to.equal(status);
    if (status === 200) expect(res.body.id ?? res.body.user?.id).to.equal(userId);
    else expect(res.body.error.code).to.equal('UNAUTHORIZED');
  }

  before(async function () {
    unrotated = await startApi({ JWT_SECRET: OLD });
    step1 = await startApi({ JWT_SECRET: OLD, JWT_VERIFY_SECRETS: NEW });
    step2 = await startApi({ JWT_SECRET: NEW, JWT_VERIFY_SECRETS: OLD });
    rotated = await startApi({ JWT_SECRET: NEW });
    const user = await registerUser(unrotated.baseUrl);
    credentials = { email: user.email, password: user.password };
    userId = user.user.id;
    oldToken = user.token;
    newToken = await loginUser(step2.baseUrl, credentials);
  });

  afterEach(function () {
    disconnectAll();
  });

  after(async function () {
    disconnectAll();
    for (const api of [unrotated, step1, step2, rotated]) await api?.stop();
  });

  it('When a node signs with the new secret and lists the old one in JWT_VERIFY_SECRETS, then its logins are signed with the new secret only, and step 1 still signs with the old one', async function () {
    expect(() => jwt.verify(newToken, NEW, { algorithms: ['HS256'] })).not.to.throw();
    expect(() => jwt.verify(newToken, OLD, { algorithms: ['HS256'] })).to.throw(jwt.JsonWebTokenError);
    const fromStep1 = await loginUser(step1.baseUrl, credentials);
    expect(() => jwt.verify(fromStep1, OLD, { algorithms: ['HS256'] }), 'step 1 still signs with the old secret').not.to.throw();
  });

  it('When nodes are in steps 1 and 2 at once, then a token issued before the rotation or by either step opens REST and sockets on both, over every transport', async function () {
    const step1Token = await loginUser(step1.baseUrl, credentials);
    for (const api of [step1, step2]) {
      for (const [what, token] of [['token from before the rotation', oldToken], ['token from step 1', step1Token], ['token from step 2', newToken]]) {
        await expectMe(api, token, 200, what);
        for (const transport of TRANSPORTS) {
          const socket = await connect(api.baseUrl, token, { transport });
          expect(socket.connected, `${what} over ${transport}`).to.equal(true);
          socket.close();
        }
      }
    }
  });

  it('When a node has not started the rotation, then it refuses tokens of the new secret: why every node takes step 1 before any takes step 2', async function () {
    await expectMe(unrotated, oldToken, 200, 'token from before the rotation');
    await expectMe(unrotated, newToken, 401, 'token from step 2');
    expect((await connectError(unrotated.baseUrl, { token: newToken })).message).to.equal('UNAUTHORIZED');
  });

  it('When the old secret is dropped, then its tokens get 401 UNAUTHORIZED and sockets connect_error UNAUTHORIZED, and the new secret opens both', async function () {
    await expectMe(rotated, oldToken, 401, 'token of the dropped secret');
    for (const transport of TRANSPORTS) {
      expect((await connectError(rotated.baseUrl, { token: oldToken }, { transport })).message, transport).to.equal('UNAUTHORIZED');
    }
    await expectMe(rotated, newToken, 200, 'token of the new secret');
    expect((await connect(rotated.baseUrl, newToken)).connected).to.equal(true);
  });

  it('When a token is signed with an accepted secret but not as the server signs (HS512, none), or with a secret in neither list, then every step refuses it', async function () {
    const refused: Array<[string, string]> = [
      ['HS512 with the old secret', signToken(OLD, userId, {}, 'HS512')],
      ['HS512 with the new secret', signToken(NEW, userId, {}, 'HS512')],
      ['alg none', signToken('', userId, {}, 'none')],
      ['an unknown secret', signToken(randomBytes(32).toString('hex'), userId)],
      ['the old secret with the signature of the new', `${oldToken.slice(0, oldToken.lastIndexOf('.'))}.${newToken.slice(newToken.lastIndexOf('.') + 1)}`],
    ];
    for (const api of [step1, step2]) {
      for (const [what, token] of refused) {
        await expectMe(api, token, 401, what);
        expect((await connectError(api.baseUrl, { token })).message, what).to.equal('UNAUTHORIZED');
      }
    }
    // What the server itself signs, with either secret, passes: the refusals above are the token's doing.
    await expectMe(step2, signToken(OLD, userId), 200, 'HS256 with the old secret');
    await expectMe(step1, signToken(NEW, userId), 200, 'HS256 with the new secret');
  });
});
