import { expect } from 'chai';
import { ConfigError, loadConfig } from '../../shared/config.js';
import { createChannel, createWorkspace, registerUser, request, startApi, unique, type StartedApi } from '../support/api.js';

/** What helmet's defaults put on a response. */
function expectSecurityHeaders(headers: Headers, what: string): void {
  expect(headers.get('x-content-type-options'), what).to.equal('nosniff');
  expect(headers.get('x-frame-options'), what).to.equal('SAMEORIGIN');
  expect(headers.get('content-security-policy'), what).to.include("default-src 'self'");
  expect(headers.get('strict-transport-security'), what).to.match(/max-age=\d+/);
  expect(headers.get('referrer-policy'), what).to.equal('no-referrer');
  expect(headers.get('cross-origin-opener-policy'), what).to.equal('same-origin');
  expect(headers.get('x-powered-by'), what).to.equal(null);
}

const POLLING_HANDSHAKE = '/socket.io/?EIO=4&transport=polling';

describe('hardening: security headers, same-origin CORS and forbidden JSON keys (default configuration)', function () {
  let api: StartedApi;
  let base: string;

  before(async function () {
    api = await startApi();
    base = api.baseUrl;
  });

  after(async function () {
    await api?.stop();
  });

  describe('security headers', function () {
    it('When any response is sent (health, API success, API error, unknown route, malformed JSON, headers too large), then it carries the helmet headers and no X-Powered-By', async function () {
      const user = await registerUser(base);
      const answers = {
        health: await request(base, 'GET', '/health/live'),
        me: await request(base, 'GET', '/me', { token: user.token }),
        unauthorized: await request(base, 'GET', '/me'),
        unknown: await request(base, 'GET', '/nope'),
        malformed: await request(base, 'POST', '/auth/register', { rawBody: '{"email":' }),
        // Refused by Node's HTTP parser, before Express: headers over 16 KB.
        headersTooLarge: await request(base, 'GET', '/me', { token: user.token, headers: { 'x-padding': 'h'.repeat(17 * 1024) } }),
      };
      expect(answers.me.status).to.equal(200);
      expect(answers.unauthorized.status).to.equal(401);
      expect(answers.malformed.status).to.equal(400);
      expect(answers.headersTooLarge.status).to.equal(413);
      for (const [what, res] of Object.entries(answers)) expectSecurityHeaders(res.headers, what);
    });

    it("When Socket.IO answers a polling handshake, then it carries the same helmet headers", async function () {
      const res = await fetch(base + POLLING_HANDSHAKE);
      await res.text();
      expect(res.status).to.equal(200);
      expectSecurityHeaders(res.headers, 'socket.io polling');
    });
  });

  describe('CORS without CORS_ORIGINS', function () {
    it('When a browser on another origin calls the API, then no Access-Control-Allow-Origin header is sent', async function () {
      const res = await request(base, 'GET', '/health/live', { headers: { origin: 'https://evil.example' } });
      expect(res.status).to.equal(200);
      expect(res.headers.get('access-control-allow-origin')).to.equal(null);
      const sio = await fetch(base + POLLING_HANDSHAKE, { headers: { origin: 'https://evil.example' } });
      await sio.text();
      expect(sio.headers.get('access-control-allow-origin')).to.equal(null);
    });

    it('When a browser on another origin sends a preflight, then it gets no Access-Control-* headers', async function () {
      const res = await fetch(`${base}/api/v1/workspaces`, {
        method: 'OPTIONS',
        headers: { origin: 'https://evil.example', 'access-control-request-method': 'POST', 'access-control-request-headers': 'authorization' },
      });
      await res.text();
      expect(res.headers.get('access-control-allow-origin')).to.equal(null);
      expect(res.headers.get('access-control-allow-methods')).to.equal(null);
    });
  });

  describe('forbidden keys in REST bodies', function () {
    for (const key of ['__proto__', 'constructor', 'prototype']) {
      it(`When a register body has a top-level "${key}" key, then 400 VALIDATION_FAILED naming it, and no user is created`, async function () {
        const email = `${unique('proto-')}@example.test`;
        const raw = `{"email":"${email}","password":"long enough pw","displayName":"P","${key}":{"isAdmin":true}}`;
        const res = await request(base, 'POST', '/auth/register', { rawBody: raw });
        expect(res.status, res.text).to.equal(400);
        expect(res.body.error.code).to.equal('VALIDATION_FAILED');
        expect(res.body.error.details).to.deep.equal([{ field: key, message: `"${key}" is not allowed` }]);
        // Nothing was written: the same email registers now.
        const again = await request(base, 'POST', '/auth/register', { body: { email, password: 'long enough pw', displayName: 'P' } });
        expect(again.status, again.text).to.equal(201);
      });
    }

    it('When a workspace body has "__proto__" nested inside a field, then 400 VALIDATION_FAILED with its path, and no workspace is created', async function () {
      const user = await registerUser(base);
      const name = unique('proto-ws-');
      for (const raw of [
        `{"name":"${name}","__proto__":{"role":"owner"}}`,
        `{"name":{"__proto__":{"x":1}}}`,
        `{"name":"${name}","extra":[1,{"deep":{"constructor":{"prototype":{"polluted":true}}}}]}`,
      ]) {
        const res = await request(base, 'POST', '/workspaces', { token: user.token, rawBody: raw });
        expect(res.status, `${raw} → ${res.text}`).to.equal(400);
        expect(res.body.error.code).to.equal('VALIDATION_FAILED');
        expect(res.body.error.details[0].field).to.match(/(^|\.)(__proto__|constructor)$/);
      }
      const list = await request(base, 'GET', '/workspaces', { token: user.token });
      expect(list.body.workspaces).to.deep.equal([]);
      expect(({} as Record<string, unknown>).polluted).to.equal(undefined);
    });

    it('When a message body has "prototype" or "__proto__" at any depth, then 400 VALIDATION_FAILED and nothing is stored', async function () {
      const user = await registerUser(base);
      const workspace = await createWorkspace(base, user.token);
      const channel = await createChannel(base, user.token, workspace.id);
      for (const raw of [
        '{"body":"hi","clientMsgId":"p1","prototype":1}',
        '{"body":"hi","clientMsgId":"p2","meta":{"a":[{"__proto__":{"x":1}}]}}',
      ]) {
        const res = await request(base, 'POST', `/channels/${channel.id}/messages`, { token: user.token, rawBody: raw });
        expect(res.status, res.text).to.equal(400);
        expect(res.body.error.code).to.equal('VALIDATION_FAILED');
      }
      const history = await request(base, 'GET', `/channels/${channel.id}/messages`, { token: user.token });
      expect(history.body.messages).to.deep.equal([]);
    });

    it('When a body only has such words as values, then it is accepted', async function () {
      const user = await registerUser(base);
      const res = await request(base, 'POST', '/workspaces', { token: user.token, body: { name: '__proto__ constructor prototype' } });
      expect(res.status, res.text).to.equal(201);
    });
  });
});

describe('hardening: CORS allow-list (CORS_ORIGINS set)', function () {
  const ALLOWED = 'https://app.example';
  const ALSO_ALLOWED = 'http://localhost:5173';
  let api: StartedApi;
  let base: string;

  before(async function () {
    api = await startApi({ CORS_ORIGINS: ` ${ALLOWED}, ${ALSO_ALLOWED} ` });
    base = api.baseUrl;
  });

  after(async function () {
    await api?.stop();
  });

  it("When an allowed origin calls the API, then Access-Control-Allow-Origin is that origin, and the rate-limit headers and paged lists' Link are exposed", async function () {
    for (const origin of [ALLOWED, ALSO_ALLOWED]) {
      const res = await request(base, 'GET', '/health/live', { headers: { origin } });
      expect(res.status).to.equal(200);
      expect(res.headers.get('access-control-allow-origin')).to.equal(origin);
      expect(res.headers.get('vary')).to.match(/origin/i);
      expect(res.headers.get('access-control-expose-headers')).to.equal('Retry-After,RateLimit,RateLimit-Policy,Link');
      expectSecurityHeaders(res.headers, origin);
    }
  });

  it('When an origin that is not listed calls the API, then no Access-Control-Allow-Origin header is sent', async function () {
    for (const origin of ['https://evil.example', 'https://app.example.evil.example', 'http://app.example']) {
      const res = await request(base, 'GET', '/health/live', { headers: { origin } });
      expect(res.headers.get('access-control-allow-origin'), origin).to.equal(null);
    }
  });

  it('When an allowed origin sends a preflight for an authenticated POST, then 204 allows the method and headers', async function () {
    const res = await fetch(`${base}/api/v1/workspaces`, {
      method: 'OPTIONS',
      headers: { origin: ALLOWED, 'access-control-request-method': 'POST', 'access-control-request-headers': 'authorization,content-type' },
    });
    await res.text();
    expect(res.status).to.equal(204);
    expect(res.headers.get('access-control-allow-origin')).to.equal(ALLOWED);
    expect(res.headers.get('access-control-allow-methods')).to.include('POST');
    expect(res.headers.get('access-control-allow-headers')).to.equal('authorization,content-type');
  });

  it('When a disallowed origin sends a preflight, then it gets no Access-Control-Allow-Origin', async function () {
    const res = await fetch(`${base}/api/v1/workspaces`, {
      method: 'OPTIONS',
      headers: { origin: 'https://evil.example', 'access-control-request-method': 'POST' },
    });
    await res.text();
    expect(res.headers.get('access-control-allow-origin')).to.equal(null);
  });

  it("When Socket.IO's polling handshake comes from an allowed origin, then it is allowed; from another, it is not", async function () {
    const allowed = await fetch(base + POLLING_HANDSHAKE, { headers: { origin: ALLOWED } });
    await allowed.text();
    expect(allowed.headers.get('access-control-allow-origin')).to.equal(ALLOWED);
    const other = await fetch(base + POLLING_HANDSHAKE, { headers: { origin: 'https://evil.example' } });
    await other.text();
    expect(other.headers.get('access-control-allow-origin')).to.equal(null);
  });

  it('When CORS_ORIGINS holds something that is not an origin, then loadConfig refuses it naming CORS_ORIGINS; the parsed list is frozen', function () {
    for (const bad of ['app.example', 'https://app.example/', 'https://app.example/path', 'ftp://app.example', '*']) {
      expect(() => loadConfig({ CORS_ORIGINS: bad }), bad).to.throw(ConfigError, /CORS_ORIGINS/);
    }
    const config = loadConfig({ CORS_ORIGINS: `${ALLOWED},${ALLOWED}` });
    expect(config.cors.origins).to.deep.equal([ALLOWED]);
    expect(Object.isFrozen(config.cors.origins)).to.equal(true);
    expect(loadConfig({}).cors.origins).to.deep.equal([]);
  });
});
