import { expect } from 'chai';
import type { Cluster } from '../../scripts/cluster.js';
import type { MessageDto } from '../../shared/models/Message.js';
import { request, type ChannelDto, type RegisteredUser } from '../support/api.js';
import { Collector, connect, disconnectAll, send, sendOk, sleep, waitFor, type ClientSocket } from '../support/sockets.js';
import { closeDb, seedChannel, seedTeam, startPipelineCluster, storedByClientMsgId, storedMessages, type Team } from './fixtures.js';

describe('pipeline: idempotent sends (clientMsgId)', function () {
  this.timeout(60_000);

  let cluster: Cluster;
  let team: Team;
  let alice: RegisteredUser;
  let bob: RegisteredUser;
  let channel: ChannelDto;
  let aliceA: ClientSocket;
  let aliceB: ClientSocket;
  let bobB: ClientSocket;
  let aliceSeen: Collector;
  let bobSeen: Collector;
  let marker = 0;

  before(async () => {
    cluster = await startPipelineCluster('idempotency');
    team = await seedTeam(cluster.urls[0], 2);
    [alice, bob] = team.members;
    channel = await seedChannel(cluster.urls[0], team, [alice, bob]);
    aliceA = await connect(cluster.urls[0], alice.token);
    aliceB = await connect(cluster.urls[1], alice.token);
    bobB = await connect(cluster.urls[1], bob.token);
    aliceSeen = new Collector(aliceA);
    bobSeen = new Collector(bobB);
    await sleep(300);
  });

  after(async () => {
    disconnectAll();
    await cluster?.stop();
    await closeDb();
  });

  /**
   * Sends a fresh message and waits until both collectors got it: a channel's messages are emitted in seq
   * order, so anything emitted before it (such as a wrongly repeated message:new) has arrived too.
   */
  async function flush(): Promise<MessageDto> {
    const m = await sendOk(bobB, { channelId: channel.id, body: `marker ${marker}`, clientMsgId: `marker-${marker++}` });
    await waitFor(() => aliceSeen.of(channel.id).some((x) => x.id === m.id) && bobSeen.of(channel.id).some((x) => x.id === m.id), 10_000);
    return m;
  }

  const received = (c: Collector, id: string) => c.of(channel.id).filter((m) => m.id === id).length;

  it('When a socket resends a clientMsgId, then the ack is the first message and nothing new is stored or emitted', async () => {
    const first = await sendOk(aliceA, { channelId: channel.id, body: 'original', clientMsgId: 'idem-1' });
    await waitFor(() => received(bobSeen, first.id) === 1);
    const before = await storedMessages(channel.id);

    const again = await send(aliceA, { channelId: channel.id, body: 'original', clientMsgId: 'idem-1' });
    const changed = await send(aliceA, { channelId: channel.id, body: 'a different body', clientMsgId: 'idem-1' });
    expect(again).to.deep.equal({ ok: true, message: first });
    expect(changed).to.deep.equal({ ok: true, message: first });

    await sleep(500);
    const last = await flush();
    expect(received(aliceSeen, first.id)).to.equal(1);
    expect(received(bobSeen, first.id)).to.equal(1);
    expect(aliceSeen.of(channel.id).filter((m) => m.clientMsgId === 'idem-1')).to.have.length(1);
    const after = await storedMessages(channel.id);
    expect(after.slice(0, -1)).to.deep.equal(before);
    expect(after.at(-1)!.id).to.equal(last.id);
    expect(await storedByClientMsgId(alice.user.id, 'idem-1')).to.equal(1);
  });

  it('When one clientMsgId is sent many times at once from sockets on both nodes, then all acks carry one stored message', async () => {
    const payload = { channelId: channel.id, body: 'burst', clientMsgId: 'idem-burst' };
    const outcomes = await Promise.all([
      ...Array.from({ length: 5 }, () => send(aliceA, payload)),
      ...Array.from({ length: 5 }, () => send(aliceB, payload)),
    ]);
    const first = outcomes[0];
    expect(first.ok).to.equal(true);
    for (const o of outcomes) expect(o).to.deep.equal(first);
    await flush();
    expect(await storedByClientMsgId(alice.user.id, 'idem-burst')).to.equal(1);
    const id = first.ok ? first.message.id : '';
    expect(received(aliceSeen, id)).to.equal(1);
    expect(received(bobSeen, id)).to.equal(1);
  });

  it('When two users send the same clientMsgId, then each gets their own message', async () => {
    const a = await sendOk(aliceA, { channelId: channel.id, body: 'from alice', clientMsgId: 'shared-id' });
    const b = await sendOk(bobB, { channelId: channel.id, body: 'from bob', clientMsgId: 'shared-id' });
    expect(a.id).to.not.equal(b.id);
    expect(b.seq).to.equal(a.seq + 1);
    expect([a.userId, a.body, b.userId, b.body]).to.deep.equal([alice.user.id, 'from alice', bob.user.id, 'from bob']);
  });

  it('When a message is sent over REST, then 201 returns {message} with the stored, trimmed message', async () => {
    const res = await request(cluster.urls[1], 'POST', `/channels/${channel.id}/messages`, {
      token: alice.token,
      body: { body: '  over rest  ', clientMsgId: 'rest-1' },
    });
    expect(res.status, res.text).to.equal(201);
    expect(Object.keys(res.body)).to.deep.equal(['message']);
    const m = res.body.message as MessageDto;
    expect(Object.keys(m).sort()).to.deep.equal([
      'body', 'channelId', 'clientMsgId', 'createdAt', 'deleted', 'editedAt', 'id', 'lastReplyAt', 'mentions', 'parentId',
      'reactions', 'replyCount', 'rev', 'seq', 'userId',
    ]);
    expect(m).to.include({ rev: m.seq, parentId: null, editedAt: null, deleted: false, replyCount: 0, lastReplyAt: null });
    expect(m.reactions).to.deep.equal([]);
    expect(m.mentions).to.deep.equal([]);
    expect(m).to.include({ channelId: channel.id, userId: alice.user.id, body: 'over rest', clientMsgId: 'rest-1' });
    expect(new Date(m.createdAt).toISOString()).to.equal(m.createdAt);
    const stored = await storedMessages(channel.id);
    expect(stored.at(-1)).to.deep.equal({ id: m.id, seq: m.seq, userId: alice.user.id, body: 'over rest', clientMsgId: 'rest-1' });
    await waitFor(() => received(bobSeen, m.id) === 1);
  });

  it('When REST resends a clientMsgId (REST or socket first), then it returns the first message and emits nothing new', async () => {
    const path = `/channels/${channel.id}/messages`;
    const first = await request(cluster.urls[0], 'POST', path, { token: alice.token, body: { body: 'rest twice', clientMsgId: 'rest-2' } });
    expect(first.status).to.equal(201);
    const again = await request(cluster.urls[1], 'POST', path, { token: alice.token, body: { body: 'changed', clientMsgId: 'rest-2' } });
    expect(again.status).to.equal(201);
    expect(again.body).to.deep.equal(first.body);

    // Across transports: the socket sees the REST message, and REST sees the socket's.
    expect(await send(aliceB, { channelId: channel.id, body: 'socket', clientMsgId: 'rest-2' })).to.deep.equal({
      ok: true,
      message: first.body.message,
    });
    const viaSocket = await sendOk(aliceA, { channelId: channel.id, body: 'socket first', clientMsgId: 'sock-then-rest' });
    const viaRest = await request(cluster.urls[1], 'POST', path, { token: alice.token, body: { body: 'x', clientMsgId: 'sock-then-rest' } });
    expect(viaRest.status).to.equal(201);
    expect(viaRest.body).to.deep.equal({ message: viaSocket });

    await sleep(500);
    await flush();
    expect(await storedByClientMsgId(alice.user.id, 'rest-2')).to.equal(1);
    expect(await storedByClientMsgId(alice.user.id, 'sock-then-rest')).to.equal(1);
    for (const id of [first.body.message.id, viaSocket.id]) {
      expect(received(aliceSeen, id)).to.equal(1);
      expect(received(bobSeen, id)).to.equal(1);
    }
  });

  it('When REST sends without clientMsgId twice, then two messages are stored', async () => {
    const path = `/channels/${channel.id}/messages`;
    const a = await request(cluster.urls[0], 'POST', path, { token: bob.token, body: { body: 'no id' } });
    const b = await request(cluster.urls[0], 'POST', path, { token: bob.token, body: { body: 'no id' } });
    expect([a.status, b.status]).to.deep.equal([201, 201]);
    expect(a.body.message.clientMsgId).to.equal(null);
    expect(b.body.message.seq).to.equal(a.body.message.seq + 1);
  });

  it('When a user removed from the channel resends an old clientMsgId, then NOT_FOUND over socket and REST, as for any send there, and nothing is shown or stored', async () => {
    const carolTeam = await seedTeam(cluster.urls[0], 1);
    const [carol] = carolTeam.members;
    const room = await seedChannel(cluster.urls[0], carolTeam, [carol]);
    const carolSocket = await connect(cluster.urls[1], carol.token);
    const stored = await sendOk(carolSocket, { channelId: room.id, body: 'before removal', clientMsgId: 'left-behind' });
    const removed = await request(cluster.urls[0], 'DELETE', `/channels/${room.id}/members/${carol.user.id}`, { token: carolTeam.owner.token });
    expect(removed.status, removed.text).to.equal(204);

    const again = await send(carolSocket, { channelId: room.id, body: 'before removal', clientMsgId: 'left-behind' });
    expect(again).to.deep.include({ ok: false });
    expect(again).to.have.nested.property('error.code', 'NOT_FOUND');
    const rest = await request(cluster.urls[0], 'POST', `/channels/${room.id}/messages`, {
      token: carol.token,
      body: { body: 'before removal', clientMsgId: 'left-behind' },
    });
    expect(rest.status, rest.text).to.equal(404);
    expect(rest.body).to.have.nested.property('error.code', 'NOT_FOUND');
    expect(JSON.stringify(again) + rest.text).not.to.include(stored.id);
    expect((await storedMessages(room.id)).map((m) => m.id)).to.deep.equal([stored.id]);
  });

  it('When all is done, then every stored message of the channel was received exactly once by every member socket, in seq order', async () => {
    await flush();
    const stored = await storedMessages(channel.id);
    expect(stored.map((m) => m.seq)).to.deep.equal(stored.map((_, i) => i + 1));
    for (const c of [aliceSeen, bobSeen]) expect(c.of(channel.id).map((m) => m.id)).to.deep.equal(stored.map((m) => m.id));
  });
});
