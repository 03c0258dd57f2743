import { randomUUID } from 'node:crypto';
import { expect } from 'chai';
import type { Cluster } from '../../scripts/cluster.js';
import { loadConfig } from '../../shared/config.js';
import type { ChannelDto, RegisteredUser } from '../support/api.js';
import { signToken } from '../support/tokens.js';
import { Collector, connect, connectError, disconnectAll, send, sendOk, sleep, waitFor, type ClientSocket } from '../support/sockets.js';
import { closeDb, seedChannel, seedTeam, startPipelineCluster, storedByClientMsgId, storedCount, storedMessages, type Team } from './fixtures.js';

describe('pipeline: rejected sends and connections', function () {
  this.timeout(60_000);

  let cluster: Cluster;
  let team: Team;
  let alice: RegisteredUser;
  let bob: RegisteredUser;
  let shared: ChannelDto;
  let bobsPublic: ChannelDto;
  let bobsPrivate: ChannelDto;
  let aliceA: ClientSocket;
  let bobB: ClientSocket;
  let aliceSeen: Collector;
  let bobSeen: Collector;
  let next = 0;

  before(async () => {
    cluster = await startPipelineCluster('rejections');
    team = await seedTeam(cluster.urls[0], 3);
    [alice, bob] = team.members;
    shared = await seedChannel(cluster.urls[0], team, [alice, bob]);
    bobsPublic = await seedChannel(cluster.urls[0], team, [bob]);
    bobsPrivate = await seedChannel(cluster.urls[0], team, [bob], { isPrivate: true });
    aliceA = await connect(cluster.urls[0], alice.token);
    bobB = await connect(cluster.urls[1], bob.token);
    aliceSeen = new Collector(aliceA);
    bobSeen = new Collector(bobB);
    await sleep(300);
  });

  after(async () => {
    disconnectAll();
    await cluster?.stop();
    await closeDb();
  });

  /** Alice sends to the shared channel; the message reaches both alice (node A) and bob (node B). */
  async function expectWorking(socket: ClientSocket = aliceA, user: RegisteredUser = alice): Promise<void> {
    const clientMsgId = `ok-${next++}`;
    const m = await sendOk(socket, { channelId: shared.id, body: `still working ${clientMsgId}`, clientMsgId });
    expect(m.userId).to.equal(user.user.id);
    await waitFor(() => [aliceSeen, bobSeen].every((c) => c.of(shared.id).some((x) => x.id === m.id)), 10_000);
  }

  describe('sends to a channel the sender is not in', () => {
    it('When a user sends to a public channel of their workspace they have not joined, then NOT_FOUND and nothing is stored', async () => {
      const before = await storedCount([bobsPublic.id, bobsPrivate.id]);
      for (const channel of [bobsPublic, bobsPrivate]) {
        const outcome = await send(aliceA, { channelId: channel.id, body: 'let me in', clientMsgId: `intrude-${channel.id}` });
        expect(outcome.ok).to.equal(false);
        if (outcome.ok) continue;
        expect(outcome.error.code).to.equal('NOT_FOUND');
        expect(await storedByClientMsgId(alice.user.id, `intrude-${channel.id}`)).to.equal(0);
      }
      expect(await storedCount([bobsPublic.id, bobsPrivate.id])).to.equal(before);
      expect(bobSeen.count(bobsPublic.id) + bobSeen.count(bobsPrivate.id)).to.equal(0);
    });

    it('When a user sends to an unknown channel id or a non-uuid one, then NOT_FOUND', async () => {
      for (const channelId of [randomUUID(), 'not-a-uuid']) {
        const outcome = await send(aliceA, { channelId, body: 'hello?', clientMsgId: 'nowhere' });
        expect(outcome.ok ? 'ok' : outcome.error.code, channelId).to.equal('NOT_FOUND');
      }
      expect(await storedByClientMsgId(alice.user.id, 'nowhere')).to.equal(0);
    });

    it('When a user of another workspace sends to the channel, then NOT_FOUND and the members receive nothing', async () => {
      const stranger = (await seedTeam(cluster.urls[1], 0)).owner;
      const socket = await connect(cluster.urls[1], stranger.token);
      const before = await storedMessages(shared.id);
      const received = aliceSeen.count(shared.id);
      const outcome = await send(socket, { channelId: shared.id, body: 'spam', clientMsgId: 'stranger' });
      expect(outcome.ok ? 'ok' : outcome.error.code).to.equal('NOT_FOUND');
      await expectWorking();
      expect(aliceSeen.count(shared.id)).to.equal(received + 1);
      expect((await storedMessages(shared.id)).length).to.equal(before.length + 1);
    });

    it('When several sends of one batch mix members and outsiders, then only the outsiders are refused', async () => {
      const outcomes = await Promise.all([
        send(aliceA, { channelId: shared.id, body: 'mine 1', clientMsgId: 'mix-1' }),
        send(aliceA, { channelId: bobsPublic.id, body: 'not mine', clientMsgId: 'mix-2' }),
        send(aliceA, { channelId: shared.id, body: 'mine 2', clientMsgId: 'mix-3' }),
      ]);
      expect(outcomes.map((o) => (o.ok ? `ok ${o.message.body}` : o.error.code))).to.deep.equal(['ok mine 1', 'NOT_FOUND', 'ok mine 2']);
      const [first, , second] = outcomes;
      if (first.ok && second.ok) expect(second.message.seq).to.equal(first.message.seq + 1);
    });
  });

  describe('invalid payloads', () => {
    const long = 'x'.repeat(4001);
    const valid = () => ({ channelId: shared.id, body: 'fine', clientMsgId: `bad-${next++}` });
    const cases: Array<[string, () => unknown]> = [
      ['an empty object', () => ({})],
      ['no channelId', () => ({ ...valid(), channelId: undefined })],
      ['no body', () => ({ ...valid(), body: undefined })],
      ['no clientMsgId', () => ({ ...valid(), clientMsgId: undefined })],
      ['a number body', () => ({ ...valid(), body: 42 })],
      ['a null body', () => ({ ...valid(), body: null })],
      ['an object body', () => ({ ...valid(), body: { text: 'hi' } })],
      ['an empty body', () => ({ ...valid(), body: '' })],
      ['a whitespace body', () => ({ ...valid(), body: ' \n\t  ' })],
      ['a body of 4001 characters', () => ({ ...valid(), body: long })],
      ['a body of 4001 characters after trimming', () => ({ ...valid(), body: `  ${long}\n` })],
      ['a clientMsgId with a space', () => ({ ...valid(), clientMsgId: 'bad id' })],
      ['a clientMsgId with punctuation', () => ({ ...valid(), clientMsgId: 'bad!id' })],
      ['a non-ASCII clientMsgId', () => ({ ...valid(), clientMsgId: 'café' })],
      ['an empty clientMsgId', () => ({ ...valid(), clientMsgId: '' })],
      ['a clientMsgId of 65 characters', () => ({ ...valid(), clientMsgId: 'a'.repeat(65) })],
      ['a numeric clientMsgId', () => ({ ...valid(), clientMsgId: 12345 })],
      ['a numeric channelId', () => ({ ...valid(), channelId: 7 })],
      ['a channelId of 65 characters', () => ({ ...valid(), channelId: 'c'.repeat(65) })],
      ['an unknown field', () => ({ ...valid(), extra: true })],
      ['a number instead of an object', () => 42],
      ['a string instead of an object', () => 'hello'],
      ['null instead of an object', () => null],
      ['an array instead of an object', () => [valid()]],
      ['a boolean instead of an object', () => true],
    ];

    for (const [what, payload] of cases) {
      it(`When a socket sends ${what}, then VALIDATION_FAILED and nothing is stored`, async () => {
        const p = payload();
        const outcome = await send(aliceA, p);
        expect(outcome.ok).to.equal(false);
        if (!outcome.ok) expect(outcome.error.code).to.equal('VALIDATION_FAILED');
        const id = (p as { clientMsgId?: unknown } | null)?.clientMsgId;
        if (typeof id === 'string' && id.length > 0) expect(await storedByClientMsgId(alice.user.id, id)).to.equal(0);
      });
    }

    it('When invalid payloads were refused, then nothing was stored or emitted and both sockets keep working', async () => {
      const storedBefore = (await storedMessages(shared.id)).length;
      const seenBefore = [aliceSeen.count(shared.id), bobSeen.count(shared.id)];
      await Promise.all(cases.map(([, payload]) => send(aliceA, payload())));
      expect(aliceA.connected).to.equal(true);
      await expectWorking();
      await expectWorking(bobB, bob);
      expect((await storedMessages(shared.id)).length).to.equal(storedBefore + 2);
      expect([aliceSeen.count(shared.id), bobSeen.count(shared.id)]).to.deep.equal(seenBefore.map((n) => n + 2));
    });

    it('When a body is 4000 characters after trimming, then it is accepted and stored trimmed', async () => {
      const body = 'y'.repeat(4000);
      const m = await sendOk(aliceA, { channelId: shared.id, body: `\n  ${body}  \t`, clientMsgId: 'max-body' });
      expect(m.body).to.equal(body);
      expect((await storedMessages(shared.id)).at(-1)!.body).to.equal(body);
    });

    it('When a socket sends without an ack callback, then nothing is stored and the socket keeps working', async () => {
      const before = (await storedMessages(shared.id)).length;
      aliceA.emit('message:send', { channelId: shared.id, body: 'no ack', clientMsgId: 'no-ack' });
      aliceA.emit('message:send');
      aliceA.emit('message:send', 'garbage');
      await sleep(300);
      await expectWorking();
      expect(await storedByClientMsgId(alice.user.id, 'no-ack')).to.equal(0);
      expect((await storedMessages(shared.id)).length).to.equal(before + 1);
      expect(bobSeen.of(shared.id).filter((m) => m.body === 'no ack')).to.have.length(0);
    });
  });

  describe('connection authentication', () => {
    const secret = () => loadConfig(process.env).jwt.secret;

    it('When a socket connects without a token, then connect_error UNAUTHORIZED', async () => {
      for (const url of cluster.urls) expect((await connectError(url, {})).message).to.equal('UNAUTHORIZED');
    });

    it('When a socket connects with a malformed or non-string token, then connect_error UNAUTHORIZED', async () => {
      for (const token of ['not-a-jwt', '', 42, { sub: alice.user.id }, 'x'.repeat(5000)]) {
        expect((await connectError(cluster.urls[1], { token })).message, JSON.stringify(token).slice(0, 40)).to.equal('UNAUTHORIZED');
      }
    });

    it('When a socket connects with an expired token, then connect_error UNAUTHORIZED', async () => {
      const expired = signToken(secret(), alice.user.id, { exp: Math.floor(Date.now() / 1000) - 60 });
      expect((await connectError(cluster.urls[0], { token: expired })).message).to.equal('UNAUTHORIZED');
      // The same claims, unexpired, are accepted: the expiry is what was refused.
      const fresh = signToken(secret(), alice.user.id, { exp: Math.floor(Date.now() / 1000) + 60 });
      const socket = await connect(cluster.urls[0], fresh);
      expect(socket.connected).to.equal(true);
      socket.close();
    });

    it('When a token has a wrong signature, "none" algorithm or an unknown user, then connect_error UNAUTHORIZED', async () => {
      const tokens = [
        signToken(`${secret()}-wrong`, alice.user.id),
        signToken('', alice.user.id, {}, 'none'),
        signToken(secret(), randomUUID()),
      ];
      for (const token of tokens) expect((await connectError(cluster.urls[1], { token })).message).to.equal('UNAUTHORIZED');
    });
  });

  describe('oversized frames', () => {
    it('When a socket sends a frame over 64 KB, then it is disconnected, nothing is stored, and other sockets keep working', async () => {
      const victim = await connect(cluster.urls[0], alice.token);
      const bystander = await connect(cluster.urls[0], alice.token);
      const bystanderSeen = new Collector(bystander);
      await sleep(300);
      let reason: string | undefined;
      victim.once('disconnect', (r) => (reason = r));
      let acked = false;
      victim.emit('message:send', { channelId: shared.id, body: 'z'.repeat(70 * 1024), clientMsgId: 'huge' }, () => (acked = true));
      await waitFor(() => reason !== undefined, 10_000, () => 'the socket is still connected');
      expect(reason).to.equal('transport close');
      expect(victim.connected).to.equal(false);

      await expectWorking();
      await expectWorking(bobB, bob);
      await expectWorking(bystander);
      await waitFor(() => bystanderSeen.count(shared.id) === 3);
      expect(acked).to.equal(false);
      expect(await storedByClientMsgId(alice.user.id, 'huge')).to.equal(0);
    });
  });
});
