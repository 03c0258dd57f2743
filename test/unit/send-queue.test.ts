/**
 * Unit tests of SendQueue (server/messaging/sendQueue.ts): the front node's producer, whose interleavings
 * decide in which order a partition's sends reach BullMQ and that every send is answered exactly once.
 *
 * No Redis: the partition queues are fakes (createQueue) whose add() the tests may leave pending, resolve or
 * reject, and whose getJob() answers from a job table the tests edit (finish a job, lose it, give its id to
 * another node). Replies are emitted on a fake subscriber, as ioredis does in subscriber mode.
 *
 * Time: the sweep that start() registers with setInterval is captured and run by hand, and Date.now is
 * shifted by an offset the tests advance, so "quiet for 5 s" takes no real time (stop()'s grace still runs
 * on real timers, since the offset only adds to the real clock).
 */
import { EventEmitter } from 'node:events';
import { expect } from 'chai';
import type { Redis } from 'ioredis';
import { loadConfig } from '../../shared/config.js';
import type { Logger } from '../../shared/logger.js';
import type { MessageDto } from '../../shared/models/Message.js';
import {
  MESSAGE_BATCH_JOB,
  partitionOf,
  replyChannel,
  type BatchOutcome,
  type BatchResult,
  type MessageBatchJob,
  type SendOutcome,
  type SendRequest,
} from '../../shared/queues.js';
import { SendQueue, type PartitionQueue } from '../../server/messaging/sendQueue.js';

const NODE = 'node-a';
const PREFIX = 'unit';
const QUIET_MS = 5000;
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

type Job = { data?: MessageBatchJob; finishedOn?: number; returnvalue?: BatchResult | null };

interface AddCall {
  readonly name: string;
  readonly data: MessageBatchJob;
  readonly jobId: string;
  settled: boolean;
  resolve(): void;
  reject(err: unknown): void;
}

/** A partition queue that records every add() and answers getJob() from a table the test edits. */
class FakeQueue implements PartitionQueue {
  readonly adds: AddCall[] = [];
  /** What Redis holds, by job id; add() stores the job (unfinished) when it resolves. */
  readonly jobs = new Map<string, Job>();
  readonly getJobCalls: string[] = [];
  /** When set, getJob() rejects with it (Redis down). */
  getJobError?: Error;
  /** add() resolves at once unless the test wants to settle it itself. */
  autoAccept = true;
  closed = false;

  add(name: string, data: MessageBatchJob, opts: { jobId: string }): Promise<{ id?: string }> {
    // A copy, as Redis would store it: later changes to the node's objects do not reach it.
    const stored: MessageBatchJob = JSON.parse(JSON.stringify(data));
    return new Promise((resolve, reject) => {
      const call: AddCall = {
        name,
        data: stored,
        jobId: opts.jobId,
        settled: false,
        resolve: () => {
          call.settled = true;
          this.jobs.set(opts.jobId, { data: stored });
          resolve({ id: opts.jobId });
        },
        reject: (err) => {
          call.settled = true;
          reject(err);
        },
      };
      this.adds.push(call);
      if (this.autoAccept) call.resolve();
    });
  }

  async getJob(jobId: string): Promise<Job | undefined> {
    this.getJobCalls.push(jobId);
    if (this.getJobError) throw this.getJobError;
    return this.jobs.get(jobId);
  }

  async waitUntilReady(): Promise<unknown> {
    return undefined;
  }

  async close(): Promise<void> {
    this.closed = true;
  }

  /** The ids of each batch added, in order. */
  get batches(): string[][] {
    return this.adds.map((a) => a.data.sends.map((s) => s.id));
  }

  get last(): AddCall {
    expect(this.adds, 'batches added').to.not.have.length(0);
    return this.adds[this.adds.length - 1];
  }

  /** The job as Redis has it once the worker completed it. */
  finish(jobId: string, outcomes: Record<string, BatchOutcome>): void {
    const job = this.jobs.get(jobId);
    expect(job, `job ${jobId} in Redis`).to.not.equal(undefined);
    job!.finishedOn = Date.now();
    job!.returnvalue = { outcomes };
  }
}

/** An ioredis connection in subscriber mode: messages come as 'message' events. */
class FakeSubscriber extends EventEmitter {
  readonly subscribed: string[] = [];
  async subscribe(channel: string): Promise<number> {
    this.subscribed.push(channel);
    return this.subscribed.length;
  }
}

interface Tracked {
  readonly send: SendRequest;
  outcome?: SendOutcome;
}

interface Harness {
  readonly queue: SendQueue;
  readonly queues: FakeQueue[];
  readonly subscriber: FakeSubscriber;
  readonly warnings: unknown[];
  readonly errors: unknown[];
  readonly sweepEveryMs: number;
  submit(id: string, channelId?: string): Tracked;
  /** Emits a raw reply on this node's reply channel (or `channel`). */
  replyRaw(raw: string, channel?: string): void;
  reply(jobId: string, outcomes: Record<string, BatchOutcome>): void;
  /** Runs the sweeper once, as its interval would, and lets it finish. */
  sweep(): Promise<void>;
}

let clockOffset = 0;
const realNow = Date.now;
const advance = (ms: number) => {
  clockOffset += ms;
};

const settleAll = async () => {
  // Every fake answers with already-settled promises: one macrotask lets all their chains run.
  for (let i = 0; i < 3; i++) await new Promise<void>((r) => setImmediate(r));
};

const harnesses: Harness[] = [];

async function createHarness(opts: { partitions?: number; maxBatch?: number } = {}): Promise<Harness> {
  const config = loadConfig({
    QUEUE_PARTITIONS: String(opts.partitions ?? 1),
    QUEUE_MAX_BATCH: String(opts.maxBatch ?? 200),
    REDIS_PREFIX: PREFIX,
  });
  const queues: FakeQueue[] = [];
  const subscriber = new FakeSubscriber();
  const warnings: unknown[] = [];
  const errors: unknown[] = [];
  const logger = {
    warn: (...args: unknown[]) => warnings.push(args),
    error: (...args: unknown[]) => errors.push(args),
    info: () => {},
    debug: () => {},
  } as unknown as Logger;

  const queue = new SendQueue({
    config,
    connection: {} as Redis,
    subscriber: subscriber as unknown as Redis,
    nodeId: NODE,
    logger,
    quietMs: QUIET_MS,
    createQueue: (p) => (queues[p] = new FakeQueue()),
  });

  let captured: { fn: () => void; ms: number } | undefined;
  const realSetInterval = globalThis.setInterval;
  globalThis.setInterval = ((fn: () => void, ms: number) => {
    captured = { fn, ms };
    return realSetInterval(() => {}, 2 ** 31 - 1);
  }) as unknown as typeof setInterval;
  try {
    await queue.start();
  } finally {
    globalThis.setInterval = realSetInterval;
  }
  expect(captured, 'start() registers the sweeper').to.not.equal(undefined);
  expect(subscriber.subscribed).to.deep.equal([replyChannel(PREFIX, NODE)]);

  const h: Harness = {
    queue,
    queues,
    subscriber,
    warnings,
    errors,
    sweepEveryMs: captured!.ms,
    submit(id, channelId = 'c1') {
      const send: SendRequest = { id, channelId, userId: 'u1', body: `body ${id}`, clientMsgId: `cm-${id}` };
      const tracked: Tracked = { send };
      void queue.submit(send).then((outcome) => {
        tracked.outcome = outcome;
      });
      return tracked;
    },
    replyRaw(raw, channel = replyChannel(PREFIX, NODE)) {
      subscriber.emit('message', channel, raw);
    },
    reply(jobId, outcomes) {
      h.replyRaw(JSON.stringify({ jobId, outcomes }));
    },
    async sweep() {
      captured!.fn();
      await settleAll();
    },
  };
  harnesses.push(h);
  return h;
}

const stored = (seq: number): BatchOutcome => ({ ok: true, seq, rev: seq, createdAt: new Date(1_700_000_000_000 + seq).toISOString(), mentions: [] });

/** Outcomes for the given sends, seqs from `firstSeq` on. */
const storedAll = (ids: string[], firstSeq = 1) =>
  Object.fromEntries(ids.map((id, i) => [id, stored(firstSeq + i)])) as Record<string, BatchOutcome>;

const ids = (tracked: Tracked[]) => tracked.map((t) => t.send.id);
const answered = (tracked: Tracked[]) => tracked.filter((t) => t.outcome).map((t) => t.send.id);
const codeOf = (t: Tracked) => (t.outcome && !t.outcome.ok ? t.outcome.error.code : undefined);

/** A channel id that partitionOf maps to `partition` of `partitions`. */
function channelIn(partition: number, partitions: number): string {
  for (let i = 0; ; i++) if (partitionOf(`chan-${i}`, partitions) === partition) return `chan-${i}`;
}

describe('unit: SendQueue', () => {
  beforeEach(() => {
    clockOffset = 0;
    Date.now = () => realNow() + clockOffset;
  });

  afterEach(async () => {
    Date.now = realNow;
    for (const h of harnesses.splice(0)) await h.queue.stop(0);
  });

  describe('batching', () => {
    it('When a partition is idle, then a send is added at once, alone, as a batch job naming this node', async () => {
      const h = await createHarness();
      const s1 = h.submit('s1');
      const [q] = h.queues;
      expect(q.adds, 'synchronously, in submit()').to.have.length(1);
      expect(q.last.name).to.equal(MESSAGE_BATCH_JOB);
      expect(q.last.data).to.deep.equal({ node: NODE, sends: [s1.send] });
      await settleAll();
      expect(s1.outcome, 'a send is answered by its reply, not by the enqueue').to.equal(undefined);
    });

    it('When sends arrive while the partition has a batch unanswered, then no second batch is added, and once it is answered they go together as the next batch, in submission order', async () => {
      const h = await createHarness();
      const [q] = h.queues;
      const s1 = h.submit('s1');
      await settleAll();
      const waiting = ['s2', 's3', 's4'].map((id) => h.submit(id));
      await settleAll();
      expect(q.batches, 'one batch unanswered per partition').to.deep.equal([['s1']]);

      h.reply(q.adds[0].jobId, storedAll(['s1']));
      await settleAll();
      expect(answered([s1, ...waiting])).to.deep.equal(['s1']);
      expect(q.batches).to.deep.equal([['s1'], ['s2', 's3', 's4']]);

      const s5 = h.submit('s5');
      await settleAll();
      expect(q.batches, 'the next batch waits for the whole previous one').to.have.length(2);
      h.reply(q.adds[1].jobId, storedAll(['s2', 's3', 's4'], 2));
      await settleAll();
      expect(q.batches).to.deep.equal([['s1'], ['s2', 's3', 's4'], ['s5']]);
      expect(answered([s1, ...waiting, s5])).to.deep.equal(['s1', 's2', 's3', 's4']);
    });

    it('When more sends wait than maxBatch, then they go out maxBatch at a time, one batch unanswered at a time, in submission order', async () => {
      const h = await createHarness({ maxBatch: 3 });
      const [q] = h.queues;
      h.submit('s0');
      const waiting = Array.from({ length: 7 }, (_, i) => h.submit(`s${i + 1}`));
      await settleAll();
      expect(q.batches).to.deep.equal([['s0']]);
      const expected = [['s0'], ['s1', 's2', 's3'], ['s4', 's5', 's6'], ['s7']];
      for (let k = 1; k < expected.length; k++) {
        h.reply(q.adds[k - 1].jobId, storedAll(expected[k - 1]));
        await settleAll();
        expect(q.batches).to.deep.equal(expected.slice(0, k + 1));
      }
      h.reply(q.last.jobId, storedAll(['s7']));
      await settleAll();
      expect(answered(waiting)).to.deep.equal(ids(waiting));
    });

    it('When one partition has a batch unanswered, then sends of another partition are added at once', async () => {
      const h = await createHarness({ partitions: 2 });
      const [c0, c1] = [channelIn(0, 2), channelIn(1, 2)];
      h.submit('a1', c0);
      h.submit('a2', c0);
      h.submit('b1', c1);
      h.submit('b2', c1);
      await settleAll();
      expect(h.queues[0].batches).to.deep.equal([['a1']]);
      expect(h.queues[1].batches).to.deep.equal([['b1']]);
      h.reply(h.queues[1].adds[0].jobId, storedAll(['b1']));
      await settleAll();
      expect(h.queues[0].batches, 'answering partition 1 frees only partition 1').to.deep.equal([['a1']]);
      expect(h.queues[1].batches).to.deep.equal([['b1'], ['b2']]);
    });

    it('When a batch\'s reply comes before its add() has resolved, then the slot frees once: the next batch waits for that add(), and the one after waits for its own reply', async () => {
      const h = await createHarness();
      const [q] = h.queues;
      q.autoAccept = false;
      const s1 = h.submit('s1');
      const first = q.last;
      // The worker was quicker than the producer's round trip.
      h.reply(first.jobId, storedAll(['s1']));
      await settleAll();
      expect(s1.outcome).to.deep.include({ ok: true });
      const s2 = h.submit('s2');
      await settleAll();
      expect(q.batches, 'no add() while another add() of the partition is in flight').to.deep.equal([['s1']]);

      first.resolve();
      await settleAll();
      expect(q.batches).to.deep.equal([['s1'], ['s2']]);
      q.last.resolve();
      const s3 = h.submit('s3');
      const s4 = h.submit('s4');
      await settleAll();
      expect(q.batches, 'the early reply did not free the slot twice').to.deep.equal([['s1'], ['s2']]);
      h.reply(q.adds[1].jobId, storedAll(['s2'], 2));
      await settleAll();
      expect(q.batches).to.deep.equal([['s1'], ['s2'], ['s3', 's4']]);
      expect(answered([s1, s2, s3, s4])).to.deep.equal(['s1', 's2']);
    });

    it('When many batches are added, then each job gets a distinct, non-numeric (uuid) jobId', async () => {
      const h = await createHarness({ maxBatch: 2 });
      const [q] = h.queues;
      for (let i = 0; i < 40; i++) h.submit(`s${i}`);
      for (let k = 0; k < 25 && q.adds.length > k; k++) {
        h.reply(q.adds[k].jobId, storedAll(q.adds[k].data.sends.map((s) => s.id)));
        await settleAll();
      }
      const jobIds = q.adds.map((a) => a.jobId);
      expect(jobIds).to.have.length(21);
      expect(new Set(jobIds).size).to.equal(jobIds.length);
      for (const id of jobIds) {
        expect(id).to.match(UUID);
        expect(id).to.not.match(/^\d+$/);
      }
    });
  });

  describe('replies', () => {
    it('When a reply names some sends of a batch, then exactly those are answered (from the send and its seq, a stored duplicate, or an error) and the slot stays taken until the last is answered', async () => {
      const h = await createHarness();
      const [q] = h.queues;
      const batch = ['s1', 's2', 's3', 's4'].map((id) => h.submit(id));
      const [s1] = batch;
      await settleAll();
      h.reply(q.adds[0].jobId, storedAll(['s1']));
      await settleAll();
      const [, s2, s3, s4] = batch;
      // s2..s4 waited behind s1: they are the second batch.
      expect(q.batches).to.deep.equal([['s1'], ['s2', 's3', 's4']]);
      const s5 = h.submit('s5');
      await settleAll();

      const duplicate: MessageDto = {
        id: 'earlier',
        channelId: 'c1',
        seq: 7,
        rev: 7,
        parentId: null,
        editedAt: null,
        deleted: false,
        replyCount: 0,
        lastReplyAt: null,
        reactions: [],
        mentions: [],
        userId: 'u1',
        body: 'stored before',
        clientMsgId: 'cm-s3',
        createdAt: '2024-01-01T00:00:00.000Z',
      };
      const jobId = q.adds[1].jobId;
      h.reply(jobId, { s2: stored(8), s3: { ok: true, message: duplicate } });
      await settleAll();
      expect(s2.outcome).to.deep.equal({
        ok: true,
        message: {
          id: 's2',
          channelId: 'c1',
          seq: 8,
          rev: 8,
          userId: 'u1',
          body: 'body s2',
          clientMsgId: 'cm-s2',
          parentId: null,
          createdAt: new Date(1_700_000_000_008).toISOString(),
          editedAt: null,
          deleted: false,
          replyCount: 0,
          lastReplyAt: null,
          reactions: [],
          mentions: [],
        },
      });
      expect(s3.outcome).to.deep.equal({ ok: true, message: duplicate });
      expect(s4.outcome, 'a send the reply does not name stays pending').to.equal(undefined);
      expect(q.batches, 'the slot is held until every send of the batch is answered').to.have.length(2);

      h.reply(jobId, { s4: { ok: false, error: { code: 'NOT_FOUND', message: 'Channel not found' } } });
      await settleAll();
      expect(s4.outcome).to.deep.equal({ ok: false, error: { code: 'NOT_FOUND', message: 'Channel not found' } });
      expect(q.batches).to.deep.equal([['s1'], ['s2', 's3', 's4'], ['s5']]);
      expect(s5.outcome).to.equal(undefined);
    });

    it('When a reply names unknown ids, is unparseable, or arrives on another node\'s channel, then nothing is answered, the slot stays taken, and a proper reply still works', async () => {
      const h = await createHarness();
      const [q] = h.queues;
      const s1 = h.submit('s1');
      const s2 = h.submit('s2');
      await settleAll();
      const jobId = q.adds[0].jobId;

      h.reply(jobId, { nobody: stored(1), 'another-send': stored(2) });
      h.replyRaw('{not json');
      h.replyRaw(JSON.stringify({ jobId: 'x' }));
      h.replyRaw(JSON.stringify({ jobId, outcomes: storedAll(['s1']) }), replyChannel(PREFIX, 'node-b'));
      await settleAll();
      expect(answered([s1, s2])).to.deep.equal([]);
      expect(q.batches).to.deep.equal([['s1']]);
      expect(h.errors, 'the unparseable reply is logged').to.have.length(1);

      h.reply(jobId, storedAll(['s1']));
      await settleAll();
      expect(answered([s1, s2])).to.deep.equal(['s1']);
      expect(q.batches).to.deep.equal([['s1'], ['s2']]);
    });

    it('When the same outcomes are replied twice, then each send is answered once and the slot is not freed a second time', async () => {
      const h = await createHarness();
      const [q] = h.queues;
      h.submit('s1');
      h.submit('s2');
      await settleAll();
      const reply = storedAll(['s1']);
      h.reply(q.adds[0].jobId, reply);
      await settleAll();
      expect(q.batches).to.deep.equal([['s1'], ['s2']]);
      h.submit('s3');
      h.reply(q.adds[0].jobId, reply);
      await settleAll();
      expect(q.batches, 's2 is still unanswered').to.deep.equal([['s1'], ['s2']]);
    });
  });

  describe('enqueue failures', () => {
    it('When add() rejects, then that batch\'s sends are answered SERVICE_UNAVAILABLE, and the sends waiting behind go out as the next batch', async () => {
      const h = await createHarness();
      const [q] = h.queues;
      q.autoAccept = false;
      const s1 = h.submit('s1');
      const s2 = h.submit('s2');
      const s3 = h.submit('s3');
      q.last.reject(new Error('Redis connection lost'));
      await settleAll();
      expect(codeOf(s1)).to.equal('SERVICE_UNAVAILABLE');
      expect(answered([s1, s2, s3])).to.deep.equal(['s1']);
      expect(q.batches).to.deep.equal([['s1'], ['s2', 's3']]);
      expect(h.warnings).to.have.length(1);

      q.last.resolve();
      h.reply(q.last.jobId, storedAll(['s2', 's3']));
      await settleAll();
      expect(s2.outcome).to.deep.include({ ok: true });
      expect(s3.outcome).to.deep.include({ ok: true });
      h.submit('s4');
      await settleAll();
      expect(q.batches).to.deep.equal([['s1'], ['s2', 's3'], ['s4']]);
    });
  });

  describe('sweeper', () => {
    it('When a send stays quiet and its job finished with outcomes (the reply was lost), then the sends are answered from the return value and the next batch goes', async () => {
      const h = await createHarness();
      const [q] = h.queues;
      const s1 = h.submit('s1');
      const s2 = h.submit('s2');
      const s3 = h.submit('s3');
      await settleAll();
      h.reply(q.adds[0].jobId, storedAll(['s1']));
      await settleAll();
      expect(q.batches).to.deep.equal([['s1'], ['s2', 's3']]);
      const jobId = q.adds[1].jobId;
      q.finish(jobId, storedAll(['s2', 's3'], 2));

      advance(QUIET_MS - 1000);
      await h.sweep();
      expect(q.getJobCalls, 'a send is not asked about before it is quiet').to.deep.equal([]);

      advance(2000);
      await h.sweep();
      expect(q.getJobCalls, 'one question per batch, not per send').to.deep.equal([jobId]);
      expect(s2.outcome).to.deep.include({ ok: true });
      expect((s2.outcome as { message: MessageDto }).message).to.include({ id: 's2', seq: 2 });
      expect((s3.outcome as { message: MessageDto }).message).to.include({ id: 's3', seq: 3 });
      expect(s1.outcome).to.deep.include({ ok: true });

      h.submit('s4');
      await settleAll();
      expect(q.batches).to.deep.equal([['s1'], ['s2', 's3'], ['s4']]);
    });

    it('When a quiet send\'s job finished without outcomes (failed), then its sends are answered SERVICE_UNAVAILABLE and the slot frees', async () => {
      const h = await createHarness();
      const [q] = h.queues;
      const s1 = h.submit('s1');
      await settleAll();
      const job = q.jobs.get(q.adds[0].jobId)!;
      job.finishedOn = Date.now();
      job.returnvalue = null;
      advance(QUIET_MS + 1);
      await h.sweep();
      expect(codeOf(s1)).to.equal('SERVICE_UNAVAILABLE');
      h.submit('s2');
      await settleAll();
      expect(q.batches).to.deep.equal([['s1'], ['s2']]);
    });

    it('When a quiet send\'s job is not finished, then nothing is answered or re-queued, and it is asked about again only after another quiet period', async () => {
      const h = await createHarness();
      const [q] = h.queues;
      const s1 = h.submit('s1');
      const s2 = h.submit('s2');
      await settleAll();
      const jobId = q.adds[0].jobId;

      advance(QUIET_MS + 1);
      await h.sweep();
      expect(q.getJobCalls).to.deep.equal([jobId]);
      expect(answered([s1, s2])).to.deep.equal([]);
      expect(q.batches).to.deep.equal([['s1']]);

      advance(QUIET_MS - 1000);
      await h.sweep();
      expect(q.getJobCalls, 'the answer "still running" counts as news').to.have.length(1);
      advance(2000);
      await h.sweep();
      expect(q.getJobCalls).to.deep.equal([jobId, jobId]);
      expect(q.batches).to.deep.equal([['s1']]);

      h.reply(jobId, storedAll(['s1']));
      await settleAll();
      expect(q.batches).to.deep.equal([['s1'], ['s2']]);
    });

    it('When Redis lost a quiet send\'s job, then every send of that batch (quiet or not) is re-queued with its id, ahead of later waiting sends, in submission order, and the next add() carries them first under a new jobId', async () => {
      const h = await createHarness({ maxBatch: 3 });
      const [q] = h.queues;
      const s1 = h.submit('s1');
      const s2 = h.submit('s2'); // quiet by the sweep
      await settleAll();
      advance(3000);
      const s3 = h.submit('s3'); // not quiet by the sweep, but in the same batch as s2
      h.reply(q.adds[0].jobId, storedAll(['s1']));
      await settleAll();
      expect(q.batches).to.deep.equal([['s1'], ['s2', 's3']]);
      const lostJobId = q.adds[1].jobId;
      const later = ['s4', 's5', 's6'].map((id) => h.submit(id));
      await settleAll();

      q.jobs.delete(lostJobId); // Redis restarted without persistence
      advance(QUIET_MS - 3000 + 500);
      await h.sweep();
      expect(q.getJobCalls).to.deep.equal([lostJobId]);
      expect(h.warnings).to.have.length(1);
      expect(answered([s1, s2, s3, ...later])).to.deep.equal(['s1']);
      expect(q.batches).to.deep.equal([['s1'], ['s2', 's3'], ['s2', 's3', 's4']]);
      expect(q.last.data.sends, 'the same sends, ids and all').to.deep.equal([s2.send, s3.send, later[0].send]);
      expect(q.last.jobId).to.not.equal(lostJobId);
      expect(q.last.jobId).to.match(UUID);

      h.reply(q.last.jobId, storedAll(['s2', 's3', 's4'], 2));
      await settleAll();
      expect(q.batches).to.deep.equal([['s1'], ['s2', 's3'], ['s2', 's3', 's4'], ['s5', 's6']]);
      expect(answered([s1, s2, s3, ...later])).to.deep.equal(['s1', 's2', 's3', 's4']);

      await h.sweep();
      expect(q.getJobCalls, 're-queued sends are not quiet at once').to.have.length(1);
    });

    it('When the job found under a quiet send\'s jobId belongs to another node, then its outcomes are not used and the batch is re-queued as lost, ahead of later sends', async () => {
      const h = await createHarness();
      const [q] = h.queues;
      const s1 = h.submit('s1');
      await settleAll();
      const jobId = q.adds[0].jobId;
      const s2 = h.submit('s2');
      const s3 = h.submit('s3');
      // The id is now another node's finished job (the node's job is gone).
      q.jobs.set(jobId, {
        data: { node: 'node-b', sends: [] },
        finishedOn: Date.now(),
        returnvalue: { outcomes: storedAll(['s1', 's2'], 40) },
      });
      advance(QUIET_MS + 1);
      await h.sweep();
      expect(answered([s1, s2, s3]), 'another node\'s outcomes are not this node\'s sends\'').to.deep.equal([]);
      expect(q.batches).to.deep.equal([['s1'], ['s1', 's2', 's3']]);
    });

    it('When BullMQ cannot be asked (getJob rejects), then the sweep logs it, answers nothing, and a later sweep asks again', async () => {
      const h = await createHarness();
      const [q] = h.queues;
      const s1 = h.submit('s1');
      await settleAll();
      const jobId = q.adds[0].jobId;
      q.getJobError = new Error('Redis down');
      advance(QUIET_MS + 1);
      await h.sweep();
      expect(h.warnings).to.have.length(1);
      expect(s1.outcome).to.equal(undefined);

      q.getJobError = undefined;
      q.finish(jobId, storedAll(['s1']));
      await h.sweep();
      expect(q.getJobCalls).to.deep.equal([jobId, jobId]);
      expect(s1.outcome).to.deep.include({ ok: true });
    });

    it('When the sweeper is registered, then it runs at half the quiet period (at least every 500 ms)', async () => {
      const h = await createHarness();
      expect(h.sweepEveryMs).to.equal(QUIET_MS / 2);
    });
  });

  describe('stop', () => {
    it('When stop() is called with sends pending, then those answered within the grace get their outcome, the rest SERVICE_UNAVAILABLE after it, and the queues are closed', async () => {
      const h = await createHarness();
      const [q] = h.queues;
      const s1 = h.submit('s1');
      const s2 = h.submit('s2');
      await settleAll();
      const jobId = q.adds[0].jobId;
      const started = realNow();
      const stopped = h.queue.stop(300);
      setTimeout(() => h.reply(jobId, storedAll(['s1'])), 50);
      await stopped;
      const took = realNow() - started;
      expect(took, 'waited for the grace').to.be.at.least(250);
      expect(s1.outcome).to.deep.include({ ok: true });
      expect(codeOf(s2)).to.equal('SERVICE_UNAVAILABLE');
      expect(q.closed).to.equal(true);
    });

    it('When every send is answered during the grace, then stop() returns without waiting for the rest of it', async () => {
      const h = await createHarness();
      const [q] = h.queues;
      h.submit('s1');
      await settleAll();
      const started = realNow();
      const stopped = h.queue.stop(5000);
      setTimeout(() => h.reply(q.adds[0].jobId, storedAll(['s1'])), 20);
      await stopped;
      expect(realNow() - started).to.be.below(1000);
    });

    it('When a send is submitted after stop(), then it is answered SERVICE_UNAVAILABLE at once and nothing is enqueued', async () => {
      const h = await createHarness();
      const [q] = h.queues;
      await h.queue.stop(0);
      const late = h.submit('late');
      await settleAll();
      expect(codeOf(late)).to.equal('SERVICE_UNAVAILABLE');
      expect(q.adds).to.have.length(0);
    });

    it('When stop()\'s grace ends with a batch unanswered and sends waiting behind it, then the waiting sends, answered SERVICE_UNAVAILABLE, are not enqueued afterwards', async () => {
      const h = await createHarness();
      const [q] = h.queues;
      const s1 = h.submit('s1');
      const s2 = h.submit('s2');
      await settleAll();
      await h.queue.stop(0);
      await settleAll();
      expect(codeOf(s1)).to.equal('SERVICE_UNAVAILABLE');
      expect(codeOf(s2)).to.equal('SERVICE_UNAVAILABLE');
      // A job added now would be stored by a worker although its sender was told to retry: a retry without a
      // clientMsgId then makes a second message.
      expect(q.batches, 'nothing is enqueued after its send was answered').to.deep.equal([['s1']]);
    });
  });
});
