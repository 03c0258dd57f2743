import { expect } from 'chai';
import type { Cluster } from '../../scripts/cluster.js';
import { registerUser, request, unique, addWorkspaceMember, type ChannelDto } from '../support/api.js';
import { connect, disconnectAll, send, sendOk, sleep, waitFor, type ClientSocket } from '../support/sockets.js';
import { closeDb, deadProcesses, seedChannel, seedTeam, startPipelineCluster, storedMessages } from './fixtures.js';

/**
 * Channel administration across a cluster (2 front nodes, 2 workers): `channel:updated` made through
 * REST on node A reaches the channel members' sockets on both nodes and nobody else's; an archived
 * channel refuses sends with FORBIDDEN from whichever node they come, as the workers decide.
 */
describe('pipeline: channel:updated and archived channels across nodes', function () {
  this.timeout(60_000);

  let cluster: Cluster;
  let A: string;
  let B: string;

  before(async () => {
    cluster = await startPipelineCluster('channel-updated');
    [A, B] = cluster.urls;
  });

  after(async () => {
    disconnectAll();
    await cluster?.stop();
    await closeDb();
  });

  afterEach(function () {
    const dead = deadProcesses(cluster);
    if (dead.length > 0) throw new Error(dead.join('\n'));
  });

  function listen(socket: ClientSocket): ChannelDto[] {
    const got: ChannelDto[] = [];
    socket.on('channel:updated', (payload: { channel: ChannelDto }) => got.push(payload.channel));
    return got;
  }

  it("When a channel is renamed, its topic set, archived and unarchived on node A, then its members' sockets on both nodes get channel:updated, non-members' do not", async () => {
    const team = await seedTeam(A, 3);
    const [alice, bob, carol] = team.members;
    const outsider = await registerUser(A);
    const channel = await seedChannel(A, team, [alice, bob]);

    const aliceA = listen(await connect(A, alice.token));
    const aliceB = listen(await connect(B, alice.token));
    const bobB = listen(await connect(B, bob.token));
    // Carol is in the workspace, not in the channel; the outsider is in neither.
    const carolA = listen(await connect(A, carol.token));
    const carolB = listen(await connect(B, carol.token));
    const outsiderB = listen(await connect(B, outsider.token));

    const name = unique('cluster-');
    const answers: ChannelDto[] = [];
    for (const [method, path, body] of [
      ['PATCH', `/channels/${channel.id}`, { name }],
      ['PATCH', `/channels/${channel.id}`, { topic: 'across nodes' }],
      ['POST', `/channels/${channel.id}/archive`, undefined],
      ['POST', `/channels/${channel.id}/unarchive`, undefined],
    ] as Array<[string, string, unknown]>) {
      const res = await request(A, method, path, { token: team.owner.token, body });
      expect(res.status, res.text).to.equal(200);
      answers.push(res.body.channel);
    }
    const members = { aliceA, aliceB, bobB };
    await waitFor(
      () => Object.values(members).every((got) => got.length === answers.length),
      10_000,
      () => JSON.stringify(Object.fromEntries(Object.entries(members).map(([k, v]) => [k, v.length]))),
    );
    for (const got of Object.values(members)) expect(got).to.deep.equal(answers);
    expect(answers.map((c) => c.archived)).to.deep.equal([false, false, true, false]);
    await sleep(300);
    expect({ carolA, carolB, outsiderB }).to.deep.equal({ carolA: [], carolB: [], outsiderB: [] });
  });

  it('When a channel is archived on node A, then sends from sockets on both nodes are acked FORBIDDEN and nothing is stored; unarchived, they are stored again', async () => {
    const team = await seedTeam(A, 1);
    const [alice] = team.members;
    const channel = await seedChannel(A, team, [alice]);
    const onA = await connect(A, alice.token);
    const onB = await connect(B, alice.token);
    await sendOk(onB, { channelId: channel.id, body: 'before', clientMsgId: unique('b-') });

    const archived = await request(B, 'POST', `/channels/${channel.id}/archive`, { token: team.owner.token });
    expect(archived.status, archived.text).to.equal(200);
    for (const socket of [onA, onB]) {
      const outcome = await send(socket, { channelId: channel.id, body: 'after', clientMsgId: unique('a-') });
      expect(outcome.ok ? 'ok' : outcome.error.code).to.equal('FORBIDDEN');
    }
    const rest = await request(A, 'POST', `/channels/${channel.id}/messages`, { token: alice.token, body: { body: 'rest after' } });
    expect(rest.status, rest.text).to.equal(403);
    expect(rest.body.error.code).to.equal('FORBIDDEN');
    expect((await storedMessages(channel.id)).map((m) => m.body)).to.deep.equal(['before']);

    // History stays readable from either node.
    const history = await request(B, 'GET', `/channels/${channel.id}/messages`, { token: alice.token });
    expect(history.status).to.equal(200);
    expect(history.body.messages.map((m: { body: string }) => m.body)).to.deep.equal(['before']);

    expect((await request(A, 'POST', `/channels/${channel.id}/unarchive`, { token: team.owner.token })).status).to.equal(200);
    const again = await sendOk(onA, { channelId: channel.id, body: 'again', clientMsgId: unique('g-') });
    expect(again.seq).to.equal(2);
  });

  it('When a user added as guest on node A connects to node B, then they get channel:updated only for the channels they were added to', async () => {
    const team = await seedTeam(A, 0);
    const guest = await registerUser(A);
    await addWorkspaceMember(A, team.owner.token, team.workspace.id, guest.email, 'guest');
    const theirs = await seedChannel(A, team, [guest]);
    const other = await seedChannel(A, team, []);
    const heard = listen(await connect(B, guest.token));
    for (const ch of [theirs, other]) {
      const res = await request(A, 'PATCH', `/channels/${ch.id}`, { token: team.owner.token, body: { topic: 'for guests?' } });
      expect(res.status, res.text).to.equal(200);
    }
    await waitFor(() => heard.length === 1);
    await sleep(300);
    expect(heard.map((c) => c.id)).to.deep.equal([theirs.id]);
  });
});
