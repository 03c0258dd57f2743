/**
 * Shared set-up of the pipeline tests: a real cluster (2 front nodes, 2 workers), seeding through REST,
 * and direct reads of the messages table to check what was really stored.
 */
import { randomUUID } from 'node:crypto';
import { Redis } from 'ioredis';
import { expect } from 'chai';
import Knex from 'knex';
import pg from 'pg';
import { startCluster, type Cluster } from '../../scripts/cluster.js';
import type { MessageDto } from '../../shared/models/Message.js';
import {
  addChannelMember,
  addWorkspaceMember,
  createChannel,
  createWorkspace,
  registerUser,
  request,
  type ChannelDto,
  type RegisteredUser,
  type WorkspaceDto,
} from '../support/api.js';
import { connect, disconnectAll, range, send, sleep, waitFor, type Transport } from '../support/sockets.js';
import { persistMessages } from '../../worker/actions/persistMessages.js';

/**
 * The Redis prefix of a test file's cluster: under the run's prefix (so the run's clean-up removes it), and
 * its own, so no queue, job or pub/sub channel of one file's cluster is seen by another's.
 */
export function clusterRedisPrefix(name: string): string {
  return `${process.env.REDIS_PREFIX}.${name}`;
}

/**
 * Cuts every front node's adapter subscriber connection of a test file's cluster (CLIENT KILL): what is
 * published before ioredis reconnects it never reaches those nodes, as in a network blip. Resolves with
 * how many it cut.
 */
export async function killAdapterSubscribers(name: string): Promise<number> {
  const redis = new Redis(process.env.REDIS_URL!);
  try {
    const client = `${clusterRedisPrefix(name)}:front-adapter-sub`;
    const ids = String(await redis.client('LIST'))
      .split('\n')
      .filter((line) => line.includes(` name=${client} `))
      .map((line) => /\bid=(\d+)/.exec(line)![1]);
    for (const id of ids) await redis.client('KILL', 'ID', id);
    return ids.length;
  } finally {
    redis.disconnect();
  }
}

/**
 * One per test file: start takes several seconds on a small machine, so a file's tests share it.
 *
 * The cluster runs the product's defaults, the send rate limit included (MESSAGE_RATE_PER_SECOND 50: a
 * burst of 500 sends per user per 10 s, leased from Redis 10 points at a time): what users run is what
 * the tests run. A test that must exceed one user's budget passes MESSAGE_RATE_PER_SECOND in `env`
 * itself, and says why.
 */
export function startPipelineCluster(name: string, env: Record<string, string> = {}): Promise<Cluster> {
  return startCluster({
    servers: 2,
    workers: 2,
    env: { REDIS_PREFIX: clusterRedisPrefix(name), ...env },
  });
}

/**
 * A test file's cluster as mocha hooks: started before its tests (then `started(cluster)`, which takes the
 * node URLs it needs), every socket closed after each test, and stopped after them all, failing the file if
 * one of its processes died meanwhile. For files whose cluster needs nothing else.
 */
export function useCluster(name: string, started: (cluster: Cluster) => void, env: Record<string, string> = {}): void {
  let cluster: Cluster | undefined;
  before(async () => {
    cluster = await startPipelineCluster(name, env);
    started(cluster);
  });
  afterEach(() => disconnectAll());
  after(async () => {
    disconnectAll();
    const dead = deadProcesses(cluster);
    await cluster?.stop();
    await closeDb();
    expect(dead, dead.join('\n')).to.deep.equal([]);
  });
}

/**
 * The cluster's processes that are gone although the test did not stop them, each with its last output
 * (the stack trace of a crash): for failure messages and after() hooks. Empty while all are alive.
 */
export function deadProcesses(cluster: Cluster | undefined): string[] {
  if (!cluster) return [];
  return [...cluster.servers, ...cluster.workers]
    .filter((p) => !p.alive)
    .map((p) => `${p.kind} pid ${p.pid}${p.url ? ` (${p.url})` : ''} is gone; its last output:\n${p.output.toString() || '(none)'}`);
}

let pool: pg.Pool | undefined;

function db(): pg.Pool {
  if (!pool) {
    pool = new pg.Pool({ connectionString: process.env.DATABASE_URL, max: 2 });
    // An idle connection that breaks (or errors while the pool ends) is dropped by the pool; unhandled,
    // the 'error' event would crash the whole mocha process.
    pool.on('error', () => {});
  }
  return pool;
}

/** A statement on the run's database, for data a test seeds in bulk and for brute-force answers. */
export async function dbQuery<T extends pg.QueryResultRow>(text: string, values: unknown[] = []): Promise<T[]> {
  return (await db().query<T>(text, values)).rows;
}

/**
 * A message stored as a worker stores it and never published (its worker died between commit and
 * publish), then one published as usual by `sender` through `url`: a node that had not seen the first
 * must fill it in from PostgreSQL. The socket whose message:new are `news` gets both, in rev order, each
 * once, and nothing of the channel before them.
 */
export async function expectUnheardFilledIn(url: string, channel: ChannelDto, sender: RegisteredUser, news: MessageDto[]): Promise<void> {
  const knex = Knex({ client: 'pg', connection: process.env.DATABASE_URL, pool: { min: 0, max: 1 } });
  let unheardRev: number;
  try {
    const stored = await persistMessages(knex, [
      { kind: 'send', id: randomUUID(), channelId: channel.id, userId: sender.user.id, body: 'never published', clientMsgId: `unheard-${randomUUID()}` },
    ]);
    const outcome = Object.values(stored.outcomes)[0];
    expect(outcome).to.include({ ok: true });
    unheardRev = (outcome as { rev: number }).rev;
  } finally {
    await knex.destroy();
  }
  const published = await request(url, 'POST', `/channels/${channel.id}/messages`, { body: { body: 'published', clientMsgId: `heard-${randomUUID()}` }, token: sender.token });
  expect(published.status).to.equal(201);
  await waitFor(() => news.length >= 2, 10_000, () => `received ${JSON.stringify(news.map((m) => m.rev))}`);
  await sleep(200);
  expect(news.map((m) => [m.rev, m.body])).to.deep.equal([
    [unheardRev, 'never published'],
    [unheardRev + 1, 'published'],
  ]);
}

export async function closeDb(): Promise<void> {
  const p = pool;
  pool = undefined;
  await p?.end();
}

export interface StoredMessage {
  id: string;
  seq: number;
  userId: string;
  body: string;
  clientMsgId: string | null;
}

/** The channel's rows in the messages table, by seq. */
export async function storedMessages(channelId: string): Promise<StoredMessage[]> {
  const { rows } = await db().query(
    `SELECT id, seq::int AS seq, user_id AS "userId", body, client_msg_id AS "clientMsgId"
       FROM messages WHERE channel_id = $1 ORDER BY seq`,
    [channelId],
  );
  return rows;
}

/** How many rows the messages table holds for any of `channelIds`. */
export async function storedCount(channelIds: string[]): Promise<number> {
  const { rows } = await db().query('SELECT count(*)::int AS n FROM messages WHERE channel_id = ANY($1::uuid[])', [channelIds]);
  return rows[0].n;
}

/** How many rows a user stored with this clientMsgId (0 or 1 by the unique index). */
export async function storedByClientMsgId(userId: string, clientMsgId: string): Promise<number> {
  const { rows } = await db().query(
    'SELECT count(*)::int AS n FROM messages WHERE user_id = $1 AND client_msg_id = $2',
    [userId, clientMsgId],
  );
  return rows[0].n;
}

export async function channelLastSeq(channelId: string): Promise<number> {
  const { rows } = await db().query('SELECT last_seq::int AS n FROM channels WHERE id = $1', [channelId]);
  return rows[0].n;
}

/** The whole history of a channel through REST, paging forwards with `after`. */
export async function fullHistory(baseUrl: string, token: string, channelId: string): Promise<MessageDto[]> {
  const all: MessageDto[] = [];
  for (let after = 0; ; ) {
    const res = await request(baseUrl, 'GET', `/channels/${channelId}/messages?after=${after}&limit=200`, { token });
    if (res.status !== 200) throw new Error(`history: HTTP ${res.status}: ${res.text}`);
    all.push(...res.body.messages);
    if (!res.body.hasMore) return all;
    after = res.body.messages[res.body.messages.length - 1].seq;
  }
}

export interface Team {
  owner: RegisteredUser;
  workspace: WorkspaceDto;
  /** Workspace members (role member), in creation order. */
  members: RegisteredUser[];
}

/** An owner and `count` more workspace members, registered and added through `baseUrl`. */
export async function seedTeam(baseUrl: string, count: number): Promise<Team> {
  const owner = await registerUser(baseUrl);
  const workspace = await createWorkspace(baseUrl, owner.token);
  const members = await Promise.all(Array.from({ length: count }, () => registerUser(baseUrl)));
  for (const m of members) await addWorkspaceMember(baseUrl, owner.token, workspace.id, m.email);
  return { owner, workspace, members };
}

/** A channel created by the owner (its first member) with `members` added. */
export async function seedChannel(
  baseUrl: string,
  team: Team,
  members: RegisteredUser[],
  options: { isPrivate?: boolean } = {},
): Promise<ChannelDto> {
  const channel = await createChannel(baseUrl, team.owner.token, team.workspace.id, options);
  for (const m of members) await addChannelMember(baseUrl, team.owner.token, channel.id, m.user.id);
  return channel;
}

/** Strictly increasing. */
export function isIncreasing(values: number[]): boolean {
  return values.every((v, i) => i === 0 || v > values[i - 1]);
}

/**
 * One user pipelines `burst + extra` sends into a fresh channel from one socket over `transport`, all
 * emitted at once without waiting for acks, so the budget runs out in the middle of the stream. One
 * front node: at most `lease − 1` points are lost to the lease (docs/PIPELINE.md).
 *
 * A socket's sends are taken in the order they were sent: the ones within the budget are exactly the
 * first ones, the rest are RATE_LIMITED, and the refusals do not reorder the accepted ones (acked seqs
 * and stored rows in emission order).
 */
export async function expectBudgetRunsOutMidStream(url: string, burst: number, lease: number, transport: Transport): Promise<void> {
  const extra = 30;
  const team = await seedTeam(url, 1);
  const [dave] = team.members;
  const channel = await seedChannel(url, team, [dave]);
  const socket = await connect(url, dave.token, { transport });
  const tag = `mid-${transport}`;
  const outcomes = await Promise.all(
    range(burst + extra, 0).map((k) => send(socket, { channelId: channel.id, body: `${tag} #${k}`, clientMsgId: `${tag}-${k}` }, 30_000)),
  );
  const verdicts = outcomes.map((o) => (o.ok ? 'ok' : o.error.code));
  const accepted = verdicts.filter((v) => v === 'ok').length;
  expect(accepted, `accepted sends of ${burst + extra}: ${verdicts.join(',')}`).to.be.within(burst - (lease - 1), burst);
  const firstRefused = verdicts.indexOf('RATE_LIMITED');
  expect(
    verdicts,
    `the first ${accepted} sends (in emission order) are accepted, every later one RATE_LIMITED; the first refusal is #${firstRefused}`,
  ).to.deep.equal([...Array(accepted).fill('ok'), ...Array(burst + extra - accepted).fill('RATE_LIMITED')]);

  const seqs = outcomes.flatMap((o) => (o.ok ? [o.message.seq] : []));
  expect(seqs, 'acked seqs in emission order').to.deep.equal(range(accepted));
  const stored = await storedMessages(channel.id);
  expect(stored.map((m) => m.clientMsgId), 'stored rows by seq, in emission order').to.deep.equal(range(accepted, 0).map((k) => `${tag}-${k}`));
}
