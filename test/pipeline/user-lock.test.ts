import { expect } from 'chai';
import { loginUser, registerUser, request, startApi, unique, type RegisteredUser } from '../support/api.js';
import { watchSession } from '../support/sessions.js';
import { connect, connectError, sendOk, sleep, waitFor } from '../support/sockets.js';
import { fullHistory, seedChannel, seedTeam, useCluster } from './fixtures.js';

/**
 * An operator locks a user out (a stolen account, a person who left) with POST /admin/users/lock on any
 * front node: behind the operators' basic auth, it ends every session of the user on every node at once,
 * refuses their tokens and their password from then on, and leaves what they wrote in place. POST
 * /admin/users/password lets them back in (or resets a forgotten password) the same way.
 */
describe('pipeline: an operator locks a user out and lets them back in', function () {
  this.timeout(60_000);

  const ADMIN_USER = 'ops';
  const ADMIN_PASSWORD = 'correct-horse-battery-staple';
  const basic = (user: string, password: string) => `Basic ${Buffer.from(`${user}:${password}`).toString('base64')}`;
  let A: string;
  let B: string;
  useCluster('user-lock', (cluster) => ([A, B] = cluster.urls), { ADMIN_USER, ADMIN_PASSWORD });

  /** POST /admin/users/<action>; `authorization` null: none sent. */
  async function admin(url: string, action: 'lock' | 'password', body: unknown, authorization: string | null = basic(ADMIN_USER, ADMIN_PASSWORD)) {
    const res = await fetch(`${url}/admin/users/${action}`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', ...(authorization === null ? {} : { authorization }) },
      body: JSON.stringify(body),
    });
    const text = await res.text();
    return { status: res.status, text, body: text ? JSON.parse(text) : undefined, challenge: res.headers.get('www-authenticate') };
  }
  const lock = (url: string, body: unknown, authorization?: string | null) => admin(url, 'lock', body, authorization);

  const status = async (url: string, token: string) => (await request(url, 'GET', '/me', { token })).status;

  it("When an operator locks a user on node A, then the user's sockets on both nodes are told session:revoked and disconnected within a second, their tokens and password are refused on both nodes, their messages stay, and other users are untouched", async () => {
    const team = await seedTeam(A, 1);
    const [user] = team.members;
    const channel = await seedChannel(A, team, [user]);
    const second = await loginUser(B, user);
    const sockets = [await connect(A, user.token), await connect(B, second), await connect(B, user.token, { transport: 'polling' })];
    const watches = sockets.map(watchSession);
    const bystander = await connect(B, team.owner.token);
    const written = await sendOk(sockets[0], { channelId: channel.id, body: 'written before the lock', clientMsgId: unique() });

    const started = Date.now();
    const res = await lock(A, { email: `  ${user.email.toUpperCase()} ` });
    expect(res.status, res.text).to.equal(200);
    expect(res.body).to.deep.equal({ userId: user.user.id });
    await waitFor(() => watches.every((w) => w.disconnectedAt !== undefined), 1000, () => JSON.stringify(watches));
    for (const w of watches) {
      expect(w.revoked).to.deep.include({ code: 'UNAUTHORIZED' });
      expect(w.toldFirst, 'session:revoked before the disconnect').to.equal(true);
      expect(w.reason).to.equal('io server disconnect');
      expect(w.disconnectedAt! - started, 'disconnected within a second').to.be.below(1000);
    }

    for (const url of [A, B]) {
      for (const token of [user.token, second]) expect(await status(url, token), `a token on ${url}`).to.equal(401);
      expect((await connectError(url, { token: user.token })).message).to.equal('UNAUTHORIZED');
      const login = await request(url, 'POST', '/auth/login', { body: { email: user.email, password: user.password } });
      expect(login.status, `login on ${url}`).to.equal(401);
    }
    const history = await fullHistory(A, team.owner.token, channel.id);
    expect(history.map((m) => m.id)).to.deep.equal([written.id]);
    await sleep(200);
    expect(bystander.connected, "another user's socket").to.equal(true);
    expect(await status(B, team.owner.token)).to.equal(200);
  });

  it("When an operator sets a locked user's password, then the user logs in with it on both nodes and not with the old one, and a session opened before the reset ends", async () => {
    const user = await registerUser(A);
    expect((await lock(B, { email: user.email })).status).to.equal(200);
    const password = `back-in-${unique()}`;
    const reset = await admin(B, 'password', { email: user.email, password });
    expect(reset.status, reset.text).to.equal(200);
    expect(reset.body).to.deep.equal({ userId: user.user.id });
    const token = await loginUser(A, user, password);
    const socket = await connect(B, token);
    expect(await status(B, token)).to.equal(200);
    expect((await request(B, 'POST', '/auth/login', { body: { email: user.email, password: user.password } })).status, 'the old password').to.equal(401);

    // Forgotten again: the next reset ends the sessions opened since, as a password change does.
    const watch = watchSession(socket);
    expect((await admin(A, 'password', { email: user.email, password: `${password}-2` })).status).to.equal(200);
    await waitFor(() => watch.disconnectedAt !== undefined, 1000, () => JSON.stringify(watch));
    expect(watch.toldFirst, 'session:revoked before the disconnect').to.equal(true);
    for (const url of [A, B]) expect(await status(url, token), `the old session on ${url}`).to.equal(401);
    expect(await loginUser(B, user, `${password}-2`)).to.be.a('string');
  });

  it('When the credentials are missing or wrong, then both actions answer 401 with a Basic challenge and the user is untouched', async () => {
    const user = await registerUser(A);
    const socket = await connect(B, user.token);
    for (const authorization of [null, basic(ADMIN_USER, 'wrong-password-here'), basic('someone', ADMIN_PASSWORD), 'Bearer x']) {
      for (const [action, body] of [['lock', { email: user.email }], ['password', { email: user.email, password: 'taken over now' }]] as const) {
        const res = await admin(A, action, body, authorization);
        expect(res.status, `${action} ${authorization}`).to.equal(401);
        expect(res.body.error.code).to.equal('UNAUTHORIZED');
        expect(res.challenge).to.equal('Basic realm="users", charset="UTF-8"');
      }
    }
    await sleep(200);
    expect(socket.connected).to.equal(true);
    expect(await status(A, user.token)).to.equal(200);
    expect(await loginUser(A, user)).to.be.a('string');
  });

  it('When the body is not an email or names nobody, then 400 VALIDATION_FAILED or 404 NOT_FOUND, and nobody is locked', async () => {
    const user: RegisteredUser = await registerUser(A);
    const bad: Array<['lock' | 'password', unknown]> = [
      ['lock', {}],
      ['lock', { email: 42 }],
      ['lock', { email: 'x'.repeat(255) }],
      ['lock', { email: user.email, extra: true }],
      ['password', { email: user.email }],
      ['password', { email: user.email, password: 'short' }],
      ['password', { email: user.email, password: 'x'.repeat(129) }],
    ];
    for (const [action, body] of bad) {
      const res = await admin(B, action, body);
      expect(res.status, `${action} ${JSON.stringify(body)}`).to.equal(400);
      expect(res.body.error.code).to.equal('VALIDATION_FAILED');
    }
    for (const [action, body] of [['lock', {}], ['password', { password: 'long enough' }]] as const) {
      const unknown = await admin(B, action, { ...body, email: `nobody-${unique()}@example.com` });
      expect(unknown.status, action).to.equal(404);
      expect(unknown.body.error.code).to.equal('NOT_FOUND');
    }
    expect(await status(A, user.token)).to.equal(200);
    expect(await loginUser(B, user)).to.be.a('string');
  });

  it('When ADMIN_USER and ADMIN_PASSWORD are not set, then /admin/users/lock and /admin/users/password are 404, with or without credentials', async () => {
    const api = await startApi({ ADMIN_USER: undefined, ADMIN_PASSWORD: undefined });
    try {
      for (const authorization of [null, basic(ADMIN_USER, ADMIN_PASSWORD)]) {
        expect((await lock(api.baseUrl, { email: 'a@example.com' }, authorization)).status).to.equal(404);
        expect((await admin(api.baseUrl, 'password', { email: 'a@example.com', password: 'long enough' }, authorization)).status).to.equal(404);
      }
    } finally {
      await api.stop();
    }
  });
});
