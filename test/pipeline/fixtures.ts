/**
 * Shared set-up of the pipeline tests: a real cluster (2 front nodes, 2 workers), seeding through REST,
 * and direct reads of the messages table to check what was really stored.
 */
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

/**
 * The Redis prefix of a test file's cluster: under the run's prefix (so the run's clean-up removes it), and
 * its own, so no queue, job or pub/sub channel of one file's cluster is seen by another's.
 */
export function clusterRedisPrefix(name: string): string {
  return `${process.env.REDIS_PREFIX}.${name}`;
}

/** One per test file: start takes several seconds on a small machine, so a file's tests share it. */
export function startPipelineCluster(name: string, env: Record<string, string> = {}): Promise<Cluster> {
  return startCluster({
    servers: 2,
    workers: 2,
    // The send rate limit has its own test (rate-limit.test.ts); here it would only turn bursts into RATE_LIMITED acks.
    env: { MESSAGE_RATE_PER_SECOND: '0', REDIS_PREFIX: clusterRedisPrefix(name), ...env },
  });
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
