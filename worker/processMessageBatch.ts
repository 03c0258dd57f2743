import type { Emitter } from '@socket.io/redis-emitter';
import { UnrecoverableError, type Job } from 'bullmq';
import type { Redis } from 'ioredis';
import Joi from 'joi';
import type { Knex } from 'knex';
import { isTransientDbError, isUniqueViolation } from '../shared/db.js';
import { MESSAGES_CREATED } from '../shared/events.js';
import type { Logger } from '../shared/logger.js';
import { replyChannel, type BatchReply, type BatchResult, type MessageBatchJob } from '../shared/queues.js';
import { persistMessages } from './actions/persistMessages.js';

const uuid = Joi.string().guid({ version: ['uuidv4', 'uuidv7'] });
const jobSchema = Joi.object<MessageBatchJob>({
  node: Joi.string().max(64).required(),
  sends: Joi.array()
    .min(1)
    .max(1000)
    .items(
      Joi.object({
        id: uuid.required(),
        channelId: uuid.required(),
        userId: uuid.required(),
        body: Joi.string().min(1).max(100_000).required(),
        clientMsgId: Joi.string().max(64).allow(null).required(),
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
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/**
 * The processor of every message partition queue. Retries on PostgreSQL outages happen here, in place,
 * while the job keeps its lock: the partition waits instead of letting later messages overtake. Only
 * after the commit are the new messages published to the front nodes, then the outcomes replied.
 */
export function createBatchProcessor(deps: BatchProcessorDeps) {
  return async (job: Job<MessageBatchJob, BatchResult>): Promise<BatchResult> => {
    const { value: data, error } = jobSchema.validate(job.data);
    if (error) throw new UnrecoverableError(`malformed batch: ${error.message}`);

    let result;
    for (let attempt = 1; ; attempt++) {
      try {
        result = await persistMessages(deps.knex, data.sends);
        break;
      } catch (err) {
        // A concurrent batch stored the same (user, clientMsgId): the retry finds it and answers with it.
        const retriable = isTransientDbError(err) || isUniqueViolation(err);
        if (!retriable || deps.isClosing()) throw err;
        deps.logger.warn({ err, attempt, jobId: job.id }, 'persisting batch failed; retrying in place');
        await sleep(Math.min(100 * 2 ** Math.min(attempt, 5), 2000));
      }
    }

    // One publish per batch; every front node hands each message to its local channel room in order.
    if (result.publish.length > 0) deps.emitter.serverSideEmit(MESSAGES_CREATED, result.publish);
    const reply: BatchReply = { jobId: job.id!, outcomes: result.outcomes };
    // Not awaited: BullMQ completes the job on this same connection, after these commands, so Redis has
    // the emits before the partition's next batch can start, without a round trip in between. If the
    // connection drops first, the job is not completed either: it stalls and is run again.
    deps.publisher
      .publish(replyChannel(deps.redisPrefix, data.node), JSON.stringify(reply))
      .catch((err: unknown) => deps.logger.warn({ err, jobId: job.id }, 'batch reply not published; the sender sweeps for it'));
    return { outcomes: result.outcomes };
  };
}
