import { expect } from 'chai';
import type { Cluster } from '../../scripts/cluster.js';
import type { MessageDto } from '../../shared/models/Message.js';
import type { SendOutcome } from '../../shared/queues.js';
import type { ChannelDto, RegisteredUser } from '../support/api.js';
import { Collector, connect, disconnectAll, range, send, sleep, waitFor, type ClientSocket } from '../support/sockets.js';
import {
  channelLastSeq,
  closeDb,
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

describe('pipeline: ordering under concurrent senders', function () {
  this.timeout(90_000);

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
    cluster = await startPipelineCluster('ordering');
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
      const mine = await connect(cluster.urls[node], user.token);
      const other = await connect(cluster.urls[1 - node], user.token);
      sendSockets.push(mine);
      collectors.push({ user, node, collector: new Collector(mine) });
      collectors.push({ user, node: 1 - node, collector: new Collector(other) });
    }
    for (const node of [0, 1]) {
      collectors.push({ user: 'owner', node, collector: new Collector(await connect(cluster.urls[node], team.owner.token)) });
    }
    outsiderCollectors = [];
    for (const node of [0, 1]) outsiderCollectors.push(new Collector(await connect(cluster.urls[node], outsider.token)));
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

  after(async () => {
    disconnectAll();
    await cluster?.stop();
    await closeDb();
  });

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
});
