import { expect } from 'chai';
import type { Cluster } from '../../scripts/cluster.js';
import type { SendOutcome } from '../../shared/queues.js';
import type { ChannelDto, RegisteredUser } from '../support/api.js';
import { connect, disconnectAll, sendOk, type Transport } from '../support/sockets.js';
import { closeDb, seedChannel, seedTeam, startPipelineCluster, storedMessages, type Team } from './fixtures.js';

const IN_FLIGHT = 32;

describe('pipeline: a front node stopping with sends in flight', function () {
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
    it(`When a front node gets SIGTERM while a ${transport} socket has ${IN_FLIGHT} sends in flight, then every send it received is answered before it closes, every ok is stored once, and the client is told to reconnect`, async () => {
      const node = await cluster.addServer();
      const socket = await connect(node.url!, alice.token, { transport });
      // One round trip first: the socket is fully set up (and upgraded, if it upgrades at all) on the node.
      await sendOk(socket, { channelId: channel.id, body: `${transport} warm-up`, clientMsgId: `${transport}-warm` });
      const disconnected = new Promise<string>((resolve) => socket.once('disconnect', (reason) => resolve(reason)));

      const ids = Array.from({ length: IN_FLIGHT }, (_, i) => `${transport}-stop-${i}`);
      const answers = ids.map((clientMsgId) =>
        (socket.timeout(20_000).emitWithAck('message:send', { channelId: channel.id, body: clientMsgId, clientMsgId }) as Promise<SendOutcome>).then(
          (outcome) => ({ clientMsgId, outcome }),
          () => ({ clientMsgId, outcome: null }),
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
      const unanswered = results.filter((r) => r.outcome === null).map((r) => r.clientMsgId);
      const storedButUnanswered = unanswered.filter((id) => stored.has(id));
      expect(storedButUnanswered, 'stored, yet never answered').to.deep.equal([]);
      for (const { clientMsgId, outcome } of results) {
        if (!outcome) continue;
        if (outcome.ok) expect(stored.get(clientMsgId)?.id, `${clientMsgId} acked ok`).to.equal(outcome.message.id);
        else {
          expect(outcome.error.code, clientMsgId).to.equal('SERVICE_UNAVAILABLE');
          expect(stored.has(clientMsgId), `${clientMsgId} refused, yet stored`).to.equal(false);
        }
      }
      const oks = results.filter((r) => r.outcome?.ok).length;
      expect(oks, `sends answered ok (unanswered: ${unanswered.length})`).to.be.greaterThan(0);
      socket.close();
    });
  }
});
