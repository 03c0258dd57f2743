import DataLoader from 'dataloader';
import type { Knex } from 'knex';
import { arrayBindings } from '../../shared/db.js';
import type { WorkspaceRole } from '../../shared/models/index.js';

/** What a change is authorized on: its channel, the caller's place in it, and the message it changes. */
export interface ChangeTarget {
  is_private: boolean;
  archived: boolean;
  created_by: string | null;
  caller_role: WorkspaceRole | null;
  is_member: boolean;
  author_id: string | null;
  deleted: boolean | null;
  /** The caller's `clientChangeId` is already kept: this is a retry of a change applied before. */
  retried: boolean;
}

export interface ChangeTargetKey {
  userId: string;
  channelId: string;
  messageId: string;
  clientChangeId: string | null;
}

/**
 * Reads the targets of the changes made in one turn of the event loop with one statement. Changes are
 * authorized on the front node (sends are not: the worker checks membership), and one statement per
 * change cost PostgreSQL more than persisting the change did: under mixed load it was what made sends
 * slower (docs/PERFORMANCE.md). Batching keeps that cost per turn, not per change. Never cached: the
 * rows must be read after the change was made.
 */
export class ChangeTargets {
  private readonly loader: DataLoader<ChangeTargetKey, ChangeTarget | undefined>;

  constructor(knex: Knex) {
    this.loader = new DataLoader((keys) => readTargets(knex, keys), {
      cache: false,
      // All changes whose socket frames or requests arrived in the same poll phase, not only those of one
      // I/O callback (Node drains process.nextTick after each callback).
      batchScheduleFn: (callback) => setImmediate(callback),
      maxBatchSize: 500,
    });
  }

  /** The target, or undefined when the channel does not exist. */
  read(key: ChangeTargetKey): Promise<ChangeTarget | undefined> {
    return this.loader.load(key);
  }
}

async function readTargets(knex: Knex, keys: readonly ChangeTargetKey[]): Promise<(ChangeTarget | undefined)[]> {
  const { rows } = await knex.raw<{ rows: (ChangeTarget & { i: string })[] }>(
    `SELECT k.i, c.is_private, c.archived, c.created_by, wm.role AS caller_role,
            cm.user_id IS NOT NULL AS is_member, m.user_id AS author_id, m.deleted_at IS NOT NULL AS deleted,
            EXISTS (SELECT 1 FROM client_changes cc
                     WHERE cc.user_id = k.user_id AND cc.client_change_id = k.client_change_id) AS retried
       FROM unnest(?::uuid[], ?::uuid[], ?::uuid[], ?::text[]) WITH ORDINALITY AS k(user_id, channel_id, message_id, client_change_id, i)
       JOIN channels c ON c.id = k.channel_id
       LEFT JOIN workspace_members wm ON wm.workspace_id = c.workspace_id AND wm.user_id = k.user_id
       LEFT JOIN channel_members cm ON cm.channel_id = c.id AND cm.user_id = k.user_id
       LEFT JOIN messages m ON m.id = k.message_id AND m.channel_id = c.id`,
    arrayBindings(
      keys.map((k) => k.userId),
      keys.map((k) => k.channelId),
      keys.map((k) => k.messageId),
      keys.map((k) => k.clientChangeId),
    ),
  );
  const byIndex = new Map(rows.map((row) => [Number(row.i), row]));
  return keys.map((_, index) => byIndex.get(index + 1));
}
