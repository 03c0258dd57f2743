import { randomUUID } from 'node:crypto';
import Joi from 'joi';
import { AppError, NotFoundError, ValidationError, ForbiddenError } from '../../shared/errors.js';
import { Message, type MessageDto } from '../../shared/models/index.js';
import type { SendOutcome } from '../../shared/queues.js';
import type { SendQueue } from '../messaging/sendQueue.js';
import { channelAccess } from './access.js';
import type { RateLimit } from './rateLimit.js';

export const CLIENT_MSG_ID = Joi.string().pattern(/^[A-Za-z0-9_-]{1,64}$/).messages({
  'string.pattern.base': '"clientMsgId" must be 1-64 characters of A-Z, a-z, 0-9, _ and -',
});
export const UUID_PATTERN = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

export interface SendInput {
  channelId: string;
  body: string;
  clientMsgId: string | null;
}

export interface MessagingDeps {
  sendQueue: SendQueue;
  rateLimit: RateLimit;
  maxBodyLength: number;
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
 * the definitive outcome; never throws for a send that reached the queue.
 */
export async function sendMessage(deps: MessagingDeps, userId: string, input: SendInput): Promise<SendOutcome> {
  try {
    const body = normaliseBody(input.body, deps.maxBodyLength);
    // Opaque ids that cannot exist never reach the queue, and look like any other unknown channel.
    if (!UUID_PATTERN.test(input.channelId)) throw new NotFoundError('Channel');
    await deps.rateLimit.consume(userId);
    return await deps.sendQueue.submit({
      id: randomUUID(),
      // One spelling per channel: the partition is a hash of it.
      channelId: input.channelId.toLowerCase(),
      userId,
      body,
      clientMsgId: input.clientMsgId,
    });
  } catch (err) {
    if (err instanceof AppError) return { ok: false, error: err.toBody() };
    throw err;
  }
}

export interface HistoryQuery {
  limit: number;
  before?: number;
  after?: number;
}

export async function listHistory(
  userId: string,
  channelId: string,
  query: HistoryQuery,
): Promise<{ messages: MessageDto[]; hasMore: boolean }> {
  const { isMember } = await channelAccess(channelId, userId);
  if (!isMember) throw new ForbiddenError('Only channel members may read its history');
  // limit + 1 rows tell whether there is more beyond the page, in the same index range scan.
  const q = Message.query().where('channel_id', channelId).limit(query.limit + 1);
  if (query.after !== undefined) q.where('seq', '>', query.after).orderBy('seq', 'asc');
  else {
    if (query.before !== undefined) q.where('seq', '<', query.before);
    q.orderBy('seq', 'desc');
  }
  const rows = await q;
  const hasMore = rows.length > query.limit;
  const page = rows.slice(0, query.limit);
  if (query.after === undefined) page.reverse();
  return { messages: page.map((m) => m.toDto()), hasMore };
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
