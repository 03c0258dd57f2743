import { expect } from 'chai';
import type { Cluster } from '../../scripts/cluster.js';
import type { MessageDto } from '../../shared/models/Message.js';
import type { SendOutcome } from '../../shared/queues.js';
import type { ChannelDto, RegisteredUser } from '../support/api.js';
import { Collector, TRANSPORTS, connect, disconnectAll, range, send, sleep, waitFor, type ClientSocket, type Transport } from '../support/sockets.js';
import {
  channelLastSeq,
  closeDb,
  deadProcesses,
  expectBudgetRunsOutMidStream,
  fullHistory,
  isIncreasing,
  seedChannel,
  seedTeam,
  startPipelineCluster,
  storedMessages,
  type Team,
} from './fixtures.js';

const SENDERS = 6;
const PER_CHANNEL = 20;
/** The default MESSAGE_RATE_PER_SECOND (50): a burst of 500 per user per 10 s, leased 10 points at a time. */
const DEFAULT_BURST = 500;
const DEFAULT_LEASE = 10;

/**
 * Every scenario runs once per transport a client may use (WebSocket only, long-polling only, and
 * socket.io-client's defaults: polling, then the upgrade), against one cluster running the product's
 * defaults, the send rate limit included: a user's sends are leased from Redis 10 points at a time, so a
 * pipelined stream crosses a lease boundary every 10th send.
 */
describe('pipeline: ordering under concurrent senders', function () {
  this.timeout(90_000);

  let cluster: Cluster;

  before(async () => {
    cluster = await startPipelineCluster('ordering');
  });

  after(async () => {
    disconnectAll();
    await cluster?.stop();
    await closeDb();
  });

  for (const transport of TRANSPORTS) {
    describe(`over ${transport}`, () => concurrentSenders(() => cluster, transport));
    describe(`over ${transport}: one socket pipelining into one channel`, () => pipelinedSocket(() => cluster, transport));
  }

  // Last (mocha runs a suite's own tests before its child suites): a process that died explains every
  // failure before it, and this shows its last output.
  describe('afterwards', () => {
    it('When every scenario ran over every transport, then every front node and worker process is still running', () => {
      expect(deadProcesses(cluster).join('\n\n')).to.equal('');
    });
  });
});

/** Six users pipelining into three overlapping channels; the checks see acks, history, rows and every socket. */
function concurrentSenders(getCluster: () => Cluster, transport: Transport): void {
  let cluster: Cluster;
  let team: Team;
  let senders: RegisteredUser[];
  let outsider: RegisteredUser;
  let channels: ChannelDto[];
  /** Member indexes of each channel (the owner is in every one). */
  let channelMembers: number[][];
  /** For each sender: one socket it sends on, and one on the other node that only listens. */
  let sendSockets: ClientSocket[];
  let collectors: Array<{ user: RegisteredUser | 'owner'; node: number; collector: Collector }>;
  let outsiderCollectors: Collector[];
  /** Per sender: its sends in send order, with the ack each got. */
  let results: Array<Array<{ channel: number; clientMsgId: string; body: string; outcome: SendOutcome }>>;

  before(async function () {
    cluster = getCluster();
    const [a] = cluster.urls;
    team = await seedTeam(a, SENDERS + 1);
    senders = team.members.slice(0, SENDERS);
    outsider = team.members[SENDERS];
    // Everyone in the first channel; two overlapping halves in the others.
    channelMembers = [range(SENDERS, 0), [0, 1, 2, 3], [2, 3, 4, 5]];
    channels = [];
    for (const members of channelMembers) {
      channels.push(await seedChannel(a, team, members.map((i) => senders[i])));
    }

    collectors = [];
    sendSockets = [];
    for (const [i, user] of senders.entries()) {
      const node = i % 2;
      const mine = await connect(cluster.urls[node], user.token, { transport });
      const other = await connect(cluster.urls[1 - node], user.token, { transport });
      sendSockets.push(mine);
      collectors.push({ user, node, collector: new Collector(mine) });
      collectors.push({ user, node: 1 - node, collector: new Collector(other) });
    }
    for (const node of [0, 1]) {
      collectors.push({ user: 'owner', node, collector: new Collector(await connect(cluster.urls[node], team.owner.token, { transport })) });
    }
    outsiderCollectors = [];
    for (const node of [0, 1]) outsiderCollectors.push(new Collector(await connect(cluster.urls[node], outsider.token, { transport })));
    // A new socket joins its channel rooms right after its connect completes; give that a moment.
    await sleep(300);

    // Every sender pipelines all its sends, round-robin over its channels, without waiting for acks.
    results = await Promise.all(
      senders.map(async (_, s) => {
        const mine = channelMembers.map((m, c) => (m.includes(s) ? c : -1)).filter((c) => c >= 0);
        const planned = range(PER_CHANNEL, 0).flatMap((k) =>
          mine.map((c) => ({ channel: c, clientMsgId: `s${s}-c${c}-${k}`, body: `sender ${s} channel ${c} #${k}` })),
        );
        const outcomes = await Promise.all(
          planned.map((p) => send(sendSockets[s], { channelId: channels[p.channel].id, body: p.body, clientMsgId: p.clientMsgId }, 30_000)),
        );
        return planned.map((p, i) => ({ ...p, outcome: outcomes[i] }));
      }),
    );
  });

  after(() => disconnectAll());

  const expectedCount = (c: number) => channelMembers[c].length * PER_CHANNEL;
  const acked = (c: number): MessageDto[] =>
    results
      .flat()
      .filter((r) => r.channel === c)
      .map((r) => (r.outcome.ok ? r.outcome.message : expect.fail(`refused: ${JSON.stringify(r.outcome)}`)))
      .sort((x, y) => x.seq - y.seq);

  it('When six users pipeline sends into three shared channels, then every send is acked ok with its own body', () => {
    const all = results.flat();
    expect(all).to.have.length(channelMembers.reduce((n, m) => n + m.length, 0) * PER_CHANNEL);
    for (const r of all) {
      expect(r.outcome, r.clientMsgId).to.include({ ok: true });
      if (!r.outcome.ok) continue;
      expect(r.outcome.message).to.include({ channelId: channels[r.channel].id, body: r.body, clientMsgId: r.clientMsgId });
    }
  });

  it('When the sends are acked, then each channel holds seq exactly 1..N in the acks, REST history and the database', async () => {
    for (const [c, channel] of channels.entries()) {
      const n = expectedCount(c);
      const fromAcks = acked(c);
      expect(fromAcks.map((m) => m.seq), `acked seqs of channel ${c}`).to.deep.equal(range(n));

      const history = await fullHistory(cluster.urls[1], team.owner.token, channel.id);
      expect(history, `REST history of channel ${c}`).to.deep.equal(fromAcks);

      const stored = await storedMessages(channel.id);
      expect(stored.map((m) => m.seq), `stored seqs of channel ${c}`).to.deep.equal(range(n));
      expect(stored.map((m) => m.id)).to.deep.equal(fromAcks.map((m) => m.id));
      expect(await channelLastSeq(channel.id)).to.equal(n);
    }
  });

  it("When one user pipelines sends to a channel, then their seqs increase in the sender's send order", () => {
    for (const [s, sent] of results.entries()) {
      for (const c of channels.keys()) {
        const seqs = sent.filter((r) => r.channel === c).map((r) => (r.outcome.ok ? r.outcome.message.seq : -1));
        if (!channelMembers[c].includes(s)) {
          expect(seqs).to.have.length(0);
          continue;
        }
        expect(seqs, `sender ${s} channel ${c}`).to.have.length(PER_CHANNEL);
        expect(isIncreasing(seqs), `sender ${s} channel ${c}: ${seqs.join(',')}`).to.equal(true);
      }
    }
  });

  it('When messages are committed, then every subscribed socket on either node receives each exactly once in seq order', async () => {
    const members = (c: number) => new Set([...channelMembers[c].map((i) => senders[i].user.id), team.owner.user.id]);
    const subscribed = (entry: (typeof collectors)[number], c: number) =>
      members(c).has(entry.user === 'owner' ? team.owner.user.id : entry.user.user.id);
    await waitFor(
      () => collectors.every((e) => channels.every((ch, c) => !subscribed(e, c) || e.collector.count(ch.id) >= expectedCount(c))),
      20_000,
      () => collectors.map((e) => channels.map((ch) => e.collector.count(ch.id)).join('/')).join(' '),
    );
    // Anything duplicated or late would show up in this window.
    await sleep(500);
    for (const e of collectors) {
      for (const [c, channel] of channels.entries()) {
        const who = `${e.user === 'owner' ? 'owner' : e.user.user.id} on node ${e.node}, channel ${c}`;
        if (!subscribed(e, c)) {
          expect(e.collector.count(channel.id), who).to.equal(0);
          continue;
        }
        expect(e.collector.of(channel.id), who).to.deep.equal(acked(c));
      }
    }
  });

  it('When a user sends, then both of their own sockets receive their own messages', () => {
    for (const [s, user] of senders.entries()) {
      const own = results[s].map((r) => (r.outcome.ok ? r.outcome.message.id : ''));
      for (const e of collectors.filter((x) => x.user === user)) {
        const received = new Set(e.collector.all.filter((m) => m.userId === user.user.id).map((m) => m.id));
        expect(received.size, `sender ${s} node ${e.node}`).to.equal(own.length);
        for (const id of own) expect(received.has(id), `sender ${s} node ${e.node} missing ${id}`).to.equal(true);
      }
    }
  });

  it('When a workspace member is in none of the channels, then their sockets receive nothing', () => {
    for (const collector of outsiderCollectors) expect(collector.all).to.have.length(0);
  });
}

/** Where `seqs` (in emission order) stops increasing, for a readable failure; '' when it never does. */
function disorder(seqs: number[]): string {
  const i = seqs.findIndex((v, k) => k > 0 && !(v > seqs[k - 1]));
  return i < 0 ? '' : `send #${i - 1} got seq ${seqs[i - 1]}, send #${i} got seq ${seqs[i]} (all: ${seqs.join(',')})`;
}

/**
 * The scenario of issue #9: one socket pipelines its sends into one channel (all 200 emitted at once, or
 * 16 in flight at a time), the rate limit at its default, so the stream crosses a lease boundary every
 * 10th send. Only this user sends into the channel: its seqs must be exactly 1..N in emission order.
 */
function pipelinedSocket(getCluster: () => Cluster, transport: Transport): void {
  const SENDS = 200;
  const WINDOW = 16;

  let cluster: Cluster;
  let team: Team;

  before(async () => {
    cluster = getCluster();
    team = await seedTeam(cluster.urls[0], 2);
  });

  after(() => disconnectAll());

  /**
   * `user` sends SENDS messages into a fresh channel over `transport`, `inFlight` at a time (emitted in
   * order, each as soon as one of the in-flight ones is acked); resolves with the outcomes in emission order.
   */
  async function stream(user: RegisteredUser, tag: string, inFlight: number) {
    const channel = await seedChannel(cluster.urls[0], team, [user]);
    const socket = await connect(cluster.urls[0], user.token, { transport });
    const own = new Collector(socket);
    const watcher = new Collector(await connect(cluster.urls[1], team.owner.token, { transport }));
    await sleep(300);
    const outcomes: SendOutcome[] = new Array(SENDS);
    let next = 0;
    // Each lane emits the next send as soon as its previous one is acked: emission order is `next` order.
    const lane = async () => {
      while (next < SENDS) {
        const k = next++;
        outcomes[k] = await send(socket, { channelId: channel.id, body: `${tag} #${k}`, clientMsgId: `${tag}-${k}` }, 30_000);
      }
    };
    await Promise.all(Array.from({ length: Math.min(inFlight, SENDS) }, lane));
    return { channel, outcomes, own, watcher };
  }

  async function expectInEmissionOrder(result: Awaited<ReturnType<typeof stream>>, tag: string): Promise<void> {
    const { channel, outcomes, own, watcher } = result;
    const refused = outcomes.map((o, k) => (o.ok ? '' : `#${k}: ${JSON.stringify(o.error)}`)).filter(Boolean);
    expect(refused, 'sends refused (the default budget is 500 per user per 10 s)').to.deep.equal([]);
    const acked = outcomes.map((o) => (o.ok ? o.message : expect.fail('refused')));
    const seqs = acked.map((m) => m.seq);
    expect(disorder(seqs), 'acked seqs in emission order').to.equal('');
    expect(seqs, 'acked seqs in emission order').to.deep.equal(range(SENDS));
    for (const [k, m] of acked.entries()) expect(m, `ack of send #${k}`).to.include({ body: `${tag} #${k}`, clientMsgId: `${tag}-${k}` });

    const stored = await storedMessages(channel.id);
    expect(stored.map((m) => m.clientMsgId), 'stored rows by seq are in emission order').to.deep.equal(range(SENDS, 0).map((k) => `${tag}-${k}`));
    expect(stored.map((m) => m.id)).to.deep.equal(acked.map((m) => m.id));

    for (const [who, collector] of [
      ['the sending socket', own],
      ['the owner on the other node', watcher],
    ] as const) {
      await waitFor(() => collector.count(channel.id) >= SENDS, 15_000, () => `${who}: ${collector.count(channel.id)} of ${SENDS}`);
      await sleep(200);
      expect(collector.of(channel.id).map((m) => m.id), `${who} receives them once each, in emission order`).to.deep.equal(acked.map((m) => m.id));
    }
  }

  it(`When one socket emits ${SENDS} sends into one channel without waiting for any ack, then every send is acked ok, seqs increase in emission order and rows are stored in that order`, async () => {
    const tag = `all-${transport}`;
    await expectInEmissionOrder(await stream(team.members[0], tag, SENDS), tag);
  });

  it(`When one socket keeps ${WINDOW} sends in flight into one channel, ${SENDS} in all, then every send is acked ok, seqs increase in emission order and rows are stored in that order`, async () => {
    const tag = `win-${transport}`;
    await expectInEmissionOrder(await stream(team.members[1], tag, WINDOW), tag);
  });

  it(`When one socket pipelines past the default budget (${DEFAULT_BURST} sends per 10 s, leased ${DEFAULT_LEASE} at a time), then exactly the first ${DEFAULT_BURST} are accepted in emission order and the rest are RATE_LIMITED`, async () => {
    await expectBudgetRunsOutMidStream(cluster.urls[0], DEFAULT_BURST, DEFAULT_LEASE, transport);
  });
}
