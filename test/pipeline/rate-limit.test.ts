import { expect } from 'chai';
import type { Cluster } from '../../scripts/cluster.js';
import { request, type ChannelDto, type RegisteredUser } from '../support/api.js';
import { TRANSPORTS, connect, disconnectAll, range, send, type ClientSocket } from '../support/sockets.js';
import { closeDb, expectBudgetRunsOutMidStream, seedChannel, seedTeam, startPipelineCluster, storedCount } from './fixtures.js';

/** MESSAGE_RATE_PER_SECOND=2: a burst of 20 sends per 10 s window. */
const RATE = 2;
const BURST = RATE * 10;

describe('pipeline: the per-user send rate limit', function () {
  this.timeout(60_000);

  let cluster: Cluster;
  let alice: RegisteredUser;
  let bob: RegisteredUser;
  let channel: ChannelDto;
  let aliceSockets: ClientSocket[];
  let bobSocket: ClientSocket;

  before(async () => {
    cluster = await startPipelineCluster('rate-limit', { MESSAGE_RATE_PER_SECOND: String(RATE) });
    const team = await seedTeam(cluster.urls[0], 2);
    [alice, bob] = team.members;
    channel = await seedChannel(cluster.urls[0], team, [alice, bob]);
    aliceSockets = [await connect(cluster.urls[0], alice.token), await connect(cluster.urls[1], alice.token)];
    bobSocket = await connect(cluster.urls[1], bob.token);
  });

  after(async () => {
    disconnectAll();
    await cluster?.stop();
    await closeDb();
  });

  it('When a user sends more than the burst within the window from both nodes, then exactly the burst is stored and the rest are RATE_LIMITED', async () => {
    const outcomes = [];
    for (const i of range(BURST + 10)) {
      outcomes.push(await send(aliceSockets[i % 2], { channelId: channel.id, body: `m${i}`, clientMsgId: `rl-${i}` }));
    }
    const accepted = outcomes.filter((o) => o.ok);
    const refused = outcomes.filter((o) => !o.ok);
    expect(accepted).to.have.length(BURST);
    expect(refused).to.have.length(10);
    for (const o of refused) {
      if (o.ok) continue;
      expect(o.error.code).to.equal('RATE_LIMITED');
      expect((o.error.details as { retryAfterSeconds: number }).retryAfterSeconds).to.be.within(1, 10);
    }
    expect(await storedCount([channel.id])).to.equal(BURST);
  });

  it('When the limited user sends over REST, then 429 RATE_LIMITED with a Retry-After header, and nothing is stored', async () => {
    const res = await request(cluster.urls[0], 'POST', `/channels/${channel.id}/messages`, {
      token: alice.token,
      body: { body: 'over REST', clientMsgId: 'rl-rest' },
    });
    expect(res.status, res.text).to.equal(429);
    expect(res.body.error.code).to.equal('RATE_LIMITED');
    expect(Number(res.headers.get('retry-after'))).to.be.within(1, 10);
    expect(await storedCount([channel.id])).to.equal(BURST);
  });

  it('When another user of the same channel sends meanwhile, then their own limit applies', async () => {
    const outcome = await send(bobSocket, { channelId: channel.id, body: 'from bob', clientMsgId: 'rl-bob' });
    expect(outcome.ok, JSON.stringify(outcome)).to.equal(true);
  });

  for (const transport of TRANSPORTS) {
    it(`When one ${transport} socket pipelines past the budget of ${BURST} (points leased one at a time), then exactly the first ${BURST} sends are accepted, the rest RATE_LIMITED, and the accepted ones are stored in emission order`, async () => {
      await expectBudgetRunsOutMidStream(cluster.urls[1], BURST, 1, transport);
    });
  }
});

describe('pipeline: the send rate limit when front nodes lease points', function () {
  this.timeout(60_000);

  /** A burst of 100 per window: leases of 2 points (a fiftieth), so each node calls Redis every other send. */
  const LEASED_RATE = 10;
  const LEASED_BURST = LEASED_RATE * 10;
  const LEASE = 2;
  const NODES = 2;

  let cluster: Cluster;

  before(async () => {
    cluster = await startPipelineCluster('rate-limit-lease', { MESSAGE_RATE_PER_SECOND: String(LEASED_RATE) });
  });

  after(async () => {
    disconnectAll();
    await cluster?.stop();
    await closeDb();
  });

  it('When one user pipelines more sends than the burst on both nodes at once, then at most the burst is stored, at most nodes × (lease − 1) fewer', async () => {
    const team = await seedTeam(cluster.urls[0], 1);
    const [carol] = team.members;
    const channel = await seedChannel(cluster.urls[0], team, [carol]);
    const sockets = [await connect(cluster.urls[0], carol.token), await connect(cluster.urls[1], carol.token)];
    const outcomes = await Promise.all(
      range(LEASED_BURST + 20).map((i) => send(sockets[i % 2], { channelId: channel.id, body: `m${i}`, clientMsgId: `lease-${i}` })),
    );
    const accepted = outcomes.filter((o) => o.ok).length;
    expect(accepted).to.be.within(LEASED_BURST - NODES * (LEASE - 1), LEASED_BURST);
    for (const o of outcomes) if (!o.ok) expect(o.error.code).to.equal('RATE_LIMITED');
    expect(await storedCount([channel.id])).to.equal(accepted);
  });

  for (const transport of TRANSPORTS) {
    it(`When one ${transport} socket pipelines past the budget of ${LEASED_BURST} (leases of ${LEASE}), then the first sends are accepted, the rest RATE_LIMITED, and the accepted ones are stored in emission order`, async () => {
      await expectBudgetRunsOutMidStream(cluster.urls[0], LEASED_BURST, LEASE, transport);
    });
  }
});
