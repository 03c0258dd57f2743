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
import { closeDb, fullHistory, seedChannel, seedTeam, type Team } from '../pipeline/fixtures.js';
import {
  PipelinedSender,
  SyncClient,
  closeSockets,
  connectSocket,
  expectSaneAcks,
  expectTail,
  liveUrls,
  record,
  sendMany,
  sleep,
  waitFor,
  type Session,
  type SyncAck,
} from './helpers.js';

const REPLAY_LIMIT = 20;
const HOLD_MS = 1000;
const SEED = 20_251_128;
const RUNS = 12;
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

  before(async function () {
    cluster = await startCluster({
      servers: 2,
      workers: 2,
      env: { MESSAGE_RATE_PER_SECOND: '0', SYNC_REPLAY_LIMIT: String(REPLAY_LIMIT), SYNC_HOLD_MS: String(HOLD_MS) },
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
    await client.connect(cluster.urls[0]);
    await client.current!.synced;
  });

  after(async () => {
    await Promise.allSettled(senders.map((s) => s.stop()));
    closeSockets();
    await cluster?.stop();
    await closeDb();
    const sessions = client?.sessions ?? [];
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
   * Every session from `firstSession` on received exactly the history after its `from`: the last one all
   * of it, the earlier ones (cut by a disconnect) a gap-free beginning of it.
   */
  function checkSessions(firstSession: number, history: Map<string, MessageDto[]>, label: string): void {
    const sessions = client.sessions.slice(firstSession);
    for (const session of sessions) {
      const last = session === client.current;
      try {
        for (const [c, id] of ids().entries()) {
          const what = `${label}, session ${session.index} (${last ? 'current' : 'cut'}) on ${session.url}, channel ${c}, from seq ${session.from[id]}`;
          expectTail(session.received.get(id)!, history.get(id)!, session.from[id], last ? 'complete' : 'prefix', what);
        }
        expectSaneAcks(session, REPLAY_LIMIT, `${label}, session ${session.index}`);
      } catch (err) {
        for (const s of sessions) console.log(`      session ${s.index} on ${s.url} from ${JSON.stringify(Object.values(s.from))}: ${s.timeline.join(' ')}`);
        throw err;
      }
    }
  }

  it('When a receiver drops at a random moment, stays away a random time and syncs on the other node while two senders keep sending, then it gets exactly the history after its lastSeq, in order, once', async () => {
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
        const firstSession = client.current!.index;
        for (const s of senders) s.start();
        try {
          await sleep(leadMs);
          for (const [h, hop] of hops.entries()) {
            const url = otherNode(client.current!.url);
            client.disconnect();
            await sleep(hop.awayMs);
            await client.connect(url);
            // Intermediate hops may end in the middle of a replay.
            if (h < hops.length - 1) await sleep(hop.stayMs);
          }
          await sleep(tailMs);
        } finally {
          await Promise.all(senders.map((s) => s.stop()));
        }
        for (const s of senders) expect(s.failures, 'sends refused or lost').to.deep.equal([]);
        const history = await histories();
        await client.caughtUp(lastSeqs(history));
        // A late duplicate would arrive in this window.
        await sleep(150);
        checkSessions(firstSession, history, `run ${runs}`);
        runs++;
      }),
      { seed: SEED, numRuns: RUNS, endOnFailure: true },
    );
  });

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
    expect(session.calls.map((c) => (c.ack.ok ? c.ack.channels : c.ack)), 'the acks').to.deep.equal(pick((p) => p.ack));

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
    expect(ack.channels[A]).to.deep.equal({ replayed: page.length, latestSeq: page.length, hasMore: history.length > REPLAY_LIMIT });

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
    await waitFor(() => seen.some((x) => x.id === m.id), HOLD_MS / 2, () => 'live message after a refused sync');
    socket.close();
  });

  it('When a new socket never calls sync, then its live messages are held at most SYNC_HOLD_MS and then delivered in order', async () => {
    const [A, B] = ids();
    const socket = await connectSocket(liveUrls(cluster)[1], reader.token);
    const connectedAt = Date.now();
    const seen: Array<{ m: MessageDto; at: number }> = [];
    socket.on('message:new', (m: MessageDto) => seen.push({ m, at: Date.now() }));
    // Give the server the moment it takes to subscribe the socket to its channels.
    await sleep(150);
    const sent = [
      ...(await sendMany(senders[0].socket, A, 3, 'held-a')),
      ...(await sendMany(senders[1].socket, B, 3, 'held-b')),
    ];
    await waitFor(() => seen.length >= sent.length, HOLD_MS + 3000, () => `received ${seen.length} of ${sent.length}`);
    const firstAt = Math.min(...seen.map((s) => s.at)) - connectedAt;
    const lastAt = Math.max(...seen.map((s) => s.at)) - connectedAt;
    expect(firstAt, 'held until the hold ran out').to.be.at.least(HOLD_MS - 300);
    expect(lastAt, 'delivered once the hold ran out').to.be.at.most(HOLD_MS + 2000);
    for (const id of [A, B]) {
      expect(seen.filter((s) => s.m.channelId === id).map((s) => s.m.id)).to.deep.equal(sent.filter((m) => m.channelId === id).map((m) => m.id));
    }
    // Once released, live messages flow at once.
    const [late] = await sendMany(senders[0].socket, A, 1, 'after-hold');
    const sentAt = Date.now();
    await waitFor(() => seen.some((s) => s.m.id === late.id), HOLD_MS / 2, () => 'live message after the hold');
    expect(seen.length, 'each message once').to.equal(sent.length + 1);
    expect(Date.now() - sentAt).to.be.below(HOLD_MS / 2);
    socket.close();
  });

  it('When a new socket starts with another event than sync, then its live messages are not held', async () => {
    const [A] = ids();
    const socket = await connectSocket(liveUrls(cluster)[0], reader.token);
    const connectedAt = Date.now();
    const seen = record<MessageDto>(socket, 'message:new');
    const read = await socket.timeout(10_000).emitWithAck('channel:read', { channelId: A, seq: 0 });
    expect(read).to.include({ ok: true });
    await sleep(100);
    const [m] = await sendMany(senders[1].socket, A, 1, 'not-held');
    await waitFor(() => seen.some((x) => x.id === m.id), HOLD_MS, () => 'live message');
    expect(Date.now() - connectedAt, 'arrived before the hold would have ended').to.be.below(HOLD_MS - 100);
    socket.close();
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
