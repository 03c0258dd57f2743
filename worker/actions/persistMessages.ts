import type { Knex } from 'knex';
import { NotFoundError } from '../../shared/errors.js';
import { toMessageDto, type MessageDto } from '../../shared/models/index.js';
import type { SendOutcome, SendRequest } from '../../shared/queues.js';

export interface PersistResult {
  /** One outcome per send id. */
  outcomes: Record<string, SendOutcome>;
  /** Messages this call stored, in seq order per channel. */
  created: MessageDto[];
  /**
   * The batch's own messages to publish, in seq order per channel: the ones stored now, or, when this
   * batch is run again after a crash, the ones its first run stored (that run may have died before
   * publishing; front nodes drop what they already delivered). Duplicates of other sends are not here.
   */
  publish: MessageDto[];
}

interface MessageRow {
  id: string;
  channel_id: string;
  seq: number;
  user_id: string;
  body: string;
  client_msg_id: string | null;
  created_at: Date;
}

const notFound = () => ({ ok: false as const, error: new NotFoundError('Channel').toBody() });
/** pg sends a JS array as one array parameter; knex's types do not know that. */
const arrays = (...values: unknown[][]) => values as unknown as Knex.RawBinding[];
const dedupeKey = (userId: string, clientMsgId: string) => `${userId}\u0000${clientMsgId}`;

/**
 * Persists a batch of sends in one transaction of two statements: one reads (and locks), one writes.
 * Membership is checked, each channel's next seqs assigned, and all new rows inserted at once. Running it
 * again for the same batch changes nothing and returns the same outcomes: a send whose id or
 * (user, clientMsgId) is already stored answers with the stored message and is not emitted again.
 */
export async function persistMessages(knex: Knex, sends: SendRequest[]): Promise<PersistResult> {
  return knex.transaction(async (trx) => {
    const state = await readBatchState(trx, sends);
    const outcomes: Record<string, SendOutcome> = {};
    const storedByThisBatch: MessageDto[] = [];
    // A clientMsgId repeated inside this batch gets the first send's outcome.
    const firstInBatch = new Map<string, string>();
    const toInsert: Array<SendRequest & { seq: number }> = [];
    for (const send of sends) {
      const key = send.clientMsgId === null ? null : dedupeKey(send.userId, send.clientMsgId);
      const stored = state.byId.get(send.id) ?? (key ? state.byClientId.get(key) : undefined);
      if (stored) {
        const message = toMessageDto(stored);
        outcomes[send.id] = { ok: true, message };
        if (stored.id === send.id) storedByThisBatch.push(message);
        continue;
      }
      if (key && firstInBatch.has(key)) continue; // resolved below, once the first one has its outcome
      if (key) firstInBatch.set(key, send.id);
      const seq = state.lastSeq.get(send.channelId);
      if (seq === undefined || !state.isMember.has(`${send.channelId}|${send.userId}`)) {
        outcomes[send.id] = notFound();
        continue;
      }
      state.lastSeq.set(send.channelId, seq + 1);
      toInsert.push({ ...send, seq: seq + 1 });
    }

    const created = toInsert.length > 0 ? await insertBatch(trx, toInsert, state.lastSeq) : [];
    for (const message of created) outcomes[message.id] = { ok: true, message };
    for (const send of sends) {
      if (outcomes[send.id]) continue;
      const first = firstInBatch.get(dedupeKey(send.userId, send.clientMsgId!));
      outcomes[send.id] = outcomes[first!];
    }
    storedByThisBatch.sort((a, b) => a.seq - b.seq);
    return { outcomes, created, publish: [...storedByThisBatch, ...created] };
  });
}

interface BatchState {
  lastSeq: Map<string, number>;
  isMember: Set<string>;
  byId: Map<string, MessageRow>;
  byClientId: Map<string, MessageRow>;
}

/**
 * One round trip: locks the batch's channels (in id order, so writers cannot deadlock) and reads their
 * last seq, the senders' memberships and the sends already stored. The lock's row is re-read once
 * granted, so last_seq is current; the other reads may predate a concurrent commit of the same sends,
 * whose insert then fails on a unique index and the caller retries.
 */
async function readBatchState(trx: Knex.Transaction, sends: SendRequest[]): Promise<BatchState> {
  const channelIds = [...new Set(sends.map((s) => s.channelId))].sort();
  const withClientId = sends.filter((s) => s.clientMsgId !== null);
  const result = await trx.raw<{
    rows: Array<{
      channels: Array<{ id: string; last_seq: number }>;
      members: Array<{ channel_id: string; user_id: string }>;
      existing: MessageRow[];
    }>;
  }>(
    `WITH locked AS (SELECT id, last_seq FROM channels WHERE id = ANY(?::uuid[]) ORDER BY id FOR UPDATE)
     SELECT
       (SELECT coalesce(json_agg(locked), '[]') FROM locked) AS channels,
       (SELECT coalesce(json_agg(cm), '[]') FROM (
          SELECT DISTINCT cm.channel_id, cm.user_id FROM channel_members cm
            JOIN unnest(?::uuid[], ?::uuid[]) AS k(channel_id, user_id)
              ON cm.channel_id = k.channel_id AND cm.user_id = k.user_id) cm) AS members,
       -- Two index lookups (primary key, then (user_id, client_msg_id)); an OR of the two scans the table.
       (SELECT coalesce(json_agg(m), '[]') FROM (
          SELECT * FROM messages WHERE id = ANY(?::uuid[])
          UNION
          SELECT m.* FROM messages m
            JOIN unnest(?::uuid[], ?::text[]) AS k(user_id, client_msg_id)
              ON m.user_id = k.user_id AND m.client_msg_id = k.client_msg_id
           WHERE m.client_msg_id IS NOT NULL) m) AS existing`,
    arrays(
      channelIds,
      sends.map((s) => s.channelId),
      sends.map((s) => s.userId),
      sends.map((s) => s.id),
      withClientId.map((s) => s.userId),
      withClientId.map((s) => s.clientMsgId),
    ),
  );
  const { channels, members, existing } = result.rows[0];
  const byId = new Map<string, MessageRow>();
  const byClientId = new Map<string, MessageRow>();
  for (const row of existing) {
    byId.set(row.id, row);
    if (row.client_msg_id !== null) byClientId.set(dedupeKey(row.user_id, row.client_msg_id), row);
  }
  return {
    lastSeq: new Map(channels.map((c) => [c.id, Number(c.last_seq)])),
    isMember: new Set(members.map((m) => `${m.channel_id}|${m.user_id}`)),
    byId,
    byClientId,
  };
}

/**
 * One round trip: inserts the rows, advances each channel's last_seq, and moves each sender's read mark
 * to its own newest message (a sender has read what it wrote). Returns the messages in the order given,
 * which is each channel's seq order.
 */
async function insertBatch(
  trx: Knex.Transaction,
  rows: Array<SendRequest & { seq: number }>,
  lastSeq: Map<string, number>,
): Promise<MessageDto[]> {
  const readUpTo = new Map<string, { channelId: string; userId: string; seq: number }>();
  for (const r of rows) readUpTo.set(`${r.channelId}|${r.userId}`, { channelId: r.channelId, userId: r.userId, seq: r.seq });
  const reads = [...readUpTo.values()];
  const advanced = [...new Set(rows.map((r) => r.channelId))];
  const inserted = await trx.raw<{ rows: MessageRow[] }>(
    `WITH inserted AS (
       INSERT INTO messages (id, channel_id, seq, user_id, body, client_msg_id)
       SELECT * FROM unnest(?::uuid[], ?::uuid[], ?::bigint[], ?::uuid[], ?::text[], ?::text[])
       RETURNING *
     ), advanced AS (
       UPDATE channels SET last_seq = v.last_seq
         FROM unnest(?::uuid[], ?::bigint[]) AS v(id, last_seq)
        WHERE channels.id = v.id AND channels.last_seq < v.last_seq
     ), read AS (
       UPDATE channel_members SET last_read_seq = v.seq
         FROM unnest(?::uuid[], ?::uuid[], ?::bigint[]) AS v(channel_id, user_id, seq)
        WHERE channel_members.channel_id = v.channel_id AND channel_members.user_id = v.user_id
          AND channel_members.last_read_seq < v.seq
     )
     SELECT * FROM inserted`,
    arrays(
      rows.map((r) => r.id),
      rows.map((r) => r.channelId),
      rows.map((r) => r.seq),
      rows.map((r) => r.userId),
      rows.map((r) => r.body),
      rows.map((r) => r.clientMsgId),
      advanced,
      advanced.map((id) => lastSeq.get(id)),
      reads.map((r) => r.channelId),
      reads.map((r) => r.userId),
      reads.map((r) => r.seq),
    ),
  );
  const byId = new Map(inserted.rows.map((r) => [r.id, r]));
  return rows.map((r) => toMessageDto(byId.get(r.id)!));
}
