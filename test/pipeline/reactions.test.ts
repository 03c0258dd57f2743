import { expect } from 'chai';
import { randomUUID } from 'node:crypto';
import { addWorkspaceMember, expectError, registerUser, request, unique, type RegisteredUser } from '../support/api.js';
import { connect, range } from '../support/sockets.js';
import { seedChannel } from './fixtures.js';
import {
  useChangesCluster,
  emit,
  acked,
  expectRefused,
  answered,
  expectHistoryMatchesEvents,
  expectOneGapFreeStream,
  expectEvents,
  say,
  marker,
  remove,
  react,
  unreact,
  restReact,
  restUnreact,
  newMsg,
  reactionEvent,
  type Msg,
} from './changes-harness.js';
import type { Team } from './fixtures.js';

/**
 * Reactions (docs/API.md, "Edits, deletes, reactions and threads") across a cluster (2 front nodes, 2 workers): `reaction:add` /
 * `reaction:remove` over sockets and PUT / DELETE …/reactions/:emoji over REST, the `reaction:added` and
 * `reaction:removed` events every socket of the channel gets on both nodes in one gap-free rev stream,
 * the order of `reactions` and of their `userIds` (at most 50), emoji validation, the permission rules,
 * no-op adds and removals, `clientChangeId` idempotency, and the history afterwards.
 */

describe('pipeline: reactions across nodes', function () {
  this.timeout(60_000);

  const harness = useChangesCluster('reactions');
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
  before(() => {
    ({ A, B, team, owner, admin, alice, bob, carol, outsider } = harness.world);
  });

  const added = (m: Msg, emoji: string, user: RegisteredUser) => reactionEvent('added', m, emoji, user);
  const removed = (m: Msg, emoji: string, user: RegisteredUser) => reactionEvent('removed', m, emoji, user);

  it('When members add and remove reactions over sockets on both nodes and through REST, then every member socket gets reaction:added / reaction:removed {channelId, rev, messageId, emoji, userId} once, and each answer carries the reactions in the contract\'s order', async () => {
    const room = await openRoom();
    const sent = await say(room.aliceA, room, 'react to me');
    const u = (x: RegisteredUser) => x.user.id;

    const r2 = acked(await react(room.bobB, room, sent.id, 'thumbsup'), 'bob adds thumbsup over the socket on B');
    expect(r2).to.deep.equal({ ...sent, rev: 2, reactions: [{ emoji: 'thumbsup', count: 1, userIds: [u(bob)] }] });
    const r3 = answered(await restReact(A, alice.token, room.id, sent.id, 'thumbsup'), 'alice adds thumbsup through REST on A');
    expect(r3).to.deep.equal({ ...sent, rev: 3, reactions: [{ emoji: 'thumbsup', count: 2, userIds: [u(bob), u(alice)] }] });
    const r4 = answered(await restReact(B, owner.token, room.id, sent.id, '👍', { clientChangeId: unique('r-') }), 'the owner adds 👍 through REST on B');
    expect(r4.reactions).to.deep.equal([
      { emoji: 'thumbsup', count: 2, userIds: [u(bob), u(alice)] },
      { emoji: '👍', count: 1, userIds: [u(owner)] },
    ]);
    const r5 = acked(await react(room.adminA, room, sent.id, '+1'), 'the admin adds +1 over the socket on A');
    expect(r5.rev).to.equal(5);
    expect(r5.reactions.map((r) => r.emoji)).to.deep.equal(['thumbsup', '👍', '+1']);

    const r6 = acked(await unreact(room.bobB, room, sent.id, 'thumbsup'), 'bob removes his thumbsup');
    expect(r6.rev).to.equal(6);
    // thumbsup's oldest current reaction is now alice's (rev 3): still before 👍 (rev 4).
    expect(r6.reactions).to.deep.equal([
      { emoji: 'thumbsup', count: 1, userIds: [u(alice)] },
      { emoji: '👍', count: 1, userIds: [u(owner)] },
      { emoji: '+1', count: 1, userIds: [u(admin)] },
    ]);
    const r7 = answered(await restReact(B, bob.token, room.id, sent.id, 'thumbsup'), 'bob adds it again');
    expect(r7.reactions[0], 'a user who reacts again goes last').to.deep.equal({ emoji: 'thumbsup', count: 2, userIds: [u(alice), u(bob)] });
    const r8 = answered(await restUnreact(A, alice.token, room.id, sent.id, 'thumbsup'), 'alice removes hers through REST');
    // thumbsup's oldest current reaction is now bob's (rev 7): after 👍 (rev 4) and +1 (rev 5).
    expect(r8).to.deep.equal({
      ...sent,
      rev: 8,
      reactions: [
        { emoji: '👍', count: 1, userIds: [u(owner)] },
        { emoji: '+1', count: 1, userIds: [u(admin)] },
        { emoji: 'thumbsup', count: 1, userIds: [u(bob)] },
      ],
    });
    const r9 = answered(await restUnreact(B, owner.token, room.id, sent.id, '👍', { clientChangeId: unique('r-') }), 'the owner removes 👍');
    expect(r9.reactions.map((r) => r.emoji)).to.deep.equal(['+1', 'thumbsup']);

    const mark = await marker(room);
    const events = expectEvents(room, [
      newMsg(sent),
      added(r2, 'thumbsup', bob),
      added(r3, 'thumbsup', alice),
      added(r4, '👍', owner),
      added(r5, '+1', admin),
      removed(r6, 'thumbsup', bob),
      added(r7, 'thumbsup', bob),
      removed(r8, 'thumbsup', alice),
      removed(r9, '👍', owner),
      newMsg(mark),
    ]);
    const h = await history(room, bob.token);
    expect(h).to.deep.equal([r9, mark]);
    expectHistoryMatchesEvents(h, events);
  });

  it('When a user adds the same reaction twice, then both answers are ok with the same message and only one reaction:added is emitted; removing a reaction the caller does not have is ok, changes nothing and emits nothing', async () => {
    const room = await openRoom();
    const sent = await say(room.aliceA, room, 'twice');
    const first = acked(await react(room.bobB, room, sent.id, 'tada'), 'bob adds tada');
    expect(first.reactions).to.deep.equal([{ emoji: 'tada', count: 1, userIds: [bob.user.id] }]);
    expect(acked(await react(room.bobB, room, sent.id, 'tada'), 'again on the same socket'), 'nothing changed').to.deep.equal(first);
    expect(acked(await react(room.bobB, room, sent.id, 'tada', { clientChangeId: unique('t-') }), 'again with a fresh clientChangeId')).to.deep.equal(first);
    expect(answered(await restReact(A, bob.token, room.id, sent.id, 'tada'), 'again through REST on A')).to.deep.equal(first);

    // Alice never reacted with tada: removing "hers" leaves bob's alone.
    expect(acked(await unreact(room.aliceA, room, sent.id, 'tada'), 'alice removes a tada she does not have')).to.deep.equal(first);
    expect(answered(await restUnreact(B, alice.token, room.id, sent.id, 'tada'), 'the same through REST')).to.deep.equal(first);
    expect(acked(await unreact(room.aliceB, room, sent.id, 'nobody_used_this'), 'an emoji nobody used')).to.deep.equal(first);
    expect(answered(await restUnreact(A, owner.token, room.id, sent.id, '🎉', { clientChangeId: unique('t-') }), 'an emoji nobody used, REST')).to.deep.equal(first);

    // Removing twice: one reaction:removed.
    const gone = acked(await unreact(room.bobB, room, sent.id, 'tada'), 'bob removes tada');
    expect(gone).to.deep.equal({ ...sent, rev: 3 });
    expect(acked(await unreact(room.bobB, room, sent.id, 'tada'), 'bob removes it again')).to.deep.equal(gone);
    expect(answered(await restUnreact(B, bob.token, room.id, sent.id, 'tada'), 'and again through REST')).to.deep.equal(gone);

    const mark = await marker(room);
    expect(mark.rev, 'the no-ops spent no rev').to.equal(4);
    expectEvents(room, [newMsg(sent), added(first, 'tada', bob), removed(gone, 'tada', bob), newMsg(mark)]);
    expect(await history(room)).to.deep.equal([gone, mark]);
  });

  it('When a reaction change is retried with the same clientChangeId (socket, other node, REST), then it answers the stored result and emits nothing more, even after the reaction was removed', async () => {
    const room = await openRoom();
    const sent = await say(room.aliceA, room, 'retry me');
    const addId = unique('add-');
    const add = acked(await react(room.aliceA, room, sent.id, 'heart', { clientChangeId: addId }), 'alice adds heart');
    expect(add.reactions).to.deep.equal([{ emoji: 'heart', count: 1, userIds: [alice.user.id] }]);
    expect(acked(await react(room.aliceA, room, sent.id, 'heart', { clientChangeId: addId }), 'retry on the same socket')).to.deep.equal(add);
    expect(acked(await react(room.aliceB, room, sent.id, 'heart', { clientChangeId: addId }), 'retry on node B')).to.deep.equal(add);
    expect(answered(await restReact(B, alice.token, room.id, sent.id, 'heart', { clientChangeId: addId }), 'retry through REST')).to.deep.equal(add);

    const removeId = unique('rm-');
    const rm = answered(await restUnreact(A, alice.token, room.id, sent.id, 'heart', { clientChangeId: removeId }), 'alice removes heart through REST');
    expect(rm).to.deep.equal({ ...sent, rev: 3 });
    expect(answered(await restUnreact(B, alice.token, room.id, sent.id, 'heart', { clientChangeId: removeId }), 'REST retry')).to.deep.equal(rm);
    expect(acked(await unreact(room.aliceA, room, sent.id, 'heart', { clientChangeId: removeId }), 'socket retry of the REST removal')).to.deep.equal(rm);

    // The add's id again, after the removal: ok, and the heart is not added back. "Answers the stored
    // result" reads as the result that change stored (`add`) or as the message as stored now (`rm`): either.
    const late = acked(await react(room.aliceB, room, sent.id, 'heart', { clientChangeId: addId }), 'the add retried after the removal');
    expect([add, rm], `the answer to the late retry: ${JSON.stringify(late)}`).to.deep.include(late);

    const mark = await marker(room);
    expect(mark.rev, 'the retries spent no rev').to.equal(4);
    expectEvents(room, [newMsg(sent), added(add, 'heart', alice), removed(rm, 'heart', alice), newMsg(mark)]);
    const h = await history(room);
    expect(h[0].reactions, 'no heart after the retries').to.deep.equal([]);
    expect(h).to.deep.equal([rm, mark]);
  });

  it('When the emoji is not a short name nor exactly one Unicode emoji (or a field is bad), then VALIDATION_FAILED / 400 and nothing changes; short names, skin tones, flags and ZWJ sequences are accepted', async () => {
    const room = await openRoom();
    const sent = await say(room.aliceA, room, 'emoji rules');
    const bad = ['Thumbsup', 'THUMBSUP', 'thumbs up', ':smile:', 'a'.repeat(65), '👍👍', 'a👍', '👍 ', ' thumbsup', 'é', 'x.y', 'x/y', '<@x>', 'A', '1️⃣2️⃣'];
    for (const emoji of [...bad, '', 42, null, ['thumbsup']]) {
      expectRefused(await react(room.aliceA, room, sent.id, emoji), 'VALIDATION_FAILED', `reaction:add ${JSON.stringify(emoji)}`);
      expectRefused(await unreact(room.aliceB, room, sent.id, emoji), 'VALIDATION_FAILED', `reaction:remove ${JSON.stringify(emoji)}`);
    }
    for (const emoji of bad) {
      const put = await restReact(A, alice.token, room.id, sent.id, emoji);
      expect([put.status, put.body?.error?.code], `PUT ${JSON.stringify(emoji)}: ${put.text}`).to.deep.equal([400, 'VALIDATION_FAILED']);
      const del = await restUnreact(B, alice.token, room.id, sent.id, emoji);
      expect([del.status, del.body?.error?.code], `DELETE ${JSON.stringify(emoji)}: ${del.text}`).to.deep.equal([400, 'VALIDATION_FAILED']);
    }
    const badFields: Array<[string, unknown]> = [
      ['no emoji', { channelId: room.id, messageId: sent.id }],
      ['no messageId', { channelId: room.id, emoji: 'ok' }],
      ['an unknown field', { channelId: room.id, messageId: sent.id, emoji: 'ok', extra: 1 }],
      ['a clientChangeId with a space', { channelId: room.id, messageId: sent.id, emoji: 'ok', clientChangeId: 'bad id' }],
      ['a clientChangeId of 65 characters', { channelId: room.id, messageId: sent.id, emoji: 'ok', clientChangeId: 'z'.repeat(65) }],
      ['an empty clientChangeId', { channelId: room.id, messageId: sent.id, emoji: 'ok', clientChangeId: '' }],
      ['a string instead of an object', 'thumbsup'],
    ];
    for (const [what, payload] of badFields) {
      expectRefused(await emit(room.bobB, 'reaction:add', payload), 'VALIDATION_FAILED', `reaction:add with ${what}`);
      expectRefused(await emit(room.bobB, 'reaction:remove', payload), 'VALIDATION_FAILED', `reaction:remove with ${what}`);
    }
    expectError(await restReact(A, bob.token, room.id, sent.id, 'ok', { clientChangeId: 'bad id' }), 400, 'VALIDATION_FAILED');
    expectError(await restUnreact(A, bob.token, room.id, sent.id, 'ok', { clientChangeId: 'bad id' }), 400, 'VALIDATION_FAILED');

    const mark = await marker(room);
    expect(mark.rev, 'no rev was spent on the refusals').to.equal(2);
    expectEvents(room, [newMsg(sent), newMsg(mark)]);
    expect(await history(room)).to.deep.equal([sent, mark]);

    // The accepted forms, alternately over the socket and through REST, each by alice.
    const good = ['a'.repeat(64), '+1', '-1', 'white_check_mark', '100', '👍🏽', '🇫🇷', '👨‍👩‍👧', '❤️', '😀'];
    let last = sent;
    for (const [i, emoji] of good.entries()) {
      last =
        i % 2 === 0
          ? acked(await react(room.aliceA, room, sent.id, emoji), `reaction:add ${emoji}`)
          : answered(await restReact(B, alice.token, room.id, sent.id, emoji), `PUT ${emoji}`);
    }
    expect(last.reactions).to.deep.equal(good.map((emoji) => ({ emoji, count: 1, userIds: [alice.user.id] })));
    const end = await marker(room);
    const events = expectOneGapFreeStream(room);
    expect(events.filter((e) => e.name === 'reaction:added').map((e) => e.payload.emoji), 'each emoji exactly as given').to.deep.equal(good);
    const h = await history(room);
    expect(h).to.deep.equal([last, mark, end]);
    expectHistoryMatchesEvents(h, events);
  });

  it('When a non-member or outsider reacts, or the message is of another channel, unknown, or deleted, then NOT_FOUND / 404; in an archived channel, FORBIDDEN / 403 for adding and removing', async () => {
    const room = await openRoom();
    const sent = await say(room.aliceA, room, 'guarded');
    const kept = acked(await react(room.bobB, room, sent.id, 'eyes'), 'bob reacts before anything');
    const elsewhere = await seedChannel(A, team, [alice]);
    const foreign = await say(room.aliceA, { id: elsewhere.id }, 'in another channel');
    const outsiderA = await connect(A, outsider.token);

    for (const [socket, who] of [[room.carolA, 'carol'], [outsiderA, 'the outsider']] as const) {
      expectRefused(await react(socket, room, sent.id, 'eyes'), 'NOT_FOUND', `${who} adds`);
      expectRefused(await unreact(socket, room, sent.id, 'eyes'), 'NOT_FOUND', `${who} removes`);
    }
    for (const [url, who] of [[A, carol], [B, outsider]] as const) {
      expectError(await restReact(url, who.token, room.id, sent.id, 'eyes'), 404, 'NOT_FOUND');
      expectError(await restUnreact(url, who.token, room.id, sent.id, 'eyes'), 404, 'NOT_FOUND');
    }
    expectRefused(await react(room.aliceA, room, foreign.id, 'eyes'), 'NOT_FOUND', 'a message of another channel');
    expectRefused(await react(room.aliceA, room, randomUUID(), 'eyes'), 'NOT_FOUND', 'a random message id');
    expectRefused(await react(room.aliceA, { id: randomUUID() }, sent.id, 'eyes'), 'NOT_FOUND', 'a random channel id');
    expectError(await restReact(B, alice.token, room.id, foreign.id, 'eyes'), 404, 'NOT_FOUND');
    expectError(await restUnreact(B, alice.token, room.id, randomUUID(), 'eyes'), 404, 'NOT_FOUND');

    // Archived: bob can neither add nor remove, and his reaction stays.
    expect((await request(A, 'POST', `/channels/${room.id}/archive`, { token: owner.token })).status).to.equal(200);
    expectRefused(await react(room.aliceA, room, sent.id, 'fire'), 'FORBIDDEN', 'adding in an archived channel');
    expectRefused(await unreact(room.bobB, room, sent.id, 'eyes'), 'FORBIDDEN', 'removing in an archived channel');
    expectError(await restReact(B, alice.token, room.id, sent.id, 'fire'), 403, 'FORBIDDEN');
    expectError(await restUnreact(A, bob.token, room.id, sent.id, 'eyes'), 403, 'FORBIDDEN');
    expect(await history(room)).to.deep.equal([kept]);
    expect((await request(B, 'POST', `/channels/${room.id}/unarchive`, { token: owner.token })).status).to.equal(200);

    // Deleted: its reactions are erased, and reacting is NOT_FOUND.
    const gone = acked(await emit(room.aliceA, 'message:delete', { channelId: room.id, messageId: sent.id }), 'alice deletes it');
    expect(gone).to.deep.include({ deleted: true, body: '', reactions: [], rev: 3 });
    expectRefused(await react(room.bobB, room, sent.id, 'eyes'), 'NOT_FOUND', 'adding to a deleted message');
    expectRefused(await unreact(room.bobB, room, sent.id, 'eyes'), 'NOT_FOUND', 'removing from a deleted message');
    expectRefused(await react(room.ownerB, room, sent.id, 'fire', { clientChangeId: unique('f-') }), 'NOT_FOUND', 'the owner adds to a deleted message');
    expectError(await restReact(A, bob.token, room.id, sent.id, 'eyes'), 404, 'NOT_FOUND');
    expectError(await restUnreact(B, bob.token, room.id, sent.id, 'eyes'), 404, 'NOT_FOUND');

    const mark = await marker(room);
    expect(mark.rev).to.equal(4);
    expectEvents(room, [
      newMsg(sent),
      added(kept, 'eyes', bob),
      ['message:deleted', { channelId: room.id, rev: 3, messageId: sent.id, seq: 1 }],
      newMsg(mark),
    ]);
    expect(await history(room)).to.deep.equal([gone, mark]);
    expect(await history({ id: elsewhere.id })).to.deep.equal([foreign]);
  });

  it('When a guest in the channel reacts, then it works as for any member; reactions racing a delete of the message are applied before it (lower rev) or NOT_FOUND, and the message ends without reactions', async () => {
    const room = await openRoom();
    const guest = await registerUser(A);
    await addWorkspaceMember(A, owner.token, team.workspace.id, guest.email, 'guest');
    const added201 = await request(A, 'POST', `/channels/${room.id}/members`, { token: alice.token, body: { userId: guest.user.id } });
    expect(added201.status, added201.text).to.equal(201);
    const guestB = await connect(B, guest.token);
    const sent = await say(room.aliceA, room, 'the guest may react');
    const byGuest = acked(await react(guestB, room, sent.id, 'wave'), 'the guest reacts');
    expect(byGuest.reactions).to.deep.equal([{ emoji: 'wave', count: 1, userIds: [guest.user.id] }]);
    const guestOff = answered(await restUnreact(A, guest.token, room.id, sent.id, 'wave'), 'the guest removes it');
    expect(guestOff.reactions).to.deep.equal([]);

    const emojis = ['a1', 'a2', 'a3', 'a4', 'a5', 'a6', 'a7', 'a8'];
    const [outcomes, gone] = await Promise.all([
      Promise.all(emojis.map((e, i) => (i % 2 ? react(room.bobB, room, sent.id, e) : react(room.adminA, room, sent.id, e)))),
      (async () => acked(await emit(room.aliceA, 'message:delete', { channelId: room.id, messageId: sent.id }), 'the racing delete'))(),
    ]);
    for (const [k, o] of outcomes.entries()) {
      if (o.ok) expect(o.message.rev, `reaction ${emojis[k]} before the delete`).to.be.below(gone.rev);
      else expect(o.error.code, `reaction ${emojis[k]}`).to.equal('NOT_FOUND');
    }
    expect(gone.reactions).to.deep.equal([]);
    const mark = await marker(room);
    const events = expectOneGapFreeStream(room);
    expect(events.slice(0, 3)).to.deep.equal(
      [newMsg(sent), added(byGuest, 'wave', guest), removed(guestOff, 'wave', guest)].map(([name, payload]) => ({ name, channelId: room.id, rev: (payload as { rev: number }).rev, payload })),
    );
    expect(events.at(-2)!.name).to.equal('message:deleted');
    expect(events.filter((e) => e.name === 'reaction:added').length).to.equal(1 + outcomes.filter((o) => o.ok).length);
    const h = await history(room);
    expect(h).to.deep.equal([gone, mark]);
    expectHistoryMatchesEvents(h, events);
  });

  it('When 51 members react with the same emoji, then count is 51 and userIds the first 50 in reaction order; when the first removes theirs, the 51st moves in', async function () {
    const many = await Promise.all(range(51).map(() => registerUser(A)));
    for (const m of many) await addWorkspaceMember(A, owner.token, team.workspace.id, m.email);
    const room = await openRoom(many);
    const sent = await say(room.aliceA, room, 'popular');
    const answers: Msg[] = [];
    for (const [i, m] of many.entries()) answers.push(answered(await restReact(i % 2 ? A : B, m.token, room.id, sent.id, 'star'), `reactor ${i}`));
    const ids = many.map((m) => m.user.id);
    expect(answers.map((a) => a.rev)).to.deep.equal(range(51, 2));
    expect(answers[49].reactions).to.deep.equal([{ emoji: 'star', count: 50, userIds: ids.slice(0, 50) }]);
    expect(answers[50].reactions).to.deep.equal([{ emoji: 'star', count: 51, userIds: ids.slice(0, 50) }]);
    const less = answered(await restUnreact(A, many[0].token, room.id, sent.id, 'star'), 'the first reactor removes theirs');
    expect(less.reactions).to.deep.equal([{ emoji: 'star', count: 50, userIds: ids.slice(1, 51) }]);

    const mark = await marker(room);
    expect(mark.rev).to.equal(54);
    const events = expectEvents(room, [
      newMsg(sent),
      ...answers.map((a, i) => added(a, 'star', many[i])),
      removed(less, 'star', many[0]),
      newMsg(mark),
    ]);
    const h = await history(room);
    expect(h).to.deep.equal([less, mark]);
    expectHistoryMatchesEvents(h, events);
  });
});
