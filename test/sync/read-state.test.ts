import { randomUUID } from 'node:crypto';
import { expect } from 'chai';
import { startCluster, type Cluster } from '../../scripts/cluster.js';
import {
  createChannel,
  createWorkspace,
  registerUser,
  request,
  type ChannelDto,
  type RegisteredUser,
} from '../support/api.js';
import type { ClientSocket } from '../support/sockets.js';
import { closeDb, seedChannel, seedTeam, type Team } from '../pipeline/fixtures.js';
import { closeSockets, connectSocket, record, waitFor } from './helpers.js';

interface Read {
  channelId: string;
  seq: number;
}

const MESSAGES = 60;

describe('sync: read state across devices and nodes', function () {
  this.timeout(60_000);

  let cluster: Cluster;
  let team: Team;
  let user: RegisteredUser;
  let other: RegisteredUser;
  let outsider: RegisteredUser;
  let channel: ChannelDto;
  /** The user's devices: one on node 0, two on node 1. */
  let devices: ClientSocket[];
  let events: Read[][];
  let otherEvents: Read[];
  let outsiderSocket: ClientSocket;
  /** The read mark as the test expects it. */
  let mark = 0;

  before(async () => {
    cluster = await startCluster({ servers: 2, workers: 1 });
    const [a, b] = cluster.urls;
    team = await seedTeam(a, 3);
    [user, other, outsider] = team.members;
    channel = await seedChannel(a, team, [user, other]);
    for (let i = 0; i < MESSAGES; i++) {
      const res = await request(b, 'POST', `/channels/${channel.id}/messages`, { token: other.token, body: { body: `m${i}` } });
      expect(res.status, res.text).to.equal(201);
    }
    devices = [await connectSocket(a, user.token), await connectSocket(b, user.token), await connectSocket(b, user.token)];
    events = devices.map((d) => record<Read>(d, 'channel:read'));
    const otherSocket = await connectSocket(a, other.token);
    otherEvents = record<Read>(otherSocket, 'channel:read');
    outsiderSocket = await connectSocket(b, outsider.token);
  });

  after(async () => {
    closeSockets();
    await cluster?.stop();
    await closeDb();
  });

  const url = (node: number) => cluster.urls[node];
  const restRead = (node: number, body: unknown, token = user.token, id = channel.id) =>
    request(url(node), 'POST', `/channels/${id}/read`, { token, body });
  const socketRead = (socket: ClientSocket, payload: unknown) => socket.timeout(10_000).emitWithAck('channel:read', payload);

  /** Every device has received exactly `expected` since `from` (their counts of events then). */
  async function expectEvents(from: number[], expected: Read[], what: string): Promise<void> {
    await waitFor(
      () => events.every((e, i) => e.length >= from[i] + expected.length),
      10_000,
      () => `${what}: devices got ${events.map((e, i) => JSON.stringify(e.slice(from[i])))}`,
    );
    for (const [i, e] of events.entries()) expect(e.slice(from[i]), `${what}: device ${i}`).to.deep.equal(expected);
  }

  /**
   * Moves the mark by one through REST and checks that this is the next (and only) event on every device:
   * events of one user go out in order, so anything wrongly sent before it shows up here.
   */
  async function marker(from: number[], before: Read[], what: string): Promise<void> {
    mark += 1;
    const res = await restRead(0, { seq: mark });
    expect(res.body).to.deep.equal({ channelId: channel.id, seq: mark });
    await expectEvents(from, [...before, { channelId: channel.id, seq: mark }], what);
  }

  const counts = () => events.map((e) => e.length);

  async function listedMark(): Promise<number> {
    const res = await request(url(1), 'GET', `/workspaces/${team.workspace.id}/channels`, { token: user.token });
    expect(res.status, res.text).to.equal(200);
    return res.body.channels.find((c: { id: string }) => c.id === channel.id).lastReadSeq;
  }

  it('When the user reads through REST on one node, then every device of theirs on both nodes gets channel:read once, and nobody else', async () => {
    const from = counts();
    mark = 3;
    const res = await restRead(0, { seq: 3 });
    expect(res.status, res.text).to.equal(200);
    expect(res.body).to.deep.equal({ channelId: channel.id, seq: 3 });
    await expectEvents(from, [{ channelId: channel.id, seq: 3 }], 'REST read');
    expect(await listedMark()).to.equal(3);
    expect(otherEvents).to.deep.equal([]);
  });

  it('When the user reads through a socket, then the ack carries the mark and every device gets channel:read', async () => {
    const from = counts();
    mark = 7;
    const ack = await socketRead(devices[1], { channelId: channel.id, seq: 7 });
    expect(ack).to.deep.equal({ ok: true, channelId: channel.id, seq: 7 });
    await expectEvents(from, [{ channelId: channel.id, seq: 7 }], 'socket read');
    expect(await listedMark()).to.equal(7);
  });

  it('When channel:read is emitted without an ack callback, then the mark still moves and the devices hear of it', async () => {
    const from = counts();
    mark = 8;
    devices[2].emit('channel:read', { channelId: channel.id, seq: 8 });
    await expectEvents(from, [{ channelId: channel.id, seq: 8 }], 'read without ack');
  });

  it('When a lower or equal seq is read, then the answer is the current mark, it does not move back and no event is sent', async () => {
    const from = counts();
    const current = mark;
    for (const seq of [0, 1, current - 1, current]) {
      const res = await restRead(1, { seq });
      expect(res.status, res.text).to.equal(200);
      expect(res.body, `REST seq ${seq}`).to.deep.equal({ channelId: channel.id, seq: current });
      const ack = await socketRead(devices[0], { channelId: channel.id, seq });
      expect(ack, `socket seq ${seq}`).to.deep.equal({ ok: true, channelId: channel.id, seq: current });
    }
    expect(await listedMark()).to.equal(current);
    await marker(from, [], 'after reads that did not move the mark');
  });

  it('When the caller is not in the channel or it does not exist, then REST answers 404 NOT_FOUND and the socket ack NOT_FOUND, all alike', async () => {
    const [a] = cluster.urls;
    const stranger = await registerUser(a);
    const elsewhere = await createWorkspace(a, stranger.token);
    const foreign = await createChannel(a, stranger.token, elsewhere.id);
    const publicOther = await createChannel(a, team.owner.token, team.workspace.id);
    const privateOther = await createChannel(a, team.owner.token, team.workspace.id, { isPrivate: true });
    const from = counts();

    const cases: Array<{ what: string; token: string; id: string; socket: ClientSocket }> = [
      { what: 'workspace member outside the channel', token: outsider.token, id: channel.id, socket: outsiderSocket },
      { what: 'public channel the user is not in', token: user.token, id: publicOther.id, socket: devices[0] },
      { what: 'private channel the user is not in', token: user.token, id: privateOther.id, socket: devices[1] },
      { what: 'channel of another workspace', token: user.token, id: foreign.id, socket: devices[2] },
      { what: 'unknown channel id', token: user.token, id: randomUUID(), socket: devices[0] },
      { what: 'id that is no uuid', token: user.token, id: 'general', socket: devices[1] },
    ];
    const bodies: unknown[] = [];
    const acks: unknown[] = [];
    for (const [i, c] of cases.entries()) {
      const res = await restRead(i % 2, { seq: 1 }, c.token, c.id);
      expect(res.status, `${c.what}: ${res.text}`).to.equal(404);
      expect(res.body.error, c.what).to.include({ code: 'NOT_FOUND' });
      bodies.push(res.body);
      const ack = await socketRead(c.socket, { channelId: c.id, seq: 1 });
      expect(ack, c.what).to.include({ ok: false });
      expect(ack, c.what).to.have.nested.property('error.code', 'NOT_FOUND');
      acks.push(ack);
    }
    for (const [i, c] of cases.entries()) {
      expect(bodies[i], `${c.what}: same body as an unknown id`).to.deep.equal(bodies[4]);
      expect(acks[i], `${c.what}: same ack as an unknown id`).to.deep.equal(acks[4]);
    }
    await marker(from, [], 'after refused reads');
    expect(otherEvents).to.deep.equal([]);
  });

  it('When read payloads are malformed, then REST answers 400 VALIDATION_FAILED, the socket ack VALIDATION_FAILED, and the mark stays', async () => {
    const from = counts();
    const current = mark;
    for (const body of [{}, { seq: -1 }, { seq: 1.5 }, { seq: 'abc' }, { seq: null }, { seq: 2 ** 53 }, { seq: current + 1, extra: true }, [current + 1]]) {
      const res = await restRead(0, body);
      expect(res.status, `${JSON.stringify(body)}: ${res.text}`).to.equal(400);
      expect(res.body.error, JSON.stringify(body)).to.include({ code: 'VALIDATION_FAILED' });
    }
    const raw = await request(url(1), 'POST', `/channels/${channel.id}/read`, { token: user.token, rawBody: '{"seq": 5' });
    expect(raw.status, raw.text).to.equal(400);
    expect(raw.body.error).to.include({ code: 'VALIDATION_FAILED' });

    for (const payload of [
      { channelId: channel.id },
      { channelId: channel.id, seq: -1 },
      { channelId: channel.id, seq: 2.5 },
      { channelId: channel.id, seq: 'x' },
      { channelId: channel.id, seq: null },
      { seq: current + 1 },
      { channelId: 42, seq: current + 1 },
      null,
      'read',
    ]) {
      const ack = await socketRead(devices[0], payload);
      expect(ack, JSON.stringify(payload)).to.include({ ok: false });
      expect(ack, JSON.stringify(payload)).to.have.nested.property('error.code', 'VALIDATION_FAILED');
    }
    expect(await listedMark()).to.equal(current);
    const anonymous = await request(url(0), 'POST', `/channels/${channel.id}/read`, { body: { seq: current + 1 } });
    expect(anonymous.status).to.equal(401);
    await marker(from, [], 'after malformed reads');
  });

  it('When a read names the channel id in upper case, then REST and socket alike answer and notify with the channel id as the API gives it', async () => {
    const from = counts();
    const upper = channel.id.toUpperCase();
    mark += 1;
    const res = await restRead(0, { seq: mark }, user.token, upper);
    expect(res.status, res.text).to.equal(200);
    expect(res.body, 'REST answer').to.deep.equal({ channelId: channel.id, seq: mark });
    mark += 1;
    const ack = await socketRead(devices[0], { channelId: upper, seq: mark });
    expect(ack, 'socket ack').to.deep.equal({ ok: true, channelId: channel.id, seq: mark });
    await expectEvents(from, [{ channelId: channel.id, seq: mark - 1 }, { channelId: channel.id, seq: mark }], 'upper-case reads');
  });

  it('When the same read races from REST on both nodes and from several devices, then the mark moves once and each device gets one event', async () => {
    const from = counts();
    const expected: Read[] = [];
    for (let round = 0; round < 5; round++) {
      mark += 1;
      const seq = mark;
      const answers = await Promise.all([
        restRead(0, { seq }).then((r) => r.body),
        restRead(1, { seq }).then((r) => r.body),
        ...devices.flatMap((d) => [socketRead(d, { channelId: channel.id, seq }), socketRead(d, { channelId: channel.id, seq })]),
      ]);
      for (const answer of answers) expect(answer).to.deep.include({ channelId: channel.id, seq });
      expected.push({ channelId: channel.id, seq });
    }
    await marker(from, expected, 'racing reads');
  });

  it("When the seq is beyond the channel's last seq, then the mark is clamped to the last seq, once", async () => {
    const from = counts();
    const res = await restRead(1, { seq: MESSAGES + 1000 });
    expect(res.status, res.text).to.equal(200);
    expect(res.body).to.deep.equal({ channelId: channel.id, seq: MESSAGES });
    const ack = await socketRead(devices[1], { channelId: channel.id, seq: Number.MAX_SAFE_INTEGER });
    expect(ack).to.deep.equal({ ok: true, channelId: channel.id, seq: MESSAGES });
    await expectEvents(from, [{ channelId: channel.id, seq: MESSAGES }], 'clamped read');
    expect(await listedMark()).to.equal(MESSAGES);

    // The channel moves on: reading past it again clamps to the new last seq.
    const sent = await request(url(0), 'POST', `/channels/${channel.id}/messages`, { token: other.token, body: { body: 'one more' } });
    expect(sent.status, sent.text).to.equal(201);
    const last = sent.body.message.seq;
    expect(last).to.equal(MESSAGES + 1);
    const again = await socketRead(devices[2], { channelId: channel.id, seq: last + 5 });
    expect(again).to.deep.equal({ ok: true, channelId: channel.id, seq: last });
    await expectEvents(from, [{ channelId: channel.id, seq: MESSAGES }, { channelId: channel.id, seq: last }], 'clamped again');
    mark = last;
  });
});
