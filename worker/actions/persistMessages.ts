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
 * Persists a batch of sends in one transaction: membership checked, each channel's next seqs assigned,
 * all new rows inserted with one statement. Running it again for the same batch changes nothing and
 * returns the same outcomes: a send whose id or (user, clientMsgId) is already stored answers with the
 * stored message and is not emitted again.
 */
export async function persistMessages(knex: Knex, sends: SendRequest[]): Promise<PersistResult> {
  return knex.transaction(async (trx) => {
    const channelIds = [...new Set(sends.map((s) => s.channelId))].sort();
    // Locking the channels in id order serialises every writer of a channel and cannot deadlock.
    const channels = await trx.raw<{ rows: Array<{ id: string; last_seq: number }> }>(
      'SELECT id, last_seq FROM channels WHERE id = ANY(?::uuid[]) ORDER BY id FOR UPDATE',
      arrays(channelIds),
    );
    const lastSeq = new Map(channels.rows.map((c) => [c.id, c.last_seq]));

    const withClientId = sends.filter((s) => s.clientMsgId !== null);
    const [existing, members] = await Promise.all([
      trx.raw<{ rows: MessageRow[] }>(
        `SELECT * FROM messages WHERE id = ANY(?::uuid[])
          OR (user_id, client_msg_id) IN (SELECT * FROM unnest(?::uuid[], ?::text[]))`,
        arrays(sends.map((s) => s.id), withClientId.map((s) => s.userId), withClientId.map((s) => s.clientMsgId)),
      ),
      trx.raw<{ rows: Array<{ channel_id: string; user_id: string }> }>(
        `SELECT channel_id, user_id FROM channel_members
          WHERE (channel_id, user_id) IN (SELECT * FROM unnest(?::uuid[], ?::uuid[]))`,
        arrays(sends.map((s) => s.channelId), sends.map((s) => s.userId)),
      ),
    ]);
    const byId = new Map<string, MessageRow>();
    const byClientId = new Map<string, MessageRow>();
    for (const row of existing.rows) {
      byId.set(row.id, row);
      if (row.client_msg_id !== null) byClientId.set(dedupeKey(row.user_id, row.client_msg_id), row);
    }
    const isMember = new Set(members.rows.map((m) => `${m.channel_id}|${m.user_id}`));

    const outcomes: Record<string, SendOutcome> = {};
    const storedByThisBatch: MessageDto[] = [];
    // A clientMsgId repeated inside this batch gets the first send's outcome.
    const firstInBatch = new Map<string, string>();
    const toInsert: SendRequest[] = [];
    const seqs: number[] = [];
    for (const send of sends) {
      const key = send.clientMsgId === null ? null : dedupeKey(send.userId, send.clientMsgId);
      const stored = byId.get(send.id) ?? (key ? byClientId.get(key) : undefined);
      if (stored) {
        const message = toMessageDto(stored);
        outcomes[send.id] = { ok: true, message };
        if (stored.id === send.id) storedByThisBatch.push(message);
        continue;
      }
      const earlier = key ? firstInBatch.get(key) : undefined;
      if (earlier) continue; // resolved below, once the first one has its outcome
      if (key) firstInBatch.set(key, send.id);
      const seq = lastSeq.get(send.channelId);
      if (seq === undefined || !isMember.has(`${send.channelId}|${send.userId}`)) {
        outcomes[send.id] = notFound();
        continue;
      }
      lastSeq.set(send.channelId, seq + 1);
      toInsert.push(send);
      seqs.push(seq + 1);
    }

    let created: MessageDto[] = [];
    if (toInsert.length > 0) {
      const inserted = await trx.raw<{ rows: MessageRow[] }>(
        `INSERT INTO messages (id, channel_id, seq, user_id, body, client_msg_id)
         SELECT * FROM unnest(?::uuid[], ?::uuid[], ?::bigint[], ?::uuid[], ?::text[], ?::text[])
         RETURNING *`,
        arrays(
          toInsert.map((s) => s.id),
          toInsert.map((s) => s.channelId),
          seqs,
          toInsert.map((s) => s.userId),
          toInsert.map((s) => s.body),
          toInsert.map((s) => s.clientMsgId),
        ),
      );
      // toInsert is in send order, so each channel's messages come out in seq order.
      const rowsById = new Map(inserted.rows.map((r) => [r.id, r]));
      created = toInsert.map((s) => toMessageDto(rowsById.get(s.id)!));
      for (const message of created) outcomes[message.id] = { ok: true, message };
      const advanced = channelIds.filter((id) => lastSeq.has(id));
      await trx.raw(
        `UPDATE channels SET last_seq = v.last_seq
           FROM unnest(?::uuid[], ?::bigint[]) AS v(id, last_seq)
          WHERE channels.id = v.id AND channels.last_seq < v.last_seq`,
        arrays(advanced, advanced.map((id) => lastSeq.get(id))),
      );
      // A sender has read its own messages: they never count as unread for them.
      const readUpTo = new Map<string, { channelId: string; userId: string; seq: number }>();
      for (const m of created) readUpTo.set(`${m.channelId}|${m.userId}`, { channelId: m.channelId, userId: m.userId, seq: m.seq });
      const reads = [...readUpTo.values()];
      await trx.raw(
        `UPDATE channel_members SET last_read_seq = v.seq
           FROM unnest(?::uuid[], ?::uuid[], ?::bigint[]) AS v(channel_id, user_id, seq)
          WHERE channel_members.channel_id = v.channel_id AND channel_members.user_id = v.user_id
            AND channel_members.last_read_seq < v.seq`,
        arrays(reads.map((r) => r.channelId), reads.map((r) => r.userId), reads.map((r) => r.seq)),
      );
    }

    for (const send of sends) {
      if (outcomes[send.id]) continue;
      const first = firstInBatch.get(dedupeKey(send.userId, send.clientMsgId!));
      outcomes[send.id] = outcomes[first!];
    }
    storedByThisBatch.sort((a, b) => a.seq - b.seq);
    return { outcomes, created, publish: [...storedByThisBatch, ...created] };
  });
}
