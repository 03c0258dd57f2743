import { expect } from 'chai';
import { connect as connectTcp, createServer } from 'node:net';
import { randomUUID } from 'node:crypto';
import { routeGroups } from '../../server/http/docs.js';
import {
  addChannelMember,
  addWorkspaceMember,
  createChannel,
  createWorkspace,
  registerUser,
  request,
  startApi,
  type ApiResponse,
  type RegisteredUser,
  type StartedApi,
} from '../support/api.js';

const KB = 1024;

/** Every error, everywhere: {error:{code,message,details?}} and nothing else. */
function expectErrorShape(res: ApiResponse, status: number, code: string): void {
  expect(res.status, res.text).to.equal(status);
  expect(res.headers.get('content-type')).to.match(/^application\/json/);
  expect(res.body).to.be.an('object').that.has.all.keys('error');
  const keys = Object.keys(res.body.error).sort();
  expect(keys.filter((k) => k !== 'details')).to.deep.equal(['code', 'message']);
  expect(res.body.error.code).to.equal(code);
  expect(res.body.error.message).to.be.a('string').and.not.empty;
}

/** A TCP port nothing listens on (taken, then released). */
async function closedPort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as { port: number };
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

/**
 * What a server sent on one raw TCP connection until it closed it: `parts[0]` is written first, each next
 * one once the answer to the one before has arrived whole (keep-alive, not pipelined).
 */
async function rawExchange(baseUrl: string, parts: string[]): Promise<string> {
  const { hostname, port } = new URL(baseUrl);
  return new Promise((resolve, reject) => {
    let written = 0;
    const socket = connectTcp(Number(port), hostname, () => socket.write(parts[written++]));
    const chunks: Buffer[] = [];
    const timer = setTimeout(() => {
      socket.destroy();
      reject(new Error(`the server did not close the connection; it sent: ${Buffer.concat(chunks).toString()}`));
    }, 5000);
    socket.on('data', (chunk) => {
      chunks.push(chunk);
      if (written < parts.length && completeResponses(Buffer.concat(chunks).toString()) === written) socket.write(parts[written++]);
    });
    socket.on('error', reject);
    socket.on('close', () => {
      clearTimeout(timer);
      resolve(Buffer.concat(chunks).toString());
    });
  });
}

/** One HTTP/1.1 response out of raw bytes (undefined until its head and body are all there), and what follows it. */
function splitRawResponse(raw: string): { res: ApiResponse; rest: string } | undefined {
  const headEnd = raw.indexOf('\r\n\r\n');
  if (headEnd < 0) return undefined;
  const [statusLine, ...lines] = raw.slice(0, headEnd).split('\r\n');
  const headers = new Headers(lines.map((l) => [l.slice(0, l.indexOf(':')), l.slice(l.indexOf(':') + 1).trim()] as [string, string]));
  const length = Number(headers.get('content-length') ?? 0);
  if (raw.length < headEnd + 4 + length) return undefined;
  const text = raw.slice(headEnd + 4, headEnd + 4 + length);
  return {
    res: { status: Number(statusLine.split(' ')[1]), headers, text, body: text ? JSON.parse(text) : undefined },
    rest: raw.slice(headEnd + 4 + length),
  };
}

function completeResponses(raw: string): number {
  let n = 0;
  for (let next = splitRawResponse(raw); next; next = splitRawResponse(next.rest)) n++;
  return n;
}

function parseRawResponse(raw: string): { res: ApiResponse; rest: string } {
  const parsed = splitRawResponse(raw);
  expect(parsed, `a whole HTTP response in ${JSON.stringify(raw)}`).to.not.equal(undefined);
  return parsed!;
}

describe('REST errors and health', function () {
  let api: StartedApi;
  let base: string;
  let user: RegisteredUser;

  before(async function () {
    api = await startApi();
    base = api.baseUrl;
    user = await registerUser(base);
  });

  after(async function () {
    await api?.stop();
  });

  describe('unknown routes', function () {
    it('When an authenticated caller hits an unknown /api/v1 route, then 404 NOT_FOUND with the error shape', async function () {
      expectErrorShape(await request(base, 'GET', '/api/v1/nope', { token: user.token }), 404, 'NOT_FOUND');
      expectErrorShape(await request(base, 'POST', '/api/v1/workspaces/x/y/z', { token: user.token, body: {} }), 404, 'NOT_FOUND');
    });

    it('When a known path is called with a method it does not support, then 404 NOT_FOUND', async function () {
      expectErrorShape(await request(base, 'PUT', '/api/v1/workspaces', { token: user.token, body: { name: 'x' } }), 404, 'NOT_FOUND');
      expectErrorShape(await request(base, 'DELETE', '/api/v1/me', { token: user.token }), 404, 'NOT_FOUND');
    });

    it('When a path outside /api/v1 is requested, then 404 NOT_FOUND with the error shape, without auth', async function () {
      for (const path of ['/', '/nope', '/api/v2/workspaces', '/api/workspaces', '/health', '/health/unknown']) {
        const raw = await fetch(base + path);
        const text = await raw.text();
        const res = { status: raw.status, headers: raw.headers, text, body: JSON.parse(text) };
        expectErrorShape(res, 404, 'NOT_FOUND');
      }
    });
  });

  describe('request bodies', function () {
    it('When the JSON is malformed, then 400 VALIDATION_FAILED on a public route', async function () {
      const res = await request(base, 'POST', '/auth/register', { rawBody: '{"email": "a@b.c", "password": ' });
      expectErrorShape(res, 400, 'VALIDATION_FAILED');
    });

    it('When the JSON is malformed, then 400 VALIDATION_FAILED on an authenticated route', async function () {
      for (const raw of ['{name: "unquoted"}', "{'name': 'single'}", '{"name": "x",}', 'not json at all']) {
        const res = await request(base, 'POST', '/workspaces', { token: user.token, rawBody: raw });
        expectErrorShape(res, 400, 'VALIDATION_FAILED');
      }
    });

    it('When the body is JSON but not an object (a string, a number, null), then 400 VALIDATION_FAILED', async function () {
      for (const raw of ['"just a string"', '42', 'null', '[]']) {
        const res = await request(base, 'POST', '/workspaces', { token: user.token, rawBody: raw });
        expectErrorShape(res, 400, 'VALIDATION_FAILED');
      }
    });

    it('When the body is larger than 64 KB, then 413 PAYLOAD_TOO_LARGE', async function () {
      const padding = 'x'.repeat(64 * KB);
      const raw = JSON.stringify({ name: padding });
      expect(Buffer.byteLength(raw)).to.be.above(64 * KB);
      expectErrorShape(await request(base, 'POST', '/workspaces', { token: user.token, rawBody: raw }), 413, 'PAYLOAD_TOO_LARGE');
      expectErrorShape(
        await request(base, 'POST', '/auth/register', { rawBody: JSON.stringify({ email: 'a@b.c', password: padding, displayName: 'x' }) }),
        413,
        'PAYLOAD_TOO_LARGE',
      );
    });

    it('When the body is one byte over 64 KB, then 413; at exactly 64 KB it is parsed (and here rejected as invalid, 400)', async function () {
      const exact = (bytes: number) => {
        const shell = JSON.stringify({ name: '' });
        return JSON.stringify({ name: 'y'.repeat(bytes - Buffer.byteLength(shell)) });
      };
      const atLimit = exact(64 * KB);
      const overLimit = exact(64 * KB + 1);
      expect(Buffer.byteLength(atLimit)).to.equal(64 * KB);
      expect(Buffer.byteLength(overLimit)).to.equal(64 * KB + 1);
      expectErrorShape(await request(base, 'POST', '/workspaces', { token: user.token, rawBody: overLimit }), 413, 'PAYLOAD_TOO_LARGE');
      expectErrorShape(await request(base, 'POST', '/workspaces', { token: user.token, rawBody: atLimit }), 400, 'VALIDATION_FAILED');
    });

    it('When a body larger than 64 KB is sent without a token, then 413 PAYLOAD_TOO_LARGE before authentication', async function () {
      const raw = JSON.stringify({ name: 'z'.repeat(1024 * KB) });
      expectErrorShape(await request(base, 'POST', '/workspaces', { rawBody: raw }), 413, 'PAYLOAD_TOO_LARGE');
      expectErrorShape(await request(base, 'POST', '/auth/login', { rawBody: raw }), 413, 'PAYLOAD_TOO_LARGE');
    });

    it('When the body is not declared as JSON, then it is not parsed and the request fails validation with 400', async function () {
      const res = await request(base, 'POST', '/workspaces', {
        token: user.token,
        rawBody: JSON.stringify({ name: 'Plain text' }),
        headers: { 'content-type': 'text/plain' },
      });
      expectErrorShape(res, 400, 'VALIDATION_FAILED');
    });

    it('When a write route that takes no body gets one, then 400 VALIDATION_FAILED naming the field, and nothing happened (every such route of the API reference)', async function () {
      const ws = await createWorkspace(base, user.token);
      const ch = await createChannel(base, user.token, ws.id);
      const other = await registerUser(base);
      await addWorkspaceMember(base, user.token, ws.id, other.email);
      await addChannelMember(base, user.token, ch.id, other.user.id);
      const params: Record<string, string> = { workspaceId: ws.id, channelId: ch.id, userId: other.user.id };
      const bodyless = routeGroups('').flatMap((g) => g.routes).filter((r) => r.method !== 'get' && !r.body);
      expect(bodyless.length, 'the API reference lists the routes that take no body').to.be.at.least(8);
      for (const route of bodyless) {
        const path = route.path.replace(/:(\w+)/g, (_, name: string) => params[name] ?? `unknown-${name}`);
        const res = await request(base, route.method.toUpperCase() as 'POST' | 'DELETE', path, { token: user.token, body: { bogus: true } });
        expectErrorShape(res, 400, 'VALIDATION_FAILED');
        expect(JSON.stringify(res.body.error), `${route.method} ${route.path}`).to.include('bogus');
      }
      // Still signed in, still both members of both, the channel not archived.
      const members = await request(base, 'GET', `/workspaces/${ws.id}/members`, { token: user.token });
      expect(members.body.members.map((m: { userId: string }) => m.userId)).to.have.members([user.user.id, other.user.id]);
      const channelMembers = await request(base, 'GET', `/channels/${ch.id}/members`, { token: user.token });
      expect(channelMembers.body.members.map((m: { userId: string }) => m.userId)).to.have.members([user.user.id, other.user.id]);
      expect((await request(base, 'GET', `/channels/${ch.id}`, { token: user.token })).body.channel.archived).to.equal(false);
    });

    it('When any write route gets an unknown body field, then 400 VALIDATION_FAILED naming the field', async function () {
      const ws = await createWorkspace(base, user.token);
      const ch = await createChannel(base, user.token, ws.id);
      const other = await registerUser(base);
      const cases: Array<[string, string | undefined, Record<string, unknown>]> = [
        ['/auth/register', undefined, { email: `${randomUUID()}@example.test`, password: 'password123', displayName: 'X', extra: 1 }],
        ['/auth/login', undefined, { email: user.email, password: user.password, extra: 1 }],
        ['/workspaces', user.token, { name: 'W', extra: 1 }],
        [`/workspaces/${ws.id}/members`, user.token, { email: other.email, extra: 1 }],
        [`/workspaces/${ws.id}/channels`, user.token, { name: 'fine-name', extra: 1 }],
        [`/channels/${ch.id}/members`, user.token, { userId: user.user.id, extra: 1 }],
      ];
      for (const [path, token, body] of cases) {
        const res = await request(base, 'POST', path, { token, body });
        expectErrorShape(res, 400, 'VALIDATION_FAILED');
        expect(JSON.stringify(res.body.error), path).to.include('extra');
      }
    });
  });

  describe("requests Node's HTTP parser refuses, before any route", function () {
    it('When the request line and headers are over 16 KB (a long URL, a long header), then 413 PAYLOAD_TOO_LARGE with the error shape', async function () {
      const longUrl = await request(base, 'GET', `/me?q=${'u'.repeat(17 * KB)}`, { token: user.token });
      const longHeader = await request(base, 'GET', '/me', { token: user.token, headers: { 'x-padding': 'h'.repeat(17 * KB) } });
      for (const res of [longUrl, longHeader]) {
        expectErrorShape(res, 413, 'PAYLOAD_TOO_LARGE');
        expect(res.body.error.message).to.include('16 KB');
      }
      // Below the limit the same request is answered by its route.
      const under = await request(base, 'GET', '/me', { token: user.token, headers: { 'x-padding': 'h'.repeat(14 * KB) } });
      expect(under.status, under.text).to.equal(200);
    });

    it('When the bytes are not a valid HTTP request, then 400 VALIDATION_FAILED with the error shape, and the connection is closed', async function () {
      for (const bytes of ['GET /health/live HTTP/1.1\r\nHost: x\r\nno colon in this header\r\n\r\n', 'HELLO\r\n\r\n', 'GET /health/live HTTP/9.9\r\n\r\n']) {
        const { res, rest } = parseRawResponse(await rawExchange(base, [bytes]));
        expectErrorShape(res, 400, 'VALIDATION_FAILED');
        expect(res.headers.get('connection'), JSON.stringify(bytes)).to.equal('close');
        expect(rest, JSON.stringify(bytes)).to.equal('');
      }
    });

    it('When a keep-alive connection sends a valid request and then an invalid one, then the first answer arrives whole and the second is 400 VALIDATION_FAILED', async function () {
      const raw = await rawExchange(base, ['GET /health/live HTTP/1.1\r\nHost: x\r\n\r\n', 'GET /health/live HTTP/1.1\r\nHost x\r\n\r\n']);
      const first = parseRawResponse(raw);
      expect(first.res.status, raw).to.equal(200);
      expect(first.res.body).to.deep.equal({ status: 'ok' });
      const second = parseRawResponse(first.rest);
      expectErrorShape(second.res, 400, 'VALIDATION_FAILED');
      expect(second.rest).to.equal('');
    });
  });

  describe('health', function () {
    it('When /health/live is requested without auth, then 200 {status:"ok"} exactly', async function () {
      const res = await request(base, 'GET', '/health/live');
      expect(res.status).to.equal(200);
      expect(res.body).to.deep.equal({ status: 'ok' });
    });

    it('When /health/ready is requested without auth and PostgreSQL and Redis answer, then 200 {status:"ok"} exactly', async function () {
      const res = await request(base, 'GET', '/health/ready');
      expect(res.status).to.equal(200);
      expect(res.body).to.deep.equal({ status: 'ok' });
    });

    it('When the health endpoints are requested with a bad token, then they still answer 200', async function () {
      for (const path of ['/health/live', '/health/ready']) {
        const res = await request(base, 'GET', path, { token: 'garbage' });
        expect(res.status, path).to.equal(200);
      }
    });
  });
});

describe('REST errors when PostgreSQL is unreachable', function () {
  let api: StartedApi;
  let base: string;

  before(async function () {
    const port = await closedPort();
    api = await startApi({ DATABASE_URL: `postgres://postgres@127.0.0.1:${port}/unreachable` });
    base = api.baseUrl;
  });

  after(async function () {
    await api?.stop();
  });

  it('When PostgreSQL is down, then /health/ready is 503 SERVICE_UNAVAILABLE while /health/live stays 200', async function () {
    this.timeout(10_000);
    const ready = await request(base, 'GET', '/health/ready');
    expectErrorShape(ready, 503, 'SERVICE_UNAVAILABLE');
    const live = await request(base, 'GET', '/health/live');
    expect(live.status).to.equal(200);
    expect(live.body).to.deep.equal({ status: 'ok' });
  });

  it('When PostgreSQL is down, then an API call answers 503 SERVICE_UNAVAILABLE, not 500', async function () {
    this.timeout(15_000);
    const res = await request(base, 'POST', '/auth/register', {
      body: { email: `${randomUUID()}@example.test`, password: 'password123', displayName: 'Nope' },
    });
    expectErrorShape(res, 503, 'SERVICE_UNAVAILABLE');
  });
});
