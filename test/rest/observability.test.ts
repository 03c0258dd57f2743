/**
 * Observability (issue #13): request ids and request logs on front nodes (pino-http), Prometheus metrics
 * at `/metrics` on front nodes and workers (METRICS_TOKEN), and a worker's health and metrics server
 * (WORKER_HTTP_PORT). A worker runs in this process: sends need one.
 */
import { expect } from 'chai';
import { randomUUID } from 'node:crypto';
import net from 'node:net';
import { pino } from 'pino';
import { loadConfig } from '../../shared/config.js';
import { partitionOf } from '../../shared/queues.js';
import { createWorkerNode, type WorkerNode } from '../../worker/app.js';
import {
  createChannel,
  createWorkspace,
  registerUser,
  request,
  startApi,
  unique,
  type RegisteredUser,
  type StartedApi,
} from '../support/api.js';
import { metricsOf, sample } from '../support/metrics.js';
import { connect, connectError, disconnectAll, send, sendOk, waitFor } from '../support/sockets.js';

const METRICS_TOKEN = 'metrics-token-0123456789abcdef';

describe('Observability: request logs, metrics and worker health', function () {
  this.timeout(60_000);
  const lines: Record<string, any>[] = [];
  let worker: WorkerNode;
  let workerBase: string;
  let api: StartedApi;
  let base: string;
  let owner: RegisteredUser;

  before(async function () {
    const env = {
      REDIS_PREFIX: `${process.env.REDIS_PREFIX}.observability`,
      METRICS_TOKEN,
      LOGIN_RATE_PER_MINUTE: '2',
      WORKER_HTTP_PORT: '0',
    };
    // The worker first: Objection's models are bound to the knex created last, the front node's.
    worker = createWorkerNode(loadConfig({ ...process.env, ...env }));
    const workerPort = await worker.start();
    expect(worker.httpPort).to.equal(workerPort);
    workerBase = `http://127.0.0.1:${workerPort}`;
    const logger = pino({ level: 'debug' }, { write: (line: string) => void lines.push(JSON.parse(line)) });
    api = await startApi(env, { logger });
    base = api.baseUrl;
    owner = await registerUser(base);
  });

  after(async function () {
    disconnectAll();
    await api?.stop();
    await worker?.stop();
  });

  const requestLines = (id: string) => lines.filter((l) => l.reqId === id);

  it('When a request has no X-Request-Id, then one is generated and returned', async function () {
    const res = await request(base, 'GET', '/me', { token: owner.token });
    expect(res.status).to.equal(200);
    expect(res.headers.get('x-request-id')).to.match(/^[0-9a-f-]{36}$/);
  });

  it('When a request has a safe X-Request-Id, then it is echoed; when not, then a new one replaces it', async function () {
    const given = unique('req-');
    const res = await request(base, 'GET', '/me', { token: owner.token, headers: { 'x-request-id': given } });
    expect(res.headers.get('x-request-id')).to.equal(given);
    for (const bad of ['a b;"<script>"', 'x'.repeat(65)]) {
      const unsafe = await request(base, 'GET', '/me', { token: owner.token, headers: { 'x-request-id': bad } });
      expect(unsafe.headers.get('x-request-id')).to.match(/^[0-9a-f-]{36}$/);
    }
  });

  it('When a request is logged, then its line has the id, method, route, status and duration, and no secret or body', async function () {
    const id = unique('login-');
    const res = await request(base, 'POST', '/auth/login', {
      body: { email: owner.email, password: owner.password },
      headers: { 'x-request-id': id, cookie: 'session=cookie-secret-value', 'x-forwarded-for': '198.51.100.7' },
    });
    expect(res.status).to.equal(200);
    const ws = await createWorkspace(base, owner.token);
    const channel = await createChannel(base, owner.token, ws.id);
    const postId = unique('post-');
    const body = unique('secret message body ');
    const posted = await request(base, 'POST', `/channels/${channel.id}/messages?token=${owner.token}`, {
      token: owner.token,
      body: { body, clientMsgId: unique() },
      headers: { 'x-request-id': postId },
    });
    expect(posted.status, posted.text).to.be.oneOf([201, 200]);

    await waitFor(() => requestLines(postId).some((l) => l.res));
    const [done] = requestLines(id).filter((l) => l.res);
    expect(done.level).to.equal(30);
    expect(done.req).to.deep.equal({ method: 'POST', path: '/api/v1/auth/login' });
    expect(done.route).to.equal('/api/v1/auth/login');
    expect(done.res.statusCode).to.equal(200);
    expect(done.responseTime).to.be.a('number');
    const [postDone] = requestLines(postId).filter((l) => l.res);
    expect(postDone.route).to.equal('/api/v1/channels/:channelId/messages');
    expect(postDone.req.path).to.equal(`/api/v1/channels/${channel.id}/messages`);

    const all = JSON.stringify(lines);
    for (const secret of [owner.token, owner.password, body, 'cookie-secret-value', res.body.token]) {
      expect(all).not.to.include(secret);
    }
    expect(all.toLowerCase()).not.to.include('authorization');
  });

  it('When requests that carry secrets fail (a wrong password, invalid or malformed bodies, bad or revoked tokens, a refused socket handshake), then no log line holds a secret', async function () {
    // An address of its own for each request (LOGIN_RATE_PER_MINUTE is 2 in this file; TEST-NET-3, which the
    // other tests here do not use).
    let address = 0;
    const from = () => ({ 'x-forwarded-for': `203.0.113.${++address}` });
    const user = await registerUser(base);
    const wrong = unique('wrong-password-');
    const fresh = unique('new-password-');
    const failures = [
      await request(base, 'POST', '/auth/login', { body: { email: user.email, password: wrong }, headers: from() }),
      await request(base, 'POST', '/auth/login', { body: { email: `${unique('nobody-')}@example.test`, password: wrong }, headers: from() }),
      await request(base, 'POST', '/auth/register', { body: { email: user.email, password: wrong, displayName: 'Again' }, headers: from() }),
      await request(base, 'POST', '/auth/register', { body: { email: 'not-an-email', password: wrong, displayName: 'X', extra: wrong }, headers: from() }),
      await request(base, 'POST', '/auth/login', { rawBody: `{"email": "${user.email}", "password": "${wrong}"`, headers: from() }),
      await request(base, 'POST', '/auth/password', { token: user.token, body: { currentPassword: wrong, newPassword: fresh } }),
      await request(base, 'GET', '/me', { token: `${user.token}x` }),
    ];
    expect(failures.map((r) => r.status)).to.deep.equal([401, 401, 409, 400, 400, 401, 401]);
    const changed = await request(base, 'POST', '/auth/password', { token: user.token, body: { currentPassword: user.password, newPassword: fresh } });
    expect(changed.status, changed.text).to.equal(200);
    // The token the change revoked, over REST and over a socket handshake.
    expect((await request(base, 'GET', '/me', { token: user.token })).status).to.equal(401);
    expect((await connectError(base, { token: user.token })).message).to.equal('UNAUTHORIZED');
    await waitFor(() => lines.some((l) => l.req?.path === '/api/v1/me' && l.res?.statusCode === 401));

    const all = JSON.stringify(lines);
    for (const secret of [user.password, wrong, fresh, user.token, changed.body.token]) expect(all).not.to.include(secret);
  });

  it('When health is probed, then its request is logged at debug, not info', async function () {
    const id = unique('health-');
    const res = await request(base, 'GET', '/health/live', { headers: { 'x-request-id': id } });
    expect(res.status).to.equal(200);
    await waitFor(() => requestLines(id).length > 0);
    expect(requestLines(id).map((l) => l.level)).to.deep.equal([20]);
  });

  it('When /metrics is asked without the token or with a wrong one, then it answers 401', async function () {
    expect((await metricsOf(`${base}/metrics`)).status).to.equal(401);
    expect((await metricsOf(`${base}/metrics`, 'wrong-token-0123456789')).status).to.equal(401);
    expect((await metricsOf(`${workerBase}/metrics`)).status).to.equal(401);
  });

  it('When requests, a socket send and a rate-limit refusal happened, then /metrics shows them', async function () {
    const ws = await createWorkspace(base, owner.token);
    const channel = await createChannel(base, owner.token, ws.id);
    const socket = await connect(base, owner.token);
    await sendOk(socket, { channelId: channel.id, body: 'hello metrics', clientMsgId: unique() });
    const rejected = await send(socket, { channelId: channel.id, body: '   ', clientMsgId: unique() });
    expect(rejected.ok).to.equal(false);
    // LOGIN_RATE_PER_MINUTE=2 from one address: the third attempt is refused.
    const from = { 'x-forwarded-for': '198.51.100.99' };
    for (let i = 0; i < 3; i++) {
      await request(base, 'POST', '/auth/login', { body: { email: owner.email, password: 'wrong-password' }, headers: from });
    }

    const missing = await request(base, 'GET', `/channels/${randomUUID()}`, { token: owner.token });
    expect(missing.status).to.equal(404);

    const res = await metricsOf(`${base}/metrics`, METRICS_TOKEN);
    expect(res.status).to.equal(200);
    expect(res.type).to.include('text/plain');
    const text = res.text;
    expect(sample(text, 'process_cpu_user_seconds_total')).to.be.a('number');
    expect(sample(text, 'http_request_duration_seconds_count', { method: 'GET', route: '/api/v1/me', status: '200' })).to.be.at.least(1);
    expect(sample(text, 'http_request_duration_seconds_count', { method: 'POST', route: '/api/v1/workspaces/:workspaceId/channels', status: '201' }))
      .to.be.at.least(1);
    // An error answered by the error handler keeps its route's full pattern.
    expect(sample(text, 'http_request_duration_seconds_count', { method: 'GET', route: '/api/v1/channels/:channelId', status: '404' }))
      .to.be.at.least(1);
    expect(text).not.to.include(ws.id);
    expect(text).not.to.include(channel.id);
    expect(sample(text, 'socketio_connected_sockets')).to.equal(1);
    expect(sample(text, 'socketio_events_total', { event: 'message:send', outcome: 'ok' })).to.be.at.least(1);
    expect(sample(text, 'socketio_events_total', { event: 'message:send', outcome: 'VALIDATION_FAILED' })).to.be.at.least(1);
    expect(sample(text, 'messages_sends_total', { outcome: 'accepted' })).to.be.at.least(1);
    expect(sample(text, 'messages_sends_total', { outcome: 'VALIDATION_FAILED' })).to.be.at.least(1);
    expect(sample(text, 'rate_limit_refusals_total', { policy: 'login-per-ip' })).to.be.at.least(1);

    // Changes are counted with sends, their refusals at the front node too: an empty edit, a bad emoji.
    const stored = await sendOk(socket, { channelId: channel.id, body: 'to be changed', clientMsgId: unique() });
    const before = sample(text, 'messages_sends_total', { outcome: 'VALIDATION_FAILED' })!;
    const target = { channelId: channel.id, messageId: stored.id };
    expect((await socket.timeout(10_000).emitWithAck('message:edit', { ...target, body: '  ' })).error.code).to.equal('VALIDATION_FAILED');
    expect((await socket.timeout(10_000).emitWithAck('reaction:add', { ...target, emoji: 'NOT AN EMOJI' })).error.code).to.equal('VALIDATION_FAILED');
    const after = (await metricsOf(`${base}/metrics`, METRICS_TOKEN)).text;
    expect(sample(after, 'messages_sends_total', { outcome: 'VALIDATION_FAILED' })).to.equal(before + 2);
  });

  it('When a front node is scraped, then it shows its pool use, its Redis errors and every partition queue', async function () {
    const res = await metricsOf(`${base}/metrics`, METRICS_TOKEN);
    expect(res.status).to.equal(200);
    const text = res.text;
    expect(sample(text, 'db_pool_max_connections')).to.equal(api.config.db.poolMax);
    // The requests before this one used the pool, and tarn keeps an idle connection for 30 s.
    expect(sample(text, 'db_pool_connections', { state: 'used' })! + sample(text, 'db_pool_connections', { state: 'free' })!)
      .to.be.at.least(1);
    expect(sample(text, 'db_pool_pending_acquires')).to.equal(0);
    for (const client of ['redis', 'adapterPub', 'adapterSub', 'replySub']) {
      expect(sample(text, 'redis_errors_total', { client }), client).to.equal(0);
    }
    for (const partition of ['0', '1']) {
      for (const state of ['waiting', 'active', 'delayed', 'failed']) {
        expect(sample(text, 'message_queue_jobs', { partition, state }), `${partition} ${state}`).to.be.a('number');
      }
      expect(sample(text, 'message_queue_oldest_job_age_seconds', { partition })).to.be.a('number');
    }
    expect(sample(text, 'message_queue_jobs', { partition: '2', state: 'waiting' })).to.equal(undefined);
  });

  it('When a worker runs with WORKER_HTTP_PORT=0, then its health answers and /metrics has the batch metrics', async function () {
    expect((await fetch(`${workerBase}/health/live`)).status).to.equal(200);
    const ready = await fetch(`${workerBase}/health/ready`);
    expect(ready.status).to.equal(200);
    expect(await ready.json()).to.deep.equal({ status: 'ok' });

    const ws = await createWorkspace(base, owner.token);
    const channel = await createChannel(base, owner.token, ws.id);
    const socket = await connect(base, owner.token);
    await sendOk(socket, { channelId: channel.id, body: 'persisted', clientMsgId: unique() });

    const res = await metricsOf(`${workerBase}/metrics`, METRICS_TOKEN);
    expect(res.status).to.equal(200);
    expect(sample(res.text, 'worker_batch_size_count')).to.be.at.least(1);
    expect(sample(res.text, 'worker_batch_duration_seconds_count')).to.be.at.least(1);
    expect(sample(res.text, 'worker_messages_persisted_total')).to.be.at.least(1);
    expect(sample(res.text, 'process_resident_memory_bytes')).to.be.a('number');
    expect(sample(res.text, 'worker_send_to_persist_seconds_count')).to.be.at.least(1);
    await waitFor(async () => sample((await metricsOf(`${workerBase}/metrics`, METRICS_TOKEN)).text, 'worker_persist_to_emit_seconds_count')! >= 1);
    expect(sample(res.text, 'db_pool_max_connections')).to.equal(api.config.db.poolMax);
    expect(sample(res.text, 'db_pool_connections', { state: 'used' })! + sample(res.text, 'db_pool_connections', { state: 'free' })!)
      .to.be.at.least(1);
    expect(sample(res.text, 'db_pool_pending_acquires')).to.equal(0);
    expect(sample(res.text, 'redis_errors_total', { client: 'redis' })).to.equal(0);
    // Queue depth is the front nodes' to report (server/metrics.ts says why).
    expect(res.text).not.to.include('message_queue_jobs');
  });

  it('When WORKER_HTTP_PORT or METRICS_TOKEN are set or not, then the config has them or refuses them', function () {
    const base = { ...process.env, WORKER_HTTP_PORT: undefined, METRICS_TOKEN: undefined };
    expect(loadConfig(base).workerHttpPort).to.equal(9464);
    expect(loadConfig(base).metricsToken).to.equal(undefined);
    expect(loadConfig({ ...base, WORKER_HTTP_PORT: '0', METRICS_TOKEN: METRICS_TOKEN }))
      .to.include({ workerHttpPort: 0, metricsToken: METRICS_TOKEN });
    expect(() => loadConfig({ ...base, WORKER_HTTP_PORT: '70000' })).to.throw(/WORKER_HTTP_PORT/);
    expect(() => loadConfig({ ...base, METRICS_TOKEN: 'short' })).to.throw(/METRICS_TOKEN/);
    expect(() => loadConfig({ ...base, METRICS_TOKEN: 'has a space in it, sixteen+' })).to.throw(/METRICS_TOKEN/);
  });

  it('When METRICS_TOKEN is not set, then /metrics is open', async function () {
    const open = await startApi({ REDIS_PREFIX: `${process.env.REDIS_PREFIX}.observability` });
    try {
      const res = await metricsOf(`${open.baseUrl}/metrics`);
      expect(res.status).to.equal(200);
      expect(res.text).to.include('http_request_duration_seconds');
    } finally {
      await open.stop();
    }
  });
});

describe('Observability: queue depth and latency while no worker takes the queue', function () {
  this.timeout(60_000);
  let env: Record<string, string>;
  let api: StartedApi;
  let worker: WorkerNode | undefined;

  before(async function () {
    env = { REDIS_PREFIX: `${process.env.REDIS_PREFIX}.observability-queue`, WORKER_HTTP_PORT: '0' };
    api = await startApi(env);
  });

  after(async function () {
    disconnectAll();
    await api?.stop();
    await worker?.stop();
  });

  it('When a send waits for a worker, then the front node shows its partition\'s depth and age, and the worker its send→persist latency once it stores it', async function () {
    const base = api.baseUrl;
    const owner = await registerUser(base);
    const ws = await createWorkspace(base, owner.token);
    const channel = await createChannel(base, owner.token, ws.id);
    const socket = await connect(base, owner.token);
    const acked = send(socket, { channelId: channel.id, body: 'waiting for a worker', clientMsgId: unique() }, 30_000);
    const partition = String(partitionOf(channel.id, api.config.queue.partitions));
    const other = partition === '0' ? '1' : '0';

    const scrape = async () => (await metricsOf(`${base}/metrics`)).text;
    await waitFor(async () => sample(await scrape(), 'message_queue_oldest_job_age_seconds', { partition })! >= 0.5);
    const text = await scrape();
    expect(sample(text, 'message_queue_jobs', { partition, state: 'waiting' })).to.equal(1);
    expect(sample(text, 'message_queue_jobs', { partition, state: 'active' })).to.equal(0);
    expect(sample(text, 'message_queue_jobs', { partition: other, state: 'waiting' })).to.equal(0);
    expect(sample(text, 'message_queue_oldest_job_age_seconds', { partition: other })).to.equal(0);
    const waitedAtLeast = sample(text, 'message_queue_oldest_job_age_seconds', { partition })!;

    worker = createWorkerNode(loadConfig({ ...process.env, ...env }));
    const workerPort = await worker.start();
    expect((await acked).ok).to.equal(true);
    const workerText = (await metricsOf(`http://127.0.0.1:${workerPort}/metrics`)).text;
    expect(sample(workerText, 'worker_send_to_persist_seconds_count')).to.equal(1);
    // The time the send spent queued is in its latency.
    expect(sample(workerText, 'worker_send_to_persist_seconds_sum')).to.be.at.least(waitedAtLeast);
    const after = await scrape();
    expect(sample(after, 'message_queue_jobs', { partition, state: 'waiting' })).to.equal(0);
    expect(sample(after, 'message_queue_oldest_job_age_seconds', { partition })).to.equal(0);
  });
});

/** A TCP proxy to Redis whose connections the test can reset, as a network failure would. */
async function redisProxy(redisUrl: string): Promise<{ url: string; reset(): void; close(): Promise<void> }> {
  const target = new URL(redisUrl);
  const clients = new Set<net.Socket>();
  const server = net.createServer((client) => {
    const upstream = net.connect(Number(target.port || 6379), target.hostname);
    clients.add(client);
    const drop = () => {
      clients.delete(client);
      client.destroy();
      upstream.destroy();
    };
    for (const end of [client, upstream]) end.on('error', drop).on('close', drop);
    client.pipe(upstream).pipe(client);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const url = new URL(redisUrl);
  url.hostname = '127.0.0.1';
  url.port = String((server.address() as net.AddressInfo).port);
  return {
    url: url.toString(),
    reset: () => {
      for (const client of [...clients]) client.resetAndDestroy();
    },
    close: async () => {
      for (const client of [...clients]) client.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

describe('Observability: Redis connection errors', function () {
  this.timeout(60_000);
  let proxy: Awaited<ReturnType<typeof redisProxy>>;
  let api: StartedApi;

  before(async function () {
    proxy = await redisProxy(loadConfig(process.env).redis.url);
    // Its warnings about the resets are expected here.
    const logger = pino({ level: 'silent' });
    api = await startApi({ REDIS_PREFIX: `${process.env.REDIS_PREFIX}.observability-redis`, REDIS_URL: proxy.url }, { logger });
  });

  after(async function () {
    await api?.stop();
    await proxy?.close();
  });

  it('When its Redis connections are reset, then a front node counts an error for each, and recovers', async function () {
    const scrape = async () => (await metricsOf(`${api.baseUrl}/metrics`)).text;
    const clients = ['redis', 'adapterPub', 'adapterSub', 'replySub'];
    const before = await scrape();
    for (const client of clients) expect(sample(before, 'redis_errors_total', { client }), client).to.equal(0);
    proxy.reset();
    await waitFor(async () => {
      const text = await scrape();
      return clients.every((client) => sample(text, 'redis_errors_total', { client })! >= 1);
    });
    await waitFor(async () => (await fetch(`${api.baseUrl}/health/ready`)).status === 200);
  });
});
