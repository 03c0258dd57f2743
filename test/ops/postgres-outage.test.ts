import { expect } from 'chai';
import type { Cluster } from '../../scripts/cluster.js';
import type { ChannelDto } from '../support/api.js';
import { sleep } from '../support/sockets.js';
import { startPipelineCluster, type StoredMessage, type Team } from '../pipeline/fixtures.js';
import {
  OwnDatabase,
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
const OUTAGE_MS = 5_000;
/**
 * Sends wait while PostgreSQL is away (the worker retries their batch in place): a client that waits
 * longer than the outage hears the outcome of each send it made.
 */
const ACK_TIMEOUT_MS = 15_000;

type Phase = 'before' | 'outage' | 'after';

describe('operations: PostgreSQL refusing connections mid-stream', function () {
  this.timeout(90_000);

  let db: OwnDatabase;
  let cluster: Cluster;
  let world: OutageWorld;
  let team: Team;
  let channels: ChannelDto[];
  let senders: ResendingClient[];
  let returning: ResendingClient;
  let returningByRev: ResendingClient;
  let histories: Awaited<ReturnType<typeof changesCaughtUp>>;
  let phase: Phase = 'before';
  const at = { closed: 0, opened: 0, ready: 0 };
  /** Front nodes' and workers' /health/ready while PostgreSQL was away. */
  let readyDuringOutage: number[] = [];
  let historyDuringOutage: Array<{ status: number; text: string }> = [];
  const stored = new Map<string, StoredMessage[]>();

  const processUrls = () => [...cluster.servers, ...cluster.workers].map((p) => p.url);

  before(async () => {
    // The test's own database: closing the run's would fail every other file's queries.
    db = await OwnDatabase.create('pg_outage');
    cluster = await startPipelineCluster('postgres-outage', { DATABASE_URL: db.url });
    const b = cluster.urls[1];
    world = await seedOutageWorld(cluster.urls, () => phase, ACK_TIMEOUT_MS);
    ({ team, channels, senders, returning, returningByRev } = world);

    const streams = startStreams(senders, INTERVAL_MS);
    try {
      await sleep(1_500);
      await db.close();
      // From here on the database refuses every connection: a send made now cannot be stored before it is back.
      phase = 'outage';
      at.closed = Date.now();
      for (const away of [returning, returningByRev]) away.socket.disconnect();
      // Comes back at once: refused (its channels cannot be read) and tried again until PostgreSQL is back.
      returning.socket.connect();
      await whenReadiness(processUrls(), 503, OUTAGE_MS);
      readyDuringOutage = await Promise.all(processUrls().map(readiness));
      historyDuringOutage = await Promise.all(channels.map((c) => historyPage(b, team.owner.token, c.id)));
      await sleep(Math.max(0, at.closed + OUTAGE_MS - Date.now()));
      phase = 'after';
      await db.open();
      at.opened = Date.now();
      at.ready = await whenReadiness(processUrls(), 200, 20_000);
      await sleep(1_000);
      await storedSinceAway(world);
      returningByRev.socket.connect();
      await sleep(1_000);
    } finally {
      await streams.stop();
    }
    await Promise.all(senders.map((c) => c.settled(30_000)));
    for (const c of channels) stored.set(c.id, await db.storedMessages(c.id));
    await caughtUp(world.clients, stored);
    histories = await changesCaughtUp(world.clients, b, team.owner.token, channels.map((c) => c.id));

    const sends = senders.flatMap((c) => c.sends);
    const changes = senders.flatMap((c) => c.changes);
    const waited = sends.filter((s) => s.attempts[0].phase === 'outage');
    const lastOutageAck = Math.max(...waited.flatMap((s) => s.attempts.filter((a) => a.outcome === 'ok').map((a) => a.answeredAt!)));
    const firstOkAfter = Math.min(...sends.flatMap((s) => s.attempts.filter((a) => a.outcome === 'ok' && a.answeredAt! >= at.opened).map((a) => a.answeredAt!)));
    console.log(
      `      [postgres outage] closed ${at.opened - at.closed} ms; after it took connections again: /health/ready 200 on every process in ${at.ready - at.opened} ms, ` +
        `first send acked ok in ${firstOkAfter - at.opened} ms, every send made during the outage acked ok in ${lastOutageAck - at.opened} ms; ` +
        `${sends.length} sends, ${sends.reduce((n, s) => n + s.attempts.length - 1, 0)} resends; ` +
        `${changes.length} changes, ${changes.reduce((n, c) => n + c.attempts.length - 1, 0)} resends; ` +
        `events checked at ${convergingClients(world.clients).map((c) => c.options.tag).join(', ')}`,
    );
  });

  after(async () => {
    await Promise.all((world?.clients ?? []).map((c) => c.close()));
    await cluster?.stop();
    await db?.drop();
  });

  it('When PostgreSQL refuses connections mid-stream and comes back, then every send acked ok is stored exactly once, and every client, connected throughout or resumed after reconnecting, received each channel 1..N in seq order', () => {
    expectStoredOnceAndDelivered(world.clients, channels.map((c) => c.id), stored);
    expect(returning.timeline.some((e) => e.includes('connect_error')), `the returning client was refused while PostgreSQL was away: ${returning.timeline}`).to.equal(true);
  });

  it('When PostgreSQL refuses connections mid-stream while a member edits, deletes and reacts, then every change is acked ok once it is back and applied exactly once, and every client resuming by rev or connected throughout holds each channel as its history shows', () => {
    const changes = senders.flatMap((c) => c.changes);
    expect(changes.filter((c) => c.attempts[0].phase === 'outage').length, 'changes made while PostgreSQL was away').to.be.greaterThan(5);
    expect(new Set(changes.map((c) => c.kind)), 'kinds of change made').to.deep.equal(new Set(['edit', 'delete', 'reaction:add', 'reaction:remove']));
    expect(returningByRev.replayed.reduce((a, b) => a + b, 0), 'events replayed to the client resuming by rev').to.be.greaterThan(0);
    expectChangesConverged(world.clients, channels.map((c) => c.id), histories);
  });

  it('When PostgreSQL is away, then sends wait for it, each is answered, and those made during the outage are acked ok once it is back', () => {
    const sends = senders.flatMap((c) => c.sends);
    const unanswered = sends.filter((s) => s.attempts.some((a) => a.outcome === 'no answer'));
    expect(unanswered.length, `attempts without an ack within ${ACK_TIMEOUT_MS} ms: ${describeSends(unanswered)}`).to.equal(0);
    const answers = [...new Set(sends.flatMap((s) => s.attempts.map((a) => a.outcome)))];
    expect(answers.filter((a) => a !== 'ok' && a !== 'SERVICE_UNAVAILABLE'), 'answers').to.deep.equal([]);
    expect(sends.filter((s) => !s.acked).map((s) => s.clientMsgId), 'sends never acked ok').to.deep.equal([]);
    const waited = sends.filter((s) => s.attempts[0].phase === 'outage');
    expect(waited.length, 'sends made while PostgreSQL was away').to.be.greaterThan(10);
    expect(waited.filter((s) => (s.attempts.find((a) => a.outcome === 'ok')?.answeredAt ?? Infinity) < at.opened).map((s) => s.clientMsgId), 'acked before PostgreSQL was back').to.deep.equal([]);
  });

  it('When PostgreSQL is away, then the workers retry in place: no channel is reordered, each sender\'s sends are stored in the order it made them', () => {
    for (const sender of senders) {
      for (const channel of channels) {
        // A send answered at its first attempt went through the pipeline in its place; a resent one did not.
        const firstTime = sender.sends.filter((s) => s.channelId === channel.id && s.attempts.length === 1);
        const seqs = firstTime.flatMap((s) => (s.acked ? [s.acked.seq] : []));
        expect(seqs, `${sender.options.tag}'s sends in channel ${channel.name}, in the order sent`).to.deep.equal([...seqs].sort((x, y) => x - y));
      }
    }
  });

  it('When PostgreSQL is away, then /health/ready answers 503 on every front node and worker and REST answers SERVICE_UNAVAILABLE, and both recover by themselves', () => {
    expect(readyDuringOutage).to.deep.equal([503, 503, 503, 503]);
    for (const page of historyDuringOutage) expect(page.status, page.text).to.equal(503);
    expect(historyDuringOutage.map((p) => JSON.parse(p.text).error.code)).to.deep.equal(['SERVICE_UNAVAILABLE', 'SERVICE_UNAVAILABLE']);
    expect(at.ready).to.be.greaterThan(0);
    expect(cluster.servers.every((p) => p.alive) && cluster.workers.every((p) => p.alive), 'every process still runs').to.equal(true);
  });
});
