import { expect } from 'chai';
import { loadConfig } from '../../shared/config.js';
import { loginUser, registerUser, request, unique, type RegisteredUser } from '../support/api.js';
import { watchSession, type SessionWatch } from '../support/sessions.js';
import { connect, connectError, sleep, waitFor, type ClientSocket } from '../support/sockets.js';
import { signToken } from '../support/tokens.js';
import { useCluster } from './fixtures.js';

/**
 * Revocation reaches every front node: a logout or password change on node A ends the sockets on node B
 * within a second, and node B never lets a revoked token through.
 */
describe('pipeline: sessions and tokens across nodes', function () {
  this.timeout(60_000);

  let A: string;
  let B: string;
  const secret = () => loadConfig(process.env).jwt.secret;
  useCluster('sessions', (cluster) => ([A, B] = cluster.urls));

  async function status(url: string, token: string): Promise<number> {
    return (await request(url, 'GET', '/me', { token })).status;
  }

  function expectEnded(watches: SessionWatch[], started: number): void {
    for (const w of watches) {
      expect(w.revoked, 'session:revoked').to.deep.include({ code: 'UNAUTHORIZED' });
      expect(w.toldFirst, 'session:revoked before the disconnect').to.equal(true);
      expect(w.reason).to.equal('io server disconnect');
      expect(w.disconnectedAt! - started, 'disconnected within a second').to.be.below(1000);
    }
  }

  it("When a token logs out on node A, then its sockets on A and B are disconnected within a second, and the user's sockets with another token stay connected", async () => {
    const user = await registerUser(A);
    const other = await loginUser(B, user);
    const revokedSockets = [await connect(A, user.token), await connect(B, user.token), await connect(B, user.token, { transport: 'polling' })];
    const kept = [await connect(A, other), await connect(B, other)];
    const watches = revokedSockets.map(watchSession);
    const keptWatches = kept.map(watchSession);
    // Both nodes have the user in their cache.
    expect(await status(A, user.token)).to.equal(200);
    expect(await status(B, user.token)).to.equal(200);

    const started = Date.now();
    expect((await request(A, 'POST', '/auth/logout', { token: user.token })).status).to.equal(204);
    await waitFor(() => watches.every((w) => w.disconnectedAt !== undefined), 1000, () => JSON.stringify(watches));
    expectEnded(watches, started);

    expect(await status(A, user.token)).to.equal(401);
    expect(await status(B, user.token)).to.equal(401);
    for (const url of [A, B]) expect((await connectError(url, { token: user.token })).message).to.equal('UNAUTHORIZED');
    await sleep(300);
    for (const [i, s] of kept.entries()) {
      expect(s.connected, `kept socket #${i}`).to.equal(true);
      expect(keptWatches[i].revoked).to.equal(undefined);
    }
    expect(await status(A, other)).to.equal(200);
    expect(await status(B, other)).to.equal(200);
  });

  it("When the password is changed on node A, then all the user's sockets on both nodes are disconnected within a second, every older token answers 401 on both nodes at once, and the new token works on both", async () => {
    const user = await registerUser(A);
    const second = await loginUser(B, user);
    const sockets: ClientSocket[] = [
      await connect(A, user.token),
      await connect(B, user.token),
      await connect(A, second),
      await connect(B, second, { transport: 'polling' }),
    ];
    const watches = sockets.map(watchSession);
    for (const url of [A, B]) for (const token of [user.token, second]) expect(await status(url, token)).to.equal(200);

    const started = Date.now();
    const newPassword = `new-${unique()}`;
    const res = await request(A, 'POST', '/auth/password', { token: user.token, body: { currentPassword: user.password, newPassword } });
    expect(res.status, res.text).to.equal(200);
    for (const url of [A, B]) {
      for (const token of [user.token, second]) expect(await status(url, token), `old token on ${url}`).to.equal(401);
      expect(await status(url, res.body.token), `new token on ${url}`).to.equal(200);
    }
    await waitFor(() => watches.every((w) => w.disconnectedAt !== undefined), 1000, () => JSON.stringify(watches));
    expectEnded(watches, started);

    for (const url of [A, B]) {
      expect((await connectError(url, { token: second })).message).to.equal('UNAUTHORIZED');
      const fresh = await connect(url, res.body.token);
      expect(fresh.connected).to.equal(true);
    }
    // A login on node B right after the change gets a working token, on both nodes.
    const later = await loginUser(B, user, newPassword);
    for (const url of [A, B]) expect(await status(url, later)).to.equal(200);
  });

  it('When a socket’s token expires while it is connected (node B), then it gets session:revoked and is disconnected at expiry', async () => {
    const user = await registerUser(A);
    const exp = Math.floor(Date.now() / 1000) + 2;
    const socket = await connect(B, signToken(secret(), user.user.id, { exp }));
    const watch = watchSession(socket);
    await waitFor(() => watch.disconnectedAt !== undefined, 4000);
    expect(watch.revoked).to.deep.include({ code: 'UNAUTHORIZED' });
    expect(watch.toldFirst).to.equal(true);
    expect(watch.disconnectedAt!).to.be.within(exp * 1000 - 50, exp * 1000 + 700);
  });

  it('When tokens lack exp, have a wrong iss or aud, or use HS512 or alg none, then both nodes answer 401 UNAUTHORIZED and connect_error UNAUTHORIZED', async () => {
    const user = await registerUser(A);
    const id = user.user.id;
    const tokens: Record<string, string> = {
      'no exp': signToken(secret(), id, { exp: undefined }),
      'wrong iss': signToken(secret(), id, { iss: 'someone-else' }),
      'wrong aud': signToken(secret(), id, { aud: 'another-api' }),
      'no jti': signToken(secret(), id, { jti: undefined }),
      HS512: signToken(secret(), id, {}, 'HS512'),
      none: signToken('', id, {}, 'none'),
    };
    for (const url of [A, B]) {
      for (const [what, token] of Object.entries(tokens)) {
        const res = await request(url, 'GET', '/me', { token });
        expect(res.status, `${what} on ${url}`).to.equal(401);
        expect(res.body.error.code).to.equal('UNAUTHORIZED');
        expect((await connectError(url, { token })).message, `${what} on ${url}`).to.equal('UNAUTHORIZED');
      }
    }
    // The same claims, properly signed, pass on both nodes: each refusal above is about its one difference.
    for (const url of [A, B]) expect(await status(url, signToken(secret(), id))).to.equal(200);
  });
});
