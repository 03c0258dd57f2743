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
 * Reads the targets of the changes made in one turn of the event loop with one call. Changes are
 * authorized on the front node (sends are not: the worker checks membership), and a planned statement per
 * change cost PostgreSQL several persisted sends (bench/profile/changeCost.ts): under mixed load it was
 * what made sends slower (docs/PERFORMANCE.md). Never cached: the rows must be read after the change was made.
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
  // migrations/*_change_targets.ts: a function, so that PostgreSQL keeps its plan.
  const { rows } = await knex.raw<{ rows: (ChangeTarget & { i: string })[] }>(
    'SELECT * FROM change_targets(?::uuid[], ?::uuid[], ?::uuid[], ?::text[])',
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
