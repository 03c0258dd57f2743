import type { Knex } from 'knex';
import { NotFoundError } from '../../shared/errors.js';
import { toMessageDto, type MessageDto } from '../../shared/models/index.js';
import type { BatchOutcome, SendRequest } from '../../shared/queues.js';

export interface PersistResult {
  /** One outcome per send id. */
  outcomes: Record<string, BatchOutcome>;
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
  /** JSON from the function: an ISO-8601 string. */
  created_at: string;
}

const notFound = () => ({ ok: false as const, error: new NotFoundError('Channel').toBody() });
/** pg sends a JS array as one array parameter; knex's types do not know that. */
const arrays = (...values: unknown[][]) => values as unknown as Knex.RawBinding[];

type Outcome = 'created' | 'stored' | 'duplicate' | 'not_found';

/**
 * Persists a batch of sends in one statement (migrations/*_persist_message_batch.ts): membership
 * checked, each channel's next seqs assigned, rows inserted, the senders' read marks moved, atomically.
 * Running it again for the same batch changes nothing and returns the same outcomes: a send whose id or
 * (user, clientMsgId) is already stored answers with the stored message and is not emitted again.
 */
export async function persistMessages(knex: Knex, sends: SendRequest[]): Promise<PersistResult> {
  const result = await knex.raw<{ rows: Array<{ send_id: string; outcome: Outcome; message: MessageRow | null }> }>(
    'SELECT send_id, outcome, message FROM persist_message_batch(?::uuid[], ?::uuid[], ?::uuid[], ?::text[], ?::text[])',
    arrays(
      sends.map((s) => s.id),
      sends.map((s) => s.channelId),
      sends.map((s) => s.userId),
      sends.map((s) => s.body),
      sends.map((s) => s.clientMsgId),
    ),
  );
  const outcomes: Record<string, BatchOutcome> = {};
  const created: MessageDto[] = [];
  const storedByThisBatch: MessageDto[] = [];
  for (const row of result.rows) {
    if (row.outcome === 'not_found' || !row.message) {
      outcomes[row.send_id] = notFound();
      continue;
    }
    const message = toMessageDto(row.message);
    // The front node rebuilds its own send's message from seq and createdAt; a duplicate is another message.
    outcomes[row.send_id] =
      row.outcome === 'duplicate' ? { ok: true, message } : { ok: true, seq: message.seq, createdAt: message.createdAt };
    if (row.outcome === 'created') created.push(message);
    else if (row.outcome === 'stored') storedByThisBatch.push(message);
  }
  // Rows come back in send order, so each channel's created messages are in seq order already.
  storedByThisBatch.sort((a, b) => a.seq - b.seq);
  return { outcomes, publish: [...storedByThisBatch, ...created] };
}
