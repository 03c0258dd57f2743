import { expect } from 'chai';
import { randomUUID } from 'node:crypto';
import { addWorkspaceMember, createChannel, expectError, registerUser, request, unique, type ApiResponse, type RegisteredUser } from '../support/api.js';
import { connect, range, waitFor } from '../support/sockets.js';
import { Queue, type Job } from 'bullmq';
import { loadConfig } from '../../shared/config.js';
import { MESSAGE_BATCH_JOB, batchJobOptions, bullPrefix, messageQueueName, partitionOf, type BatchResult, type MessageBatchJob } from '../../shared/queues.js';
import { clusterRedisPrefix, fullHistory, seedChannel } from './fixtures.js';
import {
  useChangesCluster,
  EventLog,
  emit,
  acked,
  expectRefused,
  answered,
  expectHistoryMatchesEvents,
  expectOneGapFreeStream,
  expectEvents,
  say,
  marker,
  edit,
  remove,
  restEdit,
  restDelete,
  react,
  unreact,
  settle,
  newMsg,
  updated,
  deletedEvent,
  reactionEvent,
  type Msg,
  type Ack,
} from './changes-harness.js';
import type { Team } from './fixtures.js';

/**
 * Message edits and deletes (docs/API.md, "Edits, deletes, reactions and threads") across a cluster (2 front nodes, 2 workers):
 * `message:edit` / `message:delete` over sockets and PATCH / DELETE over REST, the `message:updated` and
 * `message:deleted` events every socket of the channel gets on both nodes, one gap-free rev counter per
 * channel, the permission rules, `clientChangeId` idempotency, and the history afterwards.
 */

describe('pipeline: message edits and deletes across nodes', function () {
  this.timeout(60_000);

  const harness = useChangesCluster('message-edits');
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

  describe('edits', () => {
    it('When the author edits over the socket on node A and then through REST on node B, then every member socket on both nodes gets message:updated {channelId, rev, message} once, and the ack and the 200 carry the edited message', async () => {
      const room = await openRoom();
      const sent = await say(room.aliceA, room, 'first draft');
      expect(sent).to.deep.include({
        channelId: room.id,
        seq: 1,
        rev: 1,
        userId: alice.user.id,
        body: 'first draft',
        parentId: null,
        editedAt: null,
        deleted: false,
        replyCount: 0,
        lastReplyAt: null,
        reactions: [],
        mentions: [],
      });

      const first = acked(await edit(room.aliceA, room, sent.id, '  second draft \n'), 'socket edit');
      expect(first.editedAt, 'editedAt after an edit').to.be.a('string');
      expect(first, 'the edited message: trimmed body, the next rev, editedAt, the rest unchanged').to.deep.equal({
        ...sent,
        rev: 2,
        body: 'second draft',
        editedAt: first.editedAt,
      });
      expect(Date.parse(first.editedAt!)).to.be.at.least(Date.parse(sent.createdAt));

      const second = answered(await restEdit(B, alice.token, room.id, sent.id, { body: 'third draft' }), 'REST edit');
      expect(second).to.deep.equal({ ...sent, rev: 3, body: 'third draft', editedAt: second.editedAt });
      expect(Date.parse(second.editedAt!)).to.be.at.least(Date.parse(first.editedAt!));

      const mark = await marker(room);
      expect(mark.rev).to.equal(4);
      expectEvents(room, [newMsg(sent), updated(first), updated(second), newMsg(mark)]);
      const h = await history(room);
      expect(h).to.deep.equal([second, mark]);
      expectHistoryMatchesEvents(h, room.logs[2].of(room.id));
    });

    it('When someone other than the author edits (a member, the workspace owner, a workspace admin), then FORBIDDEN / 403 and nothing changes or is emitted', async () => {
      const room = await openRoom();
      const sent = await say(room.aliceA, room, 'only alice may edit this');
      expectRefused(await edit(room.bobB, room, sent.id, 'bob was here'), 'FORBIDDEN', 'bob over the socket');
      expectRefused(await edit(room.ownerB, room, sent.id, 'owner was here'), 'FORBIDDEN', 'the owner over the socket');
      expectRefused(await edit(room.adminA, room, sent.id, 'admin was here', { clientChangeId: unique('x-') }), 'FORBIDDEN', 'the admin over the socket');
      expectError(await restEdit(A, bob.token, room.id, sent.id, { body: 'bob via REST' }), 403, 'FORBIDDEN');
      expectError(await restEdit(B, owner.token, room.id, sent.id, { body: 'owner via REST' }), 403, 'FORBIDDEN');
      expectError(await restEdit(A, admin.token, room.id, sent.id, { body: 'admin via REST' }), 403, 'FORBIDDEN');

      const mark = await marker(room);
      expect(mark.rev, 'no rev was spent on the refusals').to.equal(2);
      expectEvents(room, [newMsg(sent), newMsg(mark)]);
      expect(await history(room)).to.deep.equal([sent, mark]);
    });

    // A batch's changes are decided in one statement (worker/actions/authorizeChanges.ts): each must still be
    // decided on its own caller and message.
    it('When changes of different callers reach one node together and share a batch, then each is decided on its own caller and message', async () => {
      const room = await openRoom();
      const mine = await say(room.aliceA, room, 'alice wrote this');
      const bobs = await say(room.bobB, room, 'bob wrote this');
      const [aliceEdits, adminEdits, carolEdits, adminDeletes, aliceReacts, aliceEditsNothing, restBobDeletes, restOwnerReacts] =
        await Promise.all([
          edit(room.aliceA, room, mine.id, 'alice edited this'),
          edit(room.adminA, room, mine.id, 'admin was here'),
          edit(room.carolA, room, mine.id, 'carol was here'),
          remove(room.adminA, room, bobs.id),
          react(room.aliceA, room, bobs.id, 'eyes'),
          edit(room.aliceA, room, randomUUID(), 'no such message'),
          restDelete(A, bob.token, room.id, mine.id),
          request(A, 'PUT', `/channels/${room.id}/messages/${mine.id}/reactions/tada`, { token: owner.token }),
        ]);
      expect(acked(aliceEdits, 'the author edits').body).to.equal('alice edited this');
      expectRefused(adminEdits, 'FORBIDDEN', 'an admin edits what alice wrote');
      expectRefused(carolEdits, 'NOT_FOUND', 'carol, outside the channel, edits');
      expect(acked(adminDeletes, 'an admin deletes what bob wrote').deleted).to.equal(true);
      expectRefused(aliceEditsNothing, 'NOT_FOUND', 'alice edits a message that does not exist');
      expectError(restBobDeletes, 403, 'FORBIDDEN');
      expect(answered(restOwnerReacts, 'the owner reacts over REST').reactions.map((r) => r.emoji)).to.include('tada');
      // Alice's reaction raced the admin's delete of bob's message: applied before it, or refused after it.
      if (!aliceReacts.ok) expectRefused(aliceReacts, 'NOT_FOUND', 'alice reacts to a message deleted just before');

      const mark = await marker(room);
      const applied = 3 + (aliceReacts.ok ? 1 : 0);
      expect(mark.rev, 'one rev per change applied, none for the refusals').to.equal(2 + applied + 1);
      expectHistoryMatchesEvents(await history(room), expectOneGapFreeStream(room));
    });

    it('When the body is empty after trimming, too long, not a string, or a field is malformed or unknown, then VALIDATION_FAILED / 400 and nothing changes; 4000 characters after trimming and a 64-character clientChangeId are accepted', async () => {
      const room = await openRoom();
      const sent = await say(room.aliceA, room, 'validate me');
      const long = 'x'.repeat(4001);
      const socketCases: Array<[string, unknown]> = [
        ['an empty body', { channelId: room.id, messageId: sent.id, body: '' }],
        ['a whitespace body', { channelId: room.id, messageId: sent.id, body: ' \n\t ' }],
        ['no body', { channelId: room.id, messageId: sent.id }],
        ['a null body', { channelId: room.id, messageId: sent.id, body: null }],
        ['a number body', { channelId: room.id, messageId: sent.id, body: 42 }],
        ['a body of 4001 characters', { channelId: room.id, messageId: sent.id, body: long }],
        ['a body of 4001 characters after trimming', { channelId: room.id, messageId: sent.id, body: `  ${long}\n` }],
        ['an empty clientChangeId', { channelId: room.id, messageId: sent.id, body: 'ok', clientChangeId: '' }],
        ['a clientChangeId with a space', { channelId: room.id, messageId: sent.id, body: 'ok', clientChangeId: 'bad id' }],
        ['a non-ASCII clientChangeId', { channelId: room.id, messageId: sent.id, body: 'ok', clientChangeId: 'café' }],
        ['a clientChangeId of 65 characters', { channelId: room.id, messageId: sent.id, body: 'ok', clientChangeId: 'a'.repeat(65) }],
        ['a numeric clientChangeId', { channelId: room.id, messageId: sent.id, body: 'ok', clientChangeId: 12345 }],
        ['an unknown field', { channelId: room.id, messageId: sent.id, body: 'ok', extra: true }],
        ['no messageId', { channelId: room.id, body: 'ok' }],
        ['no channelId', { messageId: sent.id, body: 'ok' }],
        ['a number instead of an object', 42],
        ['null instead of an object', null],
      ];
      for (const [what, payload] of socketCases) expectRefused(await emit(room.aliceA, 'message:edit', payload), 'VALIDATION_FAILED', `socket edit with ${what}`);
      const deleteCases: Array<[string, unknown]> = [
        ['a clientChangeId with a space', { channelId: room.id, messageId: sent.id, clientChangeId: 'bad id' }],
        ['a clientChangeId of 65 characters', { channelId: room.id, messageId: sent.id, clientChangeId: 'a'.repeat(65) }],
        ['an unknown field', { channelId: room.id, messageId: sent.id, extra: 1 }],
        ['a body', { channelId: room.id, messageId: sent.id, body: 'delete has no body' }],
        ['no messageId', { channelId: room.id }],
      ];
      for (const [what, payload] of deleteCases) expectRefused(await emit(room.aliceB, 'message:delete', payload), 'VALIDATION_FAILED', `socket delete with ${what}`);

      const restCases: Array<[string, unknown]> = [
        ['an empty body', { body: '' }],
        ['a whitespace body', { body: '   ' }],
        ['no body', {}],
        ['a number body', { body: 7 }],
        ['a body of 4001 characters', { body: long }],
        ['a clientChangeId with a space', { body: 'ok', clientChangeId: 'bad id' }],
        ['a clientChangeId of 65 characters', { body: 'ok', clientChangeId: 'b'.repeat(65) }],
      ];
      for (const [what, body] of restCases) {
        const res = await restEdit(B, alice.token, room.id, sent.id, body);
        expect([res.status, res.body?.error?.code], `PATCH with ${what}: ${res.text}`).to.deep.equal([400, 'VALIDATION_FAILED']);
      }
      const badDelete = await restDelete(A, alice.token, room.id, sent.id, { clientChangeId: 'bad id' });
      expectError(badDelete, 400, 'VALIDATION_FAILED');

      const mark = await marker(room);
      expect(mark.rev, 'no rev was spent on the refusals').to.equal(2);
      expectEvents(room, [newMsg(sent), newMsg(mark)]);
      expect(await history(room)).to.deep.equal([sent, mark]);

      // The limits themselves are fine.
      const max = 'y'.repeat(4000);
      const longest = acked(await edit(room.aliceA, room, sent.id, `\n ${max} \t`, { clientChangeId: 'c'.repeat(64) }), 'edit at the limits');
      expect(longest).to.deep.include({ body: max, rev: 3 });
    });
  });

  describe('deletes', () => {
    it('When the author deletes over the socket on node A and through REST on node B, then every member socket gets message:deleted {channelId, rev, messageId, seq} once, the answers carry deleted: true with body, mentions and reactions erased, and history keeps them', async () => {
      const room = await openRoom();
      const first = await say(room.aliceA, room, `hey <@${bob.user.id}>, look`);
      expect(first.mentions).to.deep.equal([bob.user.id]);
      const reacted = acked(await emit(room.bobB, 'reaction:add', { channelId: room.id, messageId: first.id, emoji: 'eyes' }), 'bob reacts');
      expect(reacted.reactions).to.deep.equal([{ emoji: 'eyes', count: 1, userIds: [bob.user.id] }]);
      const second = await say(room.aliceB, room, 'second, deleted through REST');
      const kept = await say(room.bobB, room, 'bob keeps this one');

      const gone = acked(await remove(room.aliceA, room, first.id), 'socket delete');
      expect({ ...gone, editedAt: null }, 'the deleted message: same id, seq, author and times, the next rev, erased').to.deep.equal({
        ...first,
        rev: 5,
        deleted: true,
        body: '',
        mentions: [],
        reactions: [],
        editedAt: null,
      });
      const goneToo = answered(await restDelete(B, alice.token, room.id, second.id, { clientChangeId: unique('d-') }), 'REST delete');
      expect({ ...goneToo, editedAt: null }).to.deep.equal({ ...second, rev: 6, deleted: true, body: '' });
      // Without a body at all, too.
      const third = await say(room.aliceB, room, 'third, deleted without a body');
      const goneThree = answered(await restDelete(A, alice.token, room.id, third.id), 'REST delete without a body');
      expect(goneThree).to.deep.include({ id: third.id, seq: third.seq, rev: 8, deleted: true, body: '' });

      const mark = await marker(room);
      const events = expectEvents(room, [
        newMsg(first),
        ['reaction:added', { channelId: room.id, rev: 2, messageId: first.id, emoji: 'eyes', userId: bob.user.id }],
        newMsg(second),
        newMsg(kept),
        deletedEvent(gone),
        deletedEvent(goneToo),
        newMsg(third),
        deletedEvent(goneThree),
        newMsg(mark),
      ]);

      const h = await history(room, bob.token);
      expect(h.map((m) => [m.seq, m.deleted, m.body])).to.deep.equal([
        [1, true, ''],
        [2, true, ''],
        [3, false, 'bob keeps this one'],
        [4, true, ''],
        [5, false, mark.body],
      ]);
      expect(h[0]).to.deep.equal(gone);
      expect(h[1]).to.deep.equal(goneToo);
      expect(h[2]).to.deep.equal(kept);
      expect(h[3]).to.deep.equal(goneThree);
      expectHistoryMatchesEvents(h, events);
    });

    it('When a member deletes someone else\'s message, then FORBIDDEN / 403; when the workspace owner or an admin in the channel does, then it is deleted for everyone', async () => {
      const room = await openRoom();
      const ofAlice = await say(room.aliceA, room, 'alice wrote this');
      const ofBob = await say(room.bobB, room, 'bob wrote this');
      expectRefused(await remove(room.bobB, room, ofAlice.id), 'FORBIDDEN', 'bob deletes alice\'s over the socket');
      expectRefused(await remove(room.aliceA, room, ofBob.id, { clientChangeId: unique('x-') }), 'FORBIDDEN', 'alice deletes bob\'s over the socket');
      expectError(await restDelete(A, bob.token, room.id, ofAlice.id), 403, 'FORBIDDEN');
      expectError(await restDelete(B, alice.token, room.id, ofBob.id, {}), 403, 'FORBIDDEN');
      const stillThere = await marker(room);
      expect(stillThere.rev).to.equal(3);

      const byOwner = answered(await restDelete(A, owner.token, room.id, ofAlice.id), 'the owner deletes alice\'s through REST on A');
      expect(byOwner).to.deep.include({ id: ofAlice.id, userId: alice.user.id, seq: 1, rev: 4, deleted: true, body: '' });
      const byAdmin = acked(await remove(room.adminA, room, ofBob.id), 'the admin deletes bob\'s over the socket on A');
      expect(byAdmin).to.deep.include({ id: ofBob.id, userId: bob.user.id, seq: 2, rev: 5, deleted: true, body: '' });

      const mark = await marker(room);
      const events = expectEvents(room, [newMsg(ofAlice), newMsg(ofBob), newMsg(stillThere), deletedEvent(byOwner), deletedEvent(byAdmin), newMsg(mark)]);
      const h = await history(room);
      expect(h).to.deep.equal([byOwner, byAdmin, stillThere, mark]);
      expectHistoryMatchesEvents(h, events);
    });
  });

  describe('refusals', () => {
    it('When a non-member, an outsider, or anyone names an unknown channel or a message not in that channel, then NOT_FOUND / 404 for edits and deletes, and nothing changes', async () => {
      const room = await openRoom();
      const sent = await say(room.aliceA, room, 'not yours');
      const elsewhere = await seedChannel(A, team, [alice]);
      const foreign = await say(room.aliceA, { id: elsewhere.id }, 'in another channel');
      // Created by alice: the owner is not in it.
      const secret = await createChannel(A, alice.token, team.workspace.id, { isPrivate: true });
      const secretMsg = await say(room.aliceA, { id: secret.id }, 'a secret');
      const outsiderB = await connect(B, outsider.token);

      // Carol is in the workspace but not in the channel; the outsider is in neither.
      expectRefused(await edit(room.carolA, room, sent.id, 'carol'), 'NOT_FOUND', 'carol edits');
      expectRefused(await remove(room.carolA, room, sent.id), 'NOT_FOUND', 'carol deletes');
      expectRefused(await edit(outsiderB, room, sent.id, 'outsider'), 'NOT_FOUND', 'the outsider edits');
      expectRefused(await remove(outsiderB, room, sent.id), 'NOT_FOUND', 'the outsider deletes');
      for (const [url, who] of [[A, carol], [B, outsider]] as const) {
        expectError(await restEdit(url, who.token, room.id, sent.id, { body: 'nope' }), 404, 'NOT_FOUND');
        expectError(await restDelete(url, who.token, room.id, sent.id), 404, 'NOT_FOUND');
      }
      // A private channel the owner and bob are not in: NOT_FOUND even for the owner (and the author's message).
      expectRefused(await remove(room.ownerB, { id: secret.id }, secretMsg.id), 'NOT_FOUND', 'the owner deletes in a private channel they are not in');
      expectError(await restDelete(A, owner.token, secret.id, secretMsg.id), 404, 'NOT_FOUND');
      expectRefused(await edit(room.bobB, { id: secret.id }, secretMsg.id, 'bob'), 'NOT_FOUND', 'bob edits in a private channel he is not in');

      // The author, with a message of another channel, a random message id, a random channel id.
      expectRefused(await edit(room.aliceA, room, foreign.id, 'wrong channel'), 'NOT_FOUND', 'a message of another channel');
      expectRefused(await remove(room.aliceB, room, foreign.id), 'NOT_FOUND', 'deleting a message of another channel');
      expectRefused(await edit(room.aliceA, room, randomUUID(), 'no such message'), 'NOT_FOUND', 'a random message id');
      expectRefused(await remove(room.aliceA, room, randomUUID()), 'NOT_FOUND', 'deleting a random message id');
      expectRefused(await edit(room.aliceA, { id: randomUUID() }, sent.id, 'no such channel'), 'NOT_FOUND', 'a random channel id');
      expectError(await restEdit(B, alice.token, room.id, foreign.id, { body: 'wrong channel' }), 404, 'NOT_FOUND');
      expectError(await restDelete(B, alice.token, room.id, foreign.id), 404, 'NOT_FOUND');
      expectError(await restEdit(B, alice.token, room.id, randomUUID(), { body: 'no such message' }), 404, 'NOT_FOUND');
      expectError(await restDelete(A, alice.token, randomUUID(), sent.id), 404, 'NOT_FOUND');

      // An author who left the channel is a non-member like any other.
      const leaver = await registerUser(A);
      await addWorkspaceMember(A, owner.token, team.workspace.id, leaver.email);
      expect((await request(A, 'POST', `/channels/${room.id}/join`, { token: leaver.token })).status).to.equal(200);
      const leaverB = await connect(B, leaver.token);
      const left = await say(leaverB, room, 'written before leaving');
      expect((await request(B, 'POST', `/channels/${room.id}/leave`, { token: leaver.token })).status).to.equal(200);
      expectRefused(await edit(leaverB, room, left.id, 'after leaving'), 'NOT_FOUND', 'the author edits after leaving');
      expectRefused(await remove(leaverB, room, left.id), 'NOT_FOUND', 'the author deletes after leaving');
      expectError(await restEdit(A, leaver.token, room.id, left.id, { body: 'after leaving' }), 404, 'NOT_FOUND');
      expectError(await restDelete(A, leaver.token, room.id, left.id), 404, 'NOT_FOUND');

      const mark = await marker(room);
      expectEvents(room, [newMsg(sent), newMsg(left), newMsg(mark)]);
      expect(await history(room)).to.deep.equal([sent, left, mark]);
      expect(await history({ id: elsewhere.id })).to.deep.equal([foreign]);
      expect(await history({ id: secret.id })).to.deep.equal([secretMsg]);
    });

    it('When a message is deleted, then editing or deleting it again (author or owner, socket or REST, with a fresh clientChangeId or none) is NOT_FOUND / 404 and emits nothing', async () => {
      const room = await openRoom();
      const sent = await say(room.aliceA, room, 'soon gone');
      const gone = acked(await remove(room.aliceA, room, sent.id), 'delete');
      expectRefused(await edit(room.aliceA, room, sent.id, 'resurrect'), 'NOT_FOUND', 'edit a deleted message');
      expectRefused(await edit(room.aliceB, room, sent.id, 'resurrect', { clientChangeId: unique('e-') }), 'NOT_FOUND', 'edit a deleted message with an id');
      expectRefused(await remove(room.aliceA, room, sent.id), 'NOT_FOUND', 'delete it again');
      expectRefused(await remove(room.aliceA, room, sent.id, { clientChangeId: unique('d-') }), 'NOT_FOUND', 'delete it again with a fresh id');
      expectRefused(await remove(room.ownerB, room, sent.id), 'NOT_FOUND', 'the owner deletes it again');
      expectError(await restEdit(B, alice.token, room.id, sent.id, { body: 'resurrect' }), 404, 'NOT_FOUND');
      expectError(await restDelete(B, alice.token, room.id, sent.id), 404, 'NOT_FOUND');
      expectError(await restDelete(A, owner.token, room.id, sent.id, { clientChangeId: unique('d-') }), 404, 'NOT_FOUND');

      const mark = await marker(room);
      expect(mark.rev).to.equal(3);
      expectEvents(room, [newMsg(sent), deletedEvent(gone), newMsg(mark)]);
      expect(await history(room)).to.deep.equal([gone, mark]);
    });

    it('When the channel is archived, then edits and deletes (author, owner; socket or REST) are FORBIDDEN / 403; unarchived, they work again with the next rev', async () => {
      const room = await openRoom();
      const sent = await say(room.aliceA, room, 'before the archive');
      const archived = await request(B, 'POST', `/channels/${room.id}/archive`, { token: owner.token });
      expect(archived.status, archived.text).to.equal(200);
      expect(archived.body.channel.archived).to.equal(true);

      expectRefused(await edit(room.aliceA, room, sent.id, 'after the archive'), 'FORBIDDEN', 'socket edit');
      expectRefused(await remove(room.aliceB, room, sent.id), 'FORBIDDEN', 'socket delete');
      expectRefused(await remove(room.ownerB, room, sent.id), 'FORBIDDEN', 'socket delete by the owner');
      expectError(await restEdit(A, alice.token, room.id, sent.id, { body: 'after the archive' }), 403, 'FORBIDDEN');
      expectError(await restDelete(B, alice.token, room.id, sent.id), 403, 'FORBIDDEN');
      expectError(await restDelete(A, owner.token, room.id, sent.id), 403, 'FORBIDDEN');
      expect(await history(room)).to.deep.equal([sent]);

      const unarchived = await request(A, 'POST', `/channels/${room.id}/unarchive`, { token: owner.token });
      expect(unarchived.status, unarchived.text).to.equal(200);
      const after = acked(await edit(room.aliceA, room, sent.id, 'after the unarchive'), 'edit after unarchiving');
      expect(after).to.deep.include({ rev: 2, body: 'after the unarchive' });
      const mark = await marker(room);
      expectEvents(room, [newMsg(sent), updated(after), newMsg(mark)]);
    });
  });

  describe('roles and races', () => {
    it('When a guest in the channel edits and deletes their own message, then it works as for any member; their edit or delete of another\'s message is FORBIDDEN; an admin outside the channel is NOT_FOUND', async () => {
      const room = await openRoom();
      const guest = await registerUser(A);
      await addWorkspaceMember(A, owner.token, team.workspace.id, guest.email, 'guest');
      await request(A, 'POST', `/channels/${room.id}/members`, { token: owner.token, body: { userId: guest.user.id } }).then((r) => expect(r.status, r.text).to.equal(201));
      const outsideAdmin = await registerUser(A);
      await addWorkspaceMember(A, owner.token, team.workspace.id, outsideAdmin.email, 'admin');
      const guestB = await connect(B, guest.token);
      const outsideAdminA = await connect(A, outsideAdmin.token);

      const theirs = await say(guestB, room, 'a guest writes');
      const ofAlice = await say(room.aliceA, room, 'alice writes');
      const edited = acked(await edit(guestB, room, theirs.id, 'a guest edits'), 'the guest edits their own');
      expectRefused(await edit(guestB, room, ofAlice.id, 'a guest edits alice'), 'FORBIDDEN', 'the guest edits alice\'s');
      expectRefused(await remove(guestB, room, ofAlice.id), 'FORBIDDEN', 'the guest deletes alice\'s');
      expectRefused(await remove(outsideAdminA, room, ofAlice.id), 'NOT_FOUND', 'an admin outside the channel deletes');
      expectError(await restDelete(B, outsideAdmin.token, room.id, ofAlice.id), 404, 'NOT_FOUND');
      const gone = answered(await restDelete(A, guest.token, room.id, theirs.id), 'the guest deletes their own');

      const mark = await marker(room);
      expectEvents(room, [newMsg(theirs), newMsg(ofAlice), updated(edited), deletedEvent(gone), newMsg(mark)]);
      expect(await history(room)).to.deep.equal([gone, ofAlice, mark]);
    });

    it('When edits race a delete of the same message from the other node, then each edit is applied before the delete (lower rev) or NOT_FOUND, and the message ends deleted', async () => {
      const room = await openRoom();
      const target = await say(room.aliceA, room, 'contested');
      const [outcomes, gone] = await Promise.all([
        Promise.all(range(10).map((k) => edit(room.aliceA, room, target.id, `edit ${k}`, { clientChangeId: `race-${k}` }))),
        (async () => answered(await restDelete(B, alice.token, room.id, target.id), 'the racing delete'))(),
      ]);
      for (const [k, o] of outcomes.entries()) {
        if (o.ok) expect(o.message.rev, `edit ${k} was applied before the delete`).to.be.below(gone.rev);
        else expect(o.error.code, `edit ${k}`).to.equal('NOT_FOUND');
      }
      const applied = outcomes.filter((o) => o.ok).length;
      expect(gone.rev, 'the delete follows the applied edits').to.equal(2 + applied);
      const mark = await marker(room);
      const events = expectOneGapFreeStream(room);
      expect(events.map((e) => e.name)).to.deep.equal(['message:new', ...Array(applied).fill('message:updated'), 'message:deleted', 'message:new']);
      const h = await history(room);
      expect(h).to.deep.equal([gone, mark]);
      expectHistoryMatchesEvents(h, events);
    });
  });

  describe('idempotency', () => {
    it('When batches of changes are run again (as after a worker crash between their commit and their completion), then each answers ok with the message as stored now (as a client\'s retry is answered), stores nothing more, and every socket still gets each event once', async () => {
      const room = await openRoom();
      const gone = await say(room.aliceA, room, 'deleted, then its batch runs again');
      const kept = await say(room.aliceA, room, 'edited and reacted to, then the batches run again');
      // No clientChangeId: only the batch's own change ids tell a run again from a new change.
      const changes = [
        acked(await remove(room.aliceA, room, gone.id), 'the delete'),
        acked(await edit(room.aliceB, room, kept.id, 'edited once'), 'the edit'),
        acked(await react(room.bobB, room, kept.id, 'eyes'), 'the reaction'),
        acked(await unreact(room.bobB, room, kept.id, 'eyes'), 'the reaction removed'),
      ];
      await settle(room, changes[3].rev);
      const before = await history(room);

      const queue = new Queue<MessageBatchJob, BatchResult>(messageQueueName(partitionOf(room.id, loadConfig(process.env).queue.partitions)), {
        connection: { url: loadConfig(process.env).redis.url, maxRetriesPerRequest: null },
        prefix: bullPrefix(clusterRedisPrefix('message-edits')),
      });
      try {
        const jobs = (await queue.getJobs(['completed'], 0, -1))
          .filter((j) => j.data.sends.some((c) => 'messageId' in c && (c.messageId === gone.id || c.messageId === kept.id)))
          .sort((a, b) => a.timestamp - b.timestamp);
        expect(jobs.flatMap((j) => j.data.sends.map((c) => c.kind))).to.deep.equal(['delete', 'edit', 'reaction:add', 'reaction:remove']);
        for (const first of jobs) {
          const again = await queue.add(MESSAGE_BATCH_JOB, first.data, batchJobOptions(1000));
          let done: Job<MessageBatchJob, BatchResult> | undefined;
          await waitFor(async () => (done = await queue.getJob(again.id!))?.finishedOn !== undefined, 15_000);
          expect(done!.failedReason, 'the run again').to.equal(undefined);
          const now = Object.fromEntries(
            first.data.sends.map((c) => [c.id, { ok: true, message: before.find((m) => 'messageId' in c && m.id === c.messageId) }]),
          );
          expect(done!.returnvalue.outcomes, `${first.data.sends[0].kind} run again`).to.deep.equal(now);
        }
      } finally {
        await queue.close();
      }

      const mark = await marker(room);
      expect(mark.rev, 'the runs again spent no rev').to.equal(changes[3].rev + 1);
      expectEvents(room, [
        newMsg(gone),
        newMsg(kept),
        deletedEvent(changes[0]),
        updated(changes[1]),
        reactionEvent('added', changes[2], 'eyes', bob),
        reactionEvent('removed', changes[3], 'eyes', bob),
        newMsg(mark),
      ]);
      expect(await history(room)).to.deep.equal([...before, mark]);
    });

    it('When an edit is retried with the same clientChangeId (same socket, the other node, REST, even another body), then it answers the stored result and emits one message:updated; another user may use the same id', async () => {
      const room = await openRoom();
      const mine = await say(room.aliceA, room, 'v1');
      const bobs = await say(room.bobB, room, 'bob v1');
      const changeId = unique('edit-');

      const first = acked(await edit(room.aliceA, room, mine.id, 'v2', { clientChangeId: changeId }), 'the edit');
      expect(first).to.deep.include({ body: 'v2', rev: 3 });
      expect(acked(await edit(room.aliceA, room, mine.id, 'v2', { clientChangeId: changeId }), 'retry on the same socket')).to.deep.equal(first);
      expect(acked(await edit(room.aliceB, room, mine.id, 'v2', { clientChangeId: changeId }), 'retry on node B')).to.deep.equal(first);
      expect(answered(await restEdit(B, alice.token, room.id, mine.id, { body: 'v2', clientChangeId: changeId }), 'retry through REST')).to.deep.equal(first);
      expect(
        acked(await edit(room.aliceA, room, mine.id, 'v3, which must not be applied', { clientChangeId: changeId }), 'retry with another body'),
        'a retry answers the stored result',
      ).to.deep.equal(first);

      // Bob's ids are his own.
      const bobEdit = acked(await edit(room.bobB, room, bobs.id, 'bob v2', { clientChangeId: changeId }), 'bob with the same id');
      expect(bobEdit).to.deep.include({ id: bobs.id, body: 'bob v2', rev: 4 });

      // A REST edit, retried over the socket.
      const restId = unique('rest-');
      const viaRest = answered(await restEdit(A, alice.token, room.id, mine.id, { body: 'v4', clientChangeId: restId }), 'REST edit');
      expect(viaRest).to.deep.include({ body: 'v4', rev: 5 });
      expect(answered(await restEdit(B, alice.token, room.id, mine.id, { body: 'v4', clientChangeId: restId }), 'REST retry')).to.deep.equal(viaRest);
      expect(acked(await edit(room.aliceB, room, mine.id, 'v4', { clientChangeId: restId }), 'socket retry of a REST edit')).to.deep.equal(viaRest);

      const mark = await marker(room);
      expect(mark.rev, 'the retries spent no rev').to.equal(6);
      const events = expectEvents(room, [newMsg(mine), newMsg(bobs), updated(first), updated(bobEdit), updated(viaRest), newMsg(mark)]);
      const h = await history(room);
      expect(h).to.deep.equal([viaRest, bobEdit, mark]);
      expectHistoryMatchesEvents(h, events);
    });

    it('When one edit is sent many times at once with one clientChangeId, from sockets on both nodes and through REST, then it is applied once: every answer carries the same message and one message:updated goes out', async () => {
      const room = await openRoom();
      const mine = await say(room.aliceA, room, 'v1');
      const changeId = unique('burst-');
      const bodies = range(12).map((k) => `v2 (copy ${k})`);
      // Copies race into the same and into different batches, on both nodes; each may carry another body.
      const answers = await Promise.all(
        bodies.map((body, k) =>
          k % 3 === 2
            ? restEdit(k % 2 ? A : B, alice.token, room.id, mine.id, { body, clientChangeId: changeId }).then((res) => answered(res, `REST copy ${k}`))
            : edit(k % 2 ? room.aliceA : room.aliceB, room, mine.id, body, { clientChangeId: changeId }).then((ack) => acked(ack, `socket copy ${k}`)),
        ),
      );
      const [first] = answers;
      expect(bodies, 'the body applied is one of the copies').to.include(first.body);
      expect(first.rev).to.equal(2);
      for (const [k, answer] of answers.entries()) expect(answer, `copy ${k}`).to.deep.equal(first);

      const mark = await marker(room);
      expect(mark.rev, 'one rev for all the copies').to.equal(3);
      const events = expectEvents(room, [newMsg(mine), updated(first), newMsg(mark)]);
      expectHistoryMatchesEvents(await history(room), events);
    });

    it('When a delete is retried with the same clientChangeId (socket, other node, REST), then it answers the deleted message again, not NOT_FOUND, and emits one message:deleted', async () => {
      const room = await openRoom();
      const sent = await say(room.aliceA, room, 'delete me once');
      const viaRest = await say(room.aliceA, room, 'delete me once through REST');
      const changeId = unique('del-');
      const gone = acked(await remove(room.aliceA, room, sent.id, { clientChangeId: changeId }), 'the delete');
      const restId = unique('rdel-');
      const goneToo = answered(await restDelete(B, alice.token, room.id, viaRest.id, { clientChangeId: restId }), 'REST delete');

      // Every retry first, then one comparison: a failure shows them all.
      const asRest = (res: ApiResponse) => ({ status: res.status, body: res.body });
      const retries = {
        'socket retry on the same socket': await remove(room.aliceA, room, sent.id, { clientChangeId: changeId }),
        'socket retry on node B': await remove(room.aliceB, room, sent.id, { clientChangeId: changeId }),
        'REST retry of the socket delete': asRest(await restDelete(A, alice.token, room.id, sent.id, { clientChangeId: changeId })),
        'REST retry of the REST delete': asRest(await restDelete(A, alice.token, room.id, viaRest.id, { clientChangeId: restId })),
        'socket retry of the REST delete': await remove(room.aliceA, room, viaRest.id, { clientChangeId: restId }),
      };

      const mark = await marker(room);
      expect(mark.rev, 'the retries spent no rev').to.equal(5);
      expectEvents(room, [newMsg(sent), newMsg(viaRest), deletedEvent(gone), deletedEvent(goneToo), newMsg(mark)]);
      expect(await history(room)).to.deep.equal([gone, goneToo, mark]);
      expect(retries, 'each retry answers the stored result').to.deep.equal({
        'socket retry on the same socket': { ok: true, message: gone },
        'socket retry on node B': { ok: true, message: gone },
        'REST retry of the socket delete': { status: 200, body: { message: gone } },
        'REST retry of the REST delete': { status: 200, body: { message: goneToo } },
        'socket retry of the REST delete': { ok: true, message: goneToo },
      });
    });
  });

  it('When an edit or a reaction is retried with its clientChangeId after the message was deleted, then it answers (the stored result, or the message as stored now) instead of NOT_FOUND, and emits nothing', async () => {
    const room = await openRoom();
    const sent = await say(room.aliceA, room, 'edited, then deleted by the owner');
    const editId = unique('e-');
    const reactId = unique('r-');
    const edited = acked(await edit(room.aliceA, room, sent.id, 'edited once', { clientChangeId: editId }), 'the edit');
    const reacted = acked(await react(room.bobB, room, sent.id, 'ok', { clientChangeId: reactId }), 'bob reacts');
    const gone = answered(await restDelete(A, owner.token, room.id, sent.id), 'the owner deletes it');

    // The clients never got their answers (say, a lost connection) and retry.
    const retries = {
      'the edit retried': await edit(room.aliceB, room, sent.id, 'edited once', { clientChangeId: editId }),
      'the reaction retried': await react(room.bobB, room, sent.id, 'ok', { clientChangeId: reactId }),
    };
    const mark = await marker(room);
    expect(mark.rev).to.equal(5);
    expectEvents(room, [newMsg(sent), updated(edited), reactionEvent('added', reacted, 'ok', bob), deletedEvent(gone), newMsg(mark)]);
    expect(await history(room)).to.deep.equal([gone, mark]);
    expect([{ ok: true, message: edited }, { ok: true, message: gone }], `the edit retried: ${JSON.stringify(retries['the edit retried'])}`).to.deep.include(
      retries['the edit retried'],
    );
    expect([{ ok: true, message: reacted }, { ok: true, message: gone }], `the reaction retried: ${JSON.stringify(retries['the reaction retried'])}`).to.deep.include(
      retries['the reaction retried'],
    );
  });

  it('When the author edits and deletes concurrently from both nodes (sockets on A, REST on B) while others send, then every member socket gets one gap-free stream and history ends in the state of each message\'s last event', async () => {
    const room = await openRoom();
    const messages: Msg[] = [];
    for (let i = 0; i < 6; i++) messages.push(await say(i % 2 ? room.aliceB : room.aliceA, room, `base ${i}`));
    const outcomes = await Promise.all([
      ...range(12, 0).map(async (k) => {
        const target = messages[k % 6];
        if (k % 2) return acked(await edit(room.aliceA, room, target.id, `socket edit ${k}`, { clientChangeId: `c-${k}` }), `socket edit ${k}`);
        return answered(await restEdit(B, alice.token, room.id, target.id, { body: `rest edit ${k}`, clientChangeId: `c-${k}` }), `REST edit ${k}`);
      }),
      ...range(6, 0).map(async (k) => acked(await emit(room.bobB, 'message:send', { channelId: room.id, body: `bob ${k}`, clientMsgId: `b-${k}` }), `bob ${k}`)),
    ]);
    // Two deletes after the edits.
    const gone = [
      answered(await restDelete(B, alice.token, room.id, messages[0].id), 'REST delete'),
      acked(await remove(room.aliceA, room, messages[1].id), 'socket delete'),
    ];
    const mark = await marker(room);
    const total = 6 + outcomes.length + gone.length + 1;
    expect(mark.rev).to.equal(total);
    const events = expectOneGapFreeStream(room);
    expect(events.length).to.equal(total);
    // Each answer's rev is the rev of its own event.
    for (const m of [...outcomes, ...gone]) {
      const e = events.find((x) => x.rev === m.rev)!;
      expect(e, `an event with rev ${m.rev}`).to.not.equal(undefined);
      if (m.deleted) expect(e.payload).to.deep.equal({ channelId: room.id, rev: m.rev, messageId: m.id, seq: m.seq });
      else if (m.editedAt) expect(e.payload).to.deep.equal({ channelId: room.id, rev: m.rev, message: m });
      else expect(e.payload).to.deep.equal(m);
    }
    const h = await history(room);
    expectHistoryMatchesEvents(h, events);
    expect(h.filter((m) => m.deleted).map((m) => m.id)).to.deep.equal([messages[0].id, messages[1].id]);
  });

  it('When one user\'s sends and edits together exceed the send budget (product defaults), then the changes count as sends: the total accepted stays within the budget and the rest is RATE_LIMITED', async () => {
    // A user of its own, so no other test shares this budget (500 per user per 10 s, leased 10 points
    // at a time: at most 9 points lost on one node).
    const frank = await registerUser(A);
    await addWorkspaceMember(A, owner.token, team.workspace.id, frank.email);
    const channel = await seedChannel(A, team, [frank]);
    const frankA = await connect(A, frank.token);
    const watchers = [new EventLog('frank@A', frankA), new EventLog('owner@B', await connect(B, owner.token))];
    const first = acked(await emit(frankA, 'message:send', { channelId: channel.id, body: 'edit me', clientMsgId: 'budget-0' }), 'first send');
    const sends = range(299).map((k) => emit(frankA, 'message:send', { channelId: channel.id, body: `send ${k}`, clientMsgId: `budget-${k}` }));
    const edits = range(250).map((k) =>
      emit(frankA, 'message:edit', { channelId: channel.id, messageId: first.id, body: `edit ${k}`, clientChangeId: `budget-edit-${k}` }),
    );
    const [sent, edited] = [await Promise.all(sends), await Promise.all(edits)];
    const verdict = (a: Ack) => (a.ok ? 'ok' : a.error.code);
    const okSends = sent.filter((a) => a.ok).length;
    const okEdits = edited.filter((a) => a.ok).length;
    const refusals = [...sent, ...edited].filter((a) => !a.ok).map(verdict);
    expect([...new Set(refusals)], 'every refusal is RATE_LIMITED').to.deep.equal(['RATE_LIMITED']);
    expect(1 + okSends + okEdits, `accepted: 1 + ${okSends} sends + ${okEdits} edits`).to.be.within(491, 500);
    expect(okEdits, 'edits beyond the budget were refused (they would all fit a budget of their own)').to.be.below(250);

    const accepted = [...sent, ...edited].filter((a): a is { ok: true; message: Msg } => a.ok).map((a) => a.message);
    const lastRev = Math.max(1, ...accepted.map((m) => m.rev));
    expect(lastRev, 'one rev per accepted change').to.equal(1 + accepted.length);
    await waitFor(() => watchers.every((w) => w.of(channel.id).length === lastRev), 20_000, () => watchers.map((w) => `${w.label}: ${w.of(channel.id).length}`).join(', '));
    const events = watchers[0].of(channel.id);
    expect(events.map((e) => e.rev)).to.deep.equal(range(lastRev));
    expect(watchers[1].of(channel.id)).to.deep.equal(events);
    expect(events.filter((e) => e.name === 'message:updated').length).to.equal(okEdits);
    const h = (await fullHistory(B, frank.token, channel.id)) as unknown as Msg[];
    expectHistoryMatchesEvents(h, events);
    const lastEdit = accepted.filter((m) => m.id === first.id).sort((a, b) => b.rev - a.rev)[0];
    expect(h[0]).to.deep.equal(lastEdit);
  });
});
