import { expect } from 'chai';
import { io } from 'socket.io-client';
import type { Cluster } from '../../scripts/cluster.js';
import {
  addChannelMember,
  addWorkspaceMember,
  createChannel,
  createWorkspace,
  request,
  unique,
  type ApiResponse,
  type ChannelDto,
  type RegisteredUser,
} from '../support/api.js';
import { range, type ClientSocket, type Transport } from '../support/sockets.js';
import { closeDb, deadProcesses, startPipelineCluster, storedCount } from './fixtures.js';

/**
 * Small budgets, each its own env var, on a 2-node cluster: every limit is shared through Redis, so the
 * tests spend each one alternately on both nodes. Client addresses come from X-Forwarded-For (front nodes
 * trust a proxy on the loopback, as behind a local load balancer), so each test spends its own.
 */
const BUDGETS = {
  MESSAGE_RATE_PER_SECOND: '1', // 10 sends per user per 10 s
  SOCKET_EVENT_RATE_PER_SECOND: '1', // 10 events per user per 10 s
  REST_RATE_PER_SECOND: '3', // 30 requests per token per 10 s
  REGISTER_RATE_PER_MINUTE: '5',
  LOGIN_RATE_PER_MINUTE: '8',
  LOGIN_FAILURES_PER_IP: '4',
  LOGIN_FAILURES_PER_ACCOUNT: '5',
  LOGIN_FAILURES_PER_ACCOUNT_AND_IP: '3',
  SOCKET_CONNECT_PER_USER_PER_MINUTE: '3',
  SOCKET_CONNECT_PER_IP_PER_MINUTE: '6',
};

let lastIp = 0;
/** A client address of its own (TEST-NET-2). */
const freshIp = () => `198.51.100.${++lastIp}`;

/** 429 RATE_LIMITED with Retry-After and the IETF RateLimit-Policy / RateLimit fields of `policy`. */
function expectLimited(res: ApiResponse, policy: string, quota: number, windowSeconds: number): void {
  expect(res.status, res.text).to.equal(429);
  expect(res.body.error.code).to.equal('RATE_LIMITED');
  const retryAfter = Number(res.headers.get('retry-after'));
  expect(retryAfter).to.be.within(1, windowSeconds);
  expect(res.body.error.details).to.deep.equal({ retryAfterSeconds: retryAfter });
  expect(res.headers.get('ratelimit-policy')).to.equal(`"${policy}";q=${quota};w=${windowSeconds}`);
  expect(res.headers.get('ratelimit')).to.equal(`"${policy}";r=0;t=${retryAfter}`);
}

/** A RATE_LIMITED socket ack: the error as before, and retryAfterMs beside it. */
function expectLimitedAck(ack: any, windowSeconds: number): void {
  expect(ack.ok, JSON.stringify(ack)).to.equal(false);
  expect(ack.error.code).to.equal('RATE_LIMITED');
  expect(ack.error.details.retryAfterSeconds).to.be.within(1, windowSeconds);
  expect(ack.retryAfterMs).to.be.a('number').within(1, windowSeconds * 1000);
  expect(Math.ceil(ack.retryAfterMs / 1000)).to.equal(ack.error.details.retryAfterSeconds);
}

describe('pipeline: abuse limits shared by the front nodes', function () {
  this.timeout(90_000);

  let cluster: Cluster;
  let urls: string[];
  const sockets: ClientSocket[] = [];

  /** Registers through `url` from a fresh address (registrations are limited per address). */
  async function newUser(url = urls[0], ip = freshIp()): Promise<RegisteredUser> {
    const email = `${unique('abuse-')}@example.test`;
    const password = `pw-${unique()}`;
    const res = await request(url, 'POST', '/auth/register', {
      body: { email, password, displayName: 'Abuse' },
      headers: { 'x-forwarded-for': ip },
    });
    if (res.status !== 201) throw new Error(`register: HTTP ${res.status}: ${res.text}`);
    return { user: res.body.user, token: res.body.token, email, password };
  }

  /** A channel whose members are `users` (added by a fresh owner). */
  async function channelOf(users: RegisteredUser[]): Promise<ChannelDto> {
    const owner = await newUser();
    const workspace = await createWorkspace(urls[0], owner.token);
    for (const u of users) await addWorkspaceMember(urls[0], owner.token, workspace.id, u.email);
    const channel = await createChannel(urls[0], owner.token, workspace.id);
    for (const u of users) await addChannelMember(urls[0], owner.token, channel.id, u.user.id);
    return channel;
  }

  /** Connects from `ip`; resolves with the socket, or with the connect_error (and its data). */
  function open(
    url: string,
    auth: Record<string, unknown>,
    { ip = freshIp(), transport = 'websocket' as Transport } = {},
  ): Promise<{ socket?: ClientSocket; error?: Error & { data?: any } }> {
    const socket = io(url, {
      auth,
      extraHeaders: { 'x-forwarded-for': ip },
      ...(transport === 'default' ? {} : { transports: [transport] }),
      forceNew: true,
      reconnection: false,
      timeout: 10_000,
    });
    sockets.push(socket);
    return new Promise((resolve) => {
      socket.once('connect', () => resolve({ socket }));
      socket.once('connect_error', (error) => {
        socket.close();
        resolve({ error });
      });
    });
  }

  async function connected(url: string, token: string, options: { ip?: string; transport?: Transport } = {}): Promise<ClientSocket> {
    const { socket, error } = await open(url, { token }, options);
    if (!socket) throw new Error(`connect refused: ${error?.message}`);
    return socket;
  }

  before(async () => {
    cluster = await startPipelineCluster('abuse-limits', BUDGETS);
    urls = cluster.urls;
  });

  afterEach(function () {
    const dead = deadProcesses(cluster);
    if (dead.length > 0) throw new Error(dead.join('\n'));
  });

  after(async () => {
    for (const s of sockets) s.close();
    await cluster?.stop();
    await closeDb();
  });

  describe('REST', function () {
    it('When one token makes more REST requests than REST_RATE_PER_SECOND × 10 on both nodes, then the rest are 429 with Retry-After and RateLimit headers, on either node; another token of the same user has a budget of its own', async () => {
      const user = await newUser();
      for (const i of range(30, 0)) {
        const res = await request(urls[i % 2], 'GET', '/me', { token: user.token });
        expect(res.status, `request #${i}: ${res.text}`).to.equal(200);
      }
      for (const url of urls) expectLimited(await request(url, 'GET', '/workspaces', { token: user.token }), 'rest-per-token', 30, 10);
      // The user's session on another device, and another user, each have a budget of their own.
      const login = await request(urls[1], 'POST', '/auth/login', { body: { email: user.email, password: user.password }, headers: { 'x-forwarded-for': freshIp() } });
      expect(login.status, login.text).to.equal(200);
      expect((await request(urls[0], 'GET', '/workspaces', { token: login.body.token })).status).to.equal(200);
      const other = await newUser();
      expect((await request(urls[1], 'GET', '/me', { token: other.token })).status).to.equal(200);
    });

    it('When one address registers more than REGISTER_RATE_PER_MINUTE times across both nodes, then 429, and nobody is created; another address still registers', async () => {
      const ip = '203.0.113.10';
      for (const i of range(5, 0)) await newUser(urls[i % 2], ip);
      const email = `${unique('over-')}@example.test`;
      for (const url of urls) {
        const res = await request(url, 'POST', '/auth/register', {
          body: { email, password: 'long enough pw', displayName: 'Over' },
          headers: { 'x-forwarded-for': ip },
        });
        expectLimited(res, 'register-per-ip', 5, 60);
      }
      const login = await request(urls[0], 'POST', '/auth/login', { body: { email, password: 'long enough pw' } });
      expect(login.status).to.equal(401);
      await newUser(urls[1], '203.0.113.11');
    });

    it('When one address fails LOGIN_FAILURES_PER_IP logins on as many accounts, then its next login is 429 even with a right password, on either node; another address logs in', async () => {
      const ip = '203.0.113.20';
      const victims = await Promise.all(range(4).map(() => newUser()));
      const target = await newUser();
      for (const [i, v] of victims.entries()) {
        const res = await request(urls[i % 2], 'POST', '/auth/login', {
          body: { email: v.email, password: 'wrong password' },
          headers: { 'x-forwarded-for': ip },
        });
        expect(res.status, res.text).to.equal(401);
        expect(res.body.error.code).to.equal('INVALID_CREDENTIALS');
      }
      for (const url of urls) {
        const res = await request(url, 'POST', '/auth/login', {
          body: { email: target.email, password: target.password },
          headers: { 'x-forwarded-for': ip },
        });
        expectLimited(res, 'login-failures-per-ip', 4, 15 * 60);
      }
      const elsewhere = await request(urls[1], 'POST', '/auth/login', {
        body: { email: target.email, password: target.password },
        headers: { 'x-forwarded-for': '203.0.113.21' },
      });
      expect(elsewhere.status, elsewhere.text).to.equal(200);
    });

    it('When one account fails LOGIN_FAILURES_PER_ACCOUNT_AND_IP logins from one address, then its next login from there is 429; from another address it logs in', async () => {
      const ip = '203.0.113.25';
      const user = await newUser();
      for (const i of range(3, 0)) {
        const res = await request(urls[i % 2], 'POST', '/auth/login', {
          body: { email: user.email, password: 'wrong password' },
          headers: { 'x-forwarded-for': ip },
        });
        expect(res.status, res.text).to.equal(401);
      }
      const res = await request(urls[1], 'POST', '/auth/login', {
        body: { email: user.email, password: user.password },
        headers: { 'x-forwarded-for': ip },
      });
      expectLimited(res, 'login-failures-per-account-ip', 3, 15 * 60);
      const elsewhere = await request(urls[0], 'POST', '/auth/login', {
        body: { email: user.email, password: user.password },
        headers: { 'x-forwarded-for': freshIp() },
      });
      expect(elsewhere.status, elsewhere.text).to.equal(200);
    });

    it('When one account fails LOGIN_FAILURES_PER_ACCOUNT logins, each from another address, then its next login from any address is 429 even with the right password, on either node; other accounts log in from those addresses', async () => {
      const user = await newUser();
      const ips = range(5, 0).map(() => freshIp());
      for (const [i, ip] of ips.entries()) {
        const res = await request(urls[i % 2], 'POST', '/auth/login', {
          body: { email: user.email.toUpperCase(), password: 'wrong password' },
          headers: { 'x-forwarded-for': ip },
        });
        expect(res.status, res.text).to.equal(401);
      }
      for (const [i, ip] of [freshIp(), ips[0]].entries()) {
        const res = await request(urls[i % 2], 'POST', '/auth/login', {
          body: { email: user.email, password: user.password },
          headers: { 'x-forwarded-for': ip },
        });
        expectLimited(res, 'login-failures-per-account', 5, 15 * 60);
      }
      const other = await newUser();
      const res = await request(urls[1], 'POST', '/auth/login', {
        body: { email: other.email, password: other.password },
        headers: { 'x-forwarded-for': ips[1] },
      });
      expect(res.status, res.text).to.equal(200);
    });

    it('When one address logs in more than LOGIN_RATE_PER_MINUTE times, even successfully, then 429 on either node', async () => {
      const ip = '203.0.113.30';
      const user = await newUser();
      for (const i of range(8, 0)) {
        const res = await request(urls[i % 2], 'POST', '/auth/login', {
          body: { email: user.email, password: user.password },
          headers: { 'x-forwarded-for': ip },
        });
        expect(res.status, `login #${i}: ${res.text}`).to.equal(200);
      }
      for (const url of urls) {
        const res = await request(url, 'POST', '/auth/login', {
          body: { email: user.email, password: user.password },
          headers: { 'x-forwarded-for': ip },
        });
        expectLimited(res, 'login-per-ip', 8, 60);
      }
    });
  });

  describe('sockets', function () {
    it('When a user sends more than MESSAGE_RATE_PER_SECOND × 10 from sockets on both nodes, then the rest are acked RATE_LIMITED with retryAfterMs, and REST sends get 429 with RateLimit headers', async () => {
      const user = await newUser();
      const channel = await channelOf([user]);
      const pair = [await connected(urls[0], user.token), await connected(urls[1], user.token)];
      const acks: any[] = [];
      for (const i of range(12, 0)) {
        acks.push(await pair[i % 2].timeout(15_000).emitWithAck('message:send', { channelId: channel.id, body: `m${i}`, clientMsgId: `s-${i}` }));
      }
      expect(acks.slice(0, 10).map((a) => a.ok)).to.deep.equal(Array(10).fill(true));
      for (const ack of acks.slice(10)) expectLimitedAck(ack, 10);
      const rest = await request(urls[0], 'POST', `/channels/${channel.id}/messages`, { token: user.token, body: { body: 'rest', clientMsgId: 's-rest' } });
      expectLimited(rest, 'sends-per-user', 10, 10);
      expect(await storedCount([channel.id])).to.equal(10);
    });

    it('When a user emits more than SOCKET_EVENT_RATE_PER_SECOND × 10 other events on both nodes, then the rest are acked RATE_LIMITED with retryAfterMs; sends keep their own budget', async () => {
      const user = await newUser();
      const channel = await channelOf([user]);
      const pair = [await connected(urls[0], user.token), await connected(urls[1], user.token)];
      const acks: any[] = [];
      for (const i of range(10, 0)) {
        const event = i % 3 === 0 ? 'sync' : 'channel:read';
        const payload = event === 'sync' ? { channels: { [channel.id]: 0 } } : { channelId: channel.id, seq: 0 };
        acks.push(await pair[i % 2].timeout(10_000).emitWithAck(event, payload));
      }
      expect(acks.map((a) => a.ok), JSON.stringify(acks)).to.deep.equal(Array(10).fill(true));
      for (const s of pair) {
        expectLimitedAck(await s.timeout(10_000).emitWithAck('channel:read', { channelId: channel.id, seq: 0 }), 10);
        expectLimitedAck(await s.timeout(10_000).emitWithAck('sync', { channels: { [channel.id]: 0 } }), 10);
      }
      const send = await pair[0].timeout(15_000).emitWithAck('message:send', { channelId: channel.id, body: 'still', clientMsgId: 'ev-send' });
      expect(send.ok, JSON.stringify(send)).to.equal(true);
    });

    it('When a user opens more than SOCKET_CONNECT_PER_USER_PER_MINUTE connections on both nodes (from different addresses), then the next fails with connect_error RATE_LIMITED and data.retryAfterMs', async () => {
      const user = await newUser();
      for (const i of range(3, 0)) await connected(urls[i % 2], user.token);
      for (const url of urls) {
        const { socket, error } = await open(url, { token: user.token });
        expect(socket, 'connected over the budget').to.equal(undefined);
        expect(error!.message).to.equal('RATE_LIMITED');
        expect(error!.data.retryAfterMs).to.be.within(1, 60_000);
      }
    });

    it('When one address opens more than SOCKET_CONNECT_PER_IP_PER_MINUTE connections (different users, both nodes), then the next fails with connect_error RATE_LIMITED; another address connects', async () => {
      const ip = '203.0.113.40';
      const users = await Promise.all(range(4).map(() => newUser()));
      for (const i of range(6, 0)) await connected(urls[i % 2], users[i % 3].token, { ip });
      for (const url of urls) {
        const { error } = await open(url, { token: users[3].token }, { ip });
        expect(error?.message).to.equal('RATE_LIMITED');
        expect(error!.data.retryAfterMs).to.be.within(1, 60_000);
      }
      // Refused before the token is even looked at: a bad token from there is RATE_LIMITED too.
      expect((await open(urls[0], { token: 'garbage' }, { ip })).error?.message).to.equal('RATE_LIMITED');
      await connected(urls[1], users[3].token, { ip: '203.0.113.41' });
    });
  });

  describe('forbidden keys and unknown fields in socket payloads', function () {
    for (const transport of ['websocket', 'polling'] as const) {
      it(`When ${transport} socket payloads carry "__proto__", "constructor" or "prototype" at any depth, then they are acked VALIDATION_FAILED and nothing is stored`, async () => {
        const user = await newUser();
        const channel = await channelOf([user]);
        const socket = await connected(urls[transport === 'websocket' ? 0 : 1], user.token, { transport });
        const id = channel.id;
        // JSON.parse makes "__proto__" an own property, which socket.io-client's JSON.stringify sends as is.
        const payloads: Array<[string, string]> = [
          ['message:send', `{"channelId":"${id}","body":"x","clientMsgId":"p-1","__proto__":{"admin":true}}`],
          ['message:send', `{"channelId":"${id}","body":"x","clientMsgId":"p-2","constructor":{"prototype":{"admin":true}}}`],
          ['sync', `{"channels":{"__proto__":0}}`],
          ['channel:read', `{"channelId":"${id}","seq":0,"x":[{"prototype":1}]}`],
        ];
        for (const [event, raw] of payloads) {
          const ack: any = await socket.timeout(10_000).emitWithAck(event, JSON.parse(raw));
          expect(ack.ok, `${event} ${raw}: ${JSON.stringify(ack)}`).to.equal(false);
          expect(ack.error.code).to.equal('VALIDATION_FAILED');
          expect(ack.error.message).to.match(/__proto__|constructor|prototype/);
        }
        expect(await storedCount([id])).to.equal(0);
        expect(({} as Record<string, unknown>).admin).to.equal(undefined);
      });

      it(`When ${transport} socket payloads carry an unknown field, then message:send, sync and channel:read are acked VALIDATION_FAILED`, async () => {
        const user = await newUser();
        const channel = await channelOf([user]);
        const socket = await connected(urls[1], user.token, { transport });
        const cases: Array<[string, object]> = [
          ['message:send', { channelId: channel.id, body: 'x', clientMsgId: 'u-1', isAdmin: true }],
          ['sync', { channels: {}, extra: 1 }],
          ['channel:read', { channelId: channel.id, seq: 0, userId: user.user.id }],
        ];
        for (const [event, payload] of cases) {
          const ack: any = await socket.timeout(10_000).emitWithAck(event, payload);
          expect(ack.ok, `${event}: ${JSON.stringify(ack)}`).to.equal(false);
          expect(ack.error.code).to.equal('VALIDATION_FAILED');
        }
        expect(await storedCount([channel.id])).to.equal(0);
      });

      it(`When a ${transport} handshake's auth carries "__proto__" (top level or in resume), then connect_error VALIDATION_FAILED`, async () => {
        const user = await newUser();
        for (const raw of [`{"token":"${user.token}","__proto__":{"x":1}}`, `{"token":"${user.token}","resume":{"__proto__":0}}`]) {
          const { error } = await open(urls[0], JSON.parse(raw), { transport });
          expect(error?.message, raw).to.equal('VALIDATION_FAILED');
        }
      });
    }
  });
});
