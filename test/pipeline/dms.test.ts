import { expect } from 'chai';
import { openDm, unique } from '../support/api.js';
import { Collector, connect, sendOk, sleep, waitFor } from '../support/sockets.js';
import { seedTeam, storedMessages, useCluster } from './fixtures.js';

/**
 * Direct messages across front nodes (issue #12): a DM opened through REST on one node is in force on
 * every node's sockets by the time the call returns, so its messages travel between its members' sockets
 * on different nodes like any channel's, and no socket of anyone else gets them.
 */
describe('pipeline: direct messages across front nodes', function () {
  this.timeout(60_000);

  let A: string;
  let B: string;
  useCluster('dms', (cluster) => ([A, B] = cluster.urls));

  for (const transport of ['default', 'websocket'] as const) {
    it(`When a DM is opened on node A and a member sends into it over a socket on A (${transport}), then the other member's sockets on node B get it, and a third member's get nothing`, async () => {
      const team = await seedTeam(A, 3);
      const [ada, bob, carol] = team.members;
      const adaA = await connect(A, ada.token, { transport });
      const onA = new Collector(adaA);
      // Bob's socket on B connected before the DM existed: the open must reach node B's rooms.
      const bobB = await connect(B, bob.token, { transport });
      const onB = new Collector(bobB);
      const carolSockets = [await connect(A, carol.token, { transport }), await connect(B, carol.token, { transport })];
      const carolGot: string[] = [];
      for (const s of carolSockets) s.onAny((event: string, payload: unknown) => carolGot.push(`${event} ${JSON.stringify(payload)}`));

      const dm = await openDm(A, ada.token, team.workspace.id, [bob.user.id]);
      // And one of Bob's that connects on B afterwards: subscribed to the DM on connect.
      const laterB = new Collector(await connect(B, bob.token, { transport }));

      const sent = await sendOk(adaA, { channelId: dm.id, body: `hi bob (${transport})`, clientMsgId: unique('dm-') });
      await waitFor(() => onB.of(dm.id).length > 0 && laterB.of(dm.id).length > 0, 10_000, () => 'node B did not deliver the DM');
      for (const got of [onB, laterB]) expect(got.of(dm.id).map((m) => [m.id, m.seq, m.body])).to.deep.equal([[sent.id, 1, sent.body]]);

      const reply = await sendOk(bobB, { channelId: dm.id, body: 'hi ada', clientMsgId: unique('dm-') });
      await waitFor(() => onA.of(dm.id).length === 2, 10_000, () => `node A delivered ${onA.seqs(dm.id).join(',')}`);
      expect(onA.of(dm.id).map((m) => m.id)).to.deep.equal([sent.id, reply.id]);
      expect((await storedMessages(dm.id)).map((m) => m.userId)).to.deep.equal([ada.user.id, bob.user.id]);

      // A socket that comes later catches up with `sync`, as in any channel; to the third member the DM does not exist.
      const catchUp = await connect(A, bob.token, { transport });
      const replayed = new Collector(catchUp);
      const ack = await catchUp.timeout(10_000).emitWithAck('sync', { channels: { [dm.id]: 0 } });
      expect(ack.channels[dm.id]).to.include({ replayed: 2, latestSeq: 2, hasMore: false });
      expect(replayed.of(dm.id).map((m) => m.id)).to.deep.equal([sent.id, reply.id]);
      const refused = await carolSockets[1].timeout(10_000).emitWithAck('sync', { channels: { [dm.id]: 0 } });
      expect(refused.channels[dm.id].error.code).to.equal('NOT_FOUND');

      // Deliveries go to every room at once; leave a margin for any that would (wrongly) trail.
      await sleep(200);
      expect(carolGot.filter((line) => line.includes(dm.id))).to.deep.equal([]);
    });
  }
});
