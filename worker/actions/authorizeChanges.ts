import type { Knex } from 'knex';
import { arrayBindings } from '../../shared/db.js';
import { NotFoundError, type AppError } from '../../shared/errors.js';
import { Channel, type WorkspaceRole } from '../../shared/models/index.js';
import { can, type Action } from '../../shared/policy.js';
import { changeKind, type BatchOutcome, type ChangeKind, type ChangeRequest } from '../../shared/queues.js';

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

const ACTIONS: Record<Exclude<ChangeKind, 'send'>, Action & `message.${string}`> = {
  edit: 'message.edit',
  delete: 'message.delete',
  'reaction:add': 'message.react',
  'reaction:remove': 'message.react',
};

/**
 * The targets of `keys`, in their order (undefined: no such channel), in one call of the PL/pgSQL function
 * `change_targets` (migrations/*_change_targets.ts), whose plan PostgreSQL keeps.
 */
export async function readChangeTargets(knex: Knex, keys: readonly ChangeTargetKey[]): Promise<(ChangeTarget | undefined)[]> {
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

/**
 * Asks policy about every change of a batch, on what one read of the batch's targets found: the
 * changes it refuses are answered with its refusal and never reach persist_channel_changes. Sends pass
 * (that function checks their membership).
 *
 * Done here rather than on the front node: a read per change there, planned or not, cost PostgreSQL as
 * much as persisting a send, and with changes mixed in made sends slower (docs/PERFORMANCE.md); one per
 * batch costs a fraction. What is read may change before the batch's statement runs; the author never
 * does, and the function checks the rest again under the channel's lock (membership, archive, deletion).
 */
export async function authorizeChanges(
  knex: Knex,
  batch: ChangeRequest[],
): Promise<{ allowed: ChangeRequest[]; refused: Record<string, BatchOutcome> }> {
  const changes = batch.filter((c): c is Exclude<ChangeRequest, { kind?: 'send' }> => changeKind(c) !== 'send');
  if (changes.length === 0) return { allowed: batch, refused: {} };
  const targets = await readChangeTargets(
    knex,
    changes.map((c) => ({ userId: c.userId, channelId: c.channelId, messageId: c.messageId, clientChangeId: c.clientChangeId })),
  );
  const refused: Record<string, BatchOutcome> = {};
  changes.forEach((change, i) => {
    const refusal = decide(change.userId, change.channelId, ACTIONS[change.kind], targets[i]);
    if (refusal) refused[change.id] = { ok: false, error: refusal.toBody() };
  });
  return { allowed: batch.filter((c) => !refused[c.id]), refused };
}

function decide(userId: string, channelId: string, action: Action & `message.${string}`, row: ChangeTarget | undefined): AppError | null {
  if (!row) return new NotFoundError('Channel');
  const channel = Channel.fromJson({ id: channelId, isPrivate: row.is_private, archived: row.archived, createdBy: row.created_by });
  const actor = { userId, role: row.caller_role };
  // The retry of a change already applied was authorized then; the message may be deleted since. The
  // function answers it with the stored message, to a member of the channel.
  const decision = row.retried
    ? can(actor, 'channel.follow', { channel, isMember: row.is_member })
    : can(actor, action, {
        channel,
        isMember: row.is_member,
        message: row.author_id === null ? null : { authorId: row.author_id, deleted: row.deleted === true },
      });
  return decision.allow ? null : decision.error;
}
