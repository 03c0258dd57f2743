import { randomUUID } from 'node:crypto';
import Joi, { UUID_PATTERN, charCount } from '../../shared/validation.js';
import { AppError, NotFoundError, RateLimitedError, ValidationError, invalidParentError } from '../../shared/errors.js';
import { Channel, Message, toMessageDto, type MessageDto, type WorkspaceRole } from '../../shared/models/index.js';
import type { ChangeRequest, SendOutcome } from '../../shared/queues.js';
import { toChannelEvent, type ChannelEvent, type ChannelEventRow } from '../../shared/events.js';
import type { SendAdmission } from '../messaging/admission.js';
import { authorize } from '../../shared/policy.js';

/** A client's retry key, `clientMsgId` of a send or `clientChangeId` of a change: the same rule for both. */
export const CLIENT_ID = Joi.string().pattern(/^[A-Za-z0-9_-]{1,64}$/).messages({
  'string.pattern.base': '{{#label}} must be 1-64 characters of A-Z, a-z, 0-9, _ and -',
});
export { UUID_PATTERN } from '../../shared/validation.js';

export interface SendInput {
  channelId: string;
  body: string;
  clientMsgId: string | null;
  /** A reply in the thread of that message. */
  parentId?: string | null;
}

export interface MessagingDeps {
  admission: SendAdmission;
  maxBodyLength: number;
  /** Told every send's outcome: `accepted`, or the code it was rejected with (the messages metric). */
  onOutcome?: (outcome: string) => void;
}

/** The body as stored: trimmed, and 1..max characters after trimming. */
export function normaliseBody(body: string, maxBodyLength: number): string {
  const trimmed = body.trim();
  if (trimmed.length === 0) throw new ValidationError('"body" must not be empty', [{ field: 'body' }]);
  if (charCount(trimmed) > maxBodyLength) {
    throw new ValidationError(`"body" must be at most ${maxBodyLength} characters`, [{ field: 'body' }]);
  }
  return trimmed;
}

/**
 * One send, from a socket or from REST: checked here, persisted (or rejected) by a worker. Resolves with
 * the definitive outcome; never throws for a send that reached the queue (RATE_LIMITED ones did not).
 */
export function sendMessage(deps: MessagingDeps, userId: string, input: SendInput): Promise<SendOutcome> {
  return submitToQueue(deps, userId, () => {
    const body = normaliseBody(input.body, deps.maxBodyLength);
    // Opaque ids that cannot exist never reach the queue, and look like any other unknown channel.
    if (!UUID_PATTERN.test(input.channelId)) throw new NotFoundError('Channel');
    const parentId = input.parentId ?? null;
    if (parentId !== null && !UUID_PATTERN.test(parentId)) {
      throw invalidParentError();
    }
    return {
      kind: 'send' as const,
      id: randomUUID(),
      // One spelling per channel: the partition is a hash of it.
      channelId: input.channelId.toLowerCase(),
      userId,
      body,
      clientMsgId: input.clientMsgId,
      parentId: parentId?.toLowerCase() ?? null,
    };
  });
}

/**
 * Checks a send or change (`prepare`), then admits it into the queue and waits for its outcome, which
 * the messages metric counts. A refusal found before the queue is an outcome too, except RATE_LIMITED.
 */
export async function submitToQueue(
  deps: MessagingDeps,
  userId: string,
  prepare: () => ChangeRequest | Promise<ChangeRequest>,
): Promise<SendOutcome> {
  try {
    const outcome = await admit(deps, userId, prepare);
    deps.onOutcome?.(outcome.ok ? 'accepted' : outcome.error.code);
    return outcome;
  } catch (err) {
    deps.onOutcome?.(err instanceof AppError ? err.code : 'INTERNAL');
    throw err;
  }
}

async function admit(deps: MessagingDeps, userId: string, prepare: () => ChangeRequest | Promise<ChangeRequest>): Promise<SendOutcome> {
  try {
    return await deps.admission.admit(userId, prepare);
  } catch (err) {
    // RATE_LIMITED is thrown as is (it never reached the queue): REST and socket acks add how long to
    // wait (Retry-After and RateLimit headers, retryAfterMs) from it, in server/errors.ts.
    if (err instanceof AppError && !(err instanceof RateLimitedError)) return { ok: false, error: err.toBody() };
    throw err;
  }
}

export interface HistoryQuery {
  limit: number;
  before?: number;
  after?: number;
}

/** What clients see of a message row (the kept original of an edited message is not theirs), of table alias `alias`. */
export const messageColumns = (alias: string) =>
  ['id', 'channel_id', 'seq', 'rev', 'user_id', 'body', 'client_msg_id', 'parent_id', 'created_at', 'edited_at', 'deleted_at', 'reply_count',
    'last_reply_at', 'reactions', 'mentions'].map((column) => `${alias}.${column}`).join(', ');

const MESSAGE_COLUMNS = messageColumns('m');

type MessageRow = Parameters<typeof toMessageDto>[0];

interface HistoryRow {
  is_private: boolean;
  archived: boolean;
  created_by: string | null;
  caller_role: WorkspaceRole | null;
  caller_member_id: string | null;
  parent_found: boolean;
  id: string | null;
}

/**
 * A page of history, or of one thread's replies (`parentId`). The caller's access and the page come from
 * one statement (history is the hot read path: one round trip instead of two), decided by policy
 * ('channel.history'): NOT_FOUND outside the caller's workspaces and for private channels the caller is
 * not in, FORBIDDEN for public channels the caller has not joined. Archived channels stay readable.
 * History lists top-level messages and replies alike, deleted ones included (their seq stays).
 */
export async function listHistory(
  userId: string,
  channelId: string,
  query: HistoryQuery,
  parentId: string | null = null,
): Promise<{ messages: MessageDto[]; hasMore: boolean }> {
  const ascending = query.after !== undefined;
  const bound = ascending ? 'AND m.seq > :after' : query.before !== undefined ? 'AND m.seq < :before' : '';
  const thread = parentId === null ? '' : 'AND m.parent_id = :parentId';
  // limit + 1 rows tell whether there is more beyond the page, in the same index range scan.
  const { rows } = await Message.knex().raw<{ rows: Array<HistoryRow & MessageRow> }>(
    `SELECT c.is_private, c.archived, c.created_by, wm.role AS caller_role, cm.user_id AS caller_member_id,
            (:parentId::uuid IS NULL OR EXISTS (
              SELECT 1 FROM messages pm WHERE pm.id = :parentId::uuid AND pm.channel_id = c.id AND pm.parent_id IS NULL
            )) AS parent_found, p.*
       FROM channels c
       LEFT JOIN workspace_members wm ON wm.workspace_id = c.workspace_id AND wm.user_id = :userId
       LEFT JOIN channel_members cm ON cm.channel_id = c.id AND cm.user_id = :userId
       LEFT JOIN LATERAL (
         SELECT ${MESSAGE_COLUMNS}
           FROM messages m
          WHERE m.channel_id = c.id AND cm.user_id IS NOT NULL ${thread} ${bound}
          ORDER BY m.seq ${ascending ? 'ASC' : 'DESC'}
          LIMIT :limit
       ) p ON true
      WHERE c.id = :channelId
      ORDER BY p.seq ${ascending ? 'ASC' : 'DESC'}`,
    { userId, channelId, parentId, limit: query.limit + 1, after: query.after ?? null, before: query.before ?? null },
  );
  const access = rows[0];
  if (!access) throw new NotFoundError('Channel');
  const channel = Channel.fromJson({
    id: channelId,
    isPrivate: access.is_private,
    archived: access.archived,
    createdBy: access.created_by,
  });
  authorize({ userId, role: access.caller_role }, 'channel.history', { channel, isMember: access.caller_member_id !== null });
  if (!access.parent_found) throw new NotFoundError('Message');
  const found = access.id === null ? [] : rows;
  const hasMore = found.length > query.limit;
  const page = found.slice(0, query.limit);
  if (!ascending) page.reverse();
  return { messages: page.map((row) => toMessageDto(row)), hasMore };
}

/**
 * Resume by seq: up to `limit` messages of a channel with seq > afterSeq, ascending, in their current
 * state, each with the rev it was created at, and the channel's latest rev in the same snapshot.
 */
export async function messagesAfter(
  channelId: string,
  afterSeq: number,
  limit: number,
): Promise<{ messages: Array<{ message: MessageDto; createdRev: number }>; latestRev: number }> {
  const { rows } = await Message.knex().raw<{ rows: Array<{ last_rev: string; created_rev: string | null } & MessageRow> }>(
    `SELECT c.last_rev, p.* FROM channels c
       LEFT JOIN LATERAL (
         SELECT ${MESSAGE_COLUMNS}, m.created_rev FROM messages m
          WHERE m.channel_id = c.id AND m.seq > :afterSeq ORDER BY m.seq LIMIT :limit
       ) p ON true
      WHERE c.id = :channelId ORDER BY p.seq`,
    { channelId, afterSeq, limit },
  );
  return {
    latestRev: Number(rows[0]?.last_rev ?? 0),
    messages: rows.filter((r) => r.id !== null).map((r) => ({ message: toMessageDto(r), createdRev: Number(r.created_rev) })),
  };
}

/** Up to `limit` events of a channel with afterRev < rev < beforeRev (unbounded above when null), ascending. */
export async function eventsBetween(
  channelId: string,
  afterRev: number,
  beforeRev: number | null,
  limit: number,
): Promise<ChannelEvent[]> {
  const { rows } = await Message.knex().raw<{ rows: Array<{ event: ChannelEventRow }> }>(
    `SELECT channel_event_json(e) AS event FROM channel_events e
      WHERE e.channel_id = :channelId AND e.rev > :afterRev AND (:beforeRev::bigint IS NULL OR e.rev < :beforeRev::bigint)
      ORDER BY e.rev LIMIT :limit`,
    { channelId, afterRev, beforeRev, limit },
  );
  return rows.map((r) => toChannelEvent(channelId, r.event));
}
