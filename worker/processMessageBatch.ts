import type { Emitter } from '@socket.io/redis-emitter';
import { UnrecoverableError, type Job } from 'bullmq';
import type { Redis } from 'ioredis';
import type { Knex } from 'knex';
import { CHANNEL_EVENTS } from '../shared/events.js';
import type { Logger } from '../shared/logger.js';
import { replyChannel, type BatchOutcome, type BatchReply, type BatchResult, type ChangeRequest, type MessageBatchJob } from '../shared/queues.js';
import Joi, { UNSTORABLE_TEXT, UUID_PATTERN, unstorableTextError } from '../shared/validation.js';
import { isRetriableDbError, persistMessages, sqlState } from './actions/persistMessages.js';
import type { WorkerMetrics } from './metrics.js';

// The ids front nodes accept (shared/validation.ts): a stricter check here (it was uuidv4/uuidv7 only) let
// a client's channelId of another version through the front node and then failed the whole batch.
const uuid = Joi.string().pattern(UUID_PATTERN);
const body = Joi.string().min(1).max(100_000).required();
const clientId = Joi.string().max(64).allow(null).required();
const change = { id: uuid.required(), channelId: uuid.required(), userId: uuid.required() };
const target = { ...change, messageId: uuid.required(), clientChangeId: clientId };
const jobSchema = Joi.object<MessageBatchJob>({
  node: Joi.string().max(64).required(),
  sends: Joi.array()
    .min(1)
    .max(1000)
    .items(
      Joi.alternatives().conditional('.kind', {
        switch: [
          // `is` lets undefined through unless required: a send of an older front node has no kind.
          { is: Joi.valid('edit').required(), then: Joi.object({ kind: 'edit', ...target, body }) },
          { is: Joi.valid('delete').required(), then: Joi.object({ kind: 'delete', ...target }) },
          {
            is: Joi.valid('reaction:add', 'reaction:remove').required(),
            then: Joi.object({ kind: Joi.valid('reaction:add', 'reaction:remove'), ...target, emoji: Joi.string().min(1).max(64).required() }),
          },
        ],
        otherwise: Joi.object({ kind: 'send', ...change, body, clientMsgId: clientId, parentId: uuid.allow(null) }),
      }),
    )
    .required(),
});

export interface BatchProcessorDeps {
  knex: Knex;
  emitter: Emitter;
  /**
   * The emitter's connection, which is also the BullMQ Workers' command connection: the reply goes
   * after the emits, and the job's completion after both, in the order Redis runs them.
   */
  publisher: Redis;
  redisPrefix: string;
  logger: Logger;
  isClosing: () => boolean;
  metrics?: WorkerMetrics;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** The fields a client wrote; the others come from the front node itself. */
const CLIENT_TEXT_FIELDS = new Set(['body', 'clientMsgId', 'clientChangeId', 'emoji']);

/**
 * Validates a batch. A send whose body or clientMsgId cannot be stored (front nodes refuse them, but one
 * that did not must not cost the rest of the batch) is answered VALIDATION_FAILED alone; anything else
 * malformed fails the batch.
 */
function parseJob(raw: unknown): { data: MessageBatchJob; refused: Record<string, BatchOutcome> } {
  const { value, error } = jobSchema.validate(raw, { abortEarly: false });
  if (!error) return { data: value, refused: {} };
  const unstorable = new Map<number, string>();
  for (const d of error.details) {
    const [list, index, field] = d.path;
    const own = d.type === UNSTORABLE_TEXT && d.path.length === 3 && list === 'sends' && typeof index === 'number';
    if (!own || !CLIENT_TEXT_FIELDS.has(String(field))) throw new UnrecoverableError(`malformed batch: ${error.message}`);
    if (!unstorable.has(index)) unstorable.set(index, String(field));
  }
  const job = raw as MessageBatchJob;
  const refused: Record<string, BatchOutcome> = {};
  const sends: ChangeRequest[] = [];
  job.sends.forEach((send, i) => {
    const field = unstorable.get(i);
    if (field === undefined) sends.push(send);
    else refused[send.id] = { ok: false, error: unstorableTextError(field).toBody() };
  });
  return { data: { node: job.node, sends }, refused };
}

/**
 * The processor of every message partition queue. Retries on PostgreSQL outages happen here, in place,
 * while the job keeps its lock: the partition waits instead of letting later messages overtake. Only
 * after the commit are the new messages published to the front nodes, then the outcomes replied.
 */
export function createBatchProcessor(deps: BatchProcessorDeps) {
  return async (job: Job<MessageBatchJob, BatchResult>): Promise<BatchResult> => {
    // Every line about this batch carries its job id.
    const logger = deps.logger.child({ jobId: job.id });
    const endTimer = deps.metrics?.batchDuration.startTimer();
    const { data, refused } = parseJob(job.data);
    deps.metrics?.batchSize.observe(data.sends.length + Object.keys(refused).length);
    for (const id of Object.keys(refused)) logger.warn({ sendId: id }, 'send with text that cannot be stored refused');

    let result;
    for (let attempt = 1; ; attempt++) {
      try {
        // A send PostgreSQL refuses is answered alone; only the database's own failures are thrown here.
        result = await persistMessages(deps.knex, data.sends, logger);
        break;
      } catch (err) {
        // A concurrent batch stored the same (user, clientMsgId): the retry finds it and answers with it.
        // Never the error itself in logs or in the failed job: knex writes the bodies into its message.
        const pgCode = sqlState(err);
        if (!isRetriableDbError(err)) throw new Error(`persisting batch failed unexpectedly (${pgCode ?? (err as Error)?.name})`);
        if (deps.isClosing()) throw new Error(`persisting batch failed (${pgCode ?? (err as Error)?.name}); worker closing`);
        logger.warn({ pgCode, errName: (err as Error)?.name, attempt }, 'persisting batch failed; retrying in place');
        await sleep(Math.min(100 * 2 ** Math.min(attempt, 5), 2000));
      }
    }

    const committedAt = performance.now();
    if (deps.metrics && job.timestamp > 0) {
      // Each send waited from its batch's enqueue (BullMQ's timestamp, from the front node's clock) to here.
      const waited = Math.max(0, Date.now() - job.timestamp) / 1000;
      for (let i = 0; i < data.sends.length; i++) deps.metrics.sendToPersist.observe(waited);
    }
    const outcomes = { ...refused, ...result.outcomes };
    // A batch run again after a crash publishes (and so counts) what its first run stored.
    deps.metrics?.messagesPersisted.inc(result.publish.filter((e) => e.name === 'message:new').length);
    endTimer?.();
    // One publish per batch; every front node hands each event to its local channel room in rev order.
    const emitted = result.publish.length > 0;
    if (emitted) deps.emitter.serverSideEmit(CHANNEL_EVENTS, result.publish);
    const reply: BatchReply = { jobId: job.id!, outcomes };
    // Not awaited: BullMQ completes the job on this same connection, after these commands, so Redis has
    // the emits before the partition's next batch can start, without a round trip in between. If the
    // connection drops first, the job is not completed either: it stalls and is run again.
    deps.publisher
      .publish(replyChannel(deps.redisPrefix, data.node), JSON.stringify(reply))
      .then(
        // Redis runs a connection's commands in order: once it answers the reply, it has published the events.
        () => {
          if (emitted) deps.metrics?.persistToEmit.observe((performance.now() - committedAt) / 1000);
        },
        (err: unknown) => logger.warn({ err }, 'batch reply not published; the sender sweeps for it'),
      );
    return { outcomes };
  };
}
