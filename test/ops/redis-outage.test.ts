import { expect } from 'chai';
import { Redis } from 'ioredis';
import type { Cluster } from '../../scripts/cluster.js';
import { bullPrefix, messageQueueName } from '../../shared/queues.js';
import type { ChannelDto } from '../support/api.js';
import { sleep } from '../support/sockets.js';
import { closeDb, clusterRedisPrefix, startPipelineCluster, storedMessages, type StoredMessage, type Team } from '../pipeline/fixtures.js';
import {
  OwnRedis,
  ResendingClient,
  seedOutageWorld,
  type OutageWorld,
  caughtUp,
  changesCaughtUp,
  convergingClients,
  describeSends,
  expectChangesConverged,
  expectStoredOnceAndDelivered,
  historyPage,
  readiness,
  startStreams,
  storedSinceAway,
  whenReadiness,
} from './helpers.js';

/** Each sender queues one send this often, whatever happened to the earlier ones. */
const INTERVAL_MS = 60;
/** Longer than ANSWER_BOUND_MS: a send waiting for Redis to come back would be answered too late. */
const OUTAGE_MS = 8_000;
/** While Redis is down, every send is answered within this. */
const ANSWER_BOUND_MS = 5_000;
/**
 * An attempt not acked within this counts as left unanswered. Above the bound of a reply lost on its way
 * as Redis comes back (the front node's sweeper finds it in BullMQ after 5 s of silence).
 */
const ACK_TIMEOUT_MS = 15_000;
/** Set explicitly: the test reads the partition queues' settings in Redis. */
const PARTITIONS = 2;

type Phase = 'before' | 'outage' | 'recovering' | 'after';

describe('operations: Redis stopped mid-stream and started again, empty', function () {
  this.timeout(90_000);

  let redis: OwnRedis;
  let cluster: Cluster;
  let world: OutageWorld;
  let team: Team;
  let channels: ChannelDto[];
  let senders: ResendingClient[];
  let returning: ResendingClient;
  let returningByRev: ResendingClient;
  let histories: Awaited<ReturnType<typeof changesCaughtUp>>;
  let phase: Phase = 'before';
  const at = { killed: 0, restarted: 0, ready: 0 };
  /** Front nodes' and workers' /health/ready while Redis was down. */
  let readyDuringOutage: number[] = [];
  let partitionConcurrency: Array<string | null> = [];
  let historyDuringOutage: Array<{ status: number; seqs: number[]; text: string }> = [];
  let storedDuringOutage: StoredMessage[] = [];
  const stored = new Map<string, StoredMessage[]>();

  /** Every front node's and worker's base URL: both serve /health/ready. */
  const processUrls = () => [...cluster.servers, ...cluster.workers].map((p) => p.url);

  before(async () => {
    redis = await OwnRedis.start();
    cluster = await startPipelineCluster('redis-outage', { REDIS_URL: redis.url, QUEUE_PARTITIONS: String(PARTITIONS) });
    const b = cluster.urls[1];
    world = await seedOutageWorld(cluster.urls, () => phase, ACK_TIMEOUT_MS);
    ({ team, channels, senders, returning, returningByRev } = world);

    const streams = startStreams(senders, INTERVAL_MS);
    try {
      await sleep(1_500);
      phase = 'outage';
      at.killed = Date.now();
      await redis.kill('SIGKILL');
      for (const away of [returning, returningByRev]) away.socket.disconnect();
      // Comes back at once: refused (no Redis to check its token) and retried by socket.io-client until Redis is back.
      returning.socket.connect();
      await whenReadiness(processUrls(), 503, OUTAGE_MS);
      readyDuringOutage = await Promise.all(processUrls().map(readiness));
      historyDuringOutage = await Promise.all(channels.map((c) => historyPage(b, team.owner.token, c.id)));
      storedDuringOutage = await storedMessages(channels[0].id);
      await sleep(Math.max(0, at.killed + OUTAGE_MS - Date.now()));
      phase = 'recovering';
      await redis.start();
      at.restarted = Date.now();
      at.ready = await whenReadiness(processUrls(), 200, 20_000);
      await sleep(1_000);
      await storedSinceAway(world);
      returningByRev.socket.connect();
      await sleep(1_000);
      phase = 'after';
      await sleep(1_000);
    } finally {
      await streams.stop();
    }
    await Promise.all(senders.map((c) => c.settled(30_000)));
    for (const c of channels) stored.set(c.id, await storedMessages(c.id));
    await caughtUp(world.clients, stored);
    histories = await changesCaughtUp(world.clients, b, team.owner.token, channels.map((c) => c.id));

    const admin = new Redis(redis.url);
    try {
      const prefix = bullPrefix(clusterRedisPrefix('redis-outage'));
      partitionConcurrency = await Promise.all(Array.from({ length: PARTITIONS }, (_, p) => admin.hget(`${prefix}:${messageQueueName(p)}:meta`, 'concurrency')));
    } finally {
      admin.disconnect();
    }

    const sends = senders.flatMap((c) => c.sends);
    const changes = senders.flatMap((c) => c.changes);
    const outageSends = sends.filter((s) => s.attempts[0].phase === 'outage');
    const lastOutageAck = Math.max(...outageSends.flatMap((s) => s.attempts.filter((a) => a.outcome === 'ok').map((a) => a.answeredAt!)));
    const firstOkAfter = Math.min(...sends.flatMap((s) => s.attempts.filter((a) => a.at >= at.restarted && a.outcome === 'ok').map((a) => a.answeredAt!)));
    const outageAnswers = sends.flatMap((s) => s.attempts.filter((a) => a.phase === 'outage').map((a) => a.answeredAt! - a.at));
    console.log(
      `      [redis outage] down ${at.restarted - at.killed} ms; after redis-server answered again: /health/ready 200 on every process in ${at.ready - at.restarted} ms, ` +
        `first send acked ok in ${firstOkAfter - at.restarted} ms, every send made during the outage acked ok in ${lastOutageAck - at.restarted} ms; ` +
        `answers during the outage within ${Math.max(...outageAnswers)} ms (${outageAnswers.length} attempts); ` +
        `${sends.length} sends, ${sends.reduce((n, s) => n + s.attempts.length - 1, 0)} resends; ` +
        `${changes.length} changes, ${changes.reduce((n, c) => n + c.attempts.length - 1, 0)} resends; ` +
        `events checked at ${convergingClients(world.clients).map((c) => c.options.tag).join(', ')}`,
    );
  });

  after(async () => {
    await Promise.all((world?.clients ?? []).map((c) => c.close()));
    await cluster?.stop();
    await redis?.kill('SIGKILL');
    await closeDb();
  });

  it('When Redis is killed and started again empty mid-stream, then every send acked ok is stored exactly once, and every client, connected throughout or resumed after reconnecting, received each channel 1..N in seq order', () => {
    expectStoredOnceAndDelivered(world.clients, channels.map((c) => c.id), stored);
    // It came back while Redis was down: its handshake is accepted (authentication falls back to
    // PostgreSQL) or refused SERVICE_UNAVAILABLE and retried; either way it resumes and misses nothing.
    const back = returning.timeline.findIndex((e) => e.includes('disconnect'));
    expect(back, `the returning client left during the outage: ${returning.timeline}`).to.be.greaterThan(-1);
    expect(returning.timeline.slice(back + 1).some((e) => e.endsWith(' connect') || e.includes('connect_error')), `and came back: ${returning.timeline}`).to.equal(true);
  });

  it('When Redis is killed and started again empty while a member edits, deletes and reacts, then every change is acked ok (resent with its clientChangeId) and applied exactly once, and every client resuming by rev or connected throughout holds each channel as its history shows', () => {
    const changes = senders.flatMap((c) => c.changes);
    expect(changes.filter((c) => c.attempts.some((a) => a.phase === 'outage')).length, 'changes tried while Redis was down').to.be.greaterThan(5);
    expect(new Set(changes.map((c) => c.kind)), 'kinds of change made').to.deep.equal(new Set(['edit', 'delete', 'reaction:add', 'reaction:remove']));
    expect(returningByRev.replayed.reduce((a, b) => a + b, 0), 'events replayed to the client resuming by rev').to.be.greaterThan(0);
    expectChangesConverged(world.clients, channels.map((c) => c.id), histories);
  });

  it('When Redis is down, then every send is answered SERVICE_UNAVAILABLE within the bound, never left unanswered, and its resend with the same clientMsgId is acked ok once Redis is back', () => {
    const sends = senders.flatMap((c) => c.sends);
    const unanswered = sends.filter((s) => s.attempts.some((a) => a.outcome === 'no answer'));
    expect(unanswered.length, `attempts without an ack within ${ACK_TIMEOUT_MS} ms: ${describeSends(unanswered)}`).to.equal(0);
    const outage = sends.flatMap((s) => s.attempts.filter((a) => a.phase === 'outage'));
    expect(outage.length, 'attempts while Redis was down').to.be.greaterThan(10);
    const late = sends.filter((s) => s.attempts.some((a) => a.phase === 'outage' && a.answeredAt! - a.at > ANSWER_BOUND_MS));
    expect(late.length, `sends made while Redis was down answered after ${ANSWER_BOUND_MS} ms: ${describeSends(late)}`).to.equal(0);
    const codes = [...new Set(outage.map((a) => a.outcome))];
    expect(codes, 'answers while Redis was down').to.include('SERVICE_UNAVAILABLE');
    expect(codes.filter((c) => c !== 'SERVICE_UNAVAILABLE' && c !== 'ok'), 'answers while Redis was down').to.deep.equal([]);
    expect(sends.filter((s) => !s.acked).map((s) => s.clientMsgId), 'sends never acked ok').to.deep.equal([]);
    const afterOutage = sends.filter((s) => s.attempts[0].phase === 'after');
    expect(afterOutage.length).to.be.greaterThan(0);
    expect(describeSends(afterOutage.filter((s) => s.attempts.length > 1)), 'sends after recovery needing a resend').to.equal('');
  });

  it('When Redis is down, then /health/ready answers 503 on every front node and worker, and 200 again once Redis is back, without a restart', () => {
    expect(readyDuringOutage).to.deep.equal([503, 503, 503, 503]);
    expect(at.ready).to.be.greaterThan(0);
    expect(cluster.servers.every((p) => p.alive) && cluster.workers.every((p) => p.alive), 'every process still runs').to.equal(true);
  });

  it('When Redis comes back empty, then the workers set each partition back to one batch at a time', () => {
    expect(partitionConcurrency).to.deep.equal(Array(PARTITIONS).fill('1'));
  });

  it('When Redis is down, then REST history is served from PostgreSQL', () => {
    for (const [i, page] of historyDuringOutage.entries()) expect(page.status, `channel ${i}: ${page.text}`).to.equal(200);
    // Read from the table right after the page: a batch may have been committed in between.
    const { seqs } = historyDuringOutage[0];
    expect(seqs.length).to.be.greaterThan(0);
    expect(seqs, 'the stored messages').to.deep.equal(storedDuringOutage.slice(0, seqs.length).map((m) => m.seq));
  });
});
