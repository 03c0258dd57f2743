import { randomUUID } from 'node:crypto';
import { expect } from 'chai';
import fc from 'fast-check';
import { startCluster, type Cluster } from '../../scripts/cluster.js';
import type { MessageDto } from '../../shared/models/Message.js';
import {
  createChannel,
  createWorkspace,
  registerUser,
  request,
  type ChannelDto,
  type RegisteredUser,
} from '../support/api.js';
import { closeDb, expectUnheardFilledIn, fullHistory, seedChannel, seedTeam, type Team } from '../pipeline/fixtures.js';
import { connectError, type Transport } from '../support/sockets.js';
import {
  PipelinedSender,
  SyncClient,
  closeSockets,
  connectSocket,
  expectExactlyOnce,
  expectSaneAcks,
  expectTail,
  liveUrls,
  openSocket,
  whenConnected,
  record,
  sendMany,
  sleep,
  waitFor,
  type ResumeMode,
  type Session,
  type SyncAck,
  type SyncDone,
} from './helpers.js';
import { endOnFailure, propertyRuns, propertySeed } from '../support/properties.js';

const REPLAY_LIMIT = 20;
const SEED = propertySeed(20_251_128);
/**
 * The random reconnect property, per way of resuming and transport: the handshake resume over each
 * transport (in order, once), and `sync` after connect (once; live may overtake the replay) with the
 * client sending its own messages the moment it reconnects, as a client with un-acked sends does.
 */
const PROPERTY_RUNS: Array<{ mode: ResumeMode; transport: Transport; runs: number; sendOnResume: number }> = [
  { mode: 'handshake', transport: 'websocket', runs: 10, sendOnResume: 0 },
  { mode: 'handshake', transport: 'default', runs: 5, sendOnResume: 2 },
  { mode: 'handshake', transport: 'polling', runs: 5, sendOnResume: 2 },
  { mode: 'sync', transport: 'websocket', runs: 6, sendOnResume: 3 },
  { mode: 'sync', transport: 'default', runs: 4, sendOnResume: 3 },
];
const BACKLOG_A = 170;
const BACKLOG_B = 60;

describe('sync: reconnecting to any front node loses and doubles nothing', function () {
  this.timeout(120_000);

  let cluster: Cluster;
  let team: Team;
  let alice: RegisteredUser;
  let bob: RegisteredUser;
  let reader: RegisteredUser;
  let channels: ChannelDto[];
  let client: SyncClient;
  let senders: PipelinedSender[] = [];
  let runs = 0;
  const clients: SyncClient[] = [];

  before(async function () {
    cluster = await startCluster({
      servers: 2,
      workers: 2,
      // The rate limit is off on purpose: alice and bob send non-stop (3 in flight each) through every random
      // reconnect run, a 170-message backlog and a node replacement, thousands of sends per user per 10 s, far
      // over the default budget of 500 (with it on, over a thousand sends are RATE_LIMITED); this file tests
      // sync, the limit has its own tests (rate-limit.test.ts, ordering.test.ts). Likewise the per-user REST
      // budget: after every run the reader pages through both channels' whole history as the ground truth,
      // past a thousand requests per 10 s by the end (abuse-limits.test.ts tests that budget).
      env: { MESSAGE_RATE_PER_SECOND: '0', REST_RATE_PER_SECOND: '0', SYNC_REPLAY_LIMIT: String(REPLAY_LIMIT) },
    });
    const [a] = cluster.urls;
    team = await seedTeam(a, 3);
    [alice, bob, reader] = team.members;
    channels = [await seedChannel(a, team, [alice, bob, reader]), await seedChannel(a, team, [alice, bob, reader])];
    senders = [
      new PipelinedSender(await connectSocket(cluster.urls[0], alice.token), ids(), 'alice'),
      new PipelinedSender(await connectSocket(cluster.urls[1], bob.token), ids(), 'bob'),
    ];
    client = new SyncClient(reader.token, ids());
    clients.push(client);
    await client.connect(cluster.urls[0]);
    await client.current!.synced;
  });

  after(async () => {
    await Promise.allSettled(senders.map((s) => s.stop()));
    closeSockets();
    await cluster?.stop();
    await closeDb();
    const sessions = clients.flatMap((c) => c.sessions);
    const calls = sessions.flatMap((s) => s.calls);
    const stats = {
      runs,
      sessions: sessions.length,
      syncCalls: calls.length,
      hasMoreAcks: calls.filter((c) => c.ack.ok && Object.values(c.ack.channels).some((r) => 'hasMore' in r && r.hasMore)).length,
      received: sessions.reduce((n, s) => n + [...s.received.values()].reduce((k, l) => k + l.length, 0), 0),
    };
    console.log(`      [reconnect stats] ${JSON.stringify(stats)}`);
  });

  const ids = () => channels.map((c) => c.id);
  const otherNode = (url: string) => {
    const urls = liveUrls(cluster);
    return urls[(urls.indexOf(url) + 1) % urls.length];
  };

  async function histories(): Promise<Map<string, MessageDto[]>> {
    const url = liveUrls(cluster)[0];
    const out = new Map<string, MessageDto[]>();
    for (const id of ids()) out.set(id, await fullHistory(url, reader.token, id));
    return out;
  }

  const lastSeqs = (h: Map<string, MessageDto[]>) =>
    Object.fromEntries([...h].map(([id, list]) => [id, list.length === 0 ? 0 : list[list.length - 1].seq]));

  /**
   * Every session of `who` from `firstSession` on received exactly the history after its `from`: the last
   * one all of it, the earlier ones (cut by a disconnect) a gap-free beginning of it. A client resuming
   * with `sync` after connect gets each message once, in order except that live ones may come first.
   */
  function checkSessions(firstSession: number, history: Map<string, MessageDto[]>, label: string, who: SyncClient = client): void {
    const sessions = who.sessions.slice(firstSession);
    const expectReceived = who.mode === 'handshake' ? expectTail : expectExactlyOnce;
    for (const session of sessions) {
      const last = session === who.current;
      try {
        for (const [c, id] of ids().entries()) {
          const what = `${label}, session ${session.index} (${last ? 'current' : 'cut'}) on ${session.url}, channel ${c}, from seq ${session.from[id]}`;
          expectReceived(session.received.get(id)!, history.get(id)!, session.from[id], last ? 'complete' : 'prefix', what);
        }
        expectSaneAcks(session, REPLAY_LIMIT, `${label}, session ${session.index}`);
      } catch (err) {
        for (const s of sessions) console.log(`      session ${s.index} on ${s.url} from ${JSON.stringify(Object.values(s.from))}: ${s.timeline.join(' ')}`);
        throw err;
      }
    }
  }

  for (const { mode, transport, runs: numRuns, sendOnResume } of PROPERTY_RUNS) {
    const how = mode === 'handshake' ? 'resumes in its handshake' : 'syncs first thing after connecting and sends at once';
    const promise = mode === 'handshake' ? 'in order, once' : 'each once';
    it(`When a receiver (${transport}) drops at a random moment, stays away a random time and ${how} on the other node while two senders keep sending, then it gets exactly the history after its lastSeq, ${promise}`, async () => {
      const tag = `${mode}-${transport}`;
      const who = new SyncClient(reader.token, ids(), { mode, transport, sendOnResume, tag });
      clients.push(who);
      // Starts from the channels' current ends: each run checks what follows.
      const start = lastSeqs(await histories());
      Object.assign(who.lastSeq, start);
      await who.connect(liveUrls(cluster)[0]);
      await who.current!.synced;
      const plan = fc.record({
        leadMs: fc.integer({ min: 0, max: 400 }),
        hops: fc.array(fc.record({ awayMs: fc.integer({ min: 0, max: 900 }), stayMs: fc.integer({ min: 0, max: 250 }) }), {
          minLength: 1,
          maxLength: 3,
        }),
        tailMs: fc.integer({ min: 0, max: 400 }),
      });
      await fc.assert(
        fc.asyncProperty(plan, async ({ leadMs, hops, tailMs }) => {
          const firstSession = who.current!.index;
          for (const s of senders) s.start();
          try {
            await sleep(leadMs);
            for (const [h, hop] of hops.entries()) {
              const url = otherNode(who.current!.url);
              who.disconnect();
              await sleep(hop.awayMs);
              await who.connect(url);
              // Intermediate hops may end in the middle of a replay.
              if (h < hops.length - 1) await sleep(hop.stayMs);
            }
            await sleep(tailMs);
          } finally {
            await Promise.all(senders.map((s) => s.stop()));
          }
          for (const s of senders) expect(s.failures, 'sends refused or lost').to.deep.equal([]);
          const history = await histories();
          await who.caughtUp(lastSeqs(history));
          // A late duplicate would arrive in this window.
          await sleep(150);
          checkSessions(firstSession, history, `${tag} run ${runs}`, who);
          runs++;
        }),
        { seed: SEED, numRuns: propertyRuns(numRuns), endOnFailure: endOnFailure() },
      );
      who.disconnect();
      // Its own sends, made while resuming, were stored once each and came back to it like any other.
      const stored = new Map([...(await histories()).values()].flat().map((m) => [m.id, m]));
      for (const [clientMsgId, message] of who.ownAcked) {
        expect(stored.get(message.id)?.body, `own send ${clientMsgId}`).to.equal(clientMsgId);
      }
      if (sendOnResume > 0) expect(who.ownAcked.size, 'own sends acked').to.be.greaterThan(0);
    });
  }

  it('When the backlog is larger than SYNC_REPLAY_LIMIT, then sync replays it in pages with hasMore true then false, exactly, and live messages follow', async () => {
    const [A, B] = ids();
    const history0 = await histories();
    await client.caughtUp(lastSeqs(history0));
    const before = { ...client.lastSeq };
    const url = otherNode(client.current!.url);
    client.disconnect();

    await Promise.all([sendMany(senders[0].socket, A, BACKLOG_A, 'backlog-a'), sendMany(senders[1].socket, B, BACKLOG_B, 'backlog-b')]);
    const session = await client.connect(url);
    await session.synced;

    // The pages each channel's backlog takes: full ones with hasMore, then the rest without.
    const pages = (from: number, count: number) =>
      Array.from({ length: Math.floor(count / REPLAY_LIMIT) + 1 }, (_, k) => {
        const done = k * REPLAY_LIMIT;
        const replayed = Math.min(REPLAY_LIMIT, count - done);
        return { from: from + done, ack: { replayed, latestSeq: from + done + replayed, hasMore: count - done > REPLAY_LIMIT } };
      }).filter((p, k) => k === 0 || p.ack.replayed > 0);
    const expected = { A: pages(before[A], BACKLOG_A), B: pages(before[B], BACKLOG_B) };
    expect(expected.A.length, 'the backlog takes several syncs').to.be.greaterThan(2);
    const rounds = Math.max(expected.A.length, expected.B.length);
    const pick = <T>(f: (p: (typeof expected.A)[number]) => T) =>
      Array.from({ length: rounds }, (_, i) => ({
        ...(i < expected.A.length ? { [A]: f(expected.A[i]) } : {}),
        ...(i < expected.B.length ? { [B]: f(expected.B[i]) } : {}),
      }));
    expect(session.calls.map((c) => c.request), 'the lastSeqs each sync asked from').to.deep.equal(pick((p) => p.from));
    // latestRev is the channel's rev when each page was read (its messages' revs are their seqs here).
    const acks = session.calls.map((c) => (c.ack.ok ? c.ack.channels : c.ack)) as unknown as Array<Record<string, Record<string, number>>>;
    for (const ack of acks) for (const r of Object.values(ack)) expect(r.latestRev, JSON.stringify(r)).to.be.at.least(r.latestSeq);
    const withoutRev = acks.map((ack) => Object.fromEntries(Object.entries(ack).map(([id, { latestRev: _rev, ...r }]) => [id, r])));
    expect(withoutRev, 'the acks').to.deep.equal(pick((p) => p.ack));

    // Live ones after the replay, on both channels, from both nodes.
    await Promise.all([sendMany(senders[0].socket, A, 5, 'after-a'), sendMany(senders[1].socket, B, 5, 'after-b')]);
    const history = await histories();
    await client.caughtUp(lastSeqs(history));
    await sleep(150);
    expectTail(session.received.get(A)!, history.get(A)!, before[A], 'complete', 'channel A after the paged replay');
    expectTail(session.received.get(B)!, history.get(B)!, before[B], 'complete', 'channel B after the paged replay');
    expect(session.received.get(A)).to.have.length(BACKLOG_A + 5);
    expect(session.received.get(B)).to.have.length(BACKLOG_B + 5);
    expectSaneAcks(session, REPLAY_LIMIT, 'paged replay');
  });

  it('When sync lists unknown, foreign or non-member channels, then each is answered NOT_FOUND alike, nothing of them is replayed or delivered, and member channels sync normally', async () => {
    const [A] = ids();
    const url = liveUrls(cluster)[1];
    // Another workspace with history: the reader is not in it.
    const stranger = await registerUser(url);
    const elsewhere = await createWorkspace(url, stranger.token);
    const foreign = await createChannel(url, stranger.token, elsewhere.id);
    // In the reader's workspace, channels the reader is not in: one public, one private.
    const publicOther = await createChannel(url, team.owner.token, team.workspace.id);
    const privateOther = await createChannel(url, team.owner.token, team.workspace.id, { isPrivate: true });
    for (const [token, id] of [
      [stranger.token, foreign.id],
      [team.owner.token, publicOther.id],
      [team.owner.token, privateOther.id],
    ]) {
      for (let i = 0; i < 3; i++) {
        const res = await request(url, 'POST', `/channels/${id}/messages`, { token, body: { body: `hidden ${i}` } });
        expect(res.status, res.text).to.equal(201);
      }
    }

    const socket = await connectSocket(url, reader.token);
    const seen = record<MessageDto>(socket, 'message:new');
    const random = randomUUID();
    const hidden = [foreign.id, publicOther.id, privateOther.id];
    const ack = (await socket.timeout(10_000).emitWithAck('sync', {
      channels: { [foreign.id]: 0, [random]: 0, [publicOther.id]: 0, [privateOther.id]: 0, 'not-a-uuid': 0, [A]: 0 },
    })) as SyncAck;

    expect(ack.ok, JSON.stringify(ack)).to.equal(true);
    if (!ack.ok) return;
    expect(Object.keys(ack.channels).sort()).to.deep.equal([foreign.id, random, publicOther.id, privateOther.id, 'not-a-uuid', A].sort());
    const notFound = ack.channels[random];
    expect(notFound).to.have.property('error').that.includes({ code: 'NOT_FOUND' });
    for (const id of [...hidden, 'not-a-uuid']) expect(ack.channels[id], `ack for ${id}`).to.deep.equal(notFound);
    const history = (await histories()).get(A)!;
    const page = history.slice(0, REPLAY_LIMIT);
    expect(ack.channels[A]).to.deep.include({ replayed: page.length, latestSeq: page.length, hasMore: history.length > REPLAY_LIMIT });
    expect(ack.channels[A]).to.have.all.keys('replayed', 'latestSeq', 'latestRev', 'hasMore');

    // Live messages into the hidden channels after the sync: still nothing for the reader.
    for (const [token, id] of [
      [stranger.token, foreign.id],
      [team.owner.token, publicOther.id],
      [team.owner.token, privateOther.id],
    ]) {
      const res = await request(url, 'POST', `/channels/${id}/messages`, { token, body: { body: 'live hidden' } });
      expect(res.status, res.text).to.equal(201);
    }
    await sleep(300);
    expect(seen.filter((m) => hidden.includes(m.channelId) || m.channelId === random)).to.deep.equal([]);
    expect(seen.map((m) => m.id), 'only the member channel, replayed').to.deep.equal(page.map((m) => m.id));
    socket.close();
  });

  it('When sync payloads are malformed, then the ack is VALIDATION_FAILED and the socket still gets live messages', async () => {
    const [A] = ids();
    const socket = await connectSocket(liveUrls(cluster)[0], reader.token);
    const seen = record<MessageDto>(socket, 'message:new');
    for (const payload of [{}, { channels: { [A]: -1 } }, { channels: { [A]: 1.5 } }, { channels: { [A]: 'x' } }, { channels: [A] }, null]) {
      const ack = (await socket.timeout(10_000).emitWithAck('sync', payload)) as SyncAck;
      expect(ack, JSON.stringify(payload)).to.have.nested.property('error.code', 'VALIDATION_FAILED');
      expect(ack, JSON.stringify(payload)).to.include({ ok: false });
    }
    const [m] = await sendMany(senders[0].socket, A, 1, 'after-bad-sync');
    await waitFor(() => seen.some((x) => x.id === m.id), 5000, () => 'live message after a refused sync');
    socket.close();
  });

  for (const resumed of [true, false]) {
    const how = resumed ? 'a client that resumed there by rev' : 'a client connected there without resuming';
    it(`When a message's publish never reaches the node (its worker died between commit and publish) and the node had seen no event of the channel yet, then ${how} gets it before the next one, each once, in rev order`, async () => {
      const url = liveUrls(cluster)[1];
      // The owner (its creator, with no other socket) follows it; alice sends.
      const channel = await seedChannel(url, team, [alice]);
      const { token } = team.owner;
      const socket = openSocket(url, token, { auth: (cb) => cb(resumed ? { token, resume: { [channel.id]: { rev: 0 } } } : { token }) });
      const news = record<MessageDto>(socket, 'message:new');
      const done = new Promise<SyncDone>((resolve) => socket.once('sync:done', resolve));
      await whenConnected(socket);
      if (resumed) expect((await done).channels[channel.id]).to.deep.equal({ replayed: 0, latestRev: 0, hasMore: false });
      await expectUnheardFilledIn(url, channel, alice, news);
      socket.close();
    });
  }

  for (const how of ['is added to it by a member', 'joins it'] as const) {
    it(`When a connected client ${how} and the node misses the channel's next publish (its worker died between commit and publish), then the client gets that message before the next one, each once, in rev order`, async () => {
      const url = liveUrls(cluster)[1];
      const channel = await seedChannel(url, team, [alice]);
      const socket = openSocket(url, bob.token);
      const news = record<MessageDto>(socket, 'message:new');
      await whenConnected(socket);
      const joined =
        how === 'joins it'
          ? await request(url, 'POST', `/channels/${channel.id}/join`, { token: bob.token })
          : await request(url, 'POST', `/channels/${channel.id}/members`, { body: { userId: bob.user.id }, token: alice.token });
      expect(joined.status).to.be.oneOf([200, 201]);
      await expectUnheardFilledIn(url, channel, alice, news);
      socket.close();
    });
  }

  it('When a socket declares no resume and never emits, then its live messages are not held: they reach it with a socket connected long before', async () => {
    const [A, B] = ids();
    const url = liveUrls(cluster)[1];
    const veteran = await connectSocket(url, reader.token);
    await sleep(300);
    const veteranSeen = new Map<string, number>();
    veteran.on('message:new', (m: MessageDto) => veteranSeen.set(m.id, Date.now()));
    for (const transport of ['websocket', 'polling', 'default'] as const) {
      const socket = await connectSocket(url, reader.token, transport);
      const seen: Array<{ m: MessageDto; at: number }> = [];
      socket.on('message:new', (m: MessageDto) => seen.push({ m, at: Date.now() }));
      // Sent the moment the socket is connected: it is in its rooms from `connect` on.
      const sent = [...(await sendMany(senders[0].socket, A, 3, `nohold-a-${transport}`)), ...(await sendMany(senders[1].socket, B, 3, `nohold-b-${transport}`))];
      await waitFor(() => seen.length >= sent.length && sent.every((m) => veteranSeen.has(m.id)), 5000, () => `${transport}: received ${seen.length} of ${sent.length}`);
      for (const id of [A, B]) {
        expect(seen.filter((x) => x.m.channelId === id).map((x) => x.m.id), `${transport}: in order, once`).to.deep.equal(
          sent.filter((m) => m.channelId === id).map((m) => m.id),
        );
      }
      // The old hold kept them 500 ms; without one they come with the veteran's copies.
      const lag = Math.max(...seen.map((x) => x.at - veteranSeen.get(x.m.id)!));
      expect(lag, `${transport}: behind the veteran socket by`).to.be.below(400);
      await sleep(100);
      expect(seen.length, `${transport}: each message once`).to.equal(sent.length);
      socket.close();
    }
    veteran.close();
  });

  it('When a handshake resumes unknown, foreign or non-member channels, then sync:done answers each NOT_FOUND, replays only member channels, in order, before their live messages', async () => {
    const [A, B] = ids();
    const url = liveUrls(cluster)[0];
    const stranger = await registerUser(url);
    const elsewhere = await createWorkspace(url, stranger.token);
    const foreign = await createChannel(url, stranger.token, elsewhere.id);
    const res = await request(url, 'POST', `/channels/${foreign.id}/messages`, { token: stranger.token, body: { body: 'hidden' } });
    expect(res.status, res.text).to.equal(201);
    const history = await histories();
    const endA = lastSeqs(history)[A];
    const from = Math.max(0, endA - 5);
    const random = randomUUID();
    const socket = openSocket(url, reader.token, { auth: (cb) => cb({ token: reader.token, resume: { [A]: from, [foreign.id]: 0, [random]: 0, 'not-a-uuid': 0 } }) });
    const seen = record<MessageDto>(socket, 'message:new');
    const done = new Promise<SyncDone>((resolve) => socket.once('sync:done', resolve));
    // Live traffic into the resumed channel and a channel not resumed while the replay runs.
    const live = Promise.all([sendMany(senders[0].socket, A, 6, 'resume-live-a', 2), sendMany(senders[1].socket, B, 4, 'resume-live-b', 2)]);
    const { channels } = await done;
    const [liveA] = await live;
    expect(Object.keys(channels).sort()).to.deep.equal([A, foreign.id, random, 'not-a-uuid'].sort());
    for (const id of [foreign.id, random, 'not-a-uuid']) expect(channels[id], id).to.have.nested.property('error.code', 'NOT_FOUND');
    expect(channels[A]).to.include({ hasMore: false });
    const after = await histories();
    await waitFor(() => seen.filter((m) => m.channelId === A).length >= after.get(A)!.length - from, 5000);
    await sleep(150);
    expectTail(seen.filter((m) => m.channelId === A), after.get(A)!, from, 'complete', 'resumed channel');
    expect(liveA.every((m) => seen.some((x) => x.id === m.id)), 'live sends of the resumed channel').to.equal(true);
    expect(seen.filter((m) => m.channelId === foreign.id)).to.deep.equal([]);
    socket.close();
  });

  it('When a handshake resume is malformed, then the connection is refused with VALIDATION_FAILED', async () => {
    const [A] = ids();
    const url = liveUrls(cluster)[0];
    for (const resume of [{ [A]: -1 }, { [A]: 'x' }, [A], 'everything', { [A]: 1.5 }]) {
      const err = await connectError(url, { token: reader.token, resume });
      expect(err.message, JSON.stringify(resume)).to.equal('VALIDATION_FAILED');
    }
    const err = await connectError(url, { token: 'not-a-token', resume: { [A]: 0 } });
    expect(err.message).to.equal('UNAUTHORIZED');
  });

  it('When both front nodes are replaced while senders keep sending, then a client reconnecting to a new node gets exactly what it missed, then live', async () => {
    const history0 = await histories();
    await client.caughtUp(lastSeqs(history0));
    const firstSession = client.current!.index;
    const oldServers = cluster.servers.filter((p) => p.alive);
    for (const s of senders) s.start();
    await sleep(300);
    await Promise.all(oldServers.map((p) => p.stop()));
    await Promise.all(senders.map((s) => s.stop()));
    await waitFor(() => client.current!.closed, 5000, () => 'the client did not see its node go away');

    const [n0, n1] = await Promise.all([cluster.addServer(), cluster.addServer()]);
    senders = [
      new PipelinedSender(await connectSocket(n0.url!, alice.token), ids(), 'alice-2'),
      new PipelinedSender(await connectSocket(n1.url!, bob.token), ids(), 'bob-2'),
    ];
    for (const s of senders) s.start();
    await sleep(200);
    const session: Session = await client.connect(n1.url!);
    await sleep(500);
    await Promise.all(senders.map((s) => s.stop()));
    for (const s of senders) expect(s.failures, 'sends to the new nodes').to.deep.equal([]);

    const history = await histories();
    await client.caughtUp(lastSeqs(history));
    await sleep(150);
    checkSessions(firstSession, history, 'after replacing both front nodes');
    for (const id of ids()) {
      expect(history.get(id)!.length, 'messages were sent before, and after, the restart').to.be.greaterThan(history0.get(id)!.length);
      expect(session.received.get(id)!.length, 'the new session got messages').to.be.greaterThan(0);
    }
  });
});
