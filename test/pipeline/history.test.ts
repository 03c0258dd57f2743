import { expect } from 'chai';
import type { Cluster } from '../../scripts/cluster.js';
import type { MessageDto } from '../../shared/models/Message.js';
import { request, type ChannelDto, type RegisteredUser } from '../support/api.js';
import { Collector, connect, disconnectAll, range, send, sleep, waitFor } from '../support/sockets.js';
import { closeDb, seedChannel, seedTeam, startPipelineCluster, type Team } from './fixtures.js';

const N = 120;

describe('pipeline: history paging over delivered messages', function () {
  this.timeout(60_000);

  let cluster: Cluster;
  let team: Team;
  let alice: RegisteredUser;
  let bob: RegisteredUser;
  let outsider: RegisteredUser;
  let channel: ChannelDto;
  let secret: ChannelDto;
  let delivered: MessageDto[];

  before(async () => {
    cluster = await startPipelineCluster('history');
    team = await seedTeam(cluster.urls[0], 3);
    [alice, bob, outsider] = team.members;
    channel = await seedChannel(cluster.urls[0], team, [alice, bob]);
    secret = await seedChannel(cluster.urls[0], team, [alice], { isPrivate: true });

    const aliceA = await connect(cluster.urls[0], alice.token);
    const bobB = await connect(cluster.urls[1], bob.token);
    const watcher = new Collector(await connect(cluster.urls[1], team.owner.token));
    await sleep(300);
    // Two senders on two nodes, pipelined.
    const outcomes = await Promise.all(
      range(N).map((i) =>
        send(i % 2 ? aliceA : bobB, { channelId: channel.id, body: `message ${i}`, clientMsgId: `h-${i}` }),
      ),
    );
    for (const o of outcomes) if (!o.ok) throw new Error(`send refused: ${JSON.stringify(o)}`);
    await waitFor(() => watcher.count(channel.id) === N, 15_000, () => `${watcher.count(channel.id)} of ${N} delivered`);
    delivered = [...watcher.of(channel.id)];
  });

  after(async () => {
    disconnectAll();
    await cluster?.stop();
    await closeDb();
  });

  const get = (query: string, token = alice.token, channelId = channel.id, url = cluster.urls[1]) =>
    request(url, 'GET', `/channels/${channelId}/messages${query}`, { token });
  const seqs = (messages: MessageDto[]) => messages.map((m) => m.seq);

  it('When 120 messages were delivered, then they were delivered with seq 1..120', () => {
    expect(seqs(delivered)).to.deep.equal(range(N));
  });

  it('When paging backwards with before from the newest page (limit 50), then the pages join into exactly the delivered sequence', async () => {
    const pages: Array<{ seqs: number[]; hasMore: boolean }> = [];
    const collected: MessageDto[] = [];
    let res = await get('?limit=50');
    for (;;) {
      expect(res.status, res.text).to.equal(200);
      expect(Object.keys(res.body).sort()).to.deep.equal(['hasMore', 'messages']);
      pages.push({ seqs: seqs(res.body.messages), hasMore: res.body.hasMore });
      collected.unshift(...res.body.messages);
      if (!res.body.hasMore) break;
      res = await get(`?limit=50&before=${res.body.messages[0].seq}`);
    }
    expect(pages).to.deep.equal([
      { seqs: range(50, 71), hasMore: true },
      { seqs: range(50, 21), hasMore: true },
      { seqs: range(20, 1), hasMore: false },
    ]);
    expect(collected).to.deep.equal(delivered);
  });

  it('When paging forwards with after from 0 (limit 50), then the pages join into exactly the delivered sequence', async () => {
    const pages: Array<{ seqs: number[]; hasMore: boolean }> = [];
    const collected: MessageDto[] = [];
    let after = 0;
    for (;;) {
      const res = await get(`?limit=50&after=${after}`, bob.token, channel.id, cluster.urls[0]);
      expect(res.status, res.text).to.equal(200);
      pages.push({ seqs: seqs(res.body.messages), hasMore: res.body.hasMore });
      collected.push(...res.body.messages);
      if (!res.body.hasMore) break;
      after = res.body.messages.at(-1).seq;
    }
    expect(pages).to.deep.equal([
      { seqs: range(50, 1), hasMore: true },
      { seqs: range(50, 51), hasMore: true },
      { seqs: range(20, 101), hasMore: false },
    ]);
    expect(collected).to.deep.equal(delivered);
  });

  it('When no limit is given, then the page is the newest 50 with hasMore true', async () => {
    const res = await get('');
    expect(res.status).to.equal(200);
    expect(seqs(res.body.messages)).to.deep.equal(range(50, 71));
    expect(res.body.hasMore).to.equal(true);
    const forwards = await get('?after=0');
    expect(seqs(forwards.body.messages)).to.deep.equal(range(50, 1));
    expect(forwards.body.hasMore).to.equal(true);
  });

  it('When a page ends exactly at either end, then hasMore is false', async () => {
    const cases: Array<[string, number[], boolean]> = [
      ['?limit=120', range(120), false],
      ['?limit=119', range(119, 2), true],
      ['?limit=200', range(120), false],
      ['?after=0&limit=120', range(120), false],
      ['?after=0&limit=119', range(119), true],
      ['?after=119&limit=1', [120], false],
      ['?after=118&limit=1', [119], true],
      ['?after=120', [], false],
      ['?after=500', [], false],
      ['?before=2&limit=1', [1], false],
      ['?before=3&limit=1', [2], true],
      ['?before=1', [], false],
      ['?before=121&limit=1', [120], true],
      ['?before=1000&limit=3', [118, 119, 120], true],
    ];
    for (const [query, expected, hasMore] of cases) {
      const res = await get(query);
      expect(res.status, `${query}: ${res.text}`).to.equal(200);
      expect({ seqs: seqs(res.body.messages), hasMore: res.body.hasMore }, query).to.deep.equal({ seqs: expected, hasMore });
    }
  });

  it('When a member reads a channel that has no messages yet, then every page is empty with hasMore false', async () => {
    for (const query of ['', '?after=0', '?before=5', '?limit=1']) {
      const res = await get(query, alice.token, secret.id);
      expect(res.status, `${query}: ${res.text}`).to.equal(200);
      expect(res.body, query).to.deep.equal({ messages: [], hasMore: false });
    }
  });

  it('When the limit is out of 1..200 or not an integer, then 400 VALIDATION_FAILED', async () => {
    for (const query of ['?limit=0', '?limit=201', '?limit=-1', '?limit=1.5', '?limit=ten']) {
      const res = await get(query);
      expect([res.status, res.body?.error?.code], query).to.deep.equal([400, 'VALIDATION_FAILED']);
    }
    for (const query of ['?limit=1', '?limit=200']) expect((await get(query)).status, query).to.equal(200);
  });

  it('When before and after are given together, or are out of range, then 400 VALIDATION_FAILED', async () => {
    for (const query of ['?before=100&after=10', '?after=0&before=121', '?before=0', '?after=-1', '?before=abc']) {
      const res = await get(query);
      expect([res.status, res.body?.error?.code], query).to.deep.equal([400, 'VALIDATION_FAILED']);
    }
  });

  it('When a workspace member outside a public channel reads its history, then 403 FORBIDDEN', async () => {
    const res = await get('?limit=10', outsider.token);
    expect([res.status, res.body?.error?.code]).to.deep.equal([403, 'FORBIDDEN']);
  });

  it('When an outsider reads a private channel, or anyone reads an unknown one, then 404 NOT_FOUND', async () => {
    for (const token of [outsider.token, bob.token]) {
      const res = await get('', token, secret.id);
      expect([res.status, res.body?.error?.code]).to.deep.equal([404, 'NOT_FOUND']);
    }
    const unknown = await get('', alice.token, '00000000-0000-4000-8000-000000000000');
    expect([unknown.status, unknown.body?.error?.code]).to.deep.equal([404, 'NOT_FOUND']);
    const member = await get('', alice.token, secret.id);
    expect([member.status, member.body.messages, member.body.hasMore]).to.deep.equal([200, [], false]);
  });

  it('When the caller has no token, then 401 UNAUTHORIZED', async () => {
    const res = await request(cluster.urls[0], 'GET', `/channels/${channel.id}/messages`);
    expect([res.status, res.body?.error?.code]).to.deep.equal([401, 'UNAUTHORIZED']);
  });
});
