import { expect } from 'chai';
import fc from 'fast-check';
import { startCluster, type Cluster } from '../../scripts/cluster.js';
import {
  addChannelMember,
  addWorkspaceMember,
  createChannel,
  createWorkspace,
  registerUser,
  request,
  type ChannelDto,
  type RegisteredUser,
  type WorkspaceDto,
} from '../support/api.js';
import type { ClientSocket } from '../support/sockets.js';
import { closeDb } from '../pipeline/fixtures.js';
import { closeSockets, connectSocket } from './helpers.js';
import { endOnFailure, propertyRuns, propertySeed } from '../support/properties.js';

/**
 * The ground truth, kept by the test from the acks it gets: per channel its last seq, per (user, channel)
 * the read mark, which reads move forward (clamped to the last seq) and the user's own messages move to
 * theirs. Unread = lastSeq − mark, on member channels only.
 */
class Truth {
  readonly lastSeq = new Map<string, number>();
  private readonly marks = new Map<string, number>();

  constructor(readonly members: Map<string, Set<string>>) {
    for (const id of members.keys()) this.lastSeq.set(id, 0);
  }

  sent(channelId: string, userId: string, seq: number): void {
    this.lastSeq.set(channelId, Math.max(this.lastSeq.get(channelId)!, seq));
    this.marks.set(`${userId}|${channelId}`, Math.max(this.mark(userId, channelId), seq));
  }

  /** Returns the mark the server should answer with. */
  read(channelId: string, userId: string, seq: number): number {
    const mark = Math.max(this.mark(userId, channelId), Math.min(seq, this.lastSeq.get(channelId)!));
    this.marks.set(`${userId}|${channelId}`, mark);
    return mark;
  }

  mark(userId: string, channelId: string): number {
    return this.marks.get(`${userId}|${channelId}`) ?? 0;
  }

  isMember(userId: string, channelId: string): boolean {
    return this.members.get(channelId)!.has(userId);
  }

  unread(userId: string, channelId: string): number {
    return this.lastSeq.get(channelId)! - this.mark(userId, channelId);
  }
}

describe('sync: unread counts across workspaces', function () {
  this.timeout(60_000);

  let cluster: Cluster;
  let url: string;
  let owners: RegisteredUser[];
  let users: RegisteredUser[];
  let everyone: RegisteredUser[];
  let workspaces: WorkspaceDto[];
  /** Who is in which workspace (by user id). */
  let workspaceMembers: Map<string, Set<string>>;
  let channels: ChannelDto[];
  let truth: Truth;
  let sockets: Map<string, ClientSocket>;
  let sendCount = 0;

  before(async () => {
    cluster = await startCluster({ servers: 1, workers: 1 });
    [url] = cluster.urls;
    owners = [await registerUser(url), await registerUser(url)];
    users = [await registerUser(url), await registerUser(url), await registerUser(url)];
    everyone = [...owners, ...users];
    const [u1, u2, u3] = users;
    workspaces = [await createWorkspace(url, owners[0].token), await createWorkspace(url, owners[1].token)];
    for (const u of [u1, u2, u3]) await addWorkspaceMember(url, owners[0].token, workspaces[0].id, u.email);
    for (const u of [u1, u2]) await addWorkspaceMember(url, owners[1].token, workspaces[1].id, u.email);
    workspaceMembers = new Map([
      [workspaces[0].id, new Set([owners[0], u1, u2, u3].map((u) => u.user.id))],
      [workspaces[1].id, new Set([owners[1], u1, u2].map((u) => u.user.id))],
    ]);

    const plan: Array<{ ws: number; isPrivate: boolean; members: RegisteredUser[] }> = [
      { ws: 0, isPrivate: false, members: [u1, u2] },
      { ws: 0, isPrivate: true, members: [u2, u3] },
      { ws: 0, isPrivate: false, members: [u1, u2, u3] },
      // Only its creator is in it: a public channel the users see without counts.
      { ws: 0, isPrivate: false, members: [] },
      { ws: 1, isPrivate: false, members: [u1] },
      { ws: 1, isPrivate: true, members: [u1, u2] },
    ];
    channels = [];
    const members = new Map<string, Set<string>>();
    for (const p of plan) {
      const owner = owners[p.ws];
      const channel = await createChannel(url, owner.token, workspaces[p.ws].id, { isPrivate: p.isPrivate });
      for (const m of p.members) await addChannelMember(url, owner.token, channel.id, m.user.id);
      channels.push(channel);
      members.set(channel.id, new Set([owner, ...p.members].map((u) => u.user.id)));
    }
    truth = new Truth(members);
    sockets = new Map();
    for (const u of everyone) sockets.set(u.user.id, await connectSocket(url, u.token));
  });

  after(async () => {
    closeSockets();
    await cluster?.stop();
    await closeDb();
  });

  const name = (u: RegisteredUser) => (owners.includes(u) ? `owner${owners.indexOf(u)}` : `u${users.indexOf(u) + 1}`);
  const label = (channelId: string) => `channel ${channels.findIndex((c) => c.id === channelId)}`;

  /** Sends one message per entry, all at once; records each ack in the truth. */
  async function sendAll(sends: Array<{ user: RegisteredUser; channel: ChannelDto }>): Promise<void> {
    await Promise.all(
      sends.map(async ({ user, channel }) => {
        const res = await request(url, 'POST', `/channels/${channel.id}/messages`, {
          token: user.token,
          body: { body: `message ${sendCount++}` },
        });
        expect(res.status, res.text).to.equal(201);
        truth.sent(channel.id, user.user.id, res.body.message.seq);
      }),
    );
  }

  /** Moves a read mark through REST or the socket and checks the answer against the truth. */
  async function read(user: RegisteredUser, channel: ChannelDto, seq: number, via: 'rest' | 'socket'): Promise<void> {
    const expected = truth.read(channel.id, user.user.id, seq);
    if (via === 'rest') {
      const res = await request(url, 'POST', `/channels/${channel.id}/read`, { token: user.token, body: { seq } });
      expect(res.status, res.text).to.equal(200);
      expect(res.body, `${name(user)} reads ${label(channel.id)} to ${seq}`).to.deep.equal({ channelId: channel.id, seq: expected });
    } else {
      const ack = await sockets.get(user.user.id)!.timeout(10_000).emitWithAck('channel:read', { channelId: channel.id, seq });
      expect(ack, `${name(user)} reads ${label(channel.id)} to ${seq}`).to.deep.equal({ ok: true, channelId: channel.id, seq: expected });
    }
  }

  /** Every user's channel lists and /me/unread equal the truth. */
  async function expectCounts(when: string): Promise<void> {
    for (const u of everyone) {
      const expectedUnread: Array<{
        channelId: string;
        workspaceId: string;
        kind: string;
        name: string | null;
        lastSeq: number;
        lastReadSeq: number;
        unreadCount: number;
        mentionCount: number;
      }> = [];
      for (const [w, ws] of workspaces.entries()) {
        if (!workspaceMembers.get(ws.id)!.has(u.user.id)) continue;
        const res = await request(url, 'GET', `/workspaces/${ws.id}/channels`, { token: u.token });
        expect(res.status, res.text).to.equal(200);
        const listed = new Map<string, Record<string, unknown>>(res.body.channels.map((c: { id: string }) => [c.id, c]));
        const visible = channels.filter((c) => c.workspaceId === ws.id && (!c.isPrivate || truth.isMember(u.user.id, c.id)));
        expect([...listed.keys()].sort(), `${when}: channels ${name(u)} sees in workspace ${w}`).to.deep.equal(
          visible.map((c) => c.id).sort(),
        );
        for (const c of visible) {
          const got = listed.get(c.id)!;
          const what = `${when}: ${name(u)}, ${label(c.id)}`;
          if (truth.isMember(u.user.id, c.id)) {
            const counts = {
              lastSeq: truth.lastSeq.get(c.id)!,
              lastReadSeq: truth.mark(u.user.id, c.id),
              unreadCount: truth.unread(u.user.id, c.id),
              // Nobody is mentioned here (test/pipeline/mentions.test.ts counts mentions).
              mentionCount: 0,
            };
            expect(got, what).to.deep.include({ isMember: true, ...counts });
            if (counts.unreadCount > 0) expectedUnread.push({ channelId: c.id, workspaceId: ws.id, kind: c.kind, name: c.name, ...counts });
          } else {
            expect(got, what).to.include({ isMember: false });
            expect(got, what).to.not.have.any.keys('lastSeq', 'lastReadSeq', 'unreadCount', 'mentionCount');
          }
        }
      }
      const res = await request(url, 'GET', '/me/unread', { token: u.token });
      expect(res.status, res.text).to.equal(200);
      const byId = (a: { channelId: string }, b: { channelId: string }) => a.channelId.localeCompare(b.channelId);
      expect([...res.body.channels].sort(byId), `${when}: /me/unread of ${name(u)}`).to.deep.equal(
        expectedUnread.sort(byId),
      );
    }
  }

  it('When nothing was sent yet, then every member channel shows lastSeq 0, lastReadSeq 0, unreadCount 0 and nothing is unread', async () => {
    for (const c of channels) expect(truth.lastSeq.get(c.id)).to.equal(0);
    await expectCounts('before any message');
  });

  it('When several senders send into channels of both workspaces, then each member counts the others\' messages as unread and their own as read', async () => {
    const sends: Array<{ user: RegisteredUser; channel: ChannelDto }> = [];
    for (const c of channels) {
      const senders = everyone.filter((u) => truth.isMember(u.user.id, c.id));
      for (let k = 0; k < 6; k++) sends.push({ user: senders[k % senders.length], channel: c });
    }
    await sendAll(sends);
    // Not vacuous: someone has unread messages in each workspace, and some sender has read its own.
    expect(users.some((u) => channels.some((c) => truth.isMember(u.user.id, c.id) && truth.unread(u.user.id, c.id) > 0))).to.equal(true);
    expect(users.some((u) => channels.some((c) => truth.mark(u.user.id, c.id) > 0))).to.equal(true);
    await expectCounts('after the first messages');
  });

  it("When a user sends into a channel with others' unread messages, then their mark moves to their own message and nothing is unread for them there", async () => {
    const [u1] = users;
    const channel = channels[2];
    await sendAll([{ user: owners[0], channel }, { user: users[2], channel }]);
    expect(truth.unread(u1.user.id, channel.id)).to.be.greaterThan(0);
    await sendAll([{ user: u1, channel }]);
    expect(truth.unread(u1.user.id, channel.id)).to.equal(0);
    await expectCounts('after a sender caught up by sending');
  });

  it('When reads move forward, backward and beyond the end, through REST and sockets, then lastReadSeq and unreadCount follow and fully read channels leave /me/unread', async () => {
    const [u1, u2, u3] = users;
    // Others' messages after anything u1 sent, so reading up to 2 must leave some unread whatever the
    // interleaving of the earlier concurrent sends.
    await sendAll([1, 2, 3].map(() => ({ user: owners[0], channel: channels[0] })));
    await read(u1, channels[0], 2, 'rest');
    await read(u1, channels[0], 1, 'socket');
    await read(u2, channels[1], 1_000, 'socket');
    await read(u2, channels[5], truth.lastSeq.get(channels[5].id)!, 'rest');
    await read(u3, channels[2], 3, 'socket');
    await read(u3, channels[2], 0, 'rest');
    await read(u1, channels[4], 1_000, 'rest');
    await read(owners[1], channels[5], 4, 'socket');
    await expectCounts('after reads');
    expect(truth.unread(u2.user.id, channels[1].id)).to.equal(0);
    expect(truth.unread(u1.user.id, channels[0].id)).to.be.greaterThan(0);
  });

  it('When messages keep arriving between reads, then the counts stay right at every step (seeded random interleavings)', async () => {
    const step = fc.oneof(
      fc.record({
        kind: fc.constant('send' as const),
        sends: fc.array(fc.record({ user: fc.nat({ max: 4 }), channel: fc.nat({ max: channels.length - 1 }) }), {
          minLength: 1,
          maxLength: 6,
        }),
      }),
      fc.record({
        kind: fc.constant('read' as const),
        user: fc.nat({ max: 4 }),
        channel: fc.nat({ max: channels.length - 1 }),
        // Relative to the channel's last seq: behind it, at it or past it.
        offset: fc.integer({ min: -8, max: 3 }),
        via: fc.constantFrom('rest' as const, 'socket' as const),
      }),
    );
    let run = 0;
    await fc.assert(
      fc.asyncProperty(fc.array(step, { minLength: 2, maxLength: 6 }), async (steps) => {
        for (const s of steps) {
          if (s.kind === 'send') {
            const sends = s.sends
              .map((x) => ({ user: everyone[x.user], channel: channels[x.channel] }))
              .filter((x) => truth.isMember(x.user.user.id, x.channel.id));
            if (sends.length > 0) await sendAll(sends);
          } else {
            const user = everyone[s.user];
            const channel = channels[s.channel];
            if (!truth.isMember(user.user.id, channel.id)) continue;
            await read(user, channel, Math.max(0, truth.lastSeq.get(channel.id)! + s.offset), s.via);
          }
        }
        await expectCounts(`random run ${run++}: ${JSON.stringify(steps)}`);
      }),
      { seed: propertySeed(424_242), numRuns: propertyRuns(8), endOnFailure: endOnFailure() },
    );
  });
});
