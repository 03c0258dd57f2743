/**
 * One bad send must not fail everybody's batch. A send is made to fail inside the persist step itself: a
 * BEFORE INSERT trigger on messages, in this run's database, raises when the body carries a marker only
 * this file uses. The poisoned send goes out amid bursts of other users' sends (pipelined over sockets,
 * and over REST, to two channels of the same partition, through the same front node) so that it shares
 * their batch; the test checks in BullMQ that it did.
 */
import { expect } from 'chai';
import { randomBytes, randomUUID } from 'node:crypto';
import { Queue } from 'bullmq';
import { Redis } from 'ioredis';
import pg from 'pg';
import type { Cluster } from '../../scripts/cluster.js';
import { loadConfig } from '../../shared/config.js';
import type { MessageDto } from '../../shared/models/Message.js';
import {
  MESSAGE_BATCH_JOB,
  batchJobOptions,
  bullPrefix,
  messageQueueName,
  partitionOf,
  toSendOutcome,
  type BatchResult,
  type MessageBatchJob,
  type SendOutcome,
  type SendRequest,
} from '../../shared/queues.js';
import { request, type ApiResponse, type ChannelDto, type RegisteredUser } from '../support/api.js';
import { Collector, connect, disconnectAll, send, sleep, waitFor, type ClientSocket } from '../support/sockets.js';
import {
  channelLastSeq,
  closeDb,
  clusterRedisPrefix,
  seedChannel,
  seedTeam,
  startPipelineCluster,
  storedByClientMsgId,
  storedMessages,
  type Team,
} from './fixtures.js';

/** This file's batches hold sends only. */
const bodyOf = (change: object) => ('body' in change ? String(change.body) : '');

const NAME = 'batch-isolation';
/** Bodies containing it fail in the trigger, with the SQLSTATE that follows it. */
const MARKER = `poison-${randomBytes(6).toString('hex')}`;
const TRIGGER = 'batch_isolation_poison';

/** A send that fails: in the trigger with this SQLSTATE, or with this body as is. */
type Poison = { sqlState: string } | { body: string };

function poisonedBody(poison: Poison, tag: string): string {
  return 'body' in poison ? poison.body : `bad ${MARKER}-${poison.sqlState} ${tag}`;
}

/** How a send went out, and what it was answered. */
interface Sent {
  via: 'socket' | 'rest' | 'queue';
  sender: RegisteredUser;
  channelId: string;
  body: string;
  clientMsgId: string;
  poisoned: boolean;
  outcome?: SendOutcome;
  /** REST only. */
  status?: number;
}

describe('pipeline: one bad send does not fail its batch', function () {
  this.timeout(120_000);

  let cluster: Cluster;
  let team: Team;
  let senders: RegisteredUser[];
  let restSender: RegisteredUser;
  let watcher: RegisteredUser;
  /** Two channels of one partition: a front node batches their sends together. */
  let channels: ChannelDto[];
  let sockets: ClientSocket[];
  let listeners: Collector[];
  let admin: pg.Client;
  let redis: Redis;
  let queue: Queue<MessageBatchJob, BatchResult>;
  let round = 0;

  before(async () => {
    // The workers' warn lines are read below: whatever LOG_LEVEL the run was given, they must be there.
    cluster = await startPipelineCluster(NAME, { LOG_LEVEL: 'warn' });
    const base = cluster.urls[0];
    team = await seedTeam(base, 8);
    senders = team.members.slice(0, 6);
    restSender = team.members[6];
    watcher = team.members[7];
    const everyone = team.members;
    const partitions = loadConfig(process.env).queue.partitions;
    const first = await seedChannel(base, team, everyone);
    let second = await seedChannel(base, team, everyone);
    for (let i = 0; i < 20 && partitionOf(second.id, partitions) !== partitionOf(first.id, partitions); i++) {
      second = await seedChannel(base, team, everyone);
    }
    expect(partitionOf(second.id, partitions)).to.equal(partitionOf(first.id, partitions));
    channels = [first, second];

    admin = new pg.Client({ connectionString: process.env.DATABASE_URL });
    admin.on('error', () => {});
    await admin.connect();
    await admin.query(`
      CREATE FUNCTION ${TRIGGER}() RETURNS trigger LANGUAGE plpgsql AS $fn$
      DECLARE
        v_code text := substring(NEW.body FROM '${MARKER}-([0-9A-Z]{5})');
      BEGIN
        IF v_code IS NOT NULL THEN
          RAISE EXCEPTION 'poisoned by the batch-isolation test' USING ERRCODE = v_code;
        END IF;
        RETURN NEW;
      END
      $fn$`);
    await admin.query(`CREATE TRIGGER ${TRIGGER} BEFORE INSERT ON messages FOR EACH ROW EXECUTE FUNCTION ${TRIGGER}()`);

    redis = new Redis(loadConfig(process.env).redis.url, { maxRetriesPerRequest: null });
    queue = new Queue(messageQueueName(partitionOf(first.id, partitions)), {
      connection: redis,
      prefix: bullPrefix(clusterRedisPrefix(NAME)),
    });

    // Senders on node A (the batches under test); listeners on both nodes.
    sockets = await Promise.all(senders.map((s) => connect(cluster.urls[0], s.token)));
    listeners = [new Collector(await connect(cluster.urls[0], watcher.token)), new Collector(await connect(cluster.urls[1], team.owner.token))];
    await sleep(600);
  });

  after(async () => {
    disconnectAll();
    await cluster?.stop();
    await queue?.close().catch(() => {});
    redis?.disconnect();
    if (admin) {
      await admin.query(`DROP TRIGGER IF EXISTS ${TRIGGER} ON messages`).catch(() => {});
      await admin.query(`DROP FUNCTION IF EXISTS ${TRIGGER}()`).catch(() => {});
      await admin.end().catch(() => {});
    }
    await closeDb();
  });

  /**
   * One burst through node A: every socket sender pipelines `perSocket` sends (alternating channels,
   * without waiting for acks), `restSender` sends one over REST meanwhile. `poisons` say which sends fail:
   * a SQLSTATE is raised by the trigger, a body is sent as is. Socket ones are the middle send of the
   * first senders; a REST one replaces the REST send's body.
   */
  async function burst(poisons: { socket: Poison[]; rest?: Poison }, perSocket = 8): Promise<Sent[]> {
    round++;
    const planned: Sent[] = [];
    senders.forEach((sender, i) => {
      for (let k = 0; k < perSocket; k++) {
        const poison = k === perSocket / 2 ? poisons.socket[i] : undefined;
        planned.push({
          via: 'socket',
          sender,
          channelId: channels[(i + k) % 2].id,
          body: poison ? poisonedBody(poison, `r${round} s${i}`) : `r${round} s${i} #${k}`,
          clientMsgId: `r${round}-s${i}-${k}`,
          poisoned: poison !== undefined,
        });
      }
    });
    const rest: Sent = {
      via: 'rest',
      sender: restSender,
      channelId: channels[round % 2].id,
      body: poisons.rest ? poisonedBody(poisons.rest, `r${round} rest`) : `r${round} rest`,
      clientMsgId: `r${round}-rest`,
      poisoned: poisons.rest !== undefined,
    };
    planned.push(rest);
    // Sent first, alone: the batch the others queue behind while the channels are held locked below.
    const opener: Sent = {
      via: 'socket',
      sender: senders[0],
      channelId: channels[0].id,
      body: `r${round} opener`,
      clientMsgId: `r${round}-opener`,
      poisoned: false,
    };
    planned.unshift(opener);

    // Batches form by themselves under load; here they must, on a busy machine too. With the channels'
    // rows locked, the opener's batch waits in the worker, everything sent meanwhile waits on node A for
    // the partition's slot, and it all goes out as one batch once the lock is released.
    const lock = new pg.Client({ connectionString: process.env.DATABASE_URL });
    lock.on('error', () => {});
    await lock.connect();
    let pending: Promise<void>[];
    try {
      await lock.query('BEGIN');
      await lock.query('SELECT 1 FROM channels WHERE id = ANY($1::uuid[]) FOR UPDATE', [channels.map((c) => c.id)]);
      pending = [sendPlanned(opener)];
      await sleep(300);
      pending.push(...planned.slice(1).map(sendPlanned));
      await sleep(500);
    } finally {
      await lock.query('COMMIT').catch(() => {});
      await lock.end().catch(() => {});
    }
    await Promise.all(pending);
    return planned;
  }

  function sendPlanned(s: Sent): Promise<void> {
    if (s.via === 'socket') {
      const socket = sockets[senders.indexOf(s.sender)];
      return send(socket, { channelId: s.channelId, body: s.body, clientMsgId: s.clientMsgId }).then((o) => void (s.outcome = o));
    }
    return request(cluster.urls[0], 'POST', `/channels/${s.channelId}/messages`, {
      token: s.sender.token,
      body: { body: s.body, clientMsgId: s.clientMsgId },
    }).then((res: ApiResponse) => {
      s.status = res.status;
      s.outcome = res.status === 201 ? { ok: true, message: res.body.message } : { ok: false, error: res.body.error };
    });
  }

  const summary = (s: Sent) => (s.outcome?.ok ? 'ok' : s.outcome?.error.code);

  /**
   * Everything but the poisoned sends is acked, stored once with gap-free seqs, in each sender's order,
   * and delivered once, in seq order, to listeners on both nodes; nothing poisoned is stored or delivered.
   */
  async function expectTheRestStored(sent: Sent[]): Promise<void> {
    const good = sent.filter((s) => !s.poisoned);
    expect(good.map(summary), JSON.stringify(good.filter((s) => !s.outcome?.ok).map((s) => s.outcome))).to.deep.equal(good.map(() => 'ok'));
    const acked = new Map<string, MessageDto>();
    for (const s of good) {
      if (!s.outcome?.ok) continue;
      expect(s.outcome.message).to.include({ channelId: s.channelId, userId: s.sender.user.id, body: s.body, clientMsgId: s.clientMsgId });
      acked.set(s.outcome.message.id, s.outcome.message);
    }
    expect(acked.size).to.equal(good.length);
    for (const s of sent.filter((x) => x.poisoned)) {
      expect(await storedByClientMsgId(s.sender.user.id, s.clientMsgId), `${s.clientMsgId} not stored`).to.equal(0);
    }

    for (const channel of channels) {
      const rows = await storedMessages(channel.id);
      expect(rows.map((m) => m.seq), 'gap-free seqs').to.deep.equal(rows.map((_, i) => i + 1));
      expect(await channelLastSeq(channel.id)).to.equal(rows.length);
      expect(rows.filter((m) => m.body.includes(MARKER)), 'poisoned rows').to.deep.equal([]);
      expect(new Set(rows.map((m) => m.id)).size).to.equal(rows.length);
      const mine = good.filter((s) => s.channelId === channel.id);
      for (const s of mine) {
        const stored = rows.filter((m) => m.userId === s.sender.user.id && m.clientMsgId === s.clientMsgId);
        expect(stored, `${s.clientMsgId} stored once`).to.have.length(1);
        const acks = s.outcome as { ok: true; message: MessageDto };
        expect(stored[0]).to.include({ id: acks.message.id, seq: acks.message.seq, body: s.body });
      }
      // One socket's sends keep their order, the isolated pass included.
      for (const sender of senders) {
        const seqs = mine.filter((s) => s.sender === sender).map((s) => (s.outcome as { ok: true; message: MessageDto }).message.seq);
        expect(seqs, `${sender.user.id} in order`).to.deep.equal([...seqs].sort((a, b) => a - b));
      }
    }

    for (const listener of listeners) {
      await waitFor(
        () => [...acked.keys()].every((id) => listener.all.some((m) => m.id === id)),
        15_000,
        () => `a listener is missing ${[...acked.keys()].filter((id) => !listener.all.some((m) => m.id === id)).length} messages`,
      );
    }
    await sleep(300);
    for (const listener of listeners) {
      expect(listener.all.filter((m) => m.body.includes(MARKER)), 'poisoned deliveries').to.deep.equal([]);
      for (const channel of channels) {
        const seqs = listener.seqs(channel.id);
        expect(seqs, 'delivered once, in seq order').to.deep.equal(seqs.map((_, i) => i + 1));
        expect(seqs.length).to.equal(await channelLastSeq(channel.id));
      }
    }
  }

  /** The completed batch job of each poisoned send: it held other users' sends, and answered them ok. */
  async function expectSharedBatches(sent: Sent[], code: string): Promise<string[]> {
    const jobs = await queue.getJobs(['completed'], 0, -1);
    const ids: string[] = [];
    for (const s of sent.filter((x) => x.poisoned)) {
      const job = jobs.find((j) => j.data.sends.some((x) => bodyOf(x) === s.body));
      expect(job, `the batch of ${s.clientMsgId}`).to.not.equal(undefined);
      const poisoned = job!.data.sends.find((x) => bodyOf(x) === s.body)!;
      ids.push(poisoned.id);
      expect(job!.data.sends.length, 'sends in the poisoned batch').to.be.greaterThan(1);
      expect(new Set(job!.data.sends.map((x) => x.userId)).size, 'users in the poisoned batch').to.be.greaterThan(1);
      const outcomes = job!.returnvalue.outcomes;
      expect(outcomes[poisoned.id]).to.deep.include({ ok: false });
      expect((outcomes[poisoned.id] as { error: { code: string } }).error.code).to.equal(code);
      const others = job!.data.sends.filter((x) => !bodyOf(x).includes(MARKER));
      expect(others.map((x) => outcomes[x.id]?.ok)).to.deep.equal(others.map(() => true));
    }
    return ids;
  }

  /** The workers logged each isolated send with its id and SQLSTATE, and never a poisoned body. */
  async function expectLogged(sendIds: string[], pgCode: string): Promise<void> {
    const output = () => cluster.workers.map((w) => w.output.toString()).join('\n');
    await waitFor(() => sendIds.every((id) => output().includes(id)), 5_000, () => output());
    const lines = output().split('\n');
    for (const id of sendIds) {
      const line = lines.find((l) => l.includes(id))!;
      expect(JSON.parse(line)).to.include({ sendId: id, pgCode });
    }
    expect(output()).to.not.include(MARKER);
  }

  it('When a socket send fails in the persist step with a data error (22P05) amid other users\' sends, then it alone is answered VALIDATION_FAILED and the rest of its batch is stored and delivered', async () => {
    const sent = await burst({ socket: [{ sqlState: '22P05' }] });
    const poisoned = sent.filter((s) => s.poisoned);
    expect(poisoned.map(summary)).to.deep.equal(['VALIDATION_FAILED']);
    await expectTheRestStored(sent);
    await expectLogged(await expectSharedBatches(sent, 'VALIDATION_FAILED'), '22P05');
  });

  it('When the failing send comes over REST, then 400 VALIDATION_FAILED, and the socket sends it shared a batch with are stored and delivered', async () => {
    const sent = await burst({ socket: [], rest: { sqlState: '22021' } });
    const [poisoned] = sent.filter((s) => s.poisoned);
    expect(poisoned.status).to.equal(400);
    expect(summary(poisoned)).to.equal('VALIDATION_FAILED');
    await expectTheRestStored(sent);
    await expectLogged(await expectSharedBatches(sent, 'VALIDATION_FAILED'), '22021');
  });

  it('When sends fail for a reason that is not their data (P0001), then those alone are answered INTERNAL (REST 500) and the rest of the batch is stored', async () => {
    const sent = await burst({ socket: [{ sqlState: 'P0001' }, { sqlState: 'P0001' }], rest: { sqlState: 'P0001' } });
    const poisoned = sent.filter((s) => s.poisoned);
    expect(poisoned.map((s) => `${s.via} ${summary(s)}`)).to.deep.equal(['socket INTERNAL', 'socket INTERNAL', 'rest INTERNAL']);
    expect(poisoned.find((s) => s.via === 'rest')!.status).to.equal(500);
    await expectTheRestStored(sent);
    await expectLogged(await expectSharedBatches(sent, 'INTERNAL'), 'P0001');
  });

  it('When socket sends with U+0000 or a lone surrogate in the body go out amid a burst, then each is answered VALIDATION_FAILED alone and the rest is stored and delivered', async () => {
    // Refused wherever it is caught first (front node or worker); never by PostgreSQL, never for the batch.
    const bodies = ['nul \u0000 inside', 'half \uD83D of a pair', '\uDE00 low first', 'reversed \uDE00\uD83D pair'];
    const sent = await burst({ socket: bodies.map((body) => ({ body })) });
    const poisoned = sent.filter((s) => s.poisoned);
    expect(poisoned.map((s) => s.body)).to.deep.equal(bodies);
    expect(poisoned.map(summary)).to.deep.equal(bodies.map(() => 'VALIDATION_FAILED'));
    for (const s of poisoned) expect((s.outcome as { error: { message: string } }).error.message).to.include('"body"');
    await expectTheRestStored(sent);
  });

  it('When a batch reaches a worker with a body or clientMsgId that cannot be stored (a front node that did not check), then those sends alone are VALIDATION_FAILED', async () => {
    round++;
    const sends: SendRequest[] = senders.map((sender, i) => ({
      id: randomUUID(),
      channelId: channels[i % 2].id,
      userId: sender.user.id,
      body: `r${round} queued s${i}`,
      clientMsgId: `r${round}-q${i}`,
    }));
    sends[1].body = 'nul \u0000 from the queue';
    sends[3].clientMsgId = 'half-\uD83D';
    sends[4].body = '\uDE00 low surrogate';
    const job = await queue.add(MESSAGE_BATCH_JOB, { node: `no-such-node-${round}`, sends }, batchJobOptions(1000));
    let result: BatchResult | undefined;
    await waitFor(async () => {
      const done = await queue.getJob(job.id!);
      result = done?.finishedOn ? done.returnvalue : undefined;
      return done?.finishedOn !== undefined;
    }, 15_000);
    expect(result, 'the batch completed').to.not.equal(undefined);
    const sent: Sent[] = sends.map((send, i) => ({
      via: 'queue',
      sender: senders[i],
      channelId: send.channelId,
      body: send.body,
      clientMsgId: send.clientMsgId!,
      poisoned: [1, 3, 4].includes(i),
      outcome: result!.outcomes[send.id] && toSendOutcome(send, result!.outcomes[send.id]),
    }));
    expect(sent.map(summary)).to.deep.equal(['ok', 'VALIDATION_FAILED', 'ok', 'VALIDATION_FAILED', 'VALIDATION_FAILED', 'ok']);
    expect(sent.filter((s) => s.poisoned).map((s) => (s.outcome as { error: { message: string } }).error.message)).to.deep.equal([
      '"body" contains characters that cannot be stored',
      '"clientMsgId" contains characters that cannot be stored',
      '"body" contains characters that cannot be stored',
    ]);
    await expectTheRestStored(sent);
  });

  it('When a batch with a poisoned send is run again (as after a worker crash), then it answers the same outcomes and stores or delivers nothing more', async () => {
    const jobs = await queue.getJobs(['completed'], 0, -1);
    const first = jobs.find((j) => j.data.sends.some((x) => bodyOf(x).includes(`${MARKER}-22P05`)));
    expect(first, 'the 22P05 batch').to.not.equal(undefined);
    const stored = await Promise.all(channels.map((c) => storedMessages(c.id)));
    const seen = listeners.map((l) => l.all.length);
    const again = await queue.add(MESSAGE_BATCH_JOB, first!.data, batchJobOptions(1000));
    let result: BatchResult | undefined;
    await waitFor(async () => {
      const done = await queue.getJob(again.id!);
      result = done?.finishedOn ? done.returnvalue : undefined;
      return done?.finishedOn !== undefined;
    }, 15_000);
    expect(result?.outcomes).to.deep.equal(first!.returnvalue.outcomes);
    // A fresh send flushes the channel: anything the re-run published again would have arrived before it.
    const marker = await send(sockets[0], { channelId: channels[0].id, body: 'after the re-run', clientMsgId: `rerun-${round}` });
    expect(marker.ok).to.equal(true);
    for (const listener of listeners) await waitFor(() => listener.all.some((m) => m.body === 'after the re-run'), 10_000);
    expect(listeners.map((l) => l.all.length)).to.deep.equal(seen.map((n) => n + 1));
    const now = await Promise.all(channels.map((c) => storedMessages(c.id)));
    expect(now[0].slice(0, -1)).to.deep.equal(stored[0]);
    expect(now[1]).to.deep.equal(stored[1]);
  });

  it('When a refused send is sent again with a body that can be stored, then it is stored with the next seq: its clientMsgId was not taken', async () => {
    const [channel] = channels;
    const before = await channelLastSeq(channel.id);
    // Round 1's poisoned send: sender 0's fifth, to the first channel.
    const outcome = await send(sockets[0], { channelId: channel.id, body: 'fixed now', clientMsgId: 'r1-s0-4' });
    expect(outcome.ok ? outcome.message.seq : outcome.error.code).to.equal(before + 1);
    const rows = await storedMessages(channel.id);
    expect(rows.map((m) => m.seq)).to.deep.equal(rows.map((_, i) => i + 1));
  });
});
