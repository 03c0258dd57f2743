import { expect } from 'chai';
import { randomUUID } from 'node:crypto';
import { request, unique, type RegisteredUser } from '../support/api.js';
import {
  useChangesCluster,
  emit,
  acked,
  answered,
  expectHistoryMatchesEvents,
  settle,
  expectOneGapFreeStream,
  expectEvents,
  say,
  marker,
  edit,
  newMsg,
  updated,
  deletedEvent,
  type Msg,
  type Room,
} from './changes-harness.js';
import type { Team } from './fixtures.js';

/**
 * Mentions (docs/API.md, "Edits, deletes, reactions and threads") across a cluster (2 front nodes, 2 workers): `<@userId>` in a
 * body becomes `mentions` (channel members only, ascending, once) on sends and edits, over sockets and
 * REST, in acks, events and history; `mentionCount` beside `unreadCount` in GET /me/unread and the
 * channel listing counts unread, not deleted messages that mention the reader.
 */

describe('pipeline: mentions and mentionCount across nodes', function () {
  this.timeout(60_000);

  const harness = useChangesCluster('mentions', 5);
  const { openRoom, history } = harness;
  let A: string;
  let B: string;
  let team: Team;
  let owner: RegisteredUser;
  let admin: RegisteredUser;
  let alice: RegisteredUser;
  let bob: RegisteredUser;
  /** In the workspace, never in the test channels. */
  let carol: RegisteredUser;
  /** In no workspace of the team. */
  let outsider: RegisteredUser;
  /** Workspace members that tests add to or remove from channels. */
  let dave: RegisteredUser;
  let erin: RegisteredUser;
  before(() => {
    ({ A, B, team, owner, admin, alice, bob, carol, outsider } = harness.world);
    [, , , dave, erin] = team.members;
  });

  const sorted = (ids: string[]) => [...ids].sort();
  const mention = (u: RegisteredUser) => `<@${u.user.id}>`;

  /** The caller's entry for `channelId` in GET /me/unread (undefined when not listed) and in the workspace's channel listing. */
  async function readState(user: RegisteredUser, channelId: string, url = A) {
    const unread = await request(url, 'GET', '/me/unread', { token: user.token });
    expect(unread.status, unread.text).to.equal(200);
    const listing = await request(url === A ? B : A, 'GET', `/workspaces/${team.workspace.id}/channels`, { token: user.token });
    expect(listing.status, listing.text).to.equal(200);
    return {
      unread: (unread.body.channels as Array<Record<string, unknown>>).find((c) => c.channelId === channelId),
      listed: (listing.body.channels as Array<Record<string, unknown>>).find((c) => c.id === channelId),
    };
  }

  /** Both views agree on the counts; `unreadCount` is only checked when given. */
  async function expectCounts(user: RegisteredUser, room: Room, counts: { lastSeq: number; lastReadSeq: number; mentionCount: number; unreadCount?: number }, what: string) {
    const { unread, listed } = await readState(user, room.id);
    const { unreadCount, ...rest } = counts;
    expect(listed, `${what}: listed`).to.not.equal(undefined);
    expect(listed, `${what}: the channel listing`).to.deep.include({ isMember: true, ...rest, ...(unreadCount === undefined ? {} : { unreadCount }) });
    if (unread === undefined) {
      expect(listed!.unreadCount, `${what}: not in /me/unread, so nothing unread`).to.equal(0);
      expect(counts.mentionCount, `${what}: not in /me/unread`).to.equal(0);
      return;
    }
    expect(Object.keys(unread).sort(), `${what}: /me/unread keys`).to.deep.equal(
      ['channelId', 'workspaceId', 'kind', 'name', 'lastSeq', 'lastReadSeq', 'unreadCount', 'mentionCount'].sort(),
    );
    expect(unread, `${what}: /me/unread`).to.deep.include({ channelId: room.id, workspaceId: team.workspace.id, kind: 'channel', name: room.channel.name, ...rest });
    expect(unread.unreadCount, `${what}: /me/unread and the listing agree`).to.equal(listed!.unreadCount);
    if (unreadCount !== undefined) expect(unread.unreadCount, `${what}: unreadCount`).to.equal(unreadCount);
  }

  it('When a body names members, non-members, outsiders and unknown ids as <@userId>, then mentions holds exactly the channel members, ascending and once each, in the ack, on message:new on both nodes, and in history (socket and REST)', async () => {
    const room = await openRoom();
    const body = [
      `hi ${mention(bob)} and ${mention(carol)}`,
      `and me ${mention(alice)}, ${mention(bob)} again,`,
      `the outsider ${mention(outsider)}, someone ${`<@${randomUUID()}>`}, junk <@not-a-uuid> <@> <@ ${bob.user.id}>`,
      `(${mention(admin)})`,
    ].join('\n');
    const sent = await say(room.aliceA, room, body);
    expect(sent.body).to.equal(body);
    expect(sent.mentions, 'members only: alice, bob, admin; not carol (not in the channel), not the outsider').to.deep.equal(
      sorted([alice.user.id, bob.user.id, admin.user.id]),
    );

    const res = await request(B, 'POST', `/channels/${room.id}/messages`, {
      token: bob.token,
      body: { body: `${mention(owner)}${mention(admin)}${mention(owner)} ${mention(carol)}`, clientMsgId: unique('rest-') },
    });
    const viaRest = answered(res, 'REST send', 201);
    expect(viaRest.mentions).to.deep.equal(sorted([owner.user.id, admin.user.id]));
    const plain = await say(room.aliceB, room, 'nobody here, not even <@everyone>');
    expect(plain.mentions).to.deep.equal([]);

    const mark = await marker(room);
    const events = expectEvents(room, [newMsg(sent), newMsg(viaRest), newMsg(plain), newMsg(mark)]);
    const h = await history(room, bob.token);
    expect(h).to.deep.equal([sent, viaRest, plain, mark]);
    expectHistoryMatchesEvents(h, events);
  });

  it('When a message is edited, then mentions are recomputed against the members at the time of the edit and message:updated carries them; a stored message keeps the mentions of when it was stored', async () => {
    const room = await openRoom([erin]);
    const early = await say(room.aliceA, room, `before dave joined: ${mention(dave)} ${mention(erin)}`);
    expect(early.mentions, 'dave is not in the channel yet').to.deep.equal([erin.user.id]);

    const added = await request(A, 'POST', `/channels/${room.id}/members`, { token: owner.token, body: { userId: dave.user.id } });
    expect(added.status, added.text).to.equal(201);
    const removed = await request(B, 'DELETE', `/channels/${room.id}/members/${erin.user.id}`, { token: owner.token });
    expect(removed.status, removed.text).to.equal(204);
    expect((await history(room))[0].mentions, 'stored mentions do not follow membership').to.deep.equal([erin.user.id]);

    const first = acked(await emit(room.aliceA, 'message:edit', { channelId: room.id, messageId: early.id, body: early.body }), 'the same text, edited');
    expect(first.mentions, 'now dave is a member and erin is not').to.deep.equal([dave.user.id]);
    const second = answered(
      await request(B, 'PATCH', `/channels/${room.id}/messages/${early.id}`, {
        token: alice.token,
        body: { body: `${mention(bob)} ${mention(dave)} ${mention(carol)} ${mention(bob)}` },
      }),
      'REST edit',
    );
    expect(second.mentions).to.deep.equal(sorted([bob.user.id, dave.user.id]));
    const third = acked(await emit(room.aliceB, 'message:edit', { channelId: room.id, messageId: early.id, body: 'no one at all' }), 'mentions removed');
    expect(third.mentions).to.deep.equal([]);

    const mark = await marker(room);
    const events = expectEvents(room, [newMsg(early), updated(first), updated(second), updated(third), newMsg(mark)]);
    expect(events.filter((e) => e.name === 'message:updated').map((e) => e.payload.message.mentions)).to.deep.equal([
      [dave.user.id],
      sorted([bob.user.id, dave.user.id]),
      [],
    ]);
    expect(await history(room)).to.deep.equal([third, mark]);
  });

  it('When messages mention a member, then mentionCount in GET /me/unread and the channel listing counts the unread, not deleted ones that mention them, following edits, deletes, replies and read marks', async () => {
    const room = await openRoom();
    const u = (x: RegisteredUser) => x.user.id;
    // Bob only reads here: a send of his own would move his read mark.
    const m1 = await say(room.aliceA, room, `${mention(bob)} one`);
    const m2 = await say(room.aliceB, room, 'two, plain');
    const m3 = answered(
      await request(A, 'POST', `/channels/${room.id}/messages`, { token: owner.token, body: { body: `three ${mention(bob)} ${mention(alice)}` } }),
      'the owner mentions bob and alice through REST',
      201,
    );
    const m4 = await say(room.aliceA, room, `four ${mention(bob)}, soon deleted`);
    const m5 = acked(
      await emit(room.adminA, 'message:send', { channelId: room.id, body: `a reply for ${mention(bob)}`, clientMsgId: unique('t-'), parentId: m1.id }),
      'the admin mentions bob in a thread',
    );
    expect([m1, m2, m3, m4, m5].map((m) => m.mentions)).to.deep.equal([[u(bob)], [], sorted([u(bob), u(alice)]), [u(bob)], [u(bob)]]);
    await settle(room, m5.rev + 1);
    await expectCounts(bob, room, { lastSeq: 5, lastReadSeq: 0, unreadCount: 5, mentionCount: 4 }, 'bob after five messages, four mentioning him');
    // Alice's own send moved her mark to it: m3 mentioned her before that, m5 does not.
    await expectCounts(alice, room, { lastSeq: 5, lastReadSeq: 4, unreadCount: 1, mentionCount: 0 }, 'alice');

    const gone = acked(await emit(room.aliceA, 'message:delete', { channelId: room.id, messageId: m4.id }), 'alice deletes four');
    await expectCounts(bob, room, { lastSeq: 5, lastReadSeq: 0, mentionCount: 3 }, 'bob after a mentioning message was deleted');
    const e2 = acked(await emit(room.aliceB, 'message:edit', { channelId: room.id, messageId: m2.id, body: `two, now for ${mention(bob)}` }), 'mention added');
    expect(e2.mentions).to.deep.equal([u(bob)]);
    await expectCounts(bob, room, { lastSeq: 5, lastReadSeq: 0, mentionCount: 4 }, 'bob after an edit added a mention');
    const e1 = answered(
      await request(B, 'PATCH', `/channels/${room.id}/messages/${m1.id}`, { token: alice.token, body: { body: 'one, without him' } }),
      'mention removed',
    );
    expect(e1.mentions).to.deep.equal([]);
    await expectCounts(bob, room, { lastSeq: 5, lastReadSeq: 0, mentionCount: 3 }, 'bob after an edit removed a mention');

    // A self-mention does not count: the author's own message is read.
    const self = await say(room.aliceA, room, `note to self ${mention(alice)}`);
    expect(self.mentions).to.deep.equal([u(alice)]);
    await expectCounts(alice, room, { lastSeq: 6, lastReadSeq: 6, unreadCount: 0, mentionCount: 0 }, 'alice after mentioning herself');

    // Bob reads up to two (REST), then up to five (socket), then everything.
    const read2 = await request(B, 'POST', `/channels/${room.id}/read`, { token: bob.token, body: { seq: 2 } });
    expect(read2.body).to.deep.equal({ channelId: room.id, seq: 2 });
    // Left: three (mentions him), four (deleted), the reply (mentions him), self (does not).
    await expectCounts(bob, room, { lastSeq: 6, lastReadSeq: 2, mentionCount: 2 }, 'bob after reading to 2');
    const read5 = await room.bobB.timeout(10_000).emitWithAck('channel:read', { channelId: room.id, seq: 5 });
    expect(read5).to.deep.equal({ ok: true, channelId: room.id, seq: 5 });
    await expectCounts(bob, room, { lastSeq: 6, lastReadSeq: 5, unreadCount: 1, mentionCount: 0 }, 'bob after reading to 5');
    await request(A, 'POST', `/channels/${room.id}/read`, { token: bob.token, body: { seq: 6 } });
    await expectCounts(bob, room, { lastSeq: 6, lastReadSeq: 6, unreadCount: 0, mentionCount: 0 }, 'bob after reading everything');

    // Carol, mentioned while outside the channel: the listing shows her no counts at all.
    const carolView = await readState(carol, room.id);
    expect(carolView.unread).to.equal(undefined);
    expect(carolView.listed).to.deep.include({ isMember: false });
    expect(carolView.listed).to.not.have.any.keys('lastSeq', 'lastReadSeq', 'unreadCount', 'mentionCount');

    const mark = await marker(room);
    const events = expectEvents(room, [
      newMsg(m1),
      newMsg(m2),
      newMsg(m3),
      newMsg(m4),
      newMsg(m5),
      updated(parentAfterReply(m1, m5)),
      deletedEvent(gone),
      updated(e2),
      updated(e1),
      newMsg(self),
      newMsg(mark),
    ]);
    const h = await history(room, bob.token);
    expectHistoryMatchesEvents(h, events);
    expect(h.map((m) => m.mentions)).to.deep.equal([[], [u(bob)], sorted([u(bob), u(alice)]), [], [u(bob)], [u(alice)], []]);
    expect(h[3]).to.deep.include({ deleted: true, body: '', mentions: [] });
  });

  /** The parent's message:updated after `r` was sent as its first reply. */
  function parentAfterReply(parent: Msg, r: Msg): Msg {
    return { ...parent, rev: r.rev + 1, replyCount: 1, lastReplyAt: r.createdAt };
  }

  it('When a mentioning message is deleted before the mentioned member reads it, then it stops counting at once, and a mention of a later member never counts for them until an edit names them again', async () => {
    const room = await openRoom();
    const a = await say(room.aliceA, room, `${mention(bob)} ${mention(dave)} first`);
    const b = await say(room.aliceA, room, `${mention(bob)} second`);
    await expectCounts(bob, room, { lastSeq: 2, lastReadSeq: 0, unreadCount: 2, mentionCount: 2 }, 'bob, two mentions');
    acked(await emit(room.aliceB, 'message:delete', { channelId: room.id, messageId: a.id }), 'delete the first');
    acked(await emit(room.aliceA, 'message:delete', { channelId: room.id, messageId: b.id }), 'delete the second');
    await expectCounts(bob, room, { lastSeq: 2, lastReadSeq: 0, mentionCount: 0 }, 'bob, both deleted');

    const c = await say(room.aliceA, room, `${mention(dave)} third, before dave joined`);
    expect(c.mentions).to.deep.equal([]);
    expect((await request(A, 'POST', `/channels/${room.id}/members`, { token: owner.token, body: { userId: dave.user.id } })).status).to.equal(201);
    const before = await readState(dave, room.id);
    expect(before.listed, 'dave is now a member').to.deep.include({ isMember: true, mentionCount: 0 });
    const renamed = acked(await emit(room.aliceA, 'message:edit', { channelId: room.id, messageId: c.id, body: c.body }), 'the same text, edited');
    expect(renamed.mentions).to.deep.equal([dave.user.id]);
    const after = await readState(dave, room.id);
    const daveMark = after.listed!.lastReadSeq as number;
    // Whatever mark joining gave dave, the edited message counts for him exactly when it is unread.
    expect(after.listed).to.deep.include({ mentionCount: c.seq > daveMark ? 1 : 0 });
    await marker(room);
    expectOneGapFreeStream(room);
  });
});
