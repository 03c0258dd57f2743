import { expect } from 'chai';
import { randomBytes, randomUUID } from 'node:crypto';
import type { MessageDto } from '../../shared/models/Message.js';
import { createWorkspace, expectError, openDm, registerUser, request, type ChannelDto, type RegisteredUser } from '../support/api.js';
import { metricsOf, sample } from '../support/metrics.js';
import { connect, range, send, waitFor } from '../support/sockets.js';
import { dbQuery, fullHistory, seedChannel, seedTeam, useCluster, type Team } from './fixtures.js';

interface Hit {
  message: MessageDto;
  channel: ChannelDto;
  snippet: string;
}

/**
 * Message search (docs/API.md, "Search"): `GET /workspaces/:workspaceId/search` over the messages the
 * real pipeline stored (sends, edits and deletes through REST on one front node, searches on the other),
 * scoped to the caller's channels and DMs.
 */
describe('pipeline: message search', function () {
  this.timeout(60_000);

  let A: string;
  let B: string;
  let team: Team;
  let alice: RegisteredUser;
  let bob: RegisteredUser;
  let carol: RegisteredUser;
  /** alice, bob, carol */
  let general: ChannelDto;
  /** alice only (private) */
  let secret: ChannelDto;
  /** bob only (public, alice has not joined) */
  let other: ChannelDto;

  let workerUrls: string[];

  useCluster('search', (cluster) => {
    [A, B] = cluster.urls;
    workerUrls = cluster.workers.map((w) => w.url);
  });

  before(async () => {
    team = await seedTeam(A, 3);
    [alice, bob, carol] = team.members;
    general = await seedChannel(A, team, [alice, bob, carol]);
    secret = await seedChannel(A, team, [alice], { isPrivate: true });
    other = await seedChannel(A, team, [bob]);
  });

  /** A word no other test uses: its hits are this test's messages only. */
  const word = () => `w${randomBytes(5).toString('hex')}`;

  async function say(user: RegisteredUser, channelId: string, body: string): Promise<MessageDto> {
    const res = await request(A, 'POST', `/channels/${channelId}/messages`, { token: user.token, body: { body, clientMsgId: randomUUID() } });
    expect(res.status, res.text).to.equal(201);
    return res.body.message;
  }

  const search = (user: RegisteredUser, query: Record<string, string | number | undefined>, workspaceId = team.workspace.id) => {
    const params = new URLSearchParams(Object.entries(query).flatMap(([k, v]) => (v === undefined ? [] : [[k, String(v)]])));
    return request(B, 'GET', `/workspaces/${workspaceId}/search?${params}`, { token: user.token });
  };

  async function hits(user: RegisteredUser, q: string, limit?: number): Promise<Hit[]> {
    const res = await search(user, limit === undefined ? { q } : { q, limit });
    expect(res.status, res.text).to.equal(200);
    expect(res.body).to.have.all.keys('results', 'nextBefore');
    return res.body.results;
  }
  const bodies = (found: Hit[]) => found.map((h) => h.message.body);

  it('When a member searches a word, then they get {results: [{message, channel, snippet}], nextBefore: null}, newest first, from their channels only', async () => {
    const w = word();
    const first = await say(alice, general.id, `first ${w} in general`);
    const hidden = await say(alice, secret.id, `private ${w} note`);
    await say(bob, other.id, `bob's ${w} elsewhere`);
    const last = await say(bob, general.id, `then ${w} again`);

    const res = await search(alice, { q: w });
    expect(res.status, res.text).to.equal(200);
    expect(res.body.nextBefore).to.equal(null);
    const found: Hit[] = res.body.results;
    expect(found.map((h) => h.message.id), 'alice: general and her private channel, not the public one she has not joined').to.deep.equal([
      last.id,
      hidden.id,
      first.id,
    ]);
    expect(found[0]).to.have.all.keys('message', 'channel', 'snippet');
    expect(found[0].message).to.deep.equal(last);
    expect(found[0].channel).to.deep.include({ id: general.id, workspaceId: team.workspace.id, name: general.name, isPrivate: false });
    expect(found[1].channel).to.deep.include({ id: secret.id, isPrivate: true });
    expect(found[0].snippet).to.equal(`then <mark>${w}</mark> again`);

    expect(bodies(await hits(carol, w)), 'carol is in general only').to.deep.equal([`then ${w} again`, `first ${w} in general`]);
  });

  it('When the words are stemmed (english by default), then other forms of a word match too', async () => {
    const w = word();
    await say(alice, general.id, `${w} keeps running the jobs`);
    const found = await hits(bob, `${w} runs`);
    expect(bodies(found)).to.deep.equal([`${w} keeps running the jobs`]);
    expect(found[0].snippet).to.equal(`<mark>${w}</mark> keeps <mark>running</mark> the jobs`);
  });

  it('When a message is edited through REST, then it matches its new body and no longer its old one', async () => {
    const before = word();
    const after = word();
    const sent = await say(alice, general.id, `draft ${before}`);
    expect(bodies(await hits(bob, before))).to.deep.equal([`draft ${before}`]);

    const res = await request(A, 'PATCH', `/channels/${general.id}/messages/${sent.id}`, { token: alice.token, body: { body: `final ${after}` } });
    expect(res.status, res.text).to.equal(200);

    expect(await hits(bob, before), 'the old body').to.deep.equal([]);
    const found = await hits(bob, after);
    expect(found.map((h) => h.message)).to.deep.equal([res.body.message]);
    expect(found[0].message.editedAt).to.be.a('string');
  });

  it('When a message is deleted through REST, then it never matches again', async () => {
    const w = word();
    const kept = await say(bob, general.id, `kept ${w}`);
    const gone = await say(alice, general.id, `gone ${w}`);
    expect((await hits(carol, w)).map((h) => h.message.id)).to.deep.equal([gone.id, kept.id]);

    const res = await request(A, 'DELETE', `/channels/${general.id}/messages/${gone.id}`, { token: alice.token });
    expect(res.status, res.text).to.equal(200);

    expect((await hits(carol, w)).map((h) => h.message.id)).to.deep.equal([kept.id]);
  });

  it('When a user is removed from a channel, then its messages no longer match for them, and in: that channel is 404', async () => {
    const w = word();
    const room = await seedChannel(A, team, [alice, carol]);
    await say(alice, room.id, `roster ${w}`);
    expect(bodies(await hits(carol, `in:${room.id} ${w}`))).to.deep.equal([`roster ${w}`]);

    const res = await request(A, 'DELETE', `/channels/${room.id}/members/${carol.user.id}`, { token: team.owner.token });
    expect(res.status, res.text).to.equal(204);

    expect(await hits(carol, w)).to.deep.equal([]);
    expectError(await search(carol, { q: `in:${room.id} ${w}` }), 404, 'NOT_FOUND');
    expect(bodies(await hits(alice, w)), 'still a member').to.deep.equal([`roster ${w}`]);
  });

  it('When q has from:<userId>, in:<channelId> or a "phrase in quotes", then only the messages by that user, in that channel, with those words in that order match', async () => {
    const w = word();
    await say(alice, general.id, `${w} alpha beta`);
    await say(bob, general.id, `${w} beta alpha`);
    await say(alice, secret.id, `${w} alpha beta private`);

    expect(bodies(await hits(alice, `from:${bob.user.id} ${w}`))).to.deep.equal([`${w} beta alpha`]);
    expect(bodies(await hits(alice, `${w} FROM:${alice.user.id.toUpperCase()}`)), 'operators are case-insensitive').to.deep.equal([
      `${w} alpha beta private`,
      `${w} alpha beta`,
    ]);
    expect(bodies(await hits(alice, `in:${general.id} ${w}`))).to.deep.equal([`${w} beta alpha`, `${w} alpha beta`]);
    expect(bodies(await hits(alice, `in:${general.id} from:${alice.user.id} ${w}`))).to.deep.equal([`${w} alpha beta`]);
    expect(bodies(await hits(alice, `${w} "alpha beta"`))).to.deep.equal([`${w} alpha beta private`, `${w} alpha beta`]);
    expect(bodies(await hits(alice, `${w} "beta alpha"`))).to.deep.equal([`${w} beta alpha`]);
    // Searching in a channel one cannot read: 404, whichever way one cannot, and alike (nothing leaks).
    const notFound = [
      await search(bob, { q: `in:${secret.id} ${w}` }),
      await search(bob, { q: `in:${general.id} in:${secret.id} ${w}` }),
      await search(alice, { q: `in:${randomUUID()} ${w}` }),
    ];
    for (const res of notFound) expectError(res, 404, 'NOT_FOUND');
    expect(new Set(notFound.map((r) => r.text)).size, 'the same answer whatever the reason').to.equal(1);
  });

  it('When there are more hits than limit, then paging with before=nextBefore returns each hit once, newest first, and nextBefore is null on the last page', async () => {
    const w = word();
    const sent: MessageDto[] = [];
    for (const i of range(23)) sent.push(await say(i % 2 ? alice : bob, general.id, `page ${w} ${i}`));

    const pages: Hit[][] = [];
    let before: string | null = null;
    for (;;) {
      const res = await search(carol, before === null ? { q: w, limit: 10 } : { q: w, limit: 10, before });
      expect(res.status, res.text).to.equal(200);
      pages.push(res.body.results);
      before = res.body.nextBefore;
      if (before === null) break;
      expect(before).to.be.a('string');
      expect(pages.length).to.be.below(5);
    }
    expect(pages.map((p) => p.length)).to.deep.equal([10, 10, 3]);
    expect(pages.flat().map((h) => h.message.id)).to.deep.equal(sent.map((m) => m.id).reverse());

    const exact = await search(carol, { q: w, limit: 23 });
    expect(exact.body.results).to.have.length(23);
    expect(exact.body.nextBefore, 'exactly limit hits: no next page').to.equal(null);
    expect(await hits(carol, w), 'the default limit is 20').to.have.length(20);
  });

  it('When many hits were stored in one batch (one creation time), then paging returns each once, newest (highest seq) first, across channels', async () => {
    const w = word();
    const [socketA, socketB] = [await connect(A, alice.token), await connect(A, bob.token)];
    try {
      // Emitted at once, without waiting: they share batches, so many share a created_at, and ids are
      // random, so an order by id among them is not their order.
      const outcomes = await Promise.all(
        range(60).map((i) => send(i % 2 && i % 3 === 0 ? socketB : socketA, { channelId: i % 2 ? general.id : secret.id, clientMsgId: randomUUID(), body: `tie ${w} ${i}` })),
      );
      expect(outcomes.filter((o) => !o.ok)).to.deep.equal([]);
    } finally {
      socketA.close();
      socketB.close();
    }
    // Bob is not in secret: give alice's view, both channels.
    const stored = [...(await fullHistory(A, alice.token, general.id)), ...(await fullHistory(A, alice.token, secret.id))].filter((m) => m.body.includes(w));
    expect(stored).to.have.length(60);
    // Search orders by the creation time to the microsecond, which createdAt (milliseconds) cannot show:
    // batches of the two partitions can begin within one millisecond. The brute-force order, from PostgreSQL.
    const newestFirst = await dbQuery<{ channel_id: string; seq: string }>(
      'SELECT channel_id, seq FROM messages WHERE id = ANY($1::uuid[]) ORDER BY created_at DESC, channel_id DESC, seq DESC',
      [stored.map((m) => m.id)],
    );
    expect(new Set(stored.map((m) => m.createdAt)).size, 'several hits share a creation time').to.be.below(60);

    const found: Hit[] = [];
    let before: string | null = null;
    for (let page = 0; page < 20; page++) {
      const res = await search(alice, before === null ? { q: w, limit: 7 } : { q: w, limit: 7, before });
      expect(res.status, res.text).to.equal(200);
      found.push(...res.body.results);
      before = res.body.nextBefore;
      if (before === null) break;
    }
    expect(before, 'paging ended').to.equal(null);
    expect(found.map((h) => `${h.message.channelId}:${h.message.seq}`)).to.deep.equal(newestFirst.map((m) => `${m.channel_id}:${m.seq}`));
  });

  it('When channels hold thousands of messages, many sharing a creation time, then every page of every kind of query is the brute-force answer', async function () {
    this.timeout(120_000);
    // Too many messages to send through the pipeline in a test: stored in bulk, as the bench seeds them,
    // in channels made through REST. Sizes and word frequencies are chosen so that the search reads each
    // channel's newest messages first and, for rare words and old ones, goes further back.
    const t = await seedTeam(A, 2);
    const [caller, author] = t.members;
    const sizes = [5000, 2600, 300];
    const mine = [];
    for (const _ of sizes) mine.push(await seedChannel(A, t, [caller, author]));
    const notMine = await seedChannel(A, t, [author]);
    const channelIds = [...mine, notMine].map((c) => c.id);
    const counts = [...sizes, 1000];
    const [common, mid, rare, old] = [word(), word(), word(), word()];
    // Ten messages per creation time, across the channels; bodies by the message's number g.
    await dbQuery(
      `INSERT INTO messages (id, channel_id, seq, user_id, body, rev, created_rev, created_at)
       SELECT gen_random_uuid(), c.id, g, CASE WHEN g % 3 = 0 THEN $2::uuid ELSE $3::uuid END,
              concat_ws(' ', 'bulk', CASE WHEN g % 2 = 0 THEN $4 END, CASE WHEN g % 50 = 7 THEN $5 END,
                        CASE WHEN g % 500 = 11 THEN $6 END, CASE WHEN g < 400 AND g % 40 = 3 THEN $7 END),
              g, g, timestamptz '2026-01-01' + (g / 10) * interval '1 second'
         FROM unnest($1::uuid[], $8::int[]) AS c(id, n), generate_series(1, c.n) AS g`,
      [channelIds, caller.user.id, author.user.id, common, mid, rare, old, counts],
    );
    await dbQuery(
      `UPDATE channels c SET last_seq = x.last, last_rev = x.last
         FROM (SELECT channel_id, max(seq) AS last FROM messages WHERE channel_id = ANY($1::uuid[]) GROUP BY channel_id) x
        WHERE x.channel_id = c.id`,
      [channelIds],
    );

    const bruteForce = (text: string, from: string | null, only: string | null) =>
      dbQuery<{ id: string }>(
        `SELECT m.id FROM messages m JOIN channel_members cm ON cm.channel_id = m.channel_id AND cm.user_id = $1
          WHERE m.search_vector @@ websearch_to_tsquery(message_search_language(), $2) AND m.deleted_at IS NULL
            AND ($3::uuid IS NULL OR m.user_id = $3) AND ($4::uuid IS NULL OR m.channel_id = $4)
          ORDER BY m.created_at DESC, m.channel_id DESC, m.seq DESC`,
        [caller.user.id, text, from, only],
      );
    const queries: Array<{ text: string; from?: string; in?: string; limit: number; pages: number }> = [
      { text: common, limit: 20, pages: 3 },
      { text: common, limit: 7, pages: 2 },
      { text: mid, limit: 20, pages: 4 },
      { text: rare, limit: 7, pages: 10 },
      { text: rare, limit: 100, pages: 2 },
      { text: old, limit: 9, pages: 10 },
      { text: `${common} ${mid}`, limit: 15, pages: 3 },
      { text: mid, from: caller.user.id, limit: 20, pages: 3 },
      { text: rare, from: author.user.id, limit: 5, pages: 10 },
      { text: rare, in: mine[1].id, limit: 3, pages: 10 },
    ];
    for (const q of queries) {
      const expected = await bruteForce(q.text, q.from ?? null, q.in ?? null);
      const found: string[] = [];
      let before: string | null = null;
      let pages = 0;
      do {
        const text = [q.from && `from:${q.from}`, q.in && `in:${q.in}`, q.text].filter(Boolean).join(' ');
        const res = await search(caller, { q: text, limit: q.limit, ...(before === null ? {} : { before }) }, t.workspace.id);
        expect(res.status, res.text).to.equal(200);
        found.push(...res.body.results.map((h: Hit) => h.message.id));
        before = res.body.nextBefore;
        pages++;
      } while (before !== null && pages < q.pages);
      const label = JSON.stringify({ ...q, pages });
      expect(found, label).to.deep.equal(expected.slice(0, found.length).map((r) => r.id));
      // Every page full but the last, which ends the hits.
      expect(found.length, label).to.equal(Math.min(expected.length, q.limit * q.pages));
      if (before === null) expect(found.length, label).to.equal(expected.length);
    }
  });

  it('When a body holds HTML, then the snippet shows it escaped, and only the matches are marked up', async () => {
    const w = word();
    const short = `<b>see</b> ${w} <i>it</i> & "q" \uE000x\uE001 <mark>`;
    await say(alice, general.id, short);
    const [hit] = await hits(bob, w);
    expect(hit.message.body).to.equal(short);
    expect(hit.snippet, 'the private-use markers of a body are dropped').to.equal(`&lt;b&gt;see&lt;/b&gt; <mark>${w}</mark> &lt;i&gt;it&lt;/i&gt; &amp; &quot;q&quot; x &lt;mark&gt;`);

    const v = word();
    const long = `${'<script>alert("x")</script> <b>bold</b> & it\'s '.repeat(20)}${v} ${'<img src=x onerror=alert(1)> '.repeat(20)}`.trim();
    await say(alice, general.id, long);
    const [cut] = await hits(bob, v);
    expect(cut.snippet).to.include(`<mark>${v}</mark>`);
    expect(cut.snippet.length, 'a long body: a stretch of it').to.be.below(long.length);
    const markup = cut.snippet.replaceAll('<mark>', '').replaceAll('</mark>', '');
    expect(markup, 'no markup but the marks').not.to.match(/[<>"']/);
    const text = markup.replaceAll('&lt;', '<').replaceAll('&gt;', '>').replaceAll('&quot;', '"').replaceAll('&#39;', "'").replaceAll('&amp;', '&');
    expect(long, 'the snippet is a piece of the body').to.include(text);
  });

  it("When messages are stored, then within seconds a worker has merged their search index entries, which no send's transaction had to", async () => {
    // Without the workers' merges (SEARCH_INDEX_MERGE_MS, on by default), new entries stay in the GIN
    // index's pending list until an insert outgrows it (4 MB) and merges it inside its batch's transaction.
    await dbQuery('CREATE EXTENSION IF NOT EXISTS pgstattuple');
    const pending = async () =>
      Number((await dbQuery<{ n: string }>("SELECT pending_tuples AS n FROM pgstatginindex('messages_channel_id_user_id_search_vector')"))[0].n);
    const merged = async () => {
      let pages = 0;
      for (const url of workerUrls) pages += sample((await metricsOf(`${url}/metrics`)).text, 'worker_search_index_pages_merged_total') ?? 0;
      return pages;
    };
    const before = await merged();
    const w = word();
    await Promise.all(range(40).map((i) => say(alice, general.id, `${w} number ${i} with a few more words to index`)));
    let left = -1;
    await waitFor(async () => (left = await pending()) === 0, 10_000, () => `${left} entries still pending`, 100);
    expect(await merged(), 'pages merged by the workers').to.be.greaterThan(before);
    expect(await hits(alice, w, 100)).to.have.length(40);
  });

  it('When q has only stop words, then there are no results', async () => {
    expect(await hits(alice, 'the and of')).to.deep.equal([]);
  });

  it('When a DM has a matching message, then its members find it, with the DM as its channel, and no one else does', async () => {
    const w = word();
    const dm = await openDm(A, alice.token, team.workspace.id, [bob.user.id]);
    await say(bob, dm.id, `psst ${w}`);
    const [hit] = await hits(alice, w);
    expect(hit.channel).to.deep.include({ id: dm.id, kind: 'dm' });
    expect(await hits(carol, w)).to.deep.equal([]);
  });

  describe('refusals', () => {
    it('When q is empty, missing, only operators, too long, or has an operator without an id, then 400 VALIDATION_FAILED', async () => {
      for (const query of [
        { q: '' },
        { q: '   ' },
        {},
        { q: `from:${bob.user.id}` },
        { q: `in:${general.id} from:${bob.user.id}` },
        { q: 'x'.repeat(257) },
        { q: 'hello from:bob' },
        { q: 'hello in:' },
      ]) {
        const res = await search(alice, query);
        expectError(res, 400, 'VALIDATION_FAILED');
      }
      expect((await search(alice, { q: `${'x '.repeat(127)}y` })).status, '256 characters').to.equal(200);
    });

    it('When limit is not 1..100 or before is not a nextBefore, then 400 VALIDATION_FAILED', async () => {
      for (const extra of [{ limit: 0 }, { limit: 101 }, { limit: 'ten' }, { limit: 1.5 }, { before: 'nope' }, { before: Buffer.from('1:x').toString('base64url') }, { unknown: 1 }]) {
        expectError(await search(alice, { q: 'hello', ...extra }), 400, 'VALIDATION_FAILED');
      }
      expect((await search(alice, { q: 'hello', limit: 100 })).status).to.equal(200);
    });

    it('When the caller is not a member of the workspace, or it does not exist, then 404 NOT_FOUND', async () => {
      const outsider = await registerUser(A);
      expectError(await search(outsider, { q: 'hello' }), 404, 'NOT_FOUND');
      expectError(await search(alice, { q: 'hello' }, randomUUID()), 404, 'NOT_FOUND');
      expectError(await search(alice, { q: 'hello' }, 'not-an-id'), 404, 'NOT_FOUND');
      const theirs = await createWorkspace(A, outsider.token);
      expectError(await search(alice, { q: 'hello' }, theirs.id), 404, 'NOT_FOUND');
    });

    it('When no token comes with it, then 401 UNAUTHORIZED', async () => {
      const res = await request(B, 'GET', `/workspaces/${team.workspace.id}/search?q=hello`);
      expectError(res, 401, 'UNAUTHORIZED');
    });
  });
});
