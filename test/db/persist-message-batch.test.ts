/**
 * The worker's write path at the SQL level: persist_message_batch (migrations/*_persist_message_batch.ts)
 * called directly through `pg` on the run's database, with its own users, workspace and channels seeded
 * with plain INSERTs. What the function promises: gap-free seqs per channel, dedupe by send id and by
 * (user, clientMsgId), NOT_FOUND for outsiders, the sender's read mark moved, and a batch run again
 * answering the same and storing nothing more.
 */
import { expect } from 'chai';
import { randomUUID } from 'node:crypto';
import pg from 'pg';

interface Send {
  id: string;
  channelId: string;
  userId: string;
  body: string;
  clientMsgId: string | null;
}

interface StoredRow {
  id: string;
  channel_id: string;
  seq: number;
  user_id: string;
  body: string;
  client_msg_id: string | null;
  created_at: string;
}

interface OutcomeRow {
  send_id: string;
  outcome: 'created' | 'stored' | 'duplicate' | 'not_found' | 'forbidden';
  message: StoredRow | null;
}

describe('persist_message_batch (SQL)', function () {
  let db: pg.Pool;
  let workspaceId: string;
  let alice: string;
  let bob: string;
  /** A workspace member in no channel. */
  let carol: string;
  /** alice and bob are members of both. */
  let general: string;
  let random: string;
  let next = 0;

  async function insertUser(name: string): Promise<string> {
    const id = randomUUID();
    await db.query('INSERT INTO users (id, email, display_name, password_hash) VALUES ($1, $2, $3, $4)', [
      id,
      `${name}-${id}@example.test`,
      name,
      'not-a-hash',
    ]);
    await db.query("INSERT INTO workspace_members (workspace_id, user_id, role) VALUES ($1, $2, 'member')", [workspaceId, id]);
    return id;
  }

  async function insertChannel(members: string[]): Promise<string> {
    const id = randomUUID();
    await db.query('INSERT INTO channels (id, workspace_id, name) VALUES ($1, $2, $3)', [id, workspaceId, `ch-${id}`]);
    for (const userId of members) await db.query('INSERT INTO channel_members (channel_id, user_id) VALUES ($1, $2)', [id, userId]);
    return id;
  }

  function send(channelId: string, userId: string, clientMsgId: string | null = `c-${next}`): Send {
    next++;
    return { id: randomUUID(), channelId, userId, body: `body ${next}`, clientMsgId };
  }

  async function persist(sends: Send[]): Promise<OutcomeRow[]> {
    const { rows } = await db.query<OutcomeRow>(
      'SELECT send_id, outcome, message FROM persist_message_batch($1::uuid[], $2::uuid[], $3::uuid[], $4::text[], $5::text[])',
      [
        sends.map((s) => s.id),
        sends.map((s) => s.channelId),
        sends.map((s) => s.userId),
        sends.map((s) => s.body),
        sends.map((s) => s.clientMsgId),
      ],
    );
    return rows;
  }

  async function rowsOf(channelId: string): Promise<StoredRow[]> {
    const { rows } = await db.query<StoredRow>(
      'SELECT id, channel_id, seq::int AS seq, user_id, body, client_msg_id FROM messages WHERE channel_id = $1 ORDER BY seq',
      [channelId],
    );
    return rows;
  }

  async function lastSeq(channelId: string): Promise<number> {
    const { rows } = await db.query('SELECT last_seq::int AS n FROM channels WHERE id = $1', [channelId]);
    return rows[0].n;
  }

  async function readMark(channelId: string, userId: string): Promise<number> {
    const { rows } = await db.query('SELECT last_read_seq::int AS n FROM channel_members WHERE channel_id = $1 AND user_id = $2', [
      channelId,
      userId,
    ]);
    return rows[0].n;
  }

  async function messageCount(): Promise<number> {
    const { rows } = await db.query('SELECT count(*)::int AS n FROM messages WHERE channel_id = ANY($1::uuid[])', [[general, random]]);
    return rows[0].n;
  }

  /** Outcomes as `outcome seq` (or just the outcome when there is no message), in row order. */
  const summary = (rows: OutcomeRow[]) => rows.map((r) => (r.message ? `${r.outcome} ${r.message.seq}` : r.outcome));

  /** Each test gets fresh channels: seqs start at 1. */
  beforeEach(async function () {
    general = await insertChannel([alice, bob]);
    random = await insertChannel([alice, bob]);
  });

  before(async function () {
    db = new pg.Pool({ connectionString: process.env.DATABASE_URL, max: 2 });
    db.on('error', () => {});
    workspaceId = randomUUID();
    await db.query('INSERT INTO workspaces (id, name) VALUES ($1, $2)', [workspaceId, 'SQL tests']);
    alice = await insertUser('alice');
    bob = await insertUser('bob');
    carol = await insertUser('carol');
  });

  after(async function () {
    await db?.query('DELETE FROM workspaces WHERE id = $1', [workspaceId]).catch(() => {});
    await db?.query('DELETE FROM users WHERE id = ANY($1::uuid[])', [[alice, bob, carol].filter(Boolean)]).catch(() => {});
    await db?.end();
  });

  it('When batches follow one another in a channel, then seqs are 1, 2, 3, … with no gap across calls and last_seq follows', async function () {
    const first = [send(general, alice), send(general, bob), send(general, alice)];
    const second = [send(general, bob), send(general, bob)];
    expect(summary(await persist(first))).to.deep.equal(['created 1', 'created 2', 'created 3']);
    expect(summary(await persist(second))).to.deep.equal(['created 4', 'created 5']);
    const stored = await rowsOf(general);
    expect(stored.map((m) => m.seq)).to.deep.equal([1, 2, 3, 4, 5]);
    expect(stored.map((m) => m.id)).to.deep.equal([...first, ...second].map((s) => s.id));
    expect(stored.map((m) => m.body)).to.deep.equal([...first, ...second].map((s) => s.body));
    expect(await lastSeq(general)).to.equal(5);
  });

  it('When one batch has sends to two channels, then each channel gets its own gap-free seqs, in send order, and rows come back in send order', async function () {
    await persist([send(random, bob)]);
    const batch = [send(general, alice), send(random, alice), send(general, bob), send(random, bob), send(general, alice)];
    const rows = await persist(batch);
    expect(rows.map((r) => r.send_id)).to.deep.equal(batch.map((s) => s.id));
    expect(rows.map((r) => `${r.outcome} ${r.message?.channel_id === general ? 'general' : 'random'} ${r.message?.seq}`)).to.deep.equal([
      'created general 1',
      'created random 2',
      'created general 2',
      'created random 3',
      'created general 3',
    ]);
    expect((await rowsOf(general)).map((m) => m.seq)).to.deep.equal([1, 2, 3]);
    expect((await rowsOf(random)).map((m) => m.seq)).to.deep.equal([1, 2, 3]);
    expect([await lastSeq(general), await lastSeq(random)]).to.deep.equal([3, 3]);
  });

  it('When a created message is returned, then it is the stored row, created_at included', async function () {
    const s = send(general, alice, 'exact-row');
    const [row] = await persist([s]);
    expect(row.outcome).to.equal('created');
    // The row as clients may see it: what an edit keeps aside (the original body) and the search index's
    // vector are not in it.
    const { rows } = await db.query(
      "SELECT to_jsonb(m) - 'original_body' - 'original_mentions' - 'search_vector' AS m FROM messages m WHERE id = $1",
      [s.id],
    );
    expect(row.message).to.deep.equal(rows[0].m);
    expect(row.message).to.include({ id: s.id, channel_id: general, seq: 1, user_id: alice, body: s.body, client_msg_id: 'exact-row' });
  });

  it('When a send whose id is already stored comes again, then it answers "stored" with the stored message and stores nothing', async function () {
    const s = send(general, alice);
    const [created] = await persist([s]);
    // Even with another body and clientMsgId: the id is what identifies the send.
    const [again] = await persist([{ ...s, body: 'changed', clientMsgId: 'changed' }]);
    expect(again.outcome).to.equal('stored');
    expect(again.message).to.deep.equal(created.message);
    expect((await rowsOf(general)).map((m) => m.body)).to.deep.equal([s.body]);
    expect(await lastSeq(general)).to.equal(1);
  });

  it('When another send of the same user has the same clientMsgId, then "duplicate" with the first message, in later calls and in the same batch', async function () {
    const first = send(general, alice, 'same-key');
    const [created] = await persist([first]);
    // Another channel, another body: (user, clientMsgId) alone decides.
    const [dup] = await persist([{ ...send(random, alice), clientMsgId: 'same-key' }]);
    expect(dup.outcome).to.equal('duplicate');
    expect(dup.message).to.deep.equal(created.message);

    const inBatch = [send(general, bob, 'twice'), send(general, bob, 'twice'), send(general, bob, null), send(general, bob, null)];
    expect(summary(await persist(inBatch))).to.deep.equal(['created 2', 'duplicate 2', 'created 3', 'created 4']);
    expect((await rowsOf(general)).map((m) => m.id)).to.deep.equal([first.id, inBatch[0].id, inBatch[2].id, inBatch[3].id]);
    expect(await rowsOf(random)).to.deep.equal([]);
  });

  it('When two users use the same clientMsgId, then both messages are stored', async function () {
    expect(summary(await persist([send(general, alice, 'shared-key'), send(general, bob, 'shared-key')]))).to.deep.equal([
      'created 1',
      'created 2',
    ]);
  });

  it('When a sender is not a member or the channel does not exist, then "not_found" for that send only and the others keep gap-free seqs', async function () {
    const batch = [send(general, alice), send(general, carol), send(randomUUID(), alice), send(general, bob)];
    const rows = await persist(batch);
    expect(summary(rows)).to.deep.equal(['created 1', 'not_found', 'not_found', 'created 2']);
    expect(rows.map((r) => r.send_id)).to.deep.equal(batch.map((s) => s.id));
    expect((await rowsOf(general)).map((m) => m.id)).to.deep.equal([batch[0].id, batch[3].id]);
    expect(await lastSeq(general)).to.equal(2);
    // A refused clientMsgId is not taken: the same key from a member is stored later.
    expect(summary(await persist([{ ...send(general, alice), clientMsgId: batch[2].clientMsgId }]))).to.deep.equal(['created 3']);
  });

  it('When a user removed from a channel resends an old clientMsgId into it, then "not_found", not the stored message', async function () {
    const first = send(general, bob, 'before-removal');
    expect(summary(await persist([first]))).to.deep.equal(['created 1']);
    await db.query('DELETE FROM channel_members WHERE channel_id = $1 AND user_id = $2', [general, bob]);
    expect(summary(await persist([{ ...send(general, bob), clientMsgId: 'before-removal' }]))).to.deep.equal(['not_found']);
    // Nor through another channel the user is still in: the stored message is in one they left.
    expect(summary(await persist([{ ...send(random, bob), clientMsgId: 'before-removal' }]))).to.deep.equal(['not_found']);
    // The same batch run again after a crash still answers what it stored.
    const [again] = await persist([first]);
    expect(again.outcome).to.equal('stored');
    expect(await rowsOf(general)).to.have.length(1);
  });

  it('When the channel is archived, then its members\' sends are "forbidden", outsiders\' stay "not_found", a stored send "stored", and other channels go on', async function () {
    const first = send(general, alice, 'before-archive');
    expect(summary(await persist([first]))).to.deep.equal(['created 1']);
    await db.query('UPDATE channels SET archived = true WHERE id = $1', [general]);
    const batch = [send(general, bob), send(general, carol), send(random, alice), { ...send(general, alice), clientMsgId: 'before-archive' }, first];
    const rows = await persist(batch);
    // Order of the checks: own id stored first, then membership, then archived, then deduplication.
    expect(summary(rows)).to.deep.equal(['forbidden', 'not_found', 'created 1', 'forbidden', 'stored 1']);
    expect(rows.map((r) => r.send_id)).to.deep.equal(batch.map((s) => s.id));
    expect(await lastSeq(general)).to.equal(1);
    expect((await rowsOf(general)).map((m) => m.id)).to.deep.equal([first.id]);
    // Unarchived, the next send continues the seqs.
    await db.query('UPDATE channels SET archived = false WHERE id = $1', [general]);
    expect(summary(await persist([send(general, bob)]))).to.deep.equal(['created 2']);
  });

  it('When a batch and an archive race, then the archive waits for the batch (the channel row is locked) and later batches are "forbidden"', async function () {
    const client = await db.connect();
    const other = await db.connect();
    try {
      await client.query('BEGIN');
      await client.query(
        'SELECT send_id, outcome FROM persist_message_batch($1::uuid[], $2::uuid[], $3::uuid[], $4::text[], $5::text[])',
        [[randomUUID()], [general], [alice], ['in flight'], [null]],
      );
      // The archive blocks on the batch's lock until it commits.
      let archivedAt = 0;
      const archiving = other.query('UPDATE channels SET archived = true WHERE id = $1', [general]).then(() => (archivedAt = Date.now()));
      await new Promise((resolve) => setTimeout(resolve, 200));
      expect(archivedAt).to.equal(0);
      await client.query('COMMIT');
      await archiving;
      expect(archivedAt).to.be.greaterThan(0);
    } finally {
      client.release();
      other.release();
    }
    expect(summary(await persist([send(general, alice)]))).to.deep.equal(['forbidden']);
    expect((await rowsOf(general)).map((m) => m.body)).to.deep.equal(['in flight']);
  });

  it("When a member sends, then the sender's read mark moves to its last message and the other members' marks stay", async function () {
    await persist([send(general, alice), send(general, bob), send(general, alice), send(general, bob)]);
    expect(await readMark(general, alice)).to.equal(3);
    expect(await readMark(general, bob)).to.equal(4);
    await persist([send(general, alice)]);
    expect([await readMark(general, alice), await readMark(general, bob)]).to.deep.equal([5, 4]);
    // Only forwards: a mark already beyond the new message stays.
    await db.query('UPDATE channel_members SET last_read_seq = 9 WHERE channel_id = $1 AND user_id = $2', [general, bob]);
    await persist([send(general, bob)]);
    expect(await readMark(general, bob)).to.equal(9);
    // A duplicate moves nothing.
    await db.query('UPDATE channel_members SET last_read_seq = 2 WHERE channel_id = $1 AND user_id = $2', [general, alice]);
    expect(summary(await persist([{ ...send(general, alice), clientMsgId: 'read-dup' }]))).to.deep.equal(['created 7']);
    await db.query('UPDATE channel_members SET last_read_seq = 2 WHERE channel_id = $1 AND user_id = $2', [general, alice]);
    expect(summary(await persist([{ ...send(general, alice), clientMsgId: 'read-dup' }]))).to.deep.equal(['duplicate 7']);
    expect(await readMark(general, alice)).to.equal(2);
  });

  it('When the same batch is run again, then it answers the same messages and outcomes, and stores nothing more', async function () {
    await persist([send(general, bob, 'earlier')]);
    const batch = [
      send(general, alice),
      send(random, bob),
      { ...send(general, bob), clientMsgId: 'earlier' },
      send(general, carol),
      send(general, alice),
    ];
    const first = await persist(batch);
    expect(summary(first)).to.deep.equal(['created 2', 'created 1', 'duplicate 1', 'not_found', 'created 3']);
    const before = { general: await rowsOf(general), random: await rowsOf(random), count: await messageCount() };
    const marks = [await readMark(general, alice), await readMark(random, bob)];

    for (let run = 0; run < 2; run++) {
      const again = await persist(batch);
      // 'created' becomes 'stored' (the worker answers both alike); every message is the same row.
      expect(again.map((r) => r.send_id)).to.deep.equal(batch.map((s) => s.id));
      expect(again.map((r) => r.outcome)).to.deep.equal(['stored', 'stored', 'duplicate', 'not_found', 'stored']);
      expect(again.map((r) => r.message)).to.deep.equal(first.map((r) => r.message));
    }
    expect({ general: await rowsOf(general), random: await rowsOf(random), count: await messageCount() }).to.deep.equal(before);
    expect([await lastSeq(general), await lastSeq(random)]).to.deep.equal([3, 1]);
    expect([await readMark(general, alice), await readMark(random, bob)]).to.deep.equal(marks);
  });

  it('When a batch has a body with U+0000, then the whole call fails with a data exception (class 22) and nothing of it is stored', async function () {
    // Why a batch is persisted one send at a time when it fails: one bad send takes the statement down.
    const batch = [send(general, alice), { ...send(general, bob), body: 'nul \u0000 inside' }, send(random, alice)];
    let code: string | undefined;
    try {
      await persist(batch);
    } catch (err) {
      code = (err as { code?: string }).code;
    }
    expect(code).to.match(/^22/);
    expect(await messageCount()).to.equal(0);
    expect([await lastSeq(general), await lastSeq(random)]).to.deep.equal([0, 0]);
    // The same sends without the bad one are stored as if it had never been there.
    expect(summary(await persist([batch[0], batch[2]]))).to.deep.equal(['created 1', 'created 1']);
  });

  it('When a body has a lone surrogate, then PostgreSQL stores U+FFFD instead, silently: only validation can refuse it', async function () {
    const s = { ...send(general, alice), body: 'half \uD83D of an emoji' };
    const [row] = await persist([s]);
    expect(row.outcome).to.equal('created');
    expect(row.message!.body).to.not.equal(s.body);
    expect(row.message!.body).to.equal('half \uFFFD of an emoji');
  });
});
