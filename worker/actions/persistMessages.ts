import type { Knex } from 'knex';
import { isTransientDbError, isUniqueViolation } from '../../shared/db.js';
import { ForbiddenError, InternalError, NotFoundError, ValidationError, type ErrorBody } from '../../shared/errors.js';
import type { Logger } from '../../shared/logger.js';
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
/** A send to an archived channel by one of its members. */
const archived = () => ({ ok: false as const, error: new ForbiddenError('The channel is archived').toBody() });
/** pg sends a JS array as one array parameter; knex's types do not know that. */
const arrays = (...values: unknown[][]) => values as unknown as Knex.RawBinding[];

type Outcome = 'created' | 'stored' | 'duplicate' | 'not_found' | 'forbidden';

/** What one call of the function stored, before the publish list is put together. */
interface CallResult {
  outcomes: Record<string, BatchOutcome>;
  /** Stored by an earlier run of these very sends, in send order. */
  stored: MessageDto[];
  /** Stored by this call, in send order, hence in seq order per channel. */
  created: MessageDto[];
}

/**
 * A failure of the database itself, not of a send: PostgreSQL unreachable, restarting, out of
 * resources, or the race of two partitions storing one (user, clientMsgId), which a retry answers with
 * the stored message. The whole batch waits and is retried in place.
 */
export function isRetriableDbError(err: unknown): boolean {
  return isTransientDbError(err) || isUniqueViolation(err);
}

/** PostgreSQL's SQLSTATE of a failed call (knex passes the driver's error on; Objection wraps it). */
export function sqlState(err: unknown): string | undefined {
  const e = err as { code?: unknown; nativeError?: { code?: unknown } } | undefined;
  const code = e?.nativeError?.code ?? e?.code;
  return typeof code === 'string' ? code : undefined;
}

/**
 * The outcome of a send PostgreSQL refused for a reason of its own. Class 22 (data exception: invalid
 * byte sequence, unsupported escape, value too long …) is the send's content: VALIDATION_FAILED. Any
 * other refusal is a fault on our side, answered INTERNAL, for that send only.
 */
function refusal(code: string | undefined): { ok: false; error: ErrorBody } {
  if (code?.startsWith('22')) {
    return { ok: false, error: new ValidationError('The message contains data that cannot be stored').toBody() };
  }
  return { ok: false, error: new InternalError().toBody() };
}

/** One call of persist_message_batch (migrations/*_persist_message_batch.ts): one statement, one transaction. */
async function callPersist(knex: Knex, sends: SendRequest[]): Promise<CallResult> {
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
  const call: CallResult = { outcomes: {}, stored: [], created: [] };
  for (const row of result.rows) {
    if (row.outcome === 'forbidden') {
      call.outcomes[row.send_id] = archived();
      continue;
    }
    if (row.outcome === 'not_found' || !row.message) {
      call.outcomes[row.send_id] = notFound();
      continue;
    }
    const message = toMessageDto(row.message);
    // The front node rebuilds its own send's message from seq and createdAt; a duplicate is another message.
    call.outcomes[row.send_id] =
      row.outcome === 'duplicate' ? { ok: true, message } : { ok: true, seq: message.seq, createdAt: message.createdAt };
    if (row.outcome === 'created') call.created.push(message);
    else if (row.outcome === 'stored') call.stored.push(message);
  }
  return call;
}

/**
 * Persists a batch of sends in one statement: membership checked, then the channel not archived (an
 * archived channel's members are answered FORBIDDEN), each channel's next seqs assigned, rows inserted,
 * the senders' read marks moved, atomically. Running it again for the same batch changes nothing and
 * returns the same outcomes: a send whose id or (user, clientMsgId) is already stored answers with the
 * stored message and is not emitted again.
 *
 * One send cannot fail the others. When PostgreSQL refuses the batch for any reason but its own
 * unavailability (isRetriableDbError), the sends are persisted again one at a time, in order, each in
 * its own call and transaction: the one refused is answered alone (refusal()), the rest are stored as if
 * it had not been there. A retriable error, of the batch or of any single call, is thrown: the caller
 * retries the whole batch in place, and the calls that committed meanwhile answer 'stored' then.
 */
export async function persistMessages(knex: Knex, sends: SendRequest[], logger?: Logger): Promise<PersistResult> {
  if (sends.length === 0) return { outcomes: {}, publish: [] };
  let calls: CallResult[];
  try {
    calls = [await callPersist(knex, sends)];
  } catch (err) {
    if (isRetriableDbError(err)) throw err;
    calls = await persistOneByOne(knex, sends, err, logger);
  }
  const outcomes: Record<string, BatchOutcome> = {};
  const stored: MessageDto[] = [];
  const created: MessageDto[] = [];
  for (const call of calls) {
    Object.assign(outcomes, call.outcomes);
    stored.push(...call.stored);
    created.push(...call.created);
  }
  // Stored messages predate everything created now; created ones follow send order, which is seq order
  // per channel (one call, or calls one after the other).
  stored.sort((a, b) => a.seq - b.seq);
  return { outcomes, publish: [...stored, ...created] };
}

async function persistOneByOne(knex: Knex, sends: SendRequest[], batchError: unknown, logger?: Logger): Promise<CallResult[]> {
  // Never the error itself: knex writes the statement's parameters, the bodies, into its message.
  if (sends.length > 1) {
    logger?.warn({ pgCode: sqlState(batchError), sends: sends.length }, 'batch refused by PostgreSQL; persisting its sends one by one');
  }
  const calls: CallResult[] = [];
  for (const send of sends) {
    // A one-send batch was just refused: no second try needed to know it is that send's.
    let error: unknown = sends.length === 1 ? batchError : undefined;
    if (error === undefined) {
      try {
        calls.push(await callPersist(knex, [send]));
        continue;
      } catch (err) {
        if (isRetriableDbError(err)) throw err;
        error = err;
      }
    }
    const pgCode = sqlState(error);
    const outcome = refusal(pgCode);
    const fields = { sendId: send.id, channelId: send.channelId, pgCode, code: outcome.error.code };
    if (outcome.error.code === 'INTERNAL') logger?.error(fields, 'send refused by PostgreSQL; the rest of its batch goes on');
    else logger?.warn(fields, 'send refused by PostgreSQL as invalid; the rest of its batch goes on');
    calls.push({ outcomes: { [send.id]: outcome }, stored: [], created: [] });
  }
  return calls;
}
