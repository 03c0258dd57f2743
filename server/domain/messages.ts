import { randomUUID } from 'node:crypto';
import Joi, { UUID_PATTERN } from '../../shared/validation.js';
import { AppError, NotFoundError, RateLimitedError, ValidationError } from '../../shared/errors.js';
import { Channel, Message, toMessageDto, type MessageDto, type WorkspaceRole } from '../../shared/models/index.js';
import type { SendOutcome } from '../../shared/queues.js';
import type { SendAdmission } from '../messaging/admission.js';
import { authorize } from './policy.js';

export const CLIENT_MSG_ID = Joi.string().pattern(/^[A-Za-z0-9_-]{1,64}$/).messages({
  'string.pattern.base': '"clientMsgId" must be 1-64 characters of A-Z, a-z, 0-9, _ and -',
});
export { UUID_PATTERN } from '../../shared/validation.js';

export interface SendInput {
  channelId: string;
  body: string;
  clientMsgId: string | null;
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
  if (trimmed.length > maxBodyLength) {
    throw new ValidationError(`"body" must be at most ${maxBodyLength} characters`, [{ field: 'body' }]);
  }
  return trimmed;
}

/**
 * One send, from a socket or from REST: checked here, persisted (or rejected) by a worker. Resolves with
 * the definitive outcome; never throws for a send that reached the queue (RATE_LIMITED ones did not).
 */
export async function sendMessage(deps: MessagingDeps, userId: string, input: SendInput): Promise<SendOutcome> {
  try {
    const outcome = await admitSend(deps, userId, input);
    deps.onOutcome?.(outcome.ok ? 'accepted' : outcome.error.code);
    return outcome;
  } catch (err) {
    deps.onOutcome?.(err instanceof AppError ? err.code : 'INTERNAL');
    throw err;
  }
}

async function admitSend(deps: MessagingDeps, userId: string, input: SendInput): Promise<SendOutcome> {
  try {
    const body = normaliseBody(input.body, deps.maxBodyLength);
    // Opaque ids that cannot exist never reach the queue, and look like any other unknown channel.
    if (!UUID_PATTERN.test(input.channelId)) throw new NotFoundError('Channel');
    return await deps.admission.admit({
      id: randomUUID(),
      // One spelling per channel: the partition is a hash of it.
      channelId: input.channelId.toLowerCase(),
      userId,
      body,
      clientMsgId: input.clientMsgId,
    });
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

interface HistoryRow {
  is_private: boolean;
  archived: boolean;
  created_by: string | null;
  caller_role: WorkspaceRole | null;
  caller_member_id: string | null;
  id: string | null;
  channel_id: string;
  seq: number;
  user_id: string;
  body: string;
  client_msg_id: string | null;
  created_at: Date;
}

/**
 * A page of history. The caller's access and the page come from one statement (history is the hot read
 * path: one round trip instead of two), decided by policy ('channel.history'): NOT_FOUND outside the
 * caller's workspaces and for private channels the caller is not in, FORBIDDEN for public channels the
 * caller has not joined. Archived channels stay readable.
 */
export async function listHistory(
  userId: string,
  channelId: string,
  query: HistoryQuery,
): Promise<{ messages: MessageDto[]; hasMore: boolean }> {
  const ascending = query.after !== undefined;
  const bound = ascending ? 'AND m.seq > :after' : query.before !== undefined ? 'AND m.seq < :before' : '';
  // limit + 1 rows tell whether there is more beyond the page, in the same index range scan.
  const { rows } = await Message.knex().raw<{ rows: HistoryRow[] }>(
    `SELECT c.is_private, c.archived, c.created_by, wm.role AS caller_role, cm.user_id AS caller_member_id, p.*
       FROM channels c
       LEFT JOIN workspace_members wm ON wm.workspace_id = c.workspace_id AND wm.user_id = :userId
       LEFT JOIN channel_members cm ON cm.channel_id = c.id AND cm.user_id = :userId
       LEFT JOIN LATERAL (
         SELECT m.id, m.channel_id, m.seq, m.user_id, m.body, m.client_msg_id, m.created_at
           FROM messages m
          WHERE m.channel_id = c.id AND cm.user_id IS NOT NULL ${bound}
          ORDER BY m.seq ${ascending ? 'ASC' : 'DESC'}
          LIMIT :limit
       ) p ON true
      WHERE c.id = :channelId
      ORDER BY p.seq ${ascending ? 'ASC' : 'DESC'}`,
    { userId, channelId, limit: query.limit + 1, after: query.after ?? null, before: query.before ?? null },
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
  const found = access.id === null ? [] : rows;
  const hasMore = found.length > query.limit;
  const page = found.slice(0, query.limit);
  if (!ascending) page.reverse();
  return { messages: page.map((row) => toMessageDto(row as HistoryRow & { id: string })), hasMore };
}

/** Messages of a channel with afterSeq < seq < beforeSeq (or unbounded above), ascending, at most `limit`. */
export async function messagesInRange(
  channelId: string,
  afterSeq: number,
  beforeSeq: number | null,
  limit: number,
): Promise<MessageDto[]> {
  const q = Message.query().where('channel_id', channelId).where('seq', '>', afterSeq).orderBy('seq').limit(limit);
  if (beforeSeq !== null) q.where('seq', '<', beforeSeq);
  return (await q).map((m) => m.toDto());
}
