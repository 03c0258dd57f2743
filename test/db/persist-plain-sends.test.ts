/**
 * Plain sends (each certain to be created) are stored a run at a time, one statement for the messages of
 * plain sends (migrations/*_plain_sends_at_once.ts), written before the next op that may read them
 * (*_runs_past_changes.ts: a change of another message is applied in its turn and the run goes on past
 * it); everything else goes through the function's loop, one op at a time. Both must answer and store
 * alike. Two databases of this test's own (created, migrated, dropped) differ only in that: one has the
 * function as migrated, the other the loop alone (the first migration's down()). Random batches of sends,
 * plain and not (an outsider, an archived or unknown channel, a reused id or clientMsgId, a reply, a batch
 * run again), with edits, deletes and reactions between them, go to both through the worker's call; their
 * answers, their events and every row they leave must be the same.
 */
import { expect } from 'chai';
import fc from 'fast-check';
import knexFactory, { type Knex } from 'knex';
import { knexConfig } from '../../shared/db.js';
import type { ChangeRequest } from '../../shared/queues.js';
import { persistMessages } from '../../worker/actions/persistMessages.js';
import * as plainSendsAtOnce from '../../migrations/20261204000000_plain_sends_at_once.js';
import { OwnDatabase } from '../ops/helpers.js';
import { endOnFailure, propertyRuns, propertySeed } from '../support/properties.js';

/** Ids both databases share: the n-th of a kind. */
const uuid = (kind: number, n: number) => `00000000-0000-4000-8${kind}00-${n.toString(16).padStart(12, '0')}`;
const WORKSPACE = uuid(0, 1);
const [ALICE, BOB, CAROL] = [1, 2, 3].map((n) => uuid(1, n));
/** Alice and Bob are in both open channels; Carol only in the second. The third is archived. */
const [GENERAL, SECOND, ARCHIVED, UNKNOWN] = [1, 2, 3, 4].map((n) => uuid(2, n));

interface Side {
  own: OwnDatabase;
  knex: Knex;
}

/** One send as the generator draws it; turned into a ChangeRequest against what the case sent before. */
interface DrawnSend {
  sender: number;
  channel: number;
  /** A new id, or the id of an earlier send of this case (a batch run again, a client's duplicate job). */
  reuseId: number | null;
  /** No clientMsgId, a new one, or the key of an earlier send of this case. */
  key: 'none' | 'new' | number;
  mention: boolean;
  /** Reply to an earlier send of this case. */
  parent: number | null;
  /** A body PostgreSQL refuses (U+0000): the batch fails and is stored one send at a time. */
  unstorable: boolean;
}

describe('persist_channel_changes: plain sends a run at a time', function () {
  this.timeout(180_000);
  let fast: Side;
  let loop: Side;
  let n = 0;

  async function side(name: string): Promise<Side> {
    const own = await OwnDatabase.create(name);
    const knex = knexFactory(knexConfig({ ...own.config, db: { ...own.config.db, poolMax: 1 } }));
    await knex.raw('INSERT INTO workspaces (id, name) VALUES (?, ?)', [WORKSPACE, 'plain sends']);
    for (const userId of [ALICE, BOB, CAROL]) {
      await knex.raw('INSERT INTO users (id, email, display_name, password_hash) VALUES (?, ?, ?, ?)', [userId, `${userId}@example.test`, 'u', 'x']);
      await knex.raw("INSERT INTO workspace_members (workspace_id, user_id, role) VALUES (?, ?, 'member')", [WORKSPACE, userId]);
    }
    for (const [channelId, members, archived] of [
      [GENERAL, [ALICE, BOB], false],
      [SECOND, [ALICE, BOB, CAROL], false],
      [ARCHIVED, [ALICE, BOB], true],
    ] as const) {
      await knex.raw('INSERT INTO channels (id, workspace_id, name, archived) VALUES (?, ?, ?, ?)', [channelId, WORKSPACE, channelId.slice(-4), archived]);
      for (const userId of members) await knex.raw('INSERT INTO channel_members (channel_id, user_id) VALUES (?, ?)', [channelId, userId]);
    }
    return { own, knex };
  }

  before(async () => {
    fast = await side('plain_fast');
    loop = await side('plain_loop');
    await plainSendsAtOnce.down(loop.knex);
  });

  after(async () => {
    for (const s of [fast, loop]) {
      await s?.knex.destroy();
      await s?.own.drop();
    }
  });

  /** What both sides must agree on: everything but the clock's readings. */
  const comparable = (value: unknown) =>
    JSON.parse(JSON.stringify(value, (key, v) => (/(At|_at)$/.test(key) && v !== null ? 'time' : v)));

  async function persist(s: Side, batch: ChangeRequest[]) {
    const { outcomes, publish } = await persistMessages(s.knex, batch);
    return comparable({ outcomes: batch.map((c) => outcomes[c.id]), publish });
  }

  async function rows(s: Side) {
    const q = async (sql: string) => comparable((await s.knex.raw(sql)).rows);
    return {
      messages: await q(`SELECT id, channel_id, seq, rev, created_rev, user_id, body, client_msg_id, parent_id, mentions,
                                reply_count, last_reply_at, created_at FROM messages ORDER BY channel_id, seq`),
      events: await q('SELECT channel_id, rev, kind, message_id, change_id, user_id, seq, snapshot FROM channel_events ORDER BY channel_id, rev'),
      channels: await q('SELECT id, last_seq, last_rev FROM channels ORDER BY id'),
      readMarks: await q('SELECT channel_id, user_id, last_read_seq FROM channel_members ORDER BY channel_id, user_id'),
      refusals: await q('SELECT change_id, outcome, refusal FROM change_refusals ORDER BY change_id'),
    };
  }

  const drawnSend = (plain: boolean): fc.Arbitrary<DrawnSend> =>
    plain
      ? fc.record({
          sender: fc.constantFrom(0, 1),
          channel: fc.constantFrom(0, 1),
          reuseId: fc.constant(null),
          key: fc.constantFrom<'none' | 'new'>('none', 'new', 'new'),
          mention: fc.boolean(),
          parent: fc.constant(null),
          unstorable: fc.constant(false),
        })
      : // A plain send with one thing that makes it not plain.
        fc
          .tuple(drawnSend(true), fc.constantFrom('outsider', 'archived', 'unknown', 'id', 'key', 'reply', 'unstorable'), fc.nat())
          .map(([d, defect, i]) => ({
            ...d,
            sender: defect === 'outsider' ? 2 : d.sender,
            channel: defect === 'outsider' ? 0 : defect === 'archived' ? 2 : defect === 'unknown' ? 3 : d.channel,
            reuseId: defect === 'id' ? i : null,
            key: defect === 'key' ? i : d.key,
            parent: defect === 'reply' ? i : null,
            unstorable: defect === 'unstorable',
          }));

  /** An edit, a delete or a reaction of an earlier send of the case (maybe one of the same batch). */
  interface DrawnChange {
    change: 'edit' | 'delete' | 'reaction:add' | 'reaction:remove';
    by: number;
    target: number;
    emoji: string;
    key: 'none' | 'new' | number;
  }
  const drawnChange: fc.Arbitrary<DrawnChange> = fc.record({
    change: fc.constantFrom<DrawnChange['change']>('edit', 'delete', 'reaction:add', 'reaction:remove'),
    by: fc.integer({ min: 0, max: 2 }),
    target: fc.nat(),
    emoji: fc.constantFrom('eyes', '+1'),
    key: fc.oneof(fc.constantFrom<'none' | 'new'>('none', 'new'), fc.nat()),
  });
  type Drawn = DrawnSend | DrawnChange;

  /** A case: batches of plain sends, of any sends, of sends and changes, or a run again of an earlier batch. */
  const scenario = fc.array(
    fc.oneof(
      { weight: 3, arbitrary: fc.array<Drawn>(drawnSend(true), { minLength: 1, maxLength: 8 }) },
      { weight: 2, arbitrary: fc.array<Drawn>(drawnSend(false), { minLength: 1, maxLength: 8 }) },
      { weight: 3, arbitrary: fc.array<Drawn>(fc.oneof(drawnSend(true), drawnSend(true), drawnSend(false), drawnChange), { minLength: 1, maxLength: 10 }) },
      { weight: 1, arbitrary: fc.nat().map((again) => ({ again })) },
    ),
    { minLength: 1, maxLength: 5 },
  );

  it('When random batches of sends, plain or not, go to the function as migrated and to its loop alone, then both answer, publish and store the same', async () => {
    const senders = [ALICE, BOB, CAROL];
    const channels = [GENERAL, SECOND, ARCHIVED, UNKNOWN];
    const runs = propertyRuns(60);
    let plainBatches = 0;
    let mixedBatches = 0;
    let appliedChanges = 0;
    let runsPastChanges = 0;
    await fc.assert(
      fc.asyncProperty(scenario, async (steps) => {
        const sent: ChangeRequest[] = [];
        const batches: ChangeRequest[][] = [];
        for (const step of steps) {
          let batch: ChangeRequest[];
          if ('again' in step) {
            if (batches.length === 0) continue;
            batch = batches[step.again % batches.length];
          } else {
            const changeKeys: Array<{ userId: string; key: string }> = [];
            const thisBatch: ChangeRequest[] = [];
            batch = step.map((d) => {
              // An earlier send of this batch for odd numbers (when there is one), of the case for even ones
              // (for a change's target: of the case before this batch, when there is one).
              const earlier = (i: number | null, before = sent) => {
                const pool = i !== null && i % 2 === 1 && thisBatch.length > 0 ? thisBatch : before;
                return i === null || pool.length === 0 ? undefined : pool[Math.floor(i / 2) % pool.length];
              };
              if ('change' in d) {
                const before = sent.slice(0, sent.length - thisBatch.length);
                const target = earlier(d.target, before.length > 0 ? before : sent);
                const reused = typeof d.key === 'number' && changeKeys.length > 0 ? changeKeys[d.key % changeKeys.length] : undefined;
                const userId = reused?.userId ?? senders[d.by];
                const clientChangeId = d.key === 'none' ? null : (reused?.key ?? `change-${n++}`);
                if (clientChangeId !== null && !reused) changeKeys.push({ userId, key: clientChangeId });
                const base = { id: uuid(4, n++), channelId: target?.channelId ?? GENERAL, userId, messageId: target?.id ?? uuid(3, 999_999), clientChangeId };
                if (d.change === 'edit') return { ...base, kind: 'edit', body: `edited ${n++}` } as ChangeRequest;
                if (d.change === 'delete') return { ...base, kind: 'delete' } as ChangeRequest;
                return { ...base, kind: d.change, emoji: d.emoji } as ChangeRequest;
              }
              const keyFrom = typeof d.key === 'number' ? earlier(d.key) : undefined;
              const userId = keyFrom?.userId ?? senders[d.sender];
              const send = {
                kind: 'send',
                id: earlier(d.reuseId)?.id ?? uuid(3, n++),
                channelId: channels[d.channel],
                userId,
                body: `${d.unstorable ? '\u0000' : ''}hello ${n}${d.mention ? ` <@${BOB}>` : ''}`,
                clientMsgId: d.key === 'none' ? undefined : keyFrom && 'clientMsgId' in keyFrom ? keyFrom.clientMsgId : `key-${n++}`,
                parentId: earlier(d.parent)?.id,
              } as ChangeRequest;
              sent.push(send);
              thisBatch.push(send);
              return send;
            });
            const plain = (d: Drawn) => !('change' in d) && d.reuseId === null && d.parent === null && d.sender < 2 && d.channel < 2 && typeof d.key !== 'number' && !d.unstorable;
            if (step.every(plain)) plainBatches++;
            else if (step.some(plain) && step.some((d) => 'change' in d)) mixedBatches++;
            // A change of a message from before the batch, after a plain send of it: the run goes on past it.
            const sentNow = new Set(thisBatch.map((c) => c.id));
            runsPastChanges += step.filter(
              (d, i) => 'change' in d && !sentNow.has((batch[i] as { messageId: string }).messageId) && step.slice(0, i).some(plain),
            ).length;
            batches.push(batch);
          }
          const [a, b] = [await persist(fast, batch), await persist(loop, batch)];
          expect(a, 'answers and published events').to.deep.equal(b);
          appliedChanges += batch.filter((c, i) => c.kind !== 'send' && (a.outcomes[i] as { ok: boolean }).ok).length;
        }
        expect(await rows(fast), 'rows').to.deep.equal(await rows(loop));
      }),
      { seed: propertySeed(41), numRuns: runs, endOnFailure: endOnFailure() },
    );
    // Each kind of case came up (seeds 1–10 at 40 runs drew at least 33, 21 and 15 of the first three; seeds
    // 1–24 and 41 at 60 runs at least 53, 20, 20 and 6).
    expect(plainBatches, 'batches of plain sends only').to.be.at.least(runs / 4);
    expect(mixedBatches, 'batches with plain sends and changes').to.be.at.least(runs / 4);
    expect(appliedChanges, 'changes applied').to.be.at.least(runs / 5);
    expect(runsPastChanges, 'changes the run went on past').to.be.at.least(runs / 12);
  });

  /**
   * The statements the function ran for `run`, each with its plan, as PostgreSQL's auto_explain reports
   * them to the session (nested statements included).
   */
  async function statementsOf(s: Side, run: () => Promise<void>): Promise<string[]> {
    const statements: string[] = [];
    const connection = await s.knex.client.acquireConnection();
    const listen = (notice: { message?: string }) => {
      if (notice.message?.includes('Query Text:')) statements.push(notice.message.slice(notice.message.indexOf('Query Text:') + 12));
    };
    connection.on('notice', listen);
    await s.knex.client.releaseConnection(connection);
    await s.knex.raw("LOAD 'auto_explain'");
    await s.knex.raw('SET auto_explain.log_min_duration = 0; SET auto_explain.log_nested_statements = on; SET client_min_messages = log');
    try {
      await run();
    } finally {
      await s.knex.raw('SET client_min_messages = notice; SET auto_explain.log_min_duration = -1');
      connection.off('notice', listen);
    }
    return statements;
  }

  it('When a batch is of plain sends, then the migrated function stores it with one statement, reading every table by key, where the loop runs one INSERT per send; only a change of a message of the run splits it', async () => {
    const plain = (i: number) =>
      ({ kind: 'send', id: uuid(3, n++), channelId: GENERAL, userId: i % 2 ? ALICE : BOB, body: `plain ${n}`, clientMsgId: `key-${n++}` }) as ChangeRequest;
    // Five batches of ten plain sends, each but the first with a reaction after its fourth send: to a message
    // of the first batch (the run goes on past it) in the second to fourth, to that fourth send in the last
    // (the run is written before it: two runs).
    const batch = (i: number, first: ChangeRequest[]): ChangeRequest[] => {
      const sends = Array.from({ length: 10 }, (_, k) => plain(k));
      if (i === 0) return sends;
      const messageId = i === 4 ? sends[3].id : first[i].id;
      const reaction = { kind: 'reaction:add', id: uuid(4, n++), channelId: GENERAL, userId: ALICE, messageId, emoji: 'eyes', clientChangeId: null } as ChangeRequest;
      return [...sends.slice(0, 4), reaction, ...sends.slice(4)];
    };
    const [fastRan, loopRan] = [fast, loop].map((s) =>
      statementsOf(s, async () => {
        let first: ChangeRequest[] = [];
        for (let i = 0; i < 5; i++) {
          const sent = batch(i, first);
          if (i === 0) first = sent;
          const { outcomes } = await persistMessages(s.knex, sent);
          expect(Object.values(outcomes).every((o) => o.ok)).to.equal(true);
        }
      }),
    );
    const [a, b] = [await fastRan, await loopRan];
    const count = (ran: string[], start: string) => ran.filter((text) => text.trimStart().startsWith(start)).length;
    expect(count(a, 'WITH stored AS'), 'the new path: one statement per run').to.equal(6);
    expect(count(a, 'INSERT INTO messages'), 'the new path').to.equal(0);
    expect(count(b, 'INSERT INTO messages'), 'the loop: one per send').to.equal(50);
    // This session's plans were made while the tables were small (the property above): a plan made then may
    // not walk a table, which a large one would pay at every batch.
    expect(a.flatMap((text) => text.split('\n').filter((line) => /Seq Scan/.test(line))), 'scans').to.deep.equal([]);
  });
});
