/**
 * The BullMQ dashboard (bull-board) at /admin/queues on front nodes: absent without ADMIN_USER and
 * ADMIN_PASSWORD, behind HTTP basic auth with them, read-only, with its own CSP, and without message
 * bodies. No worker runs here, so a send stays queued where the dashboard can show it.
 */
import { expect } from 'chai';
import { partitionOf } from '../../shared/queues.js';
import {
  createChannel,
  createWorkspace,
  registerUser,
  unique,
  type StartedApi,
  startApi,
} from '../support/api.js';
import { connect, disconnectAll, waitFor } from '../support/sockets.js';

const ADMIN_USER = 'ops';
const ADMIN_PASSWORD = 'correct-horse-battery-staple';
const PATH = '/admin/queues';

const basic = (user: string, password: string) => `Basic ${Buffer.from(`${user}:${password}`).toString('base64')}`;

async function get(url: string, authorization?: string): Promise<{ status: number; text: string; headers: Headers }> {
  const res = await fetch(url, { headers: authorization === undefined ? {} : { authorization } });
  return { status: res.status, text: await res.text(), headers: res.headers };
}

describe('Queue dashboard: /admin/queues behind basic auth', function () {
  this.timeout(60_000);
  let withAdmin: StartedApi;
  let withoutAdmin: StartedApi;
  let base: string;
  const auth = basic(ADMIN_USER, ADMIN_PASSWORD);

  before(async function () {
    // Sends stay queued (no worker), and are answered SERVICE_UNAVAILABLE at once when the node stops.
    const env = { REDIS_PREFIX: `${process.env.REDIS_PREFIX}.admin-queues`, SHUTDOWN_GRACE_MS: '0', QUEUE_PARTITIONS: '2' };
    withoutAdmin = await startApi({ ...env, ADMIN_USER: undefined, ADMIN_PASSWORD: undefined });
    withAdmin = await startApi({ ...env, ADMIN_USER, ADMIN_PASSWORD });
    base = withAdmin.baseUrl;
  });

  after(async function () {
    disconnectAll();
    await withAdmin?.stop();
    await withoutAdmin?.stop();
  });

  it('When ADMIN_USER and ADMIN_PASSWORD are not set, then the dashboard and its API are 404, with or without credentials', async function () {
    for (const path of [PATH, `${PATH}/api/queues`]) {
      for (const authorization of [undefined, auth]) {
        const res = await get(withoutAdmin.baseUrl + path, authorization);
        expect(res.status, path).to.equal(404);
        expect(JSON.parse(res.text).error.code).to.equal('NOT_FOUND');
        expect(res.headers.get('www-authenticate')).to.equal(null);
      }
    }
  });

  it('When credentials are missing, wrong or malformed, then it answers 401 with a Basic challenge and nothing of the dashboard', async function () {
    const attempts = [
      undefined,
      basic(ADMIN_USER, 'wrong-password-0123'),
      basic('root', ADMIN_PASSWORD),
      basic(ADMIN_USER, `${ADMIN_PASSWORD}x`),
      basic(ADMIN_USER, ''),
      `Basic ${Buffer.from(`${ADMIN_USER}${ADMIN_PASSWORD}`).toString('base64')}`,
      'Basic not base64!',
      `Bearer ${ADMIN_PASSWORD}`,
    ];
    for (const authorization of attempts) {
      for (const path of [PATH, `${PATH}/api/queues`, `${PATH}/static/images/logo.svg`]) {
        const res = await get(base + path, authorization);
        expect(res.status, `${path} with ${authorization}`).to.equal(401);
        expect(res.headers.get('www-authenticate')).to.match(/^Basic realm="queues"/);
        expect(JSON.parse(res.text).error.code).to.equal('UNAUTHORIZED');
        expect(res.text).not.to.include('messages-0');
      }
    }
  });

  it('When the right credentials are given, then the dashboard page is HTML, with CSP exceptions on that path only', async function () {
    const page = await get(`${base}${PATH}`, auth);
    expect(page.status).to.equal(200);
    expect(page.headers.get('content-type')).to.match(/^text\/html/);
    expect(page.text).to.include(`<base href="${PATH}/"`);
    const script = /src="(static\/js\/main\.[^"]+\.js)"/.exec(page.text);
    expect(script, 'the page loads its script').not.to.equal(null);
    const asset = await get(`${base}${PATH}/${script![1]}`, auth);
    expect(asset.status).to.equal(200);
    expect(asset.headers.get('content-type')).to.match(/javascript/);

    const csp = page.headers.get('content-security-policy')!;
    // No third party: the page's Google Fonts are refused.
    expect(csp).to.match(/font-src 'self'(;|$)/);
    expect(csp).not.to.include('google');
    expect(csp).to.include("frame-ancestors 'none'");
    expect(csp).not.to.include('upgrade-insecure-requests');
    expect(csp).to.include("script-src 'self'");
    // Everywhere else, helmet's defaults stay.
    const elsewhere = (await get(`${base}/health/live`)).headers.get('content-security-policy');
    expect(elsewhere).to.include('upgrade-insecure-requests');
    expect(elsewhere).not.to.include("frame-ancestors 'none'");
  });

  it('When the right credentials are given, then its JSON API lists the partition queues, read-only, with a queued send and no message body', async function () {
    const owner = await registerUser(base);
    const ws = await createWorkspace(base, owner.token);
    const channel = await createChannel(base, owner.token, ws.id);
    const socket = await connect(base, owner.token);
    const body = unique('a private message ');
    // Not acknowledged while no worker runs: the batch waits in its partition's queue.
    socket.emit('message:send', { channelId: channel.id, body, clientMsgId: unique() }, () => {});
    const queueName = `messages-${partitionOf(channel.id, 2)}`;

    const list = async () => JSON.parse((await get(`${base}${PATH}/api/queues?activeQueue=${queueName}&status=waiting`, auth)).text);
    await waitFor(async () => (await list()).queues.find((q: { name: string }) => q.name === queueName)?.counts.waiting === 1);
    const { queues } = await list();
    expect(queues.map((q: { name: string }) => q.name).sort()).to.deep.equal(['messages-0', 'messages-1']);
    for (const q of queues) expect(q.readOnlyMode, q.name).to.equal(true);
    const [job] = queues.find((q: { name: string }) => q.name === queueName).jobs;
    const [queued] = job.data.sends;
    expect(queued).to.include({ channelId: channel.id, userId: owner.user.id, body: `[${body.length} characters]` });
    expect(JSON.stringify(queues)).not.to.include(body);

    const pause = await fetch(`${base}${PATH}/api/queues/${queueName}/pause`, { method: 'PUT', headers: { authorization: auth } });
    expect(pause.status).to.equal(405);
    expect((await list()).queues.every((q: { isPaused: boolean }) => !q.isPaused)).to.equal(true);
  });
});
