import type { Knex } from 'knex';
import { arrayBindings, isTransientDbError, isUniqueViolation } from '../../shared/db.js';
import { ForbiddenError, InternalError, NotFoundError, ValidationError, invalidParentError, type ErrorBody } from '../../shared/errors.js';
import type { Logger } from '../../shared/logger.js';
import { eventChannel, eventRev, toChannelEvent, type ChannelEvent, type ChannelEventRow } from '../../shared/events.js';
import { toMessageDto } from '../../shared/models/index.js';
import { changeKind, type BatchOutcome, type ChangeRequest } from '../../shared/queues.js';
import { CHANGE_ACTIONS, changeRules, refusalOf } from './authorizeChanges.js';

export interface PersistResult {
  /** One outcome per send or change id. */
  outcomes: Record<string, BatchOutcome>;
  /**
   * The batch's own events to publish, in rev order: the ones stored now, or, when this batch is run
   * again after a crash, the ones its first run stored (that run may have died before publishing; front
   * nodes drop what they already delivered). A client's retry of another send or change adds nothing.
   */
  publish: ChannelEvent[];
}

type MessageRow = Parameters<typeof toMessageDto>[0];

const notFound = () => ({ ok: false as const, error: new NotFoundError('Channel').toBody() });
/** A send to an archived channel by one of its members. */
const archived = () => ({ ok: false as const, error: new ForbiddenError('The channel is archived').toBody() });

const invalidParent = () => ({ ok: false as const, error: invalidParentError().toBody() });

/**
 * created: applied now; stored: applied by an earlier run of this batch; duplicate: a client's retry of
 * another send or change; unchanged: a reaction that was already there (or a removal of one that was not).
 */
type Outcome = 'created' | 'stored' | 'duplicate' | 'unchanged' | 'not_found' | 'forbidden' | 'invalid_parent' | 'refused';

/** What one call of the function stored, before the publish list is put together. */
interface CallResult {
  outcomes: Record<string, BatchOutcome>;
  /** The events of what was applied now or by an earlier run, in change order. */
  events: ChannelEvent[];
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

function toOutcome(change: ChangeRequest, outcome: Outcome, row: MessageRow | null, events: ChannelEventRow[] | null, refusalCode: string | null): BatchOutcome {
  if (outcome === 'refused') return { ok: false, error: refusalOf(refusalCode ?? '?') };
  if (outcome === 'forbidden') return archived();
  if (outcome === 'invalid_parent') return invalidParent();
  if (outcome === 'not_found' || !row) {
    return changeKind(change) === 'send' ? notFound() : { ok: false, error: new NotFoundError('Message').toBody() };
  }
  const message = toMessageDto(row);
  // The front node rebuilds its own new message from the send it holds, as long as nothing changed it
  // since (a batch run again later); anything else travels whole.
  const created = events?.[0];
  if (changeKind(change) === 'send' && message.id === change.id && created?.kind === 'message:new' && Number(created.rev) === message.rev) {
    return { ok: true, seq: message.seq, rev: message.rev, createdAt: message.createdAt, mentions: message.mentions };
  }
  return { ok: true, message };
}

/** pg sends a JS array as one array parameter; null entries become SQL NULLs. */
const column = <T>(changes: ChangeRequest[], pick: (c: ChangeRequest) => T | null | undefined) => changes.map((c) => pick(c) ?? null);

/**
 * One call of persist_channel_changes (migrations/*_authorize_changes_in_persist.ts): one statement, one
 * transaction, changes authorized in it by this process's compiled rules (./authorizeChanges.ts).
 */
async function callPersist(knex: Knex, changes: ChangeRequest[]): Promise<CallResult> {
  const result = await knex.raw<{
    rows: Array<{ change_id: string; outcome: Outcome; message: MessageRow | null; events: ChannelEventRow[] | null; refusal: string | null }>;
  }>(
    `SELECT change_id, outcome, message, events, refusal
       FROM persist_channel_changes(?::text[], ?::uuid[], ?::uuid[], ?::uuid[], ?::text[], ?::text[], ?::uuid[], ?::text[], ?::text[], ?::jsonb)`,
    [
      ...arrayBindings(
        column(changes, changeKind),
        column(changes, (c) => c.id),
        column(changes, (c) => c.channelId),
        column(changes, (c) => c.userId),
        column(changes, (c) => ('body' in c ? c.body : null)),
        column(changes, (c) => ('clientMsgId' in c ? c.clientMsgId : 'clientChangeId' in c ? c.clientChangeId : null)),
        column(changes, (c) => ('messageId' in c ? c.messageId : 'parentId' in c ? c.parentId : null)),
        column(changes, (c) => ('emoji' in c ? c.emoji : null)),
        column(changes, (c) => {
          const kind = changeKind(c);
          return kind === 'send' ? null : CHANGE_ACTIONS[kind];
        }),
      ),
      changeRules().json,
    ],
  );
  const byId = new Map(changes.map((c) => [c.id, c]));
  const call: CallResult = { outcomes: {}, events: [] };
  for (const row of result.rows) {
    const change = byId.get(row.change_id)!;
    call.outcomes[change.id] = toOutcome(change, row.outcome, row.message, row.events, row.refusal);
    for (const event of row.events ?? []) call.events.push(toChannelEvent(change.channelId, event));
  }
  return call;
}

/**
 * Persists a batch of sends and changes in one statement, in order: membership checked, then the
 * channel not archived (an archived channel's members are answered FORBIDDEN), each channel's next seqs
 * and revs assigned, rows inserted or changed, events logged, the senders' read marks moved, atomically.
 * Running it again for the same batch changes nothing and returns the same outcomes and events; a
 * client's retry (same clientMsgId or clientChangeId) answers with the stored message and emits nothing.
 *
 * One send cannot fail the others. When PostgreSQL refuses the batch for any reason but its own
 * unavailability (isRetriableDbError), the sends are persisted again one at a time, in order, each in
 * its own call and transaction: the one refused is answered alone (refusal()), the rest are stored as if
 * it had not been there. A retriable error, of the batch or of any single call, is thrown: the caller
 * retries the whole batch in place, and the calls that committed meanwhile answer 'stored' then.
 */
export async function persistMessages(knex: Knex, sends: ChangeRequest[], logger?: Logger): Promise<PersistResult> {
  if (sends.length === 0) return { outcomes: {}, publish: [] };
  let calls: CallResult[];
  try {
    calls = [await callPersist(knex, sends)];
  } catch (err) {
    if (isRetriableDbError(err)) throw err;
    calls = await persistOneByOne(knex, sends, err, logger);
  }
  const outcomes: Record<string, BatchOutcome> = {};
  const publish: ChannelEvent[] = [];
  for (const call of calls) {
    Object.assign(outcomes, call.outcomes);
    publish.push(...call.events);
  }
  // Events an earlier run stored come before everything applied now; per channel, rev order is the
  // order front nodes deliver in (they would hold a later rev until the earlier one came). Equal revs are
  // of different channels: by channel id, so that the order is one whatever order the function answers in.
  publish.sort((a, b) => eventRev(a) - eventRev(b) || (eventChannel(a) < eventChannel(b) ? -1 : eventChannel(a) > eventChannel(b) ? 1 : 0));
  return { outcomes, publish };
}

async function persistOneByOne(knex: Knex, sends: ChangeRequest[], batchError: unknown, logger?: Logger): Promise<CallResult[]> {
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
    calls.push({ outcomes: { [send.id]: outcome }, events: [] });
  }
  return calls;
}
