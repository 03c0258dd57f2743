import { expect } from 'chai';
import type { Cluster } from '../../scripts/cluster.js';
import type { SendOutcome } from '../../shared/queues.js';
import type { ChannelDto, RegisteredUser } from '../support/api.js';
import { connect, disconnectAll, sendOk, type Transport } from '../support/sockets.js';
import { closeDb, fullHistory, seedChannel, seedTeam, startPipelineCluster, storedMessages, type Team } from './fixtures.js';

const IN_FLIGHT = 32;
/** Of the ops in flight, every this-many-th is a change (a reaction of its own) instead of a send. */
const CHANGE_EVERY = 3;

describe('pipeline: a front node stopping with sends and changes in flight', function () {
  this.timeout(90_000);

  let cluster: Cluster;
  let team: Team;
  let alice: RegisteredUser;
  let channel: ChannelDto;

  before(async () => {
    cluster = await startPipelineCluster('shutdown');
    team = await seedTeam(cluster.urls[0], 1);
    [alice] = team.members;
    channel = await seedChannel(cluster.urls[0], team, [alice]);
  });

  after(async () => {
    disconnectAll();
    await cluster?.stop();
    await closeDb();
  });

  for (const transport of ['websocket', 'default', 'polling'] as Transport[]) {
    it(`When a front node gets SIGTERM while a ${transport} socket has ${IN_FLIGHT} sends and changes in flight, then every one it received is answered before it closes, every ok is stored once and nothing else, and the client is told to reconnect`, async () => {
      const node = await cluster.addServer();
      const socket = await connect(node.url!, alice.token, { transport });
      // One round trip first: the socket is fully set up (and upgraded, if it upgrades at all) on the node.
      const warm = await sendOk(socket, { channelId: channel.id, body: `${transport} warm-up`, clientMsgId: `${transport}-warm` });
      const disconnected = new Promise<string>((resolve) => socket.once('disconnect', (reason) => resolve(reason)));

      // Sends, and reactions to the warm-up message each with an emoji of its own: what is stored tells them apart.
      const ops = Array.from({ length: IN_FLIGHT }, (_, i) => ({ clientMsgId: `${transport}-stop-${i}`, emoji: i % CHANGE_EVERY === CHANGE_EVERY - 1 ? `${transport}-r${i}` : undefined }));
      const answers = ops.map(({ clientMsgId, emoji }) =>
        (emoji
          ? socket.timeout(20_000).emitWithAck('reaction:add', { channelId: channel.id, messageId: warm.id, emoji, clientChangeId: clientMsgId })
          : socket.timeout(20_000).emitWithAck('message:send', { channelId: channel.id, body: clientMsgId, clientMsgId })
        ).then(
          (outcome: SendOutcome) => ({ clientMsgId, emoji, outcome }),
          () => ({ clientMsgId, emoji, outcome: null }),
        ),
      );
      // The first ack means the node has the sends; the rest are in the queue or a worker.
      await Promise.race(answers);
      node.kill('SIGTERM');
      const results = await Promise.all(answers);
      const code = await node.exited;
      expect(code, `exit code; last output:\n${node.output.toString()}`).to.equal(0);
      // The transport closed (over polling the pending request fails: "transport error"), not "io server
      // disconnect": socket.io-client reconnects by itself.
      expect(await disconnected).to.be.oneOf(['transport close', 'transport error']);

      const stored = new Map((await storedMessages(channel.id)).map((m) => [m.clientMsgId, m]));
      const history = await fullHistory(cluster.urls[0], alice.token, channel.id);
      const reacted = new Set(history.find((m) => m.id === warm.id)!.reactions.map((r) => r.emoji));
      const isStored = (r: (typeof results)[number]) => (r.emoji ? reacted.has(r.emoji) : stored.has(r.clientMsgId));
      const unanswered = results.filter((r) => r.outcome === null);
      expect(unanswered.filter(isStored).map((r) => r.clientMsgId), 'stored, yet never answered').to.deep.equal([]);
      for (const r of results) {
        if (!r.outcome) continue;
        if (r.outcome.ok && r.emoji) expect(reacted.has(r.emoji), `${r.clientMsgId} (reaction) acked ok`).to.equal(true);
        else if (r.outcome.ok) expect(stored.get(r.clientMsgId)?.id, `${r.clientMsgId} acked ok`).to.equal(r.outcome.message.id);
        else {
          expect(r.outcome.error.code, r.clientMsgId).to.equal('SERVICE_UNAVAILABLE');
          expect(isStored(r), `${r.clientMsgId} refused, yet stored`).to.equal(false);
        }
      }
      const oks = results.filter((r) => r.outcome?.ok).length;
      expect(oks, `answered ok (unanswered: ${unanswered.length})`).to.be.greaterThan(0);
      socket.close();
    });
  }
});
