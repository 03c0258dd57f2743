import type { ErrorBody } from './errors.js';
import type { MessageDto } from './models/Message.js';

/**
 * Channels are spread over `partitions` BullMQ queues by a hash of the channel id. Each partition queue
 * has a global concurrency of 1, so one channel's batches are persisted and emitted strictly in queue
 * order whichever worker takes them (see docs/PIPELINE.md).
 */
export const MESSAGE_QUEUE_BASE = 'messages';
export const MESSAGE_BATCH_JOB = 'batch';

/**
 * Options of every partition Queue instance, the worker's included: each one writes the queue's event
 * stream length into Redis when it starts. Nothing here reads BullMQ's events, and a completed event
 * carries the batch's outcomes: 1,000 is plenty for inspection and far from BullMQ's 10,000 default.
 */
export const PARTITION_QUEUE_STREAMS = { events: { maxLen: 1000 } };

/**
 * Job options of a batch. Retries happen in place inside the worker: a retried job re-queued with backoff
 * would fall behind later messages of its channel. Completed batches are kept a while because the
 * front node's sweeper reads their outcomes when a reply was lost; each holds its sends and outcomes
 * (tens of KB at full size), so the count is bounded.
 */
export function batchJobOptions(keepCompleted: number) {
  return {
    attempts: 1,
    removeOnComplete: { age: 300, count: keepCompleted },
    removeOnFail: { age: 3600, count: 10_000 },
  };
}

export function messageQueueName(partition: number): string {
  return `${MESSAGE_QUEUE_BASE}-${partition}`;
}

/** FNV-1a: stable across processes and versions, which a partition map must be. */
export function partitionOf(channelId: string, partitions: number): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < channelId.length; i++) {
    h ^= channelId.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  return (h >>> 0) % partitions;
}

/** A send the front node accepted. `id` becomes the message id: it makes re-processing a batch harmless. */
export interface SendRequest {
  /** Absent in batches of front nodes older than message changes. */
  kind?: 'send';
  id: string;
  channelId: string;
  userId: string;
  body: string;
  clientMsgId: string | null;
  parentId?: string | null;
}

/** A change to a stored message; `id` is the change's, and makes re-processing harmless. */
interface MessageChangeBase {
  id: string;
  channelId: string;
  userId: string;
  messageId: string;
  clientChangeId: string | null;
}

export type EditRequest = MessageChangeBase & { kind: 'edit'; body: string };
export type DeleteRequest = MessageChangeBase & { kind: 'delete' };
export type ReactionRequest = MessageChangeBase & { kind: 'reaction:add' | 'reaction:remove'; emoji: string };

/** Everything that goes through a channel's partition queue, in order: sends and changes. */
export type ChangeRequest = SendRequest | EditRequest | DeleteRequest | ReactionRequest;
export type ChangeKind = NonNullable<ChangeRequest['kind']>;

export const changeKind = (change: ChangeRequest): ChangeKind => change.kind ?? 'send';

export interface MessageBatchJob {
  /** The front node waiting for the outcomes (its reply channel). */
  node: string;
  /** Sends and changes, in the order the node admitted them (the name predates changes). */
  sends: ChangeRequest[];
}

export type SendOutcome = { ok: true; message: MessageDto } | { ok: false; error: ErrorBody };

/**
 * A send's outcome as the worker reports it. The front node holds the send itself, so when the stored
 * message is that very send only its seq and createdAt travel (a fifth of the bytes, in the reply, the
 * job's return value and BullMQ's completed event); a duplicate of another send carries that message.
 */
export type BatchOutcome =
  | { ok: true; seq: number; rev: number; createdAt: string; mentions: string[] }
  | { ok: true; message: MessageDto }
  | { ok: false; error: ErrorBody };

/** Outcomes keyed by SendRequest.id; the job's return value and the reply carry the same object. */
export interface BatchResult {
  outcomes: Record<string, BatchOutcome>;
}

/** What the client is answered, from the send or change and the worker's outcome for it. */
export function toSendOutcome(change: ChangeRequest, outcome: BatchOutcome): SendOutcome {
  if (!outcome.ok || 'message' in outcome) return outcome;
  // Only a new message is reported this short (see BatchOutcome).
  const send = change as SendRequest;
  return {
    ok: true,
    message: {
      id: send.id,
      channelId: send.channelId,
      seq: outcome.seq,
      rev: outcome.rev,
      userId: send.userId,
      body: send.body,
      clientMsgId: send.clientMsgId,
      parentId: send.parentId ?? null,
      createdAt: outcome.createdAt,
      editedAt: null,
      deleted: false,
      replyCount: 0,
      lastReplyAt: null,
      reactions: [],
      mentions: outcome.mentions,
    },
  };
}

export interface BatchReply extends BatchResult {
  jobId: string;
}

export function bullPrefix(redisPrefix: string): string {
  return `${redisPrefix}:bull`;
}

export function replyChannel(redisPrefix: string, node: string): string {
  return `${redisPrefix}:reply:${node}`;
}
