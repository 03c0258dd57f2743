import { expect } from 'chai';
import { randomUUID } from 'node:crypto';
import { registerUser, request, type ChannelDto, type RegisteredUser } from '../support/api.js';
import { connectUpgraded, sleep, waitFor, type ClientSocket, type Transport } from '../support/sockets.js';
import { seedChannel, seedTeam, useCluster, type Team } from '../pipeline/fixtures.js';

interface TypingEvent {
  channelId: string;
  userId: string;
}

/** Everything typing-related a socket receives, in arrival order. */
class TypingLog {
  readonly events: Array<{ event: string } & TypingEvent> = [];

  constructor(socket: ClientSocket) {
    for (const event of ['typing', 'typing:stopped']) {
      socket.on(event, (payload: TypingEvent) => this.events.push({ event, ...payload }));
    }
  }

  of(event: string, channelId: string): TypingEvent[] {
    return this.events.filter((e) => e.event === event && e.channelId === channelId).map(({ channelId: c, userId }) => ({ channelId: c, userId }));
  }
}

/**
 * Typing indicators across a cluster (2 front nodes as processes): `typing:start` and `typing:stop` reach
 * the channel's other members' sockets on every node, and nobody else's, at most once per user and
 * channel per 2 s. They are volatile: a receiving socket whose transport is busy drops them, which is
 * why a socket on the client's default transports is first let finish its upgrade to WebSocket (while it
 * upgrades, its polling transport is not writable).
 */
describe('realtime: typing indicators across nodes', function () {
  this.timeout(60_000);

  let A: string;
  let B: string;
  useCluster('typing', (cluster) => ([A, B] = cluster.urls));

  async function open(url: string, user: RegisteredUser, transport: Transport = 'websocket'): Promise<ClientSocket> {
    return connectUpgraded(url, user.token, transport);
  }

  const ack = (socket: ClientSocket, event: string, payload: unknown) => socket.timeout(10_000).emitWithAck(event, payload);

  /** A team of three members; alice and bob are in the channel, carol (same workspace) is not. */
  async function world(): Promise<{ team: Team; channel: ChannelDto; alice: RegisteredUser; bob: RegisteredUser; carol: RegisteredUser }> {
    const team = await seedTeam(A, 3);
    const [alice, bob, carol] = team.members;
    const channel = await seedChannel(A, team, [alice, bob]);
    return { team, channel, alice, bob, carol };
  }

  for (const transport of ['websocket', 'default'] as const) {
    it(`When a member starts typing on node A (${transport}), then the channel's other sockets on both nodes get typing, the sender's other device too, but not the sending socket, not non-members'`, async () => {
      const { channel, alice, bob, carol, team } = await world();
      const outsider = await registerUser(A);
      const sender = await open(A, alice, transport);
      const senderElsewhere = new TypingLog(await open(B, alice, transport));
      const senderLog = new TypingLog(sender);
      const bobB = new TypingLog(await open(B, bob, transport));
      const bobA = new TypingLog(await open(A, bob, transport));
      const ownerB = new TypingLog(await open(B, team.owner, transport));
      const carolB = new TypingLog(await open(B, carol, transport));
      const outsiderB = new TypingLog(await open(B, outsider, transport));

      expect(await ack(sender, 'typing:start', { channelId: channel.id })).to.deep.equal({ ok: true });
      const expected = [{ channelId: channel.id, userId: alice.user.id }];
      const receivers = [bobB, bobA, ownerB, senderElsewhere];
      await waitFor(() => receivers.every((log) => log.of('typing', channel.id).length === 1), 10_000);
      for (const log of receivers) expect(log.of('typing', channel.id)).to.deep.equal(expected);
      // Anything wrongly sent would travel with the right ones: a margin for a straggler all the same.
      await sleep(300);
      expect([senderLog, carolB, outsiderB].map((log) => log.events)).to.deep.equal([[], [], []]);
    });
  }

  it('When a non-member emits typing:start or typing:stop (another workspace, a private channel, a random or malformed id), then NOT_FOUND and nothing is emitted', async () => {
    const { team, channel, alice, carol } = await world();
    const privateChannel = await seedChannel(A, team, [alice], { isPrivate: true });
    const outsider = await registerUser(A);
    const aliceB = new TypingLog(await open(B, alice));
    const ownerB = new TypingLog(await open(B, team.owner));
    const carolA = await open(A, carol);
    const outsiderA = await open(A, outsider);

    const refusals: unknown[] = [];
    for (const event of ['typing:start', 'typing:stop']) {
      for (const [socket, channelId] of [
        [outsiderA, channel.id],
        [carolA, privateChannel.id],
        [carolA, channel.id],
        [carolA, randomUUID()],
        [carolA, 'not-an-id'],
      ] as const) {
        refusals.push(await ack(socket, event, { channelId }));
      }
    }
    for (const refusal of refusals) {
      expect(refusal).to.deep.equal({ ok: false, error: { code: 'NOT_FOUND', message: 'Channel not found' } });
    }
    await sleep(300);
    expect([aliceB.events, ownerB.events]).to.deep.equal([[], []]);
  });

  it('When a member is removed from the channel, then their typing:start is NOT_FOUND at once and reaches nobody', async () => {
    const { team, channel, alice, bob } = await world();
    const bobA = await open(A, bob);
    const aliceB = new TypingLog(await open(B, alice));
    expect(await ack(bobA, 'typing:start', { channelId: channel.id })).to.deep.equal({ ok: true });
    await waitFor(() => aliceB.of('typing', channel.id).length === 1);

    const removed = await request(B, 'DELETE', `/channels/${channel.id}/members/${bob.user.id}`, { token: team.owner.token });
    expect(removed.status, removed.text).to.equal(204);
    const refused = await ack(bobA, 'typing:start', { channelId: channel.id });
    expect(refused).to.deep.include({ ok: false });
    expect(refused.error.code).to.equal('NOT_FOUND');
    await sleep(300);
    expect(aliceB.events).to.have.length(1);
  });

  it('When a member starts typing again within 2 s, from any of their sockets on any node, then it is not passed on; after 2 s it is', async () => {
    const { channel, alice, bob } = await world();
    const aliceA = await open(A, alice);
    const aliceB = await open(B, alice);
    const bobB = new TypingLog(await open(B, bob));

    const first = Date.now();
    expect(await ack(aliceA, 'typing:start', { channelId: channel.id })).to.deep.equal({ ok: true });
    await waitFor(() => bobB.of('typing', channel.id).length === 1);
    // Acked as the first one was: the client did nothing wrong.
    expect(await ack(aliceA, 'typing:start', { channelId: channel.id })).to.deep.equal({ ok: true });
    expect(await ack(aliceB, 'typing:start', { channelId: channel.id })).to.deep.equal({ ok: true });
    await sleep(300);
    expect(Date.now() - first, 'the repeats came within the 2 s').to.be.below(2000);
    expect(bobB.of('typing', channel.id)).to.have.length(1);

    await sleep(first + 2100 - Date.now());
    expect(await ack(aliceB, 'typing:start', { channelId: channel.id })).to.deep.equal({ ok: true });
    await waitFor(() => bobB.of('typing', channel.id).length === 2, 10_000, () => JSON.stringify(bobB.events));
    expect(bobB.of('typing', channel.id)[1]).to.deep.equal({ channelId: channel.id, userId: alice.user.id });
  });

  it('When a member stops typing, then the other members get typing:stopped on both nodes, and typing again at once is passed on', async () => {
    const { channel, alice, bob, team } = await world();
    const aliceA = await open(A, alice);
    const aliceLog = new TypingLog(aliceA);
    const bobB = new TypingLog(await open(B, bob));
    const ownerA = new TypingLog(await open(A, team.owner));

    expect(await ack(aliceA, 'typing:start', { channelId: channel.id })).to.deep.equal({ ok: true });
    await waitFor(() => bobB.of('typing', channel.id).length === 1 && ownerA.of('typing', channel.id).length === 1);
    expect(await ack(aliceA, 'typing:stop', { channelId: channel.id })).to.deep.equal({ ok: true });
    const stopped = [{ channelId: channel.id, userId: alice.user.id }];
    await waitFor(() => bobB.of('typing:stopped', channel.id).length === 1 && ownerA.of('typing:stopped', channel.id).length === 1);
    expect([bobB.of('typing:stopped', channel.id), ownerA.of('typing:stopped', channel.id)]).to.deep.equal([stopped, stopped]);

    // Within 2 s of the first start, but after a stop: news again.
    expect(await ack(aliceA, 'typing:start', { channelId: channel.id })).to.deep.equal({ ok: true });
    await waitFor(() => bobB.of('typing', channel.id).length === 2);
    expect(bobB.events.map((e) => e.event)).to.deep.equal(['typing', 'typing:stopped', 'typing']);
    expect(aliceLog.events).to.deep.equal([]);
  });

  it('When typing:start is emitted without an ack, then it is passed on all the same; a bad payload is VALIDATION_FAILED', async () => {
    const { channel, alice, bob } = await world();
    const aliceA = await open(A, alice);
    const bobB = new TypingLog(await open(B, bob));
    aliceA.emit('typing:start', { channelId: channel.id });
    await waitFor(() => bobB.of('typing', channel.id).length === 1);
    for (const payload of [{}, { channelId: channel.id, extra: 1 }, { channelId: 7 }, 'x']) {
      const refused = await ack(aliceA, 'typing:stop', payload);
      expect(refused.ok, JSON.stringify(payload)).to.equal(false);
      expect(refused.error.code, JSON.stringify(payload)).to.equal('VALIDATION_FAILED');
    }
  });
});
