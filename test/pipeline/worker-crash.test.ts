import { expect } from 'chai';
import { Redis } from 'ioredis';
import type { Cluster } from '../../scripts/cluster.js';
import type { MessageDto } from '../../shared/models/Message.js';
import { bullPrefix, messageQueueName, partitionOf, type SendOutcome } from '../../shared/queues.js';
import type { ChannelDto, RegisteredUser } from '../support/api.js';
import { Collector, connect, disconnectAll, send, sleep, waitFor, type ClientSocket } from '../support/sockets.js';
import { changesCaughtUp, expectChangesConverged, ResendingClient } from '../ops/helpers.js';
import type { Msg } from './changes-harness.js';
import { closeDb, clusterRedisPrefix, fullHistory, isIncreasing, seedChannel, seedTeam, startPipelineCluster, storedMessages, type Team } from './fixtures.js';

const SENDERS = 4;
/** Each sender sends one message every this many ms, without waiting for acks. */
const INTERVAL_MS = 40;
/** Set explicitly: the test reads the partition queues in Redis. */
const PARTITIONS = 8;

type Phase = 'normal' | 'one-worker' | 'no-worker' | 'restarting' | 'restarted';

interface Sent {
  sender: number;
  channel: number;
  clientMsgId: string;
  phase: Phase;
  outcome?: SendOutcome;
  ackedAt?: number;
}

describe('pipeline: workers killed mid-stream', function () {
  this.timeout(120_000);

  let cluster: Cluster;
  let team: Team;
  let senders: RegisteredUser[];
  let channels: ChannelDto[];
  let sockets: ClientSocket[];
  let collectors: Array<{ who: string; collector: Collector }>;
  const sent: Sent[][] = Array.from({ length: SENDERS }, () => []);
  let restartRequestedAt = 0;
  let killedExits: Array<number | null>;
  let redis: Redis;
  /**
   * In a channel of its own, a member who sends and edits, deletes and reacts to its own messages
   * throughout, and a member listening on the other node; both resume by rev.
   */
  let changesChannel: ChannelDto;
  let changer: ResendingClient;
  let listener: ResendingClient;
  let histories: Map<string, Msg[]>;
  /** The BullMQ queue keys of the partitions the test channels use. */
  let queueKeys: string[];

  /** Batches active right now in the test channels' partitions. */
  const activeBatches = async () => {
    const counts = await Promise.all(queueKeys.map((q) => redis.llen(`${q}:active`)));
    return counts.reduce((a, b) => a + b, 0);
  };

  /**
   * SIGKILLs `worker` while a batch is active. Seeing a batch active and then killing races with the
   * batch finishing in between, so the worker is frozen (SIGSTOP) first: a batch still active once
   * the commands it had already sent have landed is one it can no longer finish. Otherwise it is let
   * go on (SIGCONT) and tried again.
   */
  const killMidBatch = async (worker: Cluster['workers'][number], beforeKill: () => void) => {
    const deadline = Date.now() + 10_000;
    while (Date.now() < deadline) {
      await waitFor(async () => (await activeBatches()) > 0, 5_000, () => 'no batch became active', 1);
      worker.kill('SIGSTOP');
      await sleep(200);
      if ((await activeBatches()) > 0) {
        beforeKill();
        worker.kill('SIGKILL');
        return;
      }
      worker.kill('SIGCONT');
    }
    throw new Error('no batch was active while the worker was frozen');
  };

  before(async () => {
    cluster = await startPipelineCluster('worker-crash', {
      QUEUE_LOCK_MS: '2000',
      QUEUE_STALLED_INTERVAL_MS: '1000',
      QUEUE_PARTITIONS: String(PARTITIONS),
    });
    const [a] = cluster.urls;
    team = await seedTeam(a, SENDERS + 2);
    senders = team.members.slice(0, SENDERS);
    channels = [await seedChannel(a, team, senders), await seedChannel(a, team, senders, { isPrivate: true })];
    changesChannel = await seedChannel(a, team, team.members.slice(SENDERS));
    redis = new Redis(process.env.REDIS_URL!);
    const prefix = bullPrefix(clusterRedisPrefix('worker-crash'));
    queueKeys = [...new Set([...channels, changesChannel].map((c) => `${prefix}:${messageQueueName(partitionOf(c.id, PARTITIONS))}`))];
    sockets = [];
    collectors = [];
    for (const [s, user] of senders.entries()) {
      const socket = await connect(cluster.urls[s % 2], user.token);
      sockets.push(socket);
      collectors.push({ who: `sender ${s} on node ${s % 2}`, collector: new Collector(socket) });
    }
    for (const node of [0, 1]) {
      collectors.push({ who: `owner on node ${node}`, collector: new Collector(await connect(cluster.urls[node], team.owner.token)) });
    }
    await sleep(300);

    let phase: Phase = 'normal';
    // Answers wait for a worker (no resend needed), as the senders' do.
    const [changerUser, listenerUser] = team.members.slice(SENDERS);
    const revClient = (url: string, token: string, tag: string, changes: boolean) =>
      new ResendingClient(url, token, [changesChannel.id], { tag, phase: () => phase, ackTimeoutMs: 60_000, resumeBy: 'rev', changes });
    changer = revClient(cluster.urls[0], changerUser.token, 'changer', true);
    listener = revClient(cluster.urls[1], listenerUser.token, 'listener', false);
    await Promise.all([changer.connected(), listener.connected()]);
    // Messages to change for as long as changes wait for a worker: each message has one change on its way at most.
    for (let i = 0; i < 60; i++) changer.send();
    await changer.settled();
    let streaming = true;
    const pending: Array<Promise<void>> = [];
    const stream = async (s: number) => {
      for (let k = 0; streaming; k++) {
        const record: Sent = { sender: s, channel: k % channels.length, clientMsgId: `w${s}-${k}`, phase };
        sent[s].push(record);
        pending.push(
          send(sockets[s], { channelId: channels[record.channel].id, body: `sender ${s} #${k}`, clientMsgId: record.clientMsgId }, 60_000).then(
            (outcome) => {
              record.outcome = outcome;
              record.ackedAt = Date.now();
            },
          ),
        );
        await sleep(INTERVAL_MS);
      }
    };
    const streams = senders.map((_, s) => stream(s));
    streams.push(
      (async () => {
        while (streaming) {
          changer.send();
          changer.change();
          await sleep(INTERVAL_MS);
        }
      })(),
    );

    try {
      await sleep(800);
      phase = 'one-worker';
      cluster.workers[0].kill('SIGKILL');
      await sleep(700);
      // The last worker dies in the middle of a batch: that batch must be re-run by the next worker.
      await killMidBatch(cluster.workers[1], () => (phase = 'no-worker'));
      killedExits = await Promise.all(cluster.workers.map((w) => w.exited));
      await sleep(1000);
      phase = 'restarting';
      restartRequestedAt = Date.now();
      await cluster.addWorker();
      phase = 'restarted';
      await sleep(1000);
    } finally {
      streaming = false;
    }
    await Promise.all(streams);
    await Promise.all(pending);
    await changer.settled(60_000);
    histories = await changesCaughtUp([changer, listener], cluster.urls[1], team.owner.token, [changesChannel.id]);
  });

  after(async () => {
    await Promise.all([changer, listener].map((c) => c?.close()));
    redis?.disconnect();
    disconnectAll();
    await cluster?.stop();
    await closeDb();
  });

  const all = () => sent.flat();
  const acked = (c: number): MessageDto[] =>
    all()
      .filter((r) => r.channel === c && r.outcome?.ok)
      .map((r) => (r.outcome as { message: MessageDto }).message)
      .sort((x, y) => x.seq - y.seq);

  it('When both workers are SIGKILLed mid-stream and a new one starts, then every send is acked ok', () => {
    expect(killedExits).to.deep.equal([null, null]);
    expect(cluster.workers.map((w) => w.alive)).to.deep.equal([false, false, true]);
    for (const phase of ['normal', 'one-worker', 'no-worker', 'restarting', 'restarted'] as const) {
      expect(all().filter((r) => r.phase === phase).length, `sends in phase ${phase}`).to.be.greaterThan(0);
    }
    const refused = all().filter((r) => !r.outcome?.ok);
    expect(refused.map((r) => `${r.clientMsgId} (${r.phase}): ${JSON.stringify(r.outcome)}`)).to.deep.equal([]);
  });

  it('When workers were killed mid-batch, then the new worker re-ran the interrupted batches to completion', async () => {
    let stalled = 0;
    for (const q of queueKeys) {
      const ids = await redis.zrange(`${q}:completed`, 0, -1);
      const counters = await Promise.all(ids.map((id) => redis.hget(`${q}:${id}`, 'stc')));
      stalled += counters.filter((c) => Number(c ?? 0) > 0).length;
    }
    expect(stalled).to.be.at.least(1);
    expect(await activeBatches()).to.equal(0);
  });

  it('When sends were queued while no worker was alive, then their acks came only after the new worker was started', () => {
    const outage = all().filter((r) => r.phase === 'no-worker');
    expect(outage.length).to.be.greaterThan(0);
    for (const r of outage) expect(r.ackedAt!, r.clientMsgId).to.be.greaterThan(restartRequestedAt);
  });

  it('When the stream is over, then each channel holds exactly the acked messages, once each, with seq 1..N', async () => {
    for (const [c, channel] of channels.entries()) {
      const messages = acked(c);
      const n = all().filter((r) => r.channel === c).length;
      expect(messages.map((m) => m.seq), `channel ${c}`).to.deep.equal(Array.from({ length: n }, (_, i) => i + 1));
      expect(new Set(messages.map((m) => m.id)).size).to.equal(n);
      const stored = await storedMessages(channel.id);
      expect(stored.map((m) => m.id), `stored rows of channel ${c}`).to.deep.equal(messages.map((m) => m.id));
      expect(await fullHistory(cluster.urls[1], team.owner.token, channel.id), `history of channel ${c}`).to.deep.equal(messages);
    }
  });

  it("When a sender's batches were interrupted, then their messages to a channel still have increasing seq in send order", () => {
    for (const [s, records] of sent.entries()) {
      for (const c of channels.keys()) {
        const seqs = records.filter((r) => r.channel === c).map((r) => (r.outcome?.ok ? r.outcome.message.seq : -1));
        expect(isIncreasing(seqs), `sender ${s} channel ${c}: ${seqs.join(',')}`).to.equal(true);
      }
    }
  });

  it('When the new worker took over, then every subscriber on both nodes received each message exactly once in seq order', async () => {
    const expected = channels.map((_, c) => acked(c));
    await waitFor(
      () => collectors.every(({ collector }) => channels.every((ch, c) => collector.count(ch.id) >= expected[c].length)),
      20_000,
      () => collectors.map(({ who, collector }) => `${who}: ${channels.map((ch) => collector.count(ch.id)).join('/')}`).join('; '),
    );
    await sleep(500);
    for (const { who, collector } of collectors) {
      for (const [c, channel] of channels.entries()) {
        const got = collector.of(channel.id);
        expect(got.map((m) => m.seq), `${who}, channel ${c}`).to.deep.equal(expected[c].map((m) => m.seq));
        expect(got, `${who}, channel ${c}`).to.deep.equal(expected[c]);
      }
    }
  });

  it('When the new worker is running, then new sends are acked and delivered promptly', async () => {
    const restarted = all().filter((r) => r.phase === 'restarted');
    expect(restarted.length).to.be.greaterThan(0);
    expect(restarted.filter((r) => r.outcome?.ok)).to.have.length(restarted.length);

    const outcome = await send(sockets[0], { channelId: channels[0].id, body: 'after the storm', clientMsgId: 'after-storm' }, 5_000);
    expect(outcome.ok).to.equal(true);
    if (!outcome.ok) return;
    expect(outcome.message.seq).to.equal(acked(0).length + 1);
    await waitFor(() => collectors.every(({ collector }) => collector.of(channels[0].id).at(-1)?.id === outcome.message.id), 5_000);
  });

  it('When workers are SIGKILLed while a member edits, deletes and reacts, then every change is acked ok and applied exactly once, and both members resuming by rev hold the channel as its history shows', () => {
    expect(new Set(changer.changes.map((c) => c.kind)), 'kinds of change made').to.deep.equal(new Set(['edit', 'delete', 'reaction:add', 'reaction:remove']));
    expect(changer.changes.filter((c) => c.attempts[0].phase === 'no-worker').length, 'changes made while no worker was alive').to.be.greaterThan(0);
    expectChangesConverged([changer, listener], [changesChannel.id], histories);
  });
});
