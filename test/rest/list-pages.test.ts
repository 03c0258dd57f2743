/**
 * Lists a page at a time: members (GET /workspaces/:workspaceId/members, GET /channels/:channelId/members),
 * channels (GET /workspaces/:workspaceId/channels), DMs (GET /workspaces/:workspaceId/dms), unread
 * channels (GET /me/unread) and the caller's workspaces (GET /workspaces). `limit` and
 * `cursor`, the next page in a `Link: <…>; rel="next"` header, the body `{members}` or `{channels}` as ever.
 */
import { expect } from 'chai';
import {
  addChannelMember,
  addWorkspaceMember,
  createChannel,
  createWorkspace,
  expectError,
  openDm,
  registerUser,
  request,
  startApi,
  type ApiResponse,
  type RegisteredUser,
  type StartedApi,
} from '../support/api.js';
import { sleep } from '../support/sockets.js';
import { startCluster, type Cluster } from '../../scripts/cluster.js';
import { clusterRedisPrefix } from '../pipeline/fixtures.js';

const DEFAULT_LIMIT = 1000;

/** The URL in a `Link: <url>; rel="next"` header, or null when there is none. */
function nextLink(res: ApiResponse): string | null {
  const link = res.headers.get('link');
  if (link === null) return null;
  const match = /^<([^>]+)>; rel="next"$/.exec(link);
  expect(match, `Link header: ${link}`).to.not.equal(null);
  return match![1];
}

/** Every page from `path`, following the Link headers; checks each body is `{[items]}` alone. */
async function allPages(base: string, token: string, path: string, items: 'members' | 'channels' | 'workspaces' = 'members'): Promise<{ pages: unknown[][]; items: unknown[] }> {
  const pages: unknown[][] = [];
  let url: string | null = path;
  while (url !== null) {
    // The link is path-absolute (/api/v1/...); request() takes paths under /api/v1.
    const res = await request(base, 'GET', url.replace(/^\/api\/v1/, ''), { token });
    expect(res.status, res.text).to.equal(200);
    expect(res.body).to.have.all.keys(items);
    pages.push(res.body[items]);
    url = nextLink(res);
    expect(pages.length, 'pages followed').to.be.below(50);
  }
  return { pages, items: pages.flat() };
}

describe('Member lists, a page at a time (REST)', function () {
  let api: StartedApi;
  let base: string;
  let owner: RegisteredUser;
  let workspaceId: string;
  let channelId: string;
  let users: RegisteredUser[];

  before(async function () {
    api = await startApi();
    base = api.baseUrl;
    owner = await registerUser(base);
    workspaceId = (await createWorkspace(base, owner.token)).id;
    channelId = (await createChannel(base, owner.token, workspaceId)).id;
    users = [];
    // One at a time: the list's order is the order they joined.
    for (let i = 0; i < 6; i++) {
      const user = await registerUser(base);
      await addWorkspaceMember(base, owner.token, workspaceId, user.email);
      await addChannelMember(base, owner.token, channelId, user.user.id);
      users.push(user);
    }
  });

  after(async function () {
    await api?.stop();
  });

  for (const list of ['workspace', 'channel'] as const) {
    const path = () => (list === 'workspace' ? `/workspaces/${workspaceId}/members` : `/channels/${channelId}/members`);

    it(`When a ${list}'s members are read 3 at a time, then the Link headers lead through every member once, in the order of the whole list, and the last page has none`, async function () {
      const whole = await request(base, 'GET', path(), { token: owner.token });
      expect(whole.status).to.equal(200);
      expect(nextLink(whole), 'all 7 fit the default page').to.equal(null);
      expect(whole.body.members.map((m: { userId: string }) => m.userId)).to.deep.equal([owner, ...users].map((u) => u.user.id));

      const { pages, items: members } = await allPages(base, owner.token, `/api/v1${path()}?limit=3`);
      expect(pages.map((p) => p.length)).to.deep.equal([3, 3, 1]);
      expect(members).to.deep.equal(whole.body.members);
    });

    it(`When a ${list}'s page boundary member leaves before the next page is read, then the next page still starts after it`, async function () {
      const first = await request(base, 'GET', `${path()}?limit=2`, { token: owner.token });
      const boundary = first.body.members[1].userId;
      const leaver = users.find((u) => u.user.id === boundary)!;
      expect(leaver, 'the second member is one of the added users').to.not.equal(undefined);
      const leave = list === 'workspace' ? `/workspaces/${workspaceId}/members/${boundary}` : `/channels/${channelId}/members/${boundary}`;
      expect((await request(base, 'DELETE', leave, { token: owner.token })).status).to.equal(204);
      try {
        const next = await request(base, 'GET', nextLink(first)!.replace(/^\/api\/v1/, ''), { token: owner.token });
        expect(next.status).to.equal(200);
        expect(next.body.members.map((m: { userId: string }) => m.userId)).to.deep.equal(users.slice(1, 3).map((u) => u.user.id));
      } finally {
        // Back in, now the last to have joined: the tests after this one expect it at the end.
        if (list === 'workspace') {
          await addWorkspaceMember(base, owner.token, workspaceId, leaver.email);
          await addChannelMember(base, owner.token, channelId, leaver.user.id);
        } else {
          await addChannelMember(base, owner.token, channelId, leaver.user.id);
        }
        users = [...users.filter((u) => u !== leaver), leaver];
      }
    });

    it(`When a ${list}'s member list is asked with a bad limit, a cursor it did not give or an unknown parameter, then 400 VALIDATION_FAILED`, async function () {
      const forged = Buffer.from(`2026-12-03T11:20:00Z_${owner.user.id}`).toString('base64url');
      for (const query of ['limit=0', `limit=${DEFAULT_LIMIT + 1}`, 'limit=abc', 'cursor=not-a-cursor', `cursor=${forged}`, `cursor=${'x'.repeat(201)}`, 'after=1']) {
        const res = await request(base, 'GET', `${path()}?${query}`, { token: owner.token });
        expectError(res, 400, 'VALIDATION_FAILED');
      }
    });
  }

  it("When a guest pages through the workspace's members, then the pages hold exactly what the guest's whole list holds: themself and their channels' members", async function () {
    const guest = await registerUser(base);
    await addWorkspaceMember(base, owner.token, workspaceId, guest.email, 'guest');
    const shared = (await createChannel(base, owner.token, workspaceId, { name: `guests-${Date.now()}` })).id;
    await addChannelMember(base, owner.token, shared, guest.user.id);
    await addChannelMember(base, owner.token, shared, users[3].user.id);
    const whole = await request(base, 'GET', `/workspaces/${workspaceId}/members`, { token: guest.token });
    expect(whole.body.members.map((m: { userId: string }) => m.userId)).to.have.members([owner.user.id, users[3].user.id, guest.user.id]);
    const { pages, items: members } = await allPages(base, guest.token, `/api/v1/workspaces/${workspaceId}/members?limit=1`);
    expect(pages).to.have.length(3);
    expect(members).to.deep.equal(whole.body.members);
  });

  it(`When a workspace has more than ${DEFAULT_LIMIT} members, then a list without a limit holds the first ${DEFAULT_LIMIT} and links to the rest`, async function () {
    this.timeout(240_000);
    // The product's defaults but for the password hashing cost: 1,000 registrations at the default
    // cost would take minutes, and hashing is not what this test is about.
    const fast = await startApi({ BCRYPT_ROUNDS: '4' });
    try {
      const founder = await registerUser(fast.baseUrl);
      const ws = (await createWorkspace(fast.baseUrl, founder.token)).id;
      // One founder adds them all, as a client within its REST budget (REST_RATE_PER_SECOND) does: waiting
      // out each 429 for its Retry-After.
      const add = async (email: string) => {
        for (;;) {
          const res = await request(fast.baseUrl, 'POST', `/workspaces/${ws}/members`, { token: founder.token, body: { email } });
          if (res.status !== 429) return expect(res.status, res.text).to.equal(201);
          await sleep(Number(res.headers.get('retry-after')) * 1000);
        }
      };
      for (let i = 0; i < DEFAULT_LIMIT; i += 50) {
        await Promise.all(Array.from({ length: 50 }, async () => add((await registerUser(fast.baseUrl)).email)));
      }
      const first = await request(fast.baseUrl, 'GET', `/workspaces/${ws}/members`, { token: founder.token });
      expect(first.status).to.equal(200);
      expect(first.body.members).to.have.length(DEFAULT_LIMIT);
      expect(first.body.members[0].userId).to.equal(founder.user.id);
      const link = nextLink(first);
      expect(link).to.match(new RegExp(`^/api/v1/workspaces/${ws}/members\\?limit=${DEFAULT_LIMIT}&cursor=`));
      const rest = await request(fast.baseUrl, 'GET', link!.replace(/^\/api\/v1/, ''), { token: founder.token });
      expect(rest.body.members).to.have.length(1);
      expect(nextLink(rest)).to.equal(null);
      const ids = new Set([...first.body.members, ...rest.body.members].map((m: { userId: string }) => m.userId));
      expect(ids.size).to.equal(DEFAULT_LIMIT + 1);
    } finally {
      await fast.stop();
    }
  });
});

describe('Channel lists, a page at a time (REST)', function () {
  let api: StartedApi;
  let base: string;
  let owner: RegisteredUser;
  let workspaceId: string;

  const names = (channels: unknown[]) => (channels as Array<{ name: string }>).map((c) => c.name);
  const path = () => `/workspaces/${workspaceId}/channels`;

  before(async function () {
    api = await startApi();
    base = api.baseUrl;
    owner = await registerUser(base);
    workspaceId = (await createWorkspace(base, owner.token)).id;
    // Created out of name order: the list's order is the names'.
    for (const name of ['echo', 'alpha', 'delta', 'bravo', 'charlie']) await createChannel(base, owner.token, workspaceId, { name });
    await createChannel(base, owner.token, workspaceId, { name: 'foxtrot', isPrivate: true });
    // A private channel the owner is not in is on none of the owner's pages.
    const other = await registerUser(base);
    await addWorkspaceMember(base, owner.token, workspaceId, other.email);
    await createChannel(base, other.token, workspaceId, { name: 'bravo-private', isPrivate: true });
  });

  after(async function () {
    await api?.stop();
  });

  it('When the channels are read 2 at a time, then the Link headers lead through every channel once, by name, each as in the whole list, and the last page has none', async function () {
    const whole = await request(base, 'GET', path(), { token: owner.token });
    expect(whole.status).to.equal(200);
    expect(nextLink(whole), 'all fit the default page').to.equal(null);
    expect(names(whole.body.channels)).to.deep.equal(['alpha', 'bravo', 'charlie', 'delta', 'echo', 'foxtrot']);

    const { pages, items } = await allPages(base, owner.token, `/api/v1${path()}?limit=2`, 'channels');
    expect(pages.map((p) => p.length)).to.deep.equal([2, 2, 2]);
    // Read state and all: the same items as the whole list.
    expect(items).to.deep.equal(whole.body.channels);
  });

  it('When channels are created between two pages, then the next page still starts after the last name read, and a new name after it is on it', async function () {
    const first = await request(base, 'GET', `${path()}?limit=2`, { token: owner.token });
    expect(names(first.body.channels)).to.deep.equal(['alpha', 'bravo']);
    await createChannel(base, owner.token, workspaceId, { name: 'aardvark' });
    await createChannel(base, owner.token, workspaceId, { name: 'bz' });
    const next = await request(base, 'GET', nextLink(first)!.replace(/^\/api\/v1/, ''), { token: owner.token });
    expect(next.status).to.equal(200);
    expect(names(next.body.channels)).to.deep.equal(['bz', 'charlie']);
  });

  it("When a guest pages through the channels, then the pages hold exactly the guest's whole list: the channels they are in", async function () {
    const guest = await registerUser(base);
    await addWorkspaceMember(base, owner.token, workspaceId, guest.email, 'guest');
    const byName = new Map(
      ((await request(base, 'GET', path(), { token: owner.token })).body.channels as Array<{ id: string; name: string }>).map((c) => [c.name, c.id]),
    );
    for (const name of ['charlie', 'echo', 'foxtrot']) await addChannelMember(base, owner.token, byName.get(name)!, guest.user.id);
    const whole = await request(base, 'GET', path(), { token: guest.token });
    expect(names(whole.body.channels)).to.deep.equal(['charlie', 'echo', 'foxtrot']);
    const { pages, items } = await allPages(base, guest.token, `/api/v1${path()}?limit=1`, 'channels');
    expect(pages).to.have.length(3);
    expect(items).to.deep.equal(whole.body.channels);
  });

  it('When the channel list is asked with a bad limit, a cursor it did not give or an unknown parameter, then 400 VALIDATION_FAILED', async function () {
    const notAName = Buffer.from('Not A Name!').toString('base64url');
    const memberCursor = Buffer.from(`2026-12-03T11:20:00.000000Z_${owner.user.id}`).toString('base64url');
    for (const query of ['limit=0', `limit=${DEFAULT_LIMIT + 1}`, 'limit=abc', `cursor=${notAName}`, `cursor=${memberCursor}`, `cursor=${'x'.repeat(201)}`, 'after=alpha']) {
      const res = await request(base, 'GET', `${path()}?${query}`, { token: owner.token });
      expectError(res, 400, 'VALIDATION_FAILED');
    }
  });

  it(`When a workspace has more than ${DEFAULT_LIMIT} channels, then a list without a limit holds the first ${DEFAULT_LIMIT} by name and links to the rest`, async function () {
    this.timeout(120_000);
    const founder = await registerUser(base);
    const ws = (await createWorkspace(base, founder.token)).id;
    // As a client within its REST budget (REST_RATE_PER_SECOND) does: waiting out each 429 for its Retry-After.
    const create = async (name: string) => {
      for (;;) {
        const res = await request(base, 'POST', `/workspaces/${ws}/channels`, { token: founder.token, body: { name } });
        if (res.status !== 429) return expect(res.status, res.text).to.equal(201);
        await sleep(Number(res.headers.get('retry-after')) * 1000);
      }
    };
    const all = Array.from({ length: DEFAULT_LIMIT + 1 }, (_, i) => `c-${String(i).padStart(4, '0')}`);
    for (let i = 0; i < all.length; i += 50) await Promise.all(all.slice(i, i + 50).map(create));
    const first = await request(base, 'GET', `/workspaces/${ws}/channels`, { token: founder.token });
    expect(first.status).to.equal(200);
    expect(names(first.body.channels)).to.deep.equal(all.slice(0, DEFAULT_LIMIT));
    const link = nextLink(first);
    expect(link).to.match(new RegExp(`^/api/v1/workspaces/${ws}/channels\\?limit=${DEFAULT_LIMIT}&cursor=`));
    const rest = await request(base, 'GET', link!.replace(/^\/api\/v1/, ''), { token: founder.token });
    expect(names(rest.body.channels)).to.deep.equal(all.slice(DEFAULT_LIMIT));
    expect(nextLink(rest)).to.equal(null);
  });
});

describe('The DM list, a page at a time (REST)', function () {
  let api: StartedApi;
  let base: string;
  let owner: RegisteredUser;
  let workspaceId: string;
  let others: RegisteredUser[];
  const path = () => `/workspaces/${workspaceId}/dms`;
  const ids = (list: Array<{ id: string }>) => list.map((c) => c.id);

  before(async function () {
    api = await startApi();
    base = api.baseUrl;
    owner = await registerUser(base);
    workspaceId = (await createWorkspace(base, owner.token)).id;
    others = [await registerUser(base), await registerUser(base), await registerUser(base)];
    for (const other of others) await addWorkspaceMember(base, owner.token, workspaceId, other.email);
    // Seven DMs of the owner (every set of the three others), none with a message: the newest opened first.
    for (const set of [[0], [1], [2], [0, 1], [0, 2], [1, 2], [0, 1, 2]]) {
      await openDm(base, owner.token, workspaceId, set.map((i) => others[i].user.id));
    }
  });

  after(async function () {
    await api?.stop();
  });

  it('When the DMs are read 3 at a time, then the Link headers lead through every DM once, the most recently active first, each as in the whole list, and the last page has none', async function () {
    const whole = await request(base, 'GET', path(), { token: owner.token });
    expect(whole.status).to.equal(200);
    expect(nextLink(whole), 'all fit the default page').to.equal(null);
    const channels = whole.body.channels as Array<{ id: string; lastActivityAt: string }>;
    expect(channels).to.have.length(7);
    const times = channels.map((c) => c.lastActivityAt);
    expect(times, 'the most recent first').to.deep.equal([...times].sort().reverse());

    const { pages, items } = await allPages(base, owner.token, `/api/v1${path()}?limit=3`, 'channels');
    expect(pages.map((p) => p.length)).to.deep.equal([3, 3, 1]);
    expect(items).to.deep.equal(whole.body.channels);
  });

  it('When a DM is opened between two pages, then it heads the list, and the next page still starts after the last DM read', async function () {
    const whole = ids((await request(base, 'GET', path(), { token: owner.token })).body.channels);
    const first = await request(base, 'GET', `${path()}?limit=2`, { token: owner.token });
    expect(ids(first.body.channels)).to.deep.equal(whole.slice(0, 2));
    const newcomer = await registerUser(base);
    await addWorkspaceMember(base, owner.token, workspaceId, newcomer.email);
    const fresh = await openDm(base, newcomer.token, workspaceId, [owner.user.id]);
    const next = await request(base, 'GET', nextLink(first)!.replace(/^\/api\/v1/, ''), { token: owner.token });
    expect(next.status).to.equal(200);
    expect(ids(next.body.channels)).to.deep.equal(whole.slice(2, 4));
    const again = ids((await request(base, 'GET', path(), { token: owner.token })).body.channels);
    expect(again[0]).to.equal(fresh.id);
  });

  it('When the DM list is asked with a bad limit, a cursor it did not give or an unknown parameter, then 400 VALIDATION_FAILED', async function () {
    const channelCursor = Buffer.from('alpha').toString('base64url');
    for (const query of ['limit=0', `limit=${DEFAULT_LIMIT + 1}`, 'limit=abc', `cursor=${channelCursor}`, `cursor=${'x'.repeat(201)}`, 'before=1']) {
      const res = await request(base, 'GET', `${path()}?${query}`, { token: owner.token });
      expectError(res, 400, 'VALIDATION_FAILED');
    }
  });
});

describe('The unread list, a page at a time (REST)', function () {
  this.timeout(60_000);
  // A worker stores the messages that make channels unread: a cluster of one front node and one worker.
  let cluster: Cluster;
  let base: string;
  let reader: RegisteredUser;
  const path = '/me/unread';

  before(async function () {
    cluster = await startCluster({ servers: 1, workers: 1, env: { REDIS_PREFIX: clusterRedisPrefix('unread-pages') } });
    base = cluster.urls[0];
    reader = await registerUser(base);
    const writer = await registerUser(base);
    // Two workspaces, each with channels and a DM of the two, one unread message in each.
    for (const names of [['gamma', 'alpha', 'beta'], ['delta']]) {
      const workspaceId = (await createWorkspace(base, reader.token)).id;
      await addWorkspaceMember(base, reader.token, workspaceId, writer.email);
      const targets = [];
      for (const name of names) {
        const channel = await createChannel(base, reader.token, workspaceId, { name });
        await addChannelMember(base, reader.token, channel.id, writer.user.id);
        targets.push(channel.id);
      }
      targets.push((await openDm(base, writer.token, workspaceId, [reader.user.id])).id);
      for (const channelId of targets) {
        const sent = await request(base, 'POST', `/channels/${channelId}/messages`, { token: writer.token, body: { body: 'unread' } });
        expect(sent.status, sent.text).to.equal(201);
      }
    }
  });

  after(async function () {
    await cluster?.stop();
  });

  it('When the unread channels are read 2 at a time, then the Link headers lead through each once, by workspace, then channels by name, then DMs, each as in the whole list', async function () {
    const whole = await request(base, 'GET', path, { token: reader.token });
    expect(whole.status).to.equal(200);
    expect(nextLink(whole), 'all fit the default page').to.equal(null);
    const channels = whole.body.channels as Array<{ workspaceId: string; kind: string; name: string | null }>;
    expect(channels).to.have.length(6);
    const order = channels.map((c) => [c.workspaceId, c.kind === 'dm' ? '~' : c.name].join(' '));
    expect(order, 'by workspace, channels by name, then the DM').to.deep.equal([...order].sort());
    expect(channels.filter((c) => c.kind === 'dm').map((c) => c.name)).to.deep.equal([null, null]);

    const { pages, items } = await allPages(base, reader.token, `/api/v1${path}?limit=2`, 'channels');
    expect(pages.map((p) => p.length)).to.deep.equal([2, 2, 2]);
    expect(items).to.deep.equal(whole.body.channels);
  });

  it('When a channel is read between two pages, then it leaves the list and the next page still starts after the last channel read', async function () {
    const whole = (await request(base, 'GET', path, { token: reader.token })).body.channels as Array<{ channelId: string; lastSeq: number }>;
    const first = await request(base, 'GET', `${path}?limit=2`, { token: reader.token });
    const read = await request(base, 'POST', `/channels/${whole[2].channelId}/read`, { token: reader.token, body: { seq: whole[2].lastSeq } });
    expect(read.status, read.text).to.equal(200);
    const next = await request(base, 'GET', nextLink(first)!.replace(/^\/api\/v1/, ''), { token: reader.token });
    expect(next.body.channels.map((c: { channelId: string }) => c.channelId)).to.deep.equal([whole[3].channelId, whole[4].channelId]);
  });

  it('When the unread list is asked with a bad limit, a cursor it did not give or an unknown parameter, then 400 VALIDATION_FAILED', async function () {
    const channelCursor = Buffer.from('alpha').toString('base64url');
    const forged = Buffer.from(JSON.stringify(['not-a-uuid', null, 'x'])).toString('base64url');
    for (const query of ['limit=0', `limit=${DEFAULT_LIMIT + 1}`, `cursor=${channelCursor}`, `cursor=${forged}`, 'after=1']) {
      const res = await request(base, 'GET', `${path}?${query}`, { token: reader.token });
      expectError(res, 400, 'VALIDATION_FAILED');
    }
  });
});

describe("The caller's workspaces, a page at a time (REST)", function () {
  let api: StartedApi;
  let token: string;
  const get = (query = '') => request(api.baseUrl, 'GET', `/workspaces${query}`, { token });

  before(async function () {
    api = await startApi();
    ({ token } = await registerUser(api.baseUrl));
    for (let i = 0; i < 5; i++) await createWorkspace(api.baseUrl, token);
  });

  after(async function () {
    await api?.stop();
  });

  it('When the workspaces are read 2 at a time, then the Link headers lead through each once, in the order they were created, each as in the whole list', async function () {
    const whole = await get();
    expect(whole.status).to.equal(200);
    expect(nextLink(whole), 'all fit the default page').to.equal(null);
    expect(whole.body.workspaces).to.have.length(5);
    const { pages, items } = await allPages(api.baseUrl, token, '/api/v1/workspaces?limit=2', 'workspaces');
    expect(pages.map((p) => p.length)).to.deep.equal([2, 2, 1]);
    expect(items).to.deep.equal(whole.body.workspaces);
  });

  it('When the workspace list is asked with a bad limit, a cursor it did not give or an unknown parameter, then 400 VALIDATION_FAILED', async function () {
    const channelCursor = Buffer.from('alpha').toString('base64url');
    for (const query of ['limit=0', `limit=${DEFAULT_LIMIT + 1}`, `cursor=${channelCursor}`, 'before=1']) {
      expectError(await get(`?${query}`), 400, 'VALIDATION_FAILED');
    }
  });
});
