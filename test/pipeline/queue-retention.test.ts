import { expect } from 'chai';
import { Redis } from 'ioredis';
import type { Cluster } from '../../scripts/cluster.js';
import { bullPrefix, messageQueueName } from '../../shared/queues.js';
import { connect, disconnectAll, range, send } from '../support/sockets.js';
import { closeDb, clusterRedisPrefix, seedChannel, seedTeam, startPipelineCluster, storedCount } from './fixtures.js';

const KEEP = 100;
const SENDS = 400;

describe('pipeline: what the queue keeps in Redis', function () {
  this.timeout(90_000);

  let cluster: Cluster;
  let redis: Redis;
  let queueKey: string;

  before(async () => {
    // One partition, so every batch lands in the one queue this test reads.
    cluster = await startPipelineCluster('retention', { QUEUE_PARTITIONS: '1', QUEUE_KEEP_COMPLETED: String(KEEP) });
    redis = new Redis(process.env.REDIS_URL!);
    queueKey = `${bullPrefix(clusterRedisPrefix('retention'))}:${messageQueueName(0)}`;
  });

  after(async () => {
    disconnectAll();
    redis?.disconnect();
    await cluster?.stop();
    await closeDb();
  });

  it('When many more batches complete than QUEUE_KEEP_COMPLETED, then Redis keeps that many and an event stream of about 1,000', async () => {
    const team = await seedTeam(cluster.urls[0], 1);
    const [alice] = team.members;
    const channel = await seedChannel(cluster.urls[0], team, [alice]);
    const socket = await connect(cluster.urls[0], alice.token);
    // One at a time: each send is its own batch.
    for (const i of range(SENDS)) {
      const outcome = await send(socket, { channelId: channel.id, body: `m${i}`, clientMsgId: `r-${i}` });
      expect(outcome.ok, JSON.stringify(outcome)).to.equal(true);
    }
    expect(await storedCount([channel.id])).to.equal(SENDS);

    const completed = await redis.zcard(`${queueKey}:completed`);
    expect(completed).to.be.within(1, KEEP);
    // Each batch writes several events (added, active, completed, ...); BullMQ trims approximately.
    const events = await redis.xlen(`${queueKey}:events`);
    expect(events).to.be.within(500, 1200);
  });
});
