/**
 * What a send or a change costs must not grow with its channel. PL/pgSQL keeps a statement's plan for the
 * session, made from the first calls: a worker that started while a channel was small once kept, for each
 * change, a plan that walked the channel's (channel_id, seq) index to find the message, so every edit,
 * delete and reaction cost more as the channel grew (docs/PERFORMANCE.md, 2026-12-02 18:44). Messages are
 * looked up by their id alone since. Counted, not timed: PostgreSQL's own count of the index entries each
 * index handed out, in a database of this test's own (created, migrated, dropped), through the worker's
 * call on one session, as a worker makes it.
 */
import { expect } from 'chai';
import { randomUUID } from 'node:crypto';
import knexFactory, { type Knex } from 'knex';
import { knexConfig } from '../../shared/db.js';
import type { BatchOutcome, ChangeRequest } from '../../shared/queues.js';
import { persistMessages } from '../../worker/actions/persistMessages.js';
import { OwnDatabase } from '../ops/helpers.js';

describe('persist_channel_changes on a channel that grew', function () {
  this.timeout(120_000);
  let own: OwnDatabase;
  let knex: Knex;
  const workspaceId = randomUUID();
  const alice = randomUUID();
  const bob = randomUUID();
  const channelId = randomUUID();
  let n = 0;

  before(async () => {
    own = await OwnDatabase.create('lookups');
    // One session, as a worker's connection: its plans, and its counts below.
    knex = knexFactory(knexConfig({ ...own.config, db: { ...own.config.db, poolMax: 1 } }));
    // No ANALYZE behind the test's back: new statistics would make PostgreSQL plan again, hiding a kept plan.
    await knex.raw('ALTER TABLE messages SET (autovacuum_enabled = false)');
    await knex.raw('INSERT INTO workspaces (id, name) VALUES (?, ?)', [workspaceId, 'lookups']);
    for (const userId of [alice, bob]) {
      await knex.raw('INSERT INTO users (id, email, display_name, password_hash) VALUES (?, ?, ?, ?)', [userId, `${userId}@example.test`, 'u', 'x']);
      await knex.raw("INSERT INTO workspace_members (workspace_id, user_id, role) VALUES (?, ?, 'member')", [workspaceId, userId]);
    }
    await knex.raw('INSERT INTO channels (id, workspace_id, name) VALUES (?, ?, ?)', [channelId, workspaceId, 'grows']);
    for (const userId of [alice, bob]) await knex.raw('INSERT INTO channel_members (channel_id, user_id) VALUES (?, ?)', [channelId, userId]);
  });

  after(async () => {
    await knex?.destroy();
    await own?.drop();
  });

  const key = () => `lookups-${n++}`;

  /** A send and a reply to it, then an edit, a reaction added and removed, and a delete of earlier ones. */
  async function everyKind(): Promise<BatchOutcome[]> {
    const parent = { kind: 'send' as const, id: randomUUID(), channelId, userId: alice, body: `parent ${n}`, clientMsgId: key() };
    const first: ChangeRequest[] = [parent, { kind: 'send', id: randomUUID(), channelId, userId: bob, body: `reply ${n}`, clientMsgId: key(), parentId: parent.id }];
    const target = { channelId, userId: alice, messageId: parent.id };
    const second: ChangeRequest[] = [
      { kind: 'edit', id: randomUUID(), ...target, body: `edited ${n}`, clientChangeId: key() },
      { kind: 'reaction:add', id: randomUUID(), ...target, userId: bob, emoji: 'eyes', clientChangeId: key() },
      { kind: 'reaction:remove', id: randomUUID(), ...target, userId: bob, emoji: 'eyes', clientChangeId: key() },
      { kind: 'delete', id: randomUUID(), ...target, clientChangeId: key() },
    ];
    const outcomes: BatchOutcome[] = [];
    for (const batch of [first, second]) {
      const { outcomes: byId } = await persistMessages(knex, batch);
      outcomes.push(...batch.map((c) => byId[c.id]));
    }
    return outcomes;
  }

  /** Index entries handed out so far by each of messages' indexes, as this session last reported them. */
  async function indexReads(): Promise<Record<string, number>> {
    // The session that did the work reports its counts now, and this read is not cached.
    await knex.raw('SELECT pg_stat_force_next_flush()');
    await knex.raw('SELECT pg_stat_clear_snapshot()');
    const { rows } = await knex.raw<{ rows: Array<{ name: string; read: string }> }>(
      "SELECT indexrelname AS name, idx_tup_read AS read FROM pg_stat_user_indexes WHERE relname = 'messages'",
    );
    return Object.fromEntries(rows.map((r) => [r.name, Number(r.read)]));
  }

  it('When a worker made its plans while the channel was small and the channel then grew, then its sends and changes still read no entry of the channel index', async () => {
    // Past PL/pgSQL's first five calls of each statement, after which it may keep one plan for the session.
    for (let i = 0; i < 8; i++) for (const outcome of await everyKind()) expect(outcome.ok, JSON.stringify(outcome)).to.equal(true);
    await knex.raw(
      `INSERT INTO messages (id, channel_id, seq, user_id, body, rev, created_rev)
       SELECT gen_random_uuid(), ?, c.last_seq + g, ?, 'earlier ' || g, c.last_rev + g, c.last_rev + g
         FROM channels c, generate_series(1, 5000) g WHERE c.id = ?`,
      [channelId, alice, channelId],
    );
    await knex.raw('UPDATE channels SET last_seq = last_seq + 5000, last_rev = last_rev + 5000 WHERE id = ?', [channelId]);

    const before = await indexReads();
    for (let i = 0; i < 5; i++) for (const outcome of await everyKind()) expect(outcome.ok, JSON.stringify(outcome)).to.equal(true);
    const after = await indexReads();

    // The work was done, by primary key; nothing of the channel's 5,000 older messages was walked.
    expect(after.messages_pkey - before.messages_pkey).to.be.greaterThan(0);
    expect(after.messages_channel_id_seq_unique - before.messages_channel_id_seq_unique).to.equal(0);
  });
});
