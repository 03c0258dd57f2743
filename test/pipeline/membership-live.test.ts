import { createAdapter } from '@socket.io/redis-adapter';
import { expect } from 'chai';
import { Redis } from 'ioredis';
import { Server } from 'socket.io';
import { socketAdapterKey, type MembershipChange } from '../../shared/events.js';
import type { Cluster } from '../../scripts/cluster.js';
import type { MessageDto } from '../../shared/models/Message.js';
import { addWorkspaceMember, registerUser, request, type ChannelDto, type RegisteredUser } from '../support/api.js';
import { Collector, connect, disconnectAll, send, sendOk, sleep, waitFor, type ClientSocket } from '../support/sockets.js';
import { acked, edit, EventLog, react } from './changes-harness.js';
import { closeDb, clusterRedisPrefix, dbQuery, expectUnheardFilledIn, killAdapterSubscribers, seedChannel, seedTeam, startPipelineCluster, storedByClientMsgId, type Team } from './fixtures.js';

/**
 * Membership changes made through REST on node A must be in force on node B's sockets by the time the
 * REST call returns: no message of a channel reaches a socket of a user outside it, none is missed once in.
 */
describe('pipeline: live membership changes across nodes', function () {
  this.timeout(60_000);

  let cluster: Cluster;
  let A: string;
  let B: string;
  let team: Team;
  let speaker: RegisteredUser;
  let speakerA: ClientSocket;
  let watcherB: Collector;
  let watcherEvents: EventLog;
  let next = 0;

  before(async () => {
    cluster = await startPipelineCluster('membership');
    [A, B] = cluster.urls;
    team = await seedTeam(A, 1);
    [speaker] = team.members;
    speakerA = await connect(A, speaker.token);
    // The owner's socket on node B: a member of every channel, it shows what node B delivered.
    const ownerB = await connect(B, team.owner.token);
    watcherB = new Collector(ownerB);
    watcherEvents = new EventLog('owner@B', ownerB);
  });

  after(async () => {
    disconnectAll();
    await cluster?.stop();
    await closeDb();
  });

  interface Subject {
    user: RegisteredUser;
    /** The subject's sockets: on node B (the one the tests are about) and on node A. */
    onB: Collector;
    onA: Collector;
    /** Every channel event (message:new and the changes) each socket got. */
    eventsB: EventLog;
    eventsA: EventLog;
    socketB: ClientSocket;
  }

  /** A new workspace member with a socket open on each node before the change. */
  async function subject(): Promise<Subject> {
    const user = await registerUser(A);
    await addWorkspaceMember(A, team.owner.token, team.workspace.id, user.email);
    const socketB = await connect(B, user.token);
    const socketA = await connect(A, user.token);
    await sleep(200);
    return { user, socketB, onB: new Collector(socketB), onA: new Collector(socketA), eventsB: new EventLog('subject@B', socketB), eventsA: new EventLog('subject@A', socketA) };
  }

  /** The speaker sends `count` messages; resolves once node B delivered them to the watcher. */
  async function speak(channel: ChannelDto, count: number): Promise<MessageDto[]> {
    const sent = await Promise.all(
      Array.from({ length: count }, () => {
        const id = `speak-${next++}`;
        return sendOk(speakerA, { channelId: channel.id, body: id, clientMsgId: id });
      }),
    );
    await waitFor(() => sent.every((m) => watcherB.of(channel.id).some((x) => x.id === m.id)), 10_000);
    return sent;
  }

  const ids = (messages: MessageDto[]) => messages.map((m) => m.id);

  async function expectDeliveredAfterJoin(s: Subject, channel: ChannelDto): Promise<void> {
    const sent = await speak(channel, 3);
    await waitFor(() => s.onB.count(channel.id) === 3 && s.onA.count(channel.id) === 3, 10_000, () => `${s.onB.count(channel.id)}/${s.onA.count(channel.id)}`);
    expect(ids(s.onB.of(channel.id))).to.deep.equal(ids(sent));
    expect(ids(s.onA.of(channel.id))).to.deep.equal(ids(sent));
    // Their own sends are accepted and reach them too.
    const own = await sendOk(s.socketB, { channelId: channel.id, body: 'I am in', clientMsgId: `own-${next++}` });
    await waitFor(() => s.onB.of(channel.id).some((m) => m.id === own.id) && watcherB.of(channel.id).some((m) => m.id === own.id));
  }

  /**
   * After a removal: nothing more of the channel reaches the subject, neither new messages nor changes to
   * those it had (an edit, a reaction), and its sends are refused.
   */
  async function expectCutOff(s: Subject, channel: ChannelDto): Promise<void> {
    const before = [s.eventsB.of(channel.id).length, s.eventsA.of(channel.id).length];
    const seen = s.onB.of(channel.id).at(-1)!;
    await speak(channel, 3);
    acked(await edit(speakerA, channel, seen.id, `${seen.body}, edited after the removal`), 'edit of a message the subject had');
    const reacted = acked(await react(speakerA, channel, seen.id, 'eyes'), 'reaction to it');
    await waitFor(() => watcherEvents.of(channel.id).some((e) => e.rev === reacted.rev), 10_000, () => watcherEvents.trace(channel.id).join(' '));
    await sleep(300);
    expect([s.eventsB.of(channel.id).length, s.eventsA.of(channel.id).length], 'events after the removal').to.deep.equal(before);
    const clientMsgId = `refused-${next++}`;
    const outcome = await send(s.socketB, { channelId: channel.id, body: 'am I still in?', clientMsgId });
    expect(outcome.ok ? 'ok' : outcome.error.code).to.equal('NOT_FOUND');
    expect(await storedByClientMsgId(s.user.user.id, clientMsgId)).to.equal(0);
    expect(s.socketB.connected).to.equal(true);
  }

  it('When a user is added to a channel via REST on node A, then once it returns their socket on node B receives its messages', async () => {
    const s = await subject();
    const channel = await seedChannel(A, team, [speaker], { isPrivate: true });
    const before = await speak(channel, 2);
    await sleep(200);
    expect(s.onB.count(channel.id) + s.onA.count(channel.id)).to.equal(0);
    expect(before).to.have.length(2);

    const added = await request(A, 'POST', `/channels/${channel.id}/members`, { token: team.owner.token, body: { userId: s.user.user.id } });
    expect(added.status, added.text).to.equal(201);
    await expectDeliveredAfterJoin(s, channel);
  });

  it('When a user joins a public channel via REST on node A, then once it returns their socket on node B receives its messages', async () => {
    const s = await subject();
    const channel = await seedChannel(A, team, [speaker]);
    const joined = await request(A, 'POST', `/channels/${channel.id}/join`, { token: s.user.token });
    expect(joined.status, joined.text).to.equal(200);
    await expectDeliveredAfterJoin(s, channel);
  });

  it('When a front node of the previous release tells of a join (without channelRevs), then the user\'s sockets on both nodes enter the room and get its messages', async () => {
    const s = await subject();
    const channel = await seedChannel(A, team, [speaker]);
    await dbQuery('INSERT INTO channel_members (channel_id, user_id) VALUES ($1, $2)', [channel.id, s.user.user.id]);
    // That node, as the adapter sees it: a Socket.IO server on the cluster's adapter key, sending the
    // change in the shape the previous release sent.
    const pub = new Redis(process.env.REDIS_URL!);
    const sub = pub.duplicate();
    const previous = new Server({ adapter: createAdapter(pub, sub, { key: socketAdapterKey(clusterRedisPrefix('membership')), requestsTimeout: 5000 }) });
    try {
      const change: Omit<MembershipChange, 'channelRevs'> = { userId: s.user.user.id, join: [channel.id], leave: [] };
      await waitFor(async () => (await previous.serverSideEmitWithAck('membership:change', change)).length === 2, 5000, () => 'both nodes acked');
      await expectDeliveredAfterJoin(s, channel);
    } finally {
      previous.close();
      pub.disconnect();
      sub.disconnect();
    }
  });

  it('When a member is removed from a channel via REST on node A, then once it returns their socket on node B receives nothing more, not even changes to messages it had, and its sends are NOT_FOUND', async () => {
    const s = await subject();
    const channel = await seedChannel(A, team, [speaker, s.user]);
    await speak(channel, 2);
    await waitFor(() => s.onB.count(channel.id) === 2 && s.onA.count(channel.id) === 2);

    const removed = await request(A, 'DELETE', `/channels/${channel.id}/members/${s.user.user.id}`, { token: team.owner.token });
    expect(removed.status, removed.text).to.equal(204);
    await expectCutOff(s, channel);
  });

  it('When a member leaves a channel via REST on node A, then once it returns their socket on node B receives nothing more, not even changes to messages it had, and its sends are NOT_FOUND', async () => {
    const s = await subject();
    const channel = await seedChannel(A, team, [speaker, s.user]);
    await speak(channel, 2);
    await waitFor(() => s.onB.count(channel.id) === 2 && s.onA.count(channel.id) === 2);

    const left = await request(A, 'POST', `/channels/${channel.id}/leave`, { token: s.user.token });
    expect(left.status, left.text).to.equal(200);
    await expectCutOff(s, channel);
  });

  it('When a member is removed from the workspace via REST on node A, then once it returns their socket on node B receives nothing more from any of its channels', async () => {
    const s = await subject();
    const channels = [
      await seedChannel(A, team, [speaker, s.user]),
      await seedChannel(A, team, [speaker, s.user], { isPrivate: true }),
    ];
    for (const channel of channels) {
      await speak(channel, 1);
      await waitFor(() => s.onB.count(channel.id) === 1 && s.onA.count(channel.id) === 1);
    }

    const removed = await request(A, 'DELETE', `/workspaces/${team.workspace.id}/members/${s.user.user.id}`, { token: team.owner.token });
    expect(removed.status, removed.text).to.equal(204);
    for (const channel of channels) await expectCutOff(s, channel);
  });

  it('When a user is removed and added back, then their socket on node B receives exactly the messages sent while they were a member', async () => {
    const s = await subject();
    const channel = await seedChannel(A, team, [speaker, s.user]);
    const path = `/channels/${channel.id}/members`;
    const expected: MessageDto[] = [];
    for (let round = 0; round < 3; round++) {
      expected.push(...(await speak(channel, 2)));
      expect((await request(A, 'DELETE', `${path}/${s.user.user.id}`, { token: team.owner.token })).status).to.equal(204);
      await speak(channel, 2);
      expect((await request(A, 'POST', path, { token: team.owner.token, body: { userId: s.user.user.id } })).status).to.equal(201);
    }
    expected.push(...(await speak(channel, 2)));
    await waitFor(() => s.onB.count(channel.id) >= expected.length && s.onA.count(channel.id) >= expected.length);
    await sleep(200);
    expect(ids(s.onB.of(channel.id))).to.deep.equal(ids(expected));
    expect(ids(s.onA.of(channel.id))).to.deep.equal(ids(expected));
  });

  it("When a node's adapter subscription to Redis drops and comes back, then memberships changed meanwhile that never reached it are in force for its sockets", async () => {
    const s = await subject();
    const joined = await seedChannel(A, team, [speaker]);
    const left = await seedChannel(A, team, [speaker, s.user]);
    // Changed where no node hears of it, as a change published while a node's subscriber is away is lost.
    await dbQuery('INSERT INTO channel_members (channel_id, user_id) VALUES ($1, $2)', [joined.id, s.user.user.id]);
    await dbQuery('DELETE FROM channel_members WHERE channel_id = $1 AND user_id = $2', [left.id, s.user.user.id]);
    expect(await killAdapterSubscribers('membership'), 'one adapter subscriber per front node').to.equal(2);
    // Once both nodes have read the rooms again, a message of the channel joined reaches both sockets.
    // (Not speak(): a message published while a subscriber is away is one that node's sockets get only with
    // the next one, when it fills the gap from PostgreSQL.)
    await waitFor(
      async () => {
        const id = `after-drop-${next++}`;
        await sendOk(speakerA, { channelId: joined.id, body: id, clientMsgId: id });
        await sleep(100);
        return s.onB.count(joined.id) > 0 && s.onA.count(joined.id) > 0;
      },
      20_000,
      () => `joined: ${s.onB.count(joined.id)} on B, ${s.onA.count(joined.id)} on A`,
    );
    const before = [s.onB.count(left.id), s.onA.count(left.id)];
    await speak(left, 2);
    await sleep(300);
    expect([s.onB.count(left.id), s.onA.count(left.id)], 'messages of the channel left').to.deep.equal(before);
  });

  it("When a node's adapter subscription comes back and its rebuild puts a socket in a channel, then the socket gets every message committed after the rebuild, one its node missed included", async () => {
    const s = await subject();
    // No event of it yet: no node's sequencer has a baseline to see a gap from.
    const joined = await seedChannel(A, team, [speaker]);
    await dbQuery('INSERT INTO channel_members (channel_id, user_id) VALUES ($1, $2)', [joined.id, s.user.user.id]);
    expect(await killAdapterSubscribers('membership'), 'one adapter subscriber per front node').to.equal(2);
    // In the room once it hears of a topic change, which carries no rev: its run is not started by it.
    const updated: unknown[] = [];
    s.socketB.on('channel:updated', (u) => updated.push(u));
    await waitFor(
      async () => {
        const res = await request(B, 'PATCH', `/channels/${joined.id}`, { body: { topic: `t${next++}` }, token: team.owner.token });
        expect(res.status).to.equal(200);
        await sleep(100);
        return updated.length > 0;
      },
      20_000,
      () => 'no channel:updated on node B',
    );
    await expectUnheardFilledIn(B, joined, speaker, s.onB.of(joined.id));
  });
});
