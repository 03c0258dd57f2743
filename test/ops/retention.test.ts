/**
 * Retry keys of changes (`client_changes`: a user's `clientChangeId`) are kept for
 * CLIENT_CHANGES_KEEP_HOURS (default a week), then deleted by the workers: a resend with a key still kept
 * applies nothing, one with a key deleted is a new change. Through REST and a socket with
 * socket.io-client's defaults, one front node and one worker as processes, in a database of the test's own.
 */
import { expect } from 'chai';
import pg from 'pg';
import { startCluster, type Cluster } from '../../scripts/cluster.js';
import { createChannel, createWorkspace, registerUser, request, unique, type RegisteredUser } from '../support/api.js';
import { connect, disconnectAll, waitFor, type ClientSocket } from '../support/sockets.js';
import { sample } from '../support/metrics.js';
import { clusterRedisPrefix } from '../pipeline/fixtures.js';
import { OwnDatabase } from './helpers.js';
import knexFactory from 'knex';
import { knexConfig } from '../../shared/db.js';
import { PRUNE_CLIENT_CHANGES_SQL, pruneClientChanges } from '../../worker/prune.js';

describe('operations: retry keys of changes are kept for CLIENT_CHANGES_KEEP_HOURS', function () {
  this.timeout(90_000);
  let own: OwnDatabase;
  let cluster: Cluster;
  let db: pg.Client;
  let url: string;
  let alice: RegisteredUser;
  let channelId: string;
  let socket: ClientSocket;
  const updates: Array<{ rev: number; message: { id: string; body: string } }> = [];

  before(async () => {
    own = await OwnDatabase.create('retention');
    // The default prune runs every 10 minutes; 200 ms so that the test sees runs. The hours kept are the default.
    cluster = await startCluster({
      servers: 1,
      workers: 1,
      env: { DATABASE_URL: own.url, REDIS_PREFIX: clusterRedisPrefix('retention'), CLIENT_CHANGES_PRUNE_MS: '200' },
    });
    url = cluster.urls[0];
    db = new pg.Client({ connectionString: own.url });
    await db.connect();
    alice = await registerUser(url);
    const workspace = await createWorkspace(url, alice.token);
    channelId = (await createChannel(url, alice.token, workspace.id)).id;
    socket = await connect(url, alice.token, { transport: 'default' });
    socket.on('message:updated', (e: { rev: number; message: { id: string; body: string } }) => updates.push(e));
  });

  after(async () => {
    disconnectAll();
    await cluster?.stop();
    await db?.end();
    await own?.drop();
  });

  const edit = (messageId: string, body: string, clientChangeId: string) =>
    request(url, 'PATCH', `/channels/${channelId}/messages/${messageId}`, { token: alice.token, body: { body, clientChangeId } });
  const ageKey = (clientChangeId: string, hours: number) =>
    db.query(`UPDATE client_changes SET created_at = now() - make_interval(hours => $1) WHERE client_change_id = $2`, [hours, clientChangeId]);
  const keyKept = async (clientChangeId: string) =>
    (await db.query('SELECT 1 FROM client_changes WHERE client_change_id = $1', [clientChangeId])).rowCount === 1;

  it('When a retry key is older than the default week, then a worker deletes it and a resend with it is applied as a new change; a key two hours old still applies nothing', async () => {
    const sent = await request(url, 'POST', `/channels/${channelId}/messages`, { token: alice.token, body: { body: 'v1' } });
    expect(sent.status, sent.text).to.equal(201);
    const messageId: string = sent.body.message.id;
    const [oldKey, youngKey] = [unique('old-'), unique('young-')];

    const first = await edit(messageId, 'v2', oldKey);
    expect(first.status, first.text).to.equal(200);
    const second = await edit(messageId, 'v3', youngKey);
    expect(second.status, second.text).to.equal(200);
    await waitFor(() => updates.length === 2, 10_000, () => `message:updated received: ${JSON.stringify(updates)}`);

    await ageKey(oldKey, 169);
    await ageKey(youngKey, 2);
    await waitFor(async () => !(await keyKept(oldKey)), 10_000, () => 'the week-old key is still there');
    expect(await keyKept(youngKey), 'the key two hours old').to.equal(true);
    const metrics = await (await fetch(`${cluster.workers[0].url}/metrics`)).text();
    expect(sample(metrics, 'worker_client_changes_pruned_total')).to.equal(1);

    const again = await edit(messageId, 'v3', youngKey);
    expect(again.status, again.text).to.equal(200);
    expect(again.body.message, 'a resend with a kept key answers the stored change').to.deep.equal(second.body.message);

    const afresh = await edit(messageId, 'v2', oldKey);
    expect(afresh.status, afresh.text).to.equal(200);
    expect(afresh.body.message.body).to.equal('v2');
    expect(afresh.body.message.rev, 'a new change: the next rev').to.equal(second.body.message.rev + 1);
    expect(await keyKept(oldKey), 'the key is stored again, for its own resends').to.equal(true);
    expect(await edit(messageId, 'v9', oldKey).then((r) => r.body.message)).to.deep.equal(afresh.body.message);

    await waitFor(() => updates.length === 3, 10_000, () => `message:updated received: ${JSON.stringify(updates)}`);
    expect(updates.map((u) => [u.rev, u.message.body])).to.deep.equal([
      [first.body.message.rev, 'v2'],
      [second.body.message.rev, 'v3'],
      [afresh.body.message.rev, 'v2'],
    ]);
  });

  it('When the retry keys are many and few are old, then a prune reads the old ones by their index, a chunk at a time', async () => {
    const [userId] = (await db.query('SELECT id FROM users LIMIT 1')).rows.map((r) => r.id as string);
    const [messageId] = (await db.query('SELECT id FROM messages LIMIT 1')).rows.map((r) => r.id as string);
    const keys = (prefix: string, n: number, hours: number) =>
      db.query(
        `INSERT INTO client_changes (user_id, client_change_id, change_id, message_id, created_at)
         SELECT $1, $2 || i, gen_random_uuid(), $3, now() - make_interval(hours => $4) FROM generate_series(1, $5) i`,
        [userId, prefix, messageId, hours, n],
      );
    await keys('bulk-young-', 20_000, 0);
    // 100 hours: past the hours this prune keeps (24), within those the cluster's worker keeps (the default week).
    await keys('bulk-old-', 7, 100);
    await db.query('ANALYZE client_changes');
    const plan = (await db.query(`EXPLAIN ${PRUNE_CLIENT_CHANGES_SQL.replace('?', '24').replace('?', '5000')}`)).rows
      .map((r) => r['QUERY PLAN'] as string)
      .join('\n');
    expect(plan).to.include('client_changes_created_at');
    expect(plan).not.to.include('Seq Scan');

    const knex = knexFactory(knexConfig({ ...own.config, db: { ...own.config.db, poolMax: 1 } }));
    try {
      expect(await pruneClientChanges(knex, 24, 3)(), 'over three chunks').to.equal(7);
    } finally {
      await knex.destroy();
    }
    const left = await db.query(`SELECT count(*)::int AS n FROM client_changes WHERE client_change_id LIKE 'bulk-%'`);
    expect(left.rows[0].n).to.equal(20_000);
  });
});
