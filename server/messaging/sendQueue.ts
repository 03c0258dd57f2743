import { randomUUID } from 'node:crypto';
import { Queue } from 'bullmq';
import type { Redis } from 'ioredis';
import type { Config } from '../../shared/config.js';
import { ServiceUnavailableError } from '../../shared/errors.js';
import type { Logger } from '../../shared/logger.js';
import {
  MESSAGE_BATCH_JOB,
  PARTITION_QUEUE_STREAMS,
  batchJobOptions,
  bullPrefix,
  messageQueueName,
  partitionOf,
  replyChannel,
  toSendOutcome,
  type BatchOutcome,
  type BatchReply,
  type BatchResult,
  type MessageBatchJob,
  type SendOutcome,
  type ChangeRequest,
} from '../../shared/queues.js';

/** Sends enqueued together; the partition's slot frees once every one of them is answered. */
interface Batch {
  partition: number;
  unsettled: number;
}

interface Pending {
  send: ChangeRequest;
  /** The node's submission order: a send re-queued after Redis lost its batch goes back to its place. */
  order: number;
  partition: number;
  resolve: (outcome: SendOutcome) => void;
  batch?: Batch;
  jobId?: string;
  /** When the front node last learnt something about this send; the sweeper looks at quiet ones. */
  checkedAt: number;
}

/** The part of a BullMQ Queue this producer uses; unit tests pass a fake that answers as they script it. */
export interface PartitionQueue {
  add(name: string, data: MessageBatchJob, opts: { jobId: string }): Promise<{ id?: string }>;
  getJob(jobId: string): Promise<{ data?: MessageBatchJob; finishedOn?: number; returnvalue?: BatchResult | null } | undefined>;
  waitUntilReady(): Promise<unknown>;
  close(): Promise<void>;
}

const UNAVAILABLE: SendOutcome = { ok: false, error: new ServiceUnavailableError().toBody() };

/**
 * Batches of one partition a node may have queued or in a worker at once. Sends that arrive while the
 * partition is at this limit wait on the node and go out together: under load, batches grow instead of
 * the queue, and a batch costs about the same to persist whatever its size.
 */
const MAX_UNANSWERED_BATCHES = 1;

/**
 * How long the producer's Redis connection may be down before every send waiting on the node is answered
 * SERVICE_UNAVAILABLE. Without it, the sends of a batch in flight, and those waiting behind it, would wait
 * for as long as the outage lasts: their batch's reply, or the sweeper's answer, needs Redis. Whether that
 * batch is stored or not, the answer is honest: the client resends with the same clientMsgId, which is
 * answered with the stored message or stores it now, never twice.
 */
const REDIS_OUTAGE_MS = 2000;

/**
 * The front node's side of the pipeline: packs accepted sends into one batch job per partition, and
 * resolves each send when the worker replies with its outcome.
 *
 * Per partition a node has at most MAX_UNANSWERED_BATCHES batches unanswered, and adds them one at a
 * time: sends that arrive meanwhile wait and go out together in the next batch. That keeps one socket's
 * sends in queue order and batches more the busier it gets.
 * Replies come over Redis pub/sub, which can drop a message; a sweeper asks BullMQ about sends that stay
 * quiet too long, and re-queues those whose job Redis lost (their ids make that harmless).
 */
export class SendQueue {
  private readonly queues: PartitionQueue[];
  private readonly buffers: Pending[][];
  private readonly adding: boolean[];
  private readonly unanswered: number[];
  private readonly pending = new Map<string, Pending>();
  private sweepTimer?: NodeJS.Timeout;
  private outageTimer?: NodeJS.Timeout;
  /** Since when the producer's connection has been down; undefined while it is up. */
  private redisDownSince?: number;
  private sweeping = false;
  private closing = false;
  private submitted = 0;

  constructor(
    private readonly deps: {
      config: Config;
      /** Fail-fast connection shared by the partition queues' producers. */
      connection: Redis;
      /** Dedicated connection in subscriber mode for this node's reply channel. */
      subscriber: Redis;
      nodeId: string;
      logger: Logger;
      /** How long a send may stay without news before the sweeper asks BullMQ about it. */
      quietMs?: number;
      /** The partition queues; BullMQ's by default. */
      createQueue?: (partition: number) => PartitionQueue;
    },
  ) {
    const { partitions } = deps.config.queue;
    const createQueue =
      deps.createQueue ??
      ((p: number) =>
        new Queue<MessageBatchJob, BatchResult>(messageQueueName(p), {
          connection: deps.connection,
          prefix: bullPrefix(deps.config.redis.prefix),
          streams: PARTITION_QUEUE_STREAMS,
          defaultJobOptions: batchJobOptions(deps.config.queue.keepCompleted),
        }));
    this.queues = Array.from({ length: partitions }, (_, p) => createQueue(p));
    this.buffers = Array.from({ length: partitions }, () => []);
    this.adding = Array.from({ length: partitions }, () => false);
    this.unanswered = Array.from({ length: partitions }, () => 0);
  }

  async start(): Promise<void> {
    const channel = replyChannel(this.deps.config.redis.prefix, this.deps.nodeId);
    this.deps.subscriber.on('message', (ch: string, raw: string) => {
      if (ch === channel) this.onReply(raw);
    });
    await this.deps.subscriber.subscribe(channel);
    await Promise.all(this.queues.map((q) => q.waitUntilReady()));
    this.outageTimer = setInterval(() => this.watchRedis(), REDIS_OUTAGE_MS / 4);
    this.outageTimer.unref();
    const quietMs = this.deps.quietMs ?? 5000;
    this.sweepTimer = setInterval(() => void this.sweep(quietMs), Math.max(500, quietMs / 2));
    this.sweepTimer.unref();
  }

  /** Redis gone for REDIS_OUTAGE_MS: the sends waiting on it are answered (see REDIS_OUTAGE_MS). */
  private watchRedis(): void {
    if (!this.redisOutage() || this.pending.size === 0) return;
    this.deps.logger.warn({ sends: this.pending.size }, 'redis unreachable; answering the sends waiting on it');
    this.answerAll(UNAVAILABLE);
  }

  /** Whether the producer's connection has been down for REDIS_OUTAGE_MS or more. */
  private redisOutage(): boolean {
    // ioredis's connection state; a fake connection without one (unit tests) is always up.
    const status = (this.deps.connection as { status?: string }).status;
    if (status === undefined || status === 'ready') {
      this.redisDownSince = undefined;
      return false;
    }
    this.redisDownSince ??= Date.now();
    return Date.now() - this.redisDownSince >= REDIS_OUTAGE_MS;
  }

  /** Answers every send the node holds, dropping the waiting ones first: a freed slot must not enqueue them. */
  private answerAll(outcome: SendOutcome): void {
    for (const buffer of this.buffers) buffer.length = 0;
    for (const id of [...this.pending.keys()]) this.settle(id, outcome);
  }

  submit(send: ChangeRequest): Promise<SendOutcome> {
    // During an outage, at once: the enqueue would fail anyway, after ioredis's reconnection attempts.
    if (this.closing || this.redisOutage()) return Promise.resolve(UNAVAILABLE);
    const partition = partitionOf(send.channelId, this.queues.length);
    return new Promise<SendOutcome>((resolve) => {
      const p: Pending = { send, order: this.submitted++, partition, resolve, checkedAt: Date.now() };
      this.pending.set(send.id, p);
      this.buffers[partition].push(p);
      this.flush(partition);
    });
  }

  /** Stops taking sends, waits up to `graceMs` for those in flight, then answers the rest as unavailable. */
  async stop(graceMs = 5000): Promise<void> {
    this.closing = true;
    const deadline = Date.now() + graceMs;
    while (this.pending.size > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
    // Sends still waiting must not go out once their senders were told to retry: answering the batch in
    // flight frees its partition, which would enqueue them.
    this.answerAll(UNAVAILABLE);
    clearInterval(this.sweepTimer);
    clearInterval(this.outageTimer);
    await Promise.all(this.queues.map((q) => q.close()));
  }

  private flush(partition: number): void {
    if (this.adding[partition] || this.unanswered[partition] >= MAX_UNANSWERED_BATCHES) return;
    if (this.buffers[partition].length === 0) return;
    const members = this.buffers[partition].splice(0, this.deps.config.queue.maxBatch);
    const sends = members.map((p) => p.send);
    const batch: Batch = { partition, unsettled: 0 };
    for (const p of members) {
      p.batch = batch;
      batch.unsettled++;
    }
    // An id that cannot repeat: BullMQ's own counter starts again at 1 on an emptied Redis, and the
    // sweeper would then take an unrelated new job for one that was lost.
    const jobId = randomUUID();
    this.adding[partition] = true;
    this.unanswered[partition]++;
    this.queues[partition]
      .add(MESSAGE_BATCH_JOB, { node: this.deps.nodeId, sends }, { jobId })
      .then(
        () => {
          for (const p of members) if (this.pending.get(p.send.id) === p) p.jobId = jobId;
        },
        (err: unknown) => {
          // Not knowing whether Redis stored the job, the honest answer is "retry": the client's retry
          // carries the same clientMsgId and cannot create a second message.
          this.deps.logger.warn({ err, partition, sends: sends.length }, 'enqueue failed');
          for (const s of sends) this.settle(s.id, UNAVAILABLE);
        },
      )
      .finally(() => {
        this.adding[partition] = false;
        if (batch.unsettled === 0) this.release(batch);
        this.flush(partition);
      });
  }

  private release(batch: Batch): void {
    if (batch.unsettled < 0) return;
    batch.unsettled = -1;
    this.unanswered[batch.partition]--;
    this.flush(batch.partition);
  }

  /** Takes a send out of its batch, freeing the partition's slot when it was the batch's last. */
  private detach(p: Pending): void {
    const batch = p.batch;
    p.batch = undefined;
    if (batch && --batch.unsettled === 0) this.release(batch);
  }

  private onReply(raw: string): void {
    let reply: BatchReply;
    try {
      reply = JSON.parse(raw) as BatchReply;
    } catch {
      this.deps.logger.error({ raw: raw.slice(0, 200) }, 'unparseable batch reply');
      return;
    }
    for (const [id, outcome] of Object.entries(reply.outcomes ?? {})) this.settleReported(id, outcome);
  }

  private settleReported(id: string, outcome: BatchOutcome | undefined): void {
    const p = this.pending.get(id);
    if (p) this.settle(id, outcome ? toSendOutcome(p.send, outcome) : UNAVAILABLE);
  }

  private settle(id: string, outcome: SendOutcome): void {
    const p = this.pending.get(id);
    if (!p) return;
    this.pending.delete(id);
    p.resolve(outcome);
    this.detach(p);
  }

  private async sweep(quietMs: number): Promise<void> {
    if (this.sweeping) return;
    this.sweeping = true;
    try {
      const now = Date.now();
      const byJob = new Map<string, Pending[]>();
      for (const p of this.pending.values()) {
        if (!p.jobId || now - p.checkedAt < quietMs) continue;
        const key = `${p.partition}:${p.jobId}`;
        byJob.set(key, [...(byJob.get(key) ?? []), p]);
      }
      for (const group of byJob.values()) await this.recheck(group, now);
    } catch (err) {
      this.deps.logger.warn({ err }, 'send sweep failed; will retry');
    } finally {
      this.sweeping = false;
    }
  }

  private async recheck(group: Pending[], now: number): Promise<void> {
    const { partition, jobId } = group[0];
    const job = await this.queues[partition].getJob(jobId!);
    if (!job || job.data?.node !== this.deps.nodeId) {
      this.deps.logger.warn({ jobId, partition, sends: group.length }, 'batch job lost by Redis; re-queueing its sends');
      // Every send of the lost batch, not only the quiet ones: they go back together, in order.
      const lost = [...this.pending.values()].filter((p) => p.partition === partition && p.jobId === jobId);
      const batches = lost.map((p) => p.batch);
      for (const p of lost) {
        p.batch = undefined;
        p.jobId = undefined;
        p.checkedAt = now;
        this.buffers[partition].push(p);
      }
      // Back in submission order, ahead of later sends that were waiting, before the partition's slot
      // frees: a channel's messages from this node are stored in the order they were sent.
      this.buffers[partition].sort((a, b) => a.order - b.order);
      for (const batch of batches) if (batch && --batch.unsettled === 0) this.release(batch);
      this.flush(partition);
      return;
    }
    if (job.finishedOn && job.returnvalue?.outcomes) {
      for (const p of group) this.settleReported(p.send.id, job.returnvalue.outcomes[p.send.id]);
    } else if (job.finishedOn) {
      for (const p of group) this.settle(p.send.id, UNAVAILABLE);
    } else {
      for (const p of group) p.checkedAt = now;
    }
  }
}
