import { randomUUID } from 'node:crypto';
import type { Knex } from 'knex';

/**
 * A workspace of `users` members and `channels` channels that every one of them is in, written straight
 * into a profile's scratch database: what persistMessages() needs to store sends and changes.
 */
export async function seedScratchTeam(knex: Knex, o: { name: string; users: number; channels: number }): Promise<{ workspaceId: string; users: string[]; channels: string[] }> {
  const workspaceId = randomUUID();
  await knex.raw('INSERT INTO workspaces (id, name) VALUES (?, ?)', [workspaceId, o.name]);
  const users = Array.from({ length: o.users }, () => randomUUID());
  const channels = Array.from({ length: o.channels }, () => randomUUID());
  for (const userId of users) {
    await knex.raw('INSERT INTO users (id, email, display_name, password_hash) VALUES (?, ?, ?, ?)', [userId, `${userId}@bench.test`, 'p', 'x']);
    await knex.raw("INSERT INTO workspace_members (workspace_id, user_id, role) VALUES (?, ?, 'member')", [workspaceId, userId]);
  }
  for (const [c, channelId] of channels.entries()) {
    await knex.raw('INSERT INTO channels (id, workspace_id, name) VALUES (?, ?, ?)', [channelId, workspaceId, `${o.name.replaceAll(' ', '-')}-${c}`]);
    for (const userId of users) await knex.raw('INSERT INTO channel_members (channel_id, user_id) VALUES (?, ?)', [channelId, userId]);
  }
  return { workspaceId, users, channels };
}
