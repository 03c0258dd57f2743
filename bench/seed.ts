/**
 * Seeding through the product's REST API (test/support/api.ts): an owner, a workspace, users added to it,
 * channels with members. Only the history scenario writes rows directly (scenarios/history.ts).
 */
import {
  addChannelMember,
  addWorkspaceMember,
  createChannel,
  createWorkspace,
  registerUser,
  request,
  type RegisteredUser,
  type WorkspaceDto,
} from '../test/support/api.js';
import { mapLimit } from './lib/concurrency.js';

const CONCURRENCY = 16;

export interface Team {
  baseUrl: string;
  owner: RegisteredUser;
  workspace: WorkspaceDto;
}

export interface SeededChannel {
  id: string;
  /** Members with sockets (the owner, also a member, opens none). */
  members: RegisteredUser[];
}

export async function seedTeam(baseUrl: string): Promise<Team> {
  const owner = await registerUser(baseUrl, { displayName: 'Bench owner' });
  const workspace = await createWorkspace(baseUrl, owner.token, `bench ${new Date().toISOString()}`);
  return { baseUrl, owner, workspace };
}

/** `count` new users, registered and added to the team's workspace. */
export function seedUsers(team: Team, count: number): Promise<RegisteredUser[]> {
  return mapLimit(Array.from({ length: count }), CONCURRENCY, async (_, i) => {
    const user = await registerUser(team.baseUrl, { displayName: `Bench user ${i}` });
    await addWorkspaceMember(team.baseUrl, team.owner.token, team.workspace.id, user.email);
    return user;
  });
}

/** A channel created by the owner with `members` added. */
export async function seedChannel(team: Team, members: RegisteredUser[]): Promise<SeededChannel> {
  const channel = await createChannel(team.baseUrl, team.owner.token, team.workspace.id);
  await mapLimit(members, CONCURRENCY, (m) => addChannelMember(team.baseUrl, team.owner.token, channel.id, m.user.id));
  return { id: channel.id, members };
}

/** `channels` channels, the users split evenly over them (the first users/channels in the first, ...). */
export async function seedChannels(team: Team, users: RegisteredUser[], channels: number): Promise<SeededChannel[]> {
  const perChannel = Math.floor(users.length / channels);
  return mapLimit(Array.from({ length: channels }), 4, (_, c) => seedChannel(team, users.slice(c * perChannel, (c + 1) * perChannel)));
}

/** The channel's last seq, from its newest message (0 when empty). */
export async function lastSeq(baseUrl: string, token: string, channelId: string): Promise<number> {
  const res = await request(baseUrl, 'GET', `/channels/${channelId}/messages?limit=1`, { token });
  if (res.status !== 200) throw new Error(`history of ${channelId}: HTTP ${res.status}: ${res.text}`);
  const newest = res.body.messages.at(-1);
  return newest ? newest.seq : 0;
}

export async function lastSeqs(baseUrl: string, token: string, channelIds: string[]): Promise<Record<string, number>> {
  const seqs = await mapLimit(channelIds, CONCURRENCY, (id) => lastSeq(baseUrl, token, id));
  return Object.fromEntries(channelIds.map((id, i) => [id, seqs[i]]));
}
