import { expect } from 'chai';
import { Redis } from 'ioredis';
import { startCluster, type Cluster } from '../../scripts/cluster.js';
import { connect, disconnectAll, range, send, sleep, waitFor } from '../support/sockets.js';
import { acked, edit, EventLog, react } from './changes-harness.js';
import { closeDb, clusterRedisPrefix, fullHistory, seedChannel, seedTeam, storedMessages } from './fixtures.js';

describe('pipeline: a send or change whose reply is lost', function () {
  this.timeout(60_000);

  // Read in the hook: the run's REDIS_PREFIX is set by the global setup, after this file is loaded.
  let prefix: string;
  let cluster: Cluster;
  let redis: Redis;

  before(async () => {
    prefix = clusterRedisPrefix('lost-reply');
    cluster = await startCluster({ servers: 1, workers: 1, env: { REDIS_PREFIX: prefix } });
    redis = new Redis(process.env.REDIS_URL!);
  });

  after(async () => {
    disconnectAll();
    redis?.disconnect();
    await cluster?.stop();
    await closeDb();
  });

  /** Runs `body` while this cluster's reply subscriptions are killed every few ms; returns how many were killed. */
  async function whileRepliesAreLost(body: () => Promise<void>): Promise<number> {
    let killing = true;
    let kills = 0;
    const killer = (async () => {
      while (killing) {
        kills += await killReplySubscriptions();
        await sleep(5);
      }
    })();
    try {
      await body();
    } finally {
      killing = false;
      await killer;
    }
    return kills;
  }

  /** Kills this cluster's reply subscriptions (and no one else's connection) whenever they are up. */
  async function killReplySubscriptions(): Promise<number> {
    const list = (await redis.client('LIST')) as string;
    let killed = 0;
    for (const line of list.split('\n')) {
      if (!line.includes(` name=${prefix}:front-replies `)) continue;
      const id = /(?:^|\s)id=(\d+)/.exec(line)?.[1];
      if (id) killed += Number(await redis.client('KILL', 'ID', id));
    }
    return killed;
  }

  it('When the reply is published while the front node is not subscribed, then the send is still acked with its stored message', async () => {
    const team = await seedTeam(cluster.urls[0], 1);
    const [alice] = team.members;
    const channel = await seedChannel(cluster.urls[0], team, [alice]);
    const socket = await connect(cluster.urls[0], alice.token);

    // Keep the reply subscription down: it comes back ~200 ms after each kill and is killed again within a
    // few ms, so a reply is lost unless it is published in that gap. Each send is tried until one is
    // answered the slow way, by the sweeper, which asks BullMQ about sends that stay quiet for 5 s.
    let answeredBySweeper = false;
    let attempts = 0;
    const kills = await whileRepliesAreLost(async () => {
      for (let attempt = 1; attempt <= 5 && !answeredBySweeper; attempt++) {
        attempts = attempt;
        const sentAt = Date.now();
        const outcome = await send(socket, { channelId: channel.id, body: `reply lost ${attempt}`, clientMsgId: `lost-${attempt}` }, 30_000);
        const elapsed = Date.now() - sentAt;
        expect(outcome.ok, JSON.stringify(outcome)).to.equal(true);
        if (!outcome.ok) return;
        const stored = (await storedMessages(channel.id)).find((m) => m.id === outcome.message.id);
        expect(stored, 'the acked message is stored').to.not.equal(undefined);
        expect(outcome.message).to.include({ seq: stored!.seq, body: `reply lost ${attempt}`, clientMsgId: `lost-${attempt}`, channelId: channel.id });
        answeredBySweeper = elapsed >= 4000;
      }
    });
    expect(kills, 'reply subscriptions killed').to.be.greaterThan(0);
    expect(answeredBySweeper, 'no reply was lost in 5 sends').to.equal(true);
    // Each send stored once, none lost, whichever way it was answered.
    expect((await storedMessages(channel.id)).map((m) => m.seq)).to.deep.equal(range(attempts));
  });

  it('When the reply to an edit or a reaction is lost, then it is still acked with the changed message, applied once, with one event', async () => {
    const team = await seedTeam(cluster.urls[0], 1);
    const [alice] = team.members;
    const channel = await seedChannel(cluster.urls[0], team, [alice]);
    const socket = await connect(cluster.urls[0], alice.token);
    const log = new EventLog('alice', socket);
    const outcome = await send(socket, { channelId: channel.id, body: 'to change', clientMsgId: 'to-change' });
    if (!outcome.ok) expect.fail(JSON.stringify(outcome));
    const room = { id: channel.id };
    const messageId = outcome.message.id;

    // As above: each change is tried until one is answered by the sweeper; an edit and a reaction take turns.
    let answeredBySweeper = false;
    const made: Array<{ kind: 'edit' | 'reaction'; rev: number }> = [];
    const kills = await whileRepliesAreLost(async () => {
      for (let attempt = 1; attempt <= 6 && !answeredBySweeper; attempt++) {
        const sentAt = Date.now();
        const kind = attempt % 2 ? 'edit' : 'reaction';
        const ack =
          kind === 'edit'
            ? await edit(socket, room, messageId, `edited ${attempt}`, { clientChangeId: `lost-c${attempt}` })
            : await react(socket, room, messageId, `e${attempt}`, { clientChangeId: `lost-c${attempt}` });
        const message = acked(ack, `${kind} ${attempt}`);
        if (kind === 'edit') expect(message.body).to.equal(`edited ${attempt}`);
        else expect(message.reactions.map((r) => r.emoji)).to.include(`e${attempt}`);
        made.push({ kind, rev: message.rev });
        answeredBySweeper = Date.now() - sentAt >= 4000;
      }
    });
    expect(kills, 'reply subscriptions killed').to.be.greaterThan(0);
    expect(answeredBySweeper, 'no reply to a change was lost in 6 changes').to.equal(true);

    // Each change applied once, at the rev its ack reported, with one event: revs 1 (the send) .. 1 + changes.
    const [last] = await fullHistory(cluster.urls[0], alice.token, channel.id);
    expect(last.rev).to.equal(1 + made.length);
    expect(made.map((m) => m.rev)).to.deep.equal(range(made.length, 2));
    await waitFor(() => log.of(channel.id).length === 1 + made.length, 5_000, () => log.trace(channel.id).join(' '));
    expect(log.of(channel.id).map((e) => [e.name, e.rev])).to.deep.equal([
      ['message:new', 1],
      ...made.map((m) => [m.kind === 'edit' ? 'message:updated' : 'reaction:added', m.rev]),
    ]);
  });
});
