import { expect } from 'chai';
import { randomUUID } from 'node:crypto';
import { expectError, request, unique, type RegisteredUser } from '../support/api.js';
import { range, type ClientSocket } from '../support/sockets.js';
import { seedChannel } from './fixtures.js';
import {
  useChangesCluster,
  emit,
  expectMessage,
  acked,
  expectRefused,
  answered,
  expectHistoryMatchesEvents,
  expectOneGapFreeStream,
  expectEvents,
  say,
  marker,
  edit,
  unreact,
  restReact,
  newMsg,
  updated,
  deletedEvent,
  reactionEvent,
  type Msg,
  type Where,
} from './changes-harness.js';
import type { Team } from './fixtures.js';

/**
 * Threads (docs/API.md, "Edits, deletes, reactions and threads") across a cluster (2 front nodes, 2 workers): `parentId` on sends
 * (socket and REST), the parent's `message:updated` with `replyCount` / `lastReplyAt` right after each
 * reply (rev r, then r+1) and after a reply is deleted, GET …/replies paged like history, the
 * VALIDATION_FAILED cases of `parentId`, and the history afterwards.
 */

describe('pipeline: threads and replies across nodes', function () {
  this.timeout(60_000);

  const harness = useChangesCluster('threads');
  const { openRoom, history } = harness;
  let A: string;
  let B: string;
  let team: Team;
  let owner: RegisteredUser;
  let alice: RegisteredUser;
  let bob: RegisteredUser;
  /** In the workspace, never in the test channels. */
  let carol: RegisteredUser;
  /** In no workspace of the team. */
  let outsider: RegisteredUser;
  before(() => {
    ({ A, B, team, owner, alice, bob, carol, outsider } = harness.world);
  });

  /** A reply over a socket: `message:send` with `parentId`. */
  async function reply(socket: ClientSocket, room: Where, parentId: string, body: string, clientMsgId = unique('r-')): Promise<Msg> {
    return acked(await emit(socket, 'message:send', { channelId: room.id, body, clientMsgId, parentId }), `reply ${body}`);
  }

  async function restReply(url: string, user: RegisteredUser, room: Where, parentId: string, body: string): Promise<Msg> {
    const res = await request(url, 'POST', `/channels/${room.id}/messages`, { token: user.token, body: { body, parentId, clientMsgId: unique('rr-') } });
    return answered(res, `REST reply ${body}`, 201);
  }

  const replies = (url: string, token: string, channelId: string, parentId: string, query = '') =>
    request(url, 'GET', `/channels/${channelId}/messages/${parentId}/replies${query}`, { token });

  /** The parent as its message:updated after a reply was sent or deleted must carry it. */
  const parentAt = (parent: Msg, rev: number, replyCount: number, lastReplyAt: string | null): Msg => ({ ...parent, rev, replyCount, lastReplyAt });

  it('When members reply over a socket on node B and through REST on node A, then every member socket gets message:new of the reply (rev r) and then message:updated of its parent (rev r+1) with replyCount and lastReplyAt; top-level messages update no parent', async () => {
    const room = await openRoom();
    const root = await say(room.aliceA, room, 'a thread starts here');
    const r1 = await reply(room.bobB, room, root.id, 'first reply');
    expect(r1).to.deep.include({ channelId: room.id, seq: 2, rev: 2, userId: bob.user.id, parentId: root.id, replyCount: 0, lastReplyAt: null, deleted: false });
    const r2 = await restReply(A, owner, room, root.id, 'second reply, through REST');
    expect(r2).to.deep.include({ seq: 3, rev: 4, parentId: root.id, userId: owner.user.id });
    const top = await say(room.aliceB, room, 'a top-level message');
    expect(top).to.deep.include({ seq: 4, rev: 6, parentId: null });

    const mark = await marker(room);
    const afterFirst = parentAt(root, 3, 1, r1.createdAt);
    const afterSecond = parentAt(root, 5, 2, r2.createdAt);
    const events = expectEvents(room, [newMsg(root), newMsg(r1), updated(afterFirst), newMsg(r2), updated(afterSecond), newMsg(top), newMsg(mark)]);

    const h = await history(room, bob.token);
    expect(h, 'history: top-level messages and replies alike').to.deep.equal([afterSecond, r1, r2, top, mark]);
    expectHistoryMatchesEvents(h, events);
    const listed = await replies(B, bob.token, room.id, root.id);
    expect(listed.status, listed.text).to.equal(200);
    expect(listed.body).to.deep.equal({ messages: [r1, r2], hasMore: false });
    const none = await replies(A, alice.token, room.id, top.id);
    expect([none.status, none.body], 'a message without replies').to.deep.equal([200, { messages: [], hasMore: false }]);
  });

  it('When a thread has 7 replies among other messages, then GET …/replies pages them like history (newest page, before, after, hasMore) and refuses bad paging', async () => {
    const room = await openRoom();
    const root = await say(room.aliceA, room, 'root');
    const other = await say(room.bobB, room, 'another root');
    const mine: Msg[] = [];
    for (let i = 0; i < 7; i++) {
      mine.push(i % 2 ? await restReply(B, bob, room, root.id, `reply ${i}`) : await reply(room.aliceA, room, root.id, `reply ${i}`));
      // Noise between the replies: a top-level message and a reply to the other root.
      if (i % 3 === 0) await say(room.aliceB, room, `noise ${i}`);
      if (i % 3 === 1) await reply(room.adminA, room, other.id, `other thread ${i}`);
    }
    const seqs = mine.map((m) => m.seq);
    const page = async (query: string, url = A, token = alice.token) => {
      const res = await replies(url, token, room.id, root.id, query);
      expect(res.status, `${query}: ${res.text}`).to.equal(200);
      expect(Object.keys(res.body).sort(), query).to.deep.equal(['hasMore', 'messages']);
      (res.body.messages as Msg[]).forEach((m, i) => expectMessage(m, `${query} #${i}`));
      return { seqs: (res.body.messages as Msg[]).map((m) => m.seq), hasMore: res.body.hasMore as boolean, messages: res.body.messages as Msg[] };
    };
    const all = await page('');
    expect(all.messages, 'every reply, ascending seq').to.deep.equal(mine);
    expect(all.hasMore).to.equal(false);

    const cases: Array<[string, number[], boolean]> = [
      ['?limit=3', seqs.slice(4), true],
      [`?limit=3&before=${seqs[4]}`, seqs.slice(1, 4), true],
      [`?limit=3&before=${seqs[1]}`, seqs.slice(0, 1), false],
      ['?limit=7', seqs, false],
      ['?limit=6', seqs.slice(1), true],
      ['?after=0&limit=3', seqs.slice(0, 3), true],
      [`?after=${seqs[2]}&limit=3`, seqs.slice(3, 6), true],
      [`?after=${seqs[5]}&limit=3`, seqs.slice(6), false],
      [`?after=${seqs[6]}`, [], false],
      [`?after=${seqs[0] - 1}&limit=1`, [seqs[0]], true],
      [`?before=${seqs[0]}`, [], false],
      ['?after=0&limit=200', seqs, false],
    ];
    for (const [query, expected, hasMore] of cases) {
      const got = await page(query, query.length % 2 ? A : B, query.length % 3 ? alice.token : bob.token);
      expect({ seqs: got.seqs, hasMore: got.hasMore }, query).to.deep.equal({ seqs: expected, hasMore });
    }
    // Walking backwards from the newest page joins into every reply.
    const walked: Msg[] = [];
    for (let res = await page('?limit=2'); ; res = await page(`?limit=2&before=${walked[0].seq}`)) {
      walked.unshift(...res.messages);
      if (!res.hasMore) break;
    }
    expect(walked).to.deep.equal(mine);

    for (const query of ['?limit=0', '?limit=201', '?limit=x', '?before=0', '?after=-1', '?before=5&after=1']) {
      const res = await replies(B, alice.token, room.id, root.id, query);
      expect([res.status, res.body?.error?.code], query).to.deep.equal([400, 'VALIDATION_FAILED']);
    }
    expectError(await replies(A, alice.token, room.id, randomUUID()), 404, 'NOT_FOUND');
    expectError(await replies(A, outsider.token, room.id, root.id), 404, 'NOT_FOUND');
    // Like the history: a workspace member outside a public channel is refused with 403.
    expectError(await replies(B, carol.token, room.id, root.id), 403, 'FORBIDDEN');
    const elsewhere = await seedChannel(A, team, [alice]);
    expectError(await replies(B, alice.token, elsewhere.id, root.id), 404, 'NOT_FOUND');

    const h = await history(room);
    expect(h.find((m) => m.id === root.id), 'the root after 7 replies').to.deep.include({ replyCount: 7, lastReplyAt: mine[6].createdAt });
    expect(h.find((m) => m.id === other.id)).to.deep.include({ replyCount: 2 });
    await marker(room);
    expectHistoryMatchesEvents(await history(room), expectOneGapFreeStream(room));
  });

  it('When parentId is a reply, a deleted message, a message of another channel, a random uuid or malformed, then VALIDATION_FAILED / 400 over the socket and REST, and nothing is stored or emitted', async () => {
    const room = await openRoom();
    const root = await say(room.aliceA, room, 'root');
    const r1 = await reply(room.bobB, room, root.id, 'a reply');
    const doomed = await say(room.aliceA, room, 'to be deleted');
    const gone = acked(await emit(room.aliceA, 'message:delete', { channelId: room.id, messageId: doomed.id }), 'delete');
    const elsewhere = await seedChannel(A, team, [alice, bob]);
    const foreign = await say(room.aliceB, { id: elsewhere.id }, 'in another channel');

    const bad: Array<[string, unknown]> = [
      ['a reply', r1.id],
      ['a deleted message', doomed.id],
      ['a message of another channel', foreign.id],
      ['a random uuid', randomUUID()],
      ['a malformed id', 'not-a-uuid'],
      ['a number', 42],
      ['an empty string', ''],
    ];
    for (const [what, parentId] of bad) {
      for (const socket of [room.aliceA, room.bobB]) {
        expectRefused(
          await emit(socket, 'message:send', { channelId: room.id, body: `reply to ${what}`, clientMsgId: unique('bad-'), parentId }),
          'VALIDATION_FAILED',
          `socket reply to ${what}`,
        );
      }
      const res = await request(A, 'POST', `/channels/${room.id}/messages`, { token: bob.token, body: { body: `REST reply to ${what}`, parentId } });
      expect([res.status, res.body?.error?.code], `REST reply to ${what}: ${res.text}`).to.deep.equal([400, 'VALIDATION_FAILED']);
    }

    const mark = await marker(room);
    expect(mark.seq, 'nothing was stored').to.equal(4);
    expect(mark.rev, 'no rev was spent').to.equal(6);
    const afterReply = parentAt(root, 3, 1, r1.createdAt);
    expectEvents(room, [newMsg(root), newMsg(r1), updated(afterReply), newMsg(doomed), deletedEvent(gone), newMsg(mark)]);
    expect(await history(room)).to.deep.equal([afterReply, r1, gone, mark]);
    expect(await history({ id: elsewhere.id })).to.deep.equal([foreign]);
  });

  it('When replies are deleted (the middle one, the newest, the last), then message:deleted (rev r) and message:updated of the parent (rev r+1) with replyCount and lastReplyAt of the newest reply left', async () => {
    const room = await openRoom();
    const root = await say(room.aliceA, room, 'root');
    const r1 = await reply(room.aliceA, room, root.id, 'one');
    const r2 = await reply(room.bobB, room, root.id, 'two');
    const r3 = await restReply(B, alice, room, root.id, 'three');
    expect([r1.rev, r2.rev, r3.rev]).to.deep.equal([2, 4, 6]);

    const d2 = acked(await emit(room.bobB, 'message:delete', { channelId: room.id, messageId: r2.id }), 'bob deletes the middle reply');
    expect(d2).to.deep.include({ id: r2.id, parentId: root.id, deleted: true, body: '', rev: 8 });
    const d3 = answered(await request(A, 'DELETE', `/channels/${room.id}/messages/${r3.id}`, { token: alice.token }), 'alice deletes the newest through REST');
    expect(d3).to.deep.include({ id: r3.id, parentId: root.id, deleted: true, rev: 10 });
    const d1 = answered(
      await request(B, 'DELETE', `/channels/${room.id}/messages/${r1.id}`, { token: owner.token, body: { clientChangeId: unique('o-') } }),
      'the owner deletes the last one',
    );
    expect(d1).to.deep.include({ id: r1.id, parentId: root.id, deleted: true, rev: 12 });

    const mark = await marker(room);
    const p3 = parentAt(root, 3, 1, r1.createdAt);
    const p5 = parentAt(root, 5, 2, r2.createdAt);
    const p7 = parentAt(root, 7, 3, r3.createdAt);
    const p9 = parentAt(root, 9, 2, r3.createdAt);
    const p11 = parentAt(root, 11, 1, r1.createdAt);
    const p13 = parentAt(root, 13, 0, null);
    const events = expectEvents(room, [
      newMsg(root),
      newMsg(r1),
      updated(p3),
      newMsg(r2),
      updated(p5),
      newMsg(r3),
      updated(p7),
      deletedEvent(d2),
      updated(p9),
      deletedEvent(d3),
      updated(p11),
      deletedEvent(d1),
      updated(p13),
      newMsg(mark),
    ]);
    const h = await history(room);
    expect(h).to.deep.equal([p13, d1, d2, d3, mark]);
    expectHistoryMatchesEvents(h, events);

    // A thread keeps its deleted replies, as history does.
    const listed = await replies(B, bob.token, room.id, root.id);
    expect(listed.status, listed.text).to.equal(200);
    expect(listed.body).to.deep.equal({ messages: [d1, d2, d3], hasMore: false });
  });

  it('When a reply is edited or reacted to, then only the reply changes (one event each), and its parent keeps its replyCount, lastReplyAt and rev', async () => {
    const room = await openRoom();
    const root = await say(room.aliceA, room, 'root');
    const r1 = await reply(room.bobB, room, root.id, 'bob replies');
    const edited = acked(await emit(room.bobB, 'message:edit', { channelId: room.id, messageId: r1.id, body: 'bob replies, edited' }), 'bob edits his reply');
    expect(edited).to.deep.include({ rev: 4, parentId: root.id, body: 'bob replies, edited' });
    const reacted = answered(await restReact(A, alice.token, room.id, r1.id, 'wave'), 'alice reacts to the reply');
    expect(reacted).to.deep.include({ rev: 5, parentId: root.id });
    const unreacted = acked(await unreact(room.aliceB, room, r1.id, 'wave'), 'alice takes it back');
    expect(unreacted.rev).to.equal(6);

    const mark = await marker(room);
    const p3 = parentAt(root, 3, 1, r1.createdAt);
    expectEvents(room, [
      newMsg(root),
      newMsg(r1),
      updated(p3),
      updated(edited),
      reactionEvent('added', reacted, 'wave', alice),
      reactionEvent('removed', unreacted, 'wave', alice),
      newMsg(mark),
    ]);
    expect(await history(room)).to.deep.equal([p3, unreacted, mark]);
  });

  it('When a reply is resent with the same clientMsgId (same socket, other node), then it acks the first reply and neither the reply nor the parent update is emitted again', async () => {
    const room = await openRoom();
    const root = await say(room.aliceA, room, 'root');
    const id = unique('same-');
    const first = await reply(room.aliceA, room, root.id, 'only once', id);
    expect(await reply(room.aliceA, room, root.id, 'only once', id), 'resent on the same socket').to.deep.equal(first);
    expect(await reply(room.aliceB, room, root.id, 'only once', id), 'resent on node B').to.deep.equal(first);
    const mark = await marker(room);
    expect(mark.rev).to.equal(4);
    const p = parentAt(root, 3, 1, first.createdAt);
    expectEvents(room, [newMsg(root), newMsg(first), updated(p), newMsg(mark)]);
    expect(await history(room)).to.deep.equal([p, first, mark]);
  });

  it('When the channel is archived, then replies (socket and REST) are FORBIDDEN and the parent is untouched; replies racing a delete of their parent are stored before it (lower revs) or VALIDATION_FAILED', async () => {
    const room = await openRoom();
    const root = await say(room.aliceA, room, 'root');
    expect((await request(B, 'POST', `/channels/${room.id}/archive`, { token: owner.token })).status).to.equal(200);
    expectRefused(
      await emit(room.bobB, 'message:send', { channelId: room.id, body: 'archived reply', clientMsgId: unique('a-'), parentId: root.id }),
      'FORBIDDEN',
      'a socket reply in an archived channel',
    );
    expectError(await request(A, 'POST', `/channels/${room.id}/messages`, { token: bob.token, body: { body: 'archived reply', parentId: root.id } }), 403, 'FORBIDDEN');
    expect((await request(A, 'POST', `/channels/${room.id}/unarchive`, { token: owner.token })).status).to.equal(200);
    expect(await history(room)).to.deep.equal([root]);

    const [outcomes, gone] = await Promise.all([
      Promise.all(range(8).map((k) => emit(k % 2 ? room.bobB : room.adminA, 'message:send', { channelId: room.id, body: `racing ${k}`, clientMsgId: unique('x-'), parentId: root.id }))),
      (async () => answered(await request(B, 'DELETE', `/channels/${room.id}/messages/${root.id}`, { token: alice.token }), 'the racing delete of the parent'))(),
    ]);
    for (const [k, o] of outcomes.entries()) {
      if (o.ok) expect(o.message.rev, `reply ${k} before the delete`).to.be.below(gone.rev);
      else expect(o.error.code, `reply ${k}`).to.equal('VALIDATION_FAILED');
    }
    const stored = outcomes.filter((o) => o.ok).length;
    expect(gone.rev, 'each stored reply took two revs before the delete').to.equal(2 + 2 * stored);
    const mark = await marker(room);
    const events = expectOneGapFreeStream(room);
    expect(events.length).to.equal(1 + 2 * stored + 1 + 1);
    const h = await history(room);
    expectHistoryMatchesEvents(h, events);
    expect(h.length).to.equal(2 + stored);
    expect(h[0]).to.deep.equal(gone);
    expect(h.at(-1)).to.deep.equal(mark);
  });

  it('When 12 replies to one parent race from sockets on both nodes and REST, then each message:new of a reply is directly followed by the parent\'s message:updated with the next rev and one more reply, and the parent ends with replyCount 12 and the newest lastReplyAt', async () => {
    const room = await openRoom();
    const root = await say(room.aliceA, room, 'busy thread');
    const sent = await Promise.all(
      range(12, 0).map((k) =>
        k % 3 === 0
          ? reply(room.aliceA, room, root.id, `race ${k}`)
          : k % 3 === 1
            ? reply(room.bobB, room, root.id, `race ${k}`)
            : restReply(k % 2 ? A : B, owner, room, root.id, `race ${k}`),
      ),
    );
    const mark = await marker(room);
    expect(mark.rev).to.equal(26);
    const events = expectOneGapFreeStream(room);
    let count = 0;
    let newestSoFar = '';
    for (let i = 1; i < 25; i += 2) {
      const [news, upd] = [events[i], events[i + 1]];
      expect(news.name, `event ${i}`).to.equal('message:new');
      expect(news.payload.parentId).to.equal(root.id);
      count += 1;
      // lastReplyAt is the newest createdAt so far (replies stored together may share one, or even come in another order).
      if (!newestSoFar || Date.parse(news.payload.createdAt) > Date.parse(newestSoFar)) newestSoFar = news.payload.createdAt;
      expect(upd.name, `event ${i + 1}`).to.equal('message:updated');
      expect(upd.payload).to.deep.equal({ channelId: room.id, rev: news.rev + 1, message: parentAt(root, news.rev + 1, count, newestSoFar) });
    }
    for (const m of sent) expect(events.find((e) => e.rev === m.rev)?.payload, `the event of reply seq ${m.seq}`).to.deep.equal(m);
    const newest = sent.map((m) => m.createdAt).sort((a, b) => Date.parse(a) - Date.parse(b)).at(-1);
    const h = await history(room);
    expect(h[0]).to.deep.include({ replyCount: 12, lastReplyAt: newest, rev: 25 });
    expectHistoryMatchesEvents(h, events);
  });
});
