/**
 * A batch runs again when its worker died, or lost its lock, after the reply went out and before BullMQ
 * completed the job. Whatever its first run answered, a later run of the same changes answers again,
 * even when the facts changed in between: a refusal is as final as a stored change (the client was told
 * either). Through the worker's own call (persistMessages), in a database of this test's own (created,
 * migrated, dropped).
 */
import { expect } from 'chai';
import { randomUUID } from 'node:crypto';
import knexFactory, { type Knex } from 'knex';
import { knexConfig } from '../../shared/db.js';
import type { ChangeRequest } from '../../shared/queues.js';
import { persistMessages } from '../../worker/actions/persistMessages.js';
import { OwnDatabase } from '../ops/helpers.js';
import { pruneRefusals } from '../../worker/prune.js';
import { startCluster } from '../../scripts/cluster.js';
import { clusterRedisPrefix } from '../pipeline/fixtures.js';
import { waitFor } from '../support/sockets.js';

describe('persist_channel_changes run again', function () {
  this.timeout(120_000);
  let own: OwnDatabase;
  let knex: Knex;
  const workspaceId = randomUUID();
  const owner = randomUUID();
  const member = randomUUID();
  const outsider = randomUUID();
  let n = 0;

  before(async () => {
    own = await OwnDatabase.create('rerun');
    knex = knexFactory(knexConfig({ ...own.config, db: { ...own.config.db, poolMax: 2 } }));
    await knex.raw('INSERT INTO workspaces (id, name) VALUES (?, ?)', [workspaceId, 'rerun']);
    for (const [userId, role] of [
      [owner, 'owner'],
      [member, 'member'],
      [outsider, 'member'],
    ]) {
      await knex.raw('INSERT INTO users (id, email, display_name, password_hash) VALUES (?, ?, ?, ?)', [userId, `${userId}@example.test`, 'u', 'x']);
      await knex.raw('INSERT INTO workspace_members (workspace_id, user_id, role) VALUES (?, ?, ?)', [workspaceId, userId, role]);
    }
  });

  after(async () => {
    await knex?.destroy();
    await own?.drop();
  });

  async function channel(members: string[]): Promise<string> {
    const id = randomUUID();
    await knex.raw('INSERT INTO channels (id, workspace_id, name, created_by) VALUES (?, ?, ?, ?)', [id, workspaceId, `c${n++}`, owner]);
    for (const userId of members) await knex.raw('INSERT INTO channel_members (channel_id, user_id) VALUES (?, ?)', [id, userId]);
    return id;
  }

  const send = (channelId: string, userId: string, over: Partial<ChangeRequest> = {}): ChangeRequest =>
    ({ kind: 'send', id: randomUUID(), channelId, userId, body: `body ${n++}`, clientMsgId: `c-${n++}`, ...over }) as ChangeRequest;

  async function run(batch: ChangeRequest[]) {
    const { outcomes, publish } = await persistMessages(knex, batch);
    return { outcomes: batch.map((c) => outcomes[c.id]), published: publish.length };
  }

  async function lastRev(channelId: string): Promise<number> {
    const { rows } = await knex.raw<{ rows: Array<{ rev: string }> }>('SELECT last_rev AS rev FROM channels WHERE id = ?', [channelId]);
    return Number(rows[0].rev);
  }

  it('When a send answered NOT_FOUND runs again after its sender was added to the channel, then it is NOT_FOUND again and nothing is stored or published, while a new send of the same clientMsgId is stored', async () => {
    const channelId = await channel([owner]);
    const refused = send(channelId, outsider);
    const stored = send(channelId, owner);
    const first = await run([refused, stored]);
    expect(first.outcomes.map((o) => (o.ok ? 'ok' : o.error.code))).to.deep.equal(['NOT_FOUND', 'ok']);

    await knex.raw('INSERT INTO channel_members (channel_id, user_id) VALUES (?, ?)', [channelId, outsider]);
    const again = await run([refused, stored]);
    expect(again.outcomes, 'each answered as the first run answered it').to.deep.equal(first.outcomes);
    expect(again.published, 'only the stored one published again').to.equal(1);
    expect(await lastRev(channelId), 'nothing stored').to.equal(1);

    // The client's own retry is a new send (a new id): decided on the facts of now.
    const retry = await run([{ ...refused, id: randomUUID() }]);
    expect(retry.outcomes[0].ok).to.equal(true);
    expect(await lastRev(channelId)).to.equal(2);
  });

  it('When changes answered FORBIDDEN in an archived channel run again after it was unarchived, then they are FORBIDDEN again and the channel is unchanged', async () => {
    const channelId = await channel([owner, member]);
    const { outcomes } = await run([send(channelId, member)]);
    const messageId = (outcomes[0] as { message?: { id: string } }).message?.id ?? (await knex('messages').where({ channel_id: channelId }).first()).id;
    await knex.raw('UPDATE channels SET archived = true WHERE id = ?', [channelId]);
    const target = { channelId, userId: member, messageId, clientChangeId: null };
    const batch: ChangeRequest[] = [
      send(channelId, member),
      { kind: 'edit', id: randomUUID(), ...target, body: 'edited while archived' },
      { kind: 'reaction:add', id: randomUUID(), ...target, emoji: 'eyes' },
    ];
    const first = await run(batch);
    expect(first.outcomes.map((o) => (o.ok ? 'ok' : o.error.code))).to.deep.equal(['FORBIDDEN', 'FORBIDDEN', 'FORBIDDEN']);

    await knex.raw('UPDATE channels SET archived = false WHERE id = ?', [channelId]);
    const again = await run(batch);
    expect(again.outcomes).to.deep.equal(first.outcomes);
    expect(again.published).to.equal(0);
    expect(await lastRev(channelId)).to.equal(1);
  });

  it("When a delete of another's message refused by policy runs again after its caller was made an admin, then it is refused again and the message stays", async () => {
    const channelId = await channel([owner, member]);
    const { outcomes } = await run([send(channelId, owner)]);
    const messageId = (outcomes[0] as { message?: { id: string } }).message?.id ?? (await knex('messages').where({ channel_id: channelId }).first()).id;
    const remove: ChangeRequest = { kind: 'delete', id: randomUUID(), channelId, userId: member, messageId, clientChangeId: null };
    const first = await run([remove]);
    expect(first.outcomes[0].ok).to.equal(false);

    await knex.raw("UPDATE workspace_members SET role = 'admin' WHERE workspace_id = ? AND user_id = ?", [workspaceId, member]);
    try {
      const again = await run([remove]);
      expect(again.outcomes).to.deep.equal(first.outcomes);
      const row = await knex('messages').where({ id: messageId }).first();
      expect(row.deleted_at).to.equal(null);
      // A new delete (a new change id) by the admin is decided now, and applied.
      expect((await run([{ ...remove, id: randomUUID() }])).outcomes[0].ok).to.equal(true);
    } finally {
      await knex.raw("UPDATE workspace_members SET role = 'member' WHERE workspace_id = ? AND user_id = ?", [workspaceId, member]);
    }
  });

  it('When a reply whose parent did not exist yet runs again after the parent was stored, then it is refused again (VALIDATION_FAILED)', async () => {
    const channelId = await channel([owner]);
    const parent = send(channelId, owner);
    const reply = send(channelId, owner, { parentId: parent.id });
    const first = await run([reply]);
    expect(first.outcomes[0].ok ? 'ok' : first.outcomes[0].error.code).to.equal('VALIDATION_FAILED');
    expect((await run([parent])).outcomes[0].ok).to.equal(true);
    const again = await run([reply]);
    expect(again.outcomes).to.deep.equal(first.outcomes);
    expect(await lastRev(channelId)).to.equal(1);
  });

  it('When reaction changes answered as no-ops run again after the user reversed them, then they are no-ops again: the reactions the user has now stay and nothing is published', async () => {
    const channelId = await channel([owner, member]);
    await run([send(channelId, member)]);
    const messageId = (await knex('messages').where({ channel_id: channelId }).first()).id;
    const target = { channelId, userId: member, messageId, clientChangeId: null };
    const reaction = (kind: 'reaction:add' | 'reaction:remove', emoji: string) => ({ kind, id: randomUUID(), ...target, emoji }) as ChangeRequest;
    await run([reaction('reaction:add', 'tada')]);
    // A removal of a reaction that is not there, and an addition of one that is: both answered ok, no event.
    const noOps = [reaction('reaction:remove', 'eyes'), reaction('reaction:add', 'tada')];
    const first = await run(noOps);
    expect(first.outcomes.map((o) => o.ok)).to.deep.equal([true, true]);
    expect(first.published).to.equal(0);
    const revBefore = await lastRev(channelId);

    // The user then adds 👀 and removes 🎉 (their own later changes), and the first batch runs again.
    await run([reaction('reaction:add', 'eyes'), reaction('reaction:remove', 'tada')]);
    const revAfter = await lastRev(channelId);
    expect(revAfter).to.equal(revBefore + 2);
    const again = await run(noOps);
    expect(again.outcomes.map((o) => o.ok), 'answered ok again').to.deep.equal([true, true]);
    expect(again.published, 'nothing published').to.equal(0);
    expect(await lastRev(channelId), 'nothing changed').to.equal(revAfter);
    const reactions = await knex('message_reactions').where({ message_id: messageId }).select('emoji');
    expect(reactions.map((r: { emoji: string }) => r.emoji), 'the reactions the user has now').to.deep.equal(['eyes']);
    // The answer carries the message as it is now.
    const now = again.outcomes[0] as { ok: true; message: { id: string; rev: number; reactions: Array<{ emoji: string }> } };
    expect(now.message.id).to.equal(messageId);
    expect(now.message.rev).to.equal(revAfter);
    expect(now.message.reactions.map((r) => r.emoji)).to.deep.equal(['eyes']);
  });

  /** Refused sends of `outsider` in a channel without them, their refusals aged by `hours`. */
  async function refusedAged(count: number, hours: number): Promise<ChangeRequest[]> {
    const channelId = await channel([owner]);
    const batch = Array.from({ length: count }, () => send(channelId, outsider));
    expect((await run(batch)).outcomes.every((o) => !o.ok)).to.equal(true);
    await knex.raw(`UPDATE change_refusals SET created_at = now() - make_interval(hours => ?) WHERE change_id = ANY(?::uuid[])`, [
      hours,
      batch.map((c) => c.id),
    ]);
    return batch;
  }

  const kept = async (batch: ChangeRequest[]) =>
    Number((await knex.raw('SELECT count(*) AS n FROM change_refusals WHERE change_id = ANY(?::uuid[])', [batch.map((c) => c.id)])).rows[0].n);

  it('When refusals are older than the hours kept, then the prune deletes them a chunk at a time and keeps the younger ones; a batch run again after that is decided afresh', async () => {
    const old = await refusedAged(7, 25);
    const young = await refusedAged(2, 23);
    expect(await pruneRefusals(knex, 24, 3)(), 'deleted, over three chunks').to.be.at.least(7);
    expect([await kept(old), await kept(young)]).to.deep.equal([0, 2]);
    // Past the time a batch can wait to be run again: its sends are decided on the facts of then.
    await knex.raw('INSERT INTO channel_members (channel_id, user_id) VALUES (?, ?)', [old[0].channelId, outsider]);
    expect((await run(old)).outcomes.every((o) => o.ok)).to.equal(true);
  });

  it('When a worker runs with CHANGE_REFUSALS_PRUNE_MS, then it deletes refusals older than CHANGE_REFUSALS_KEEP_HOURS by itself and counts them', async function () {
    const old = await refusedAged(3, 2);
    const young = await refusedAged(1, 0);
    // The default runs every 10 minutes; 200 ms so that the test sees a run. One hour kept: the least there is.
    const cluster = await startCluster({
      servers: 1,
      workers: 1,
      env: { DATABASE_URL: own.url, REDIS_PREFIX: clusterRedisPrefix('refusal-prune'), CHANGE_REFUSALS_PRUNE_MS: '200', CHANGE_REFUSALS_KEEP_HOURS: '1' },
    });
    try {
      await waitFor(async () => (await kept(old)) === 0, 10_000, () => 'old refusals still there');
      expect(await kept(young)).to.equal(1);
      const metrics = await (await fetch(`${cluster.workers[0].url}/metrics`)).text();
      expect(Number(/^worker_change_refusals_pruned_total (\d+)/m.exec(metrics)?.[1])).to.be.at.least(3);
    } finally {
      await cluster.stop();
    }
  });
});
