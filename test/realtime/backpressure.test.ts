import { expect } from 'chai';
import { randomUUID } from 'node:crypto';
import { readFileSync } from 'node:fs';
import type { Socket as NetSocket } from 'node:net';
import type { MessageDto } from '../../shared/models/index.js';
import type { RegisteredUser } from '../support/api.js';
import { Collector, connectUpgraded, range, sendOk, sleep, waitFor, type ClientSocket, type Transport } from '../support/sockets.js';
import { EventLog, expectHistoryMatchesEvents, latestRev, type Msg } from '../pipeline/changes-harness.js';
import { fullHistory, seedChannel, seedTeam, useCluster } from '../pipeline/fixtures.js';

/** A message body's length: near the default maximum (MESSAGE_MAX_LENGTH 4000), to fill buffers fast. */
const MESSAGE_BYTES = 3990;

/** Everything ephemeral a socket receives, in arrival order. */
class EphemeralLog {
  readonly typing: string[] = [];
  readonly presence: Array<{ userId: string; status: string }> = [];

  constructor(socket: ClientSocket) {
    socket.on('typing', () => this.typing.push('typing'));
    socket.on('typing:stopped', () => this.typing.push('typing:stopped'));
    socket.on('presence', (event: { userId: string; status: string }) => this.presence.push(event));
  }
}

/**
 * A client that stops reading, as a phone on a bad network or a frozen tab does. Over WebSocket its TCP
 * socket is paused: the server's writes fill the kernel's buffers, then pile up in Engine.IO's write
 * buffer. Over long-polling it stops polling: everything for it waits in that buffer.
 */
interface SlowReader {
  stop(): Promise<void>;
  resume(): void;
}

function slowReader(socket: ClientSocket): SlowReader {
  const transport = socket.io.engine.transport as unknown as {
    name: string;
    ws?: { _socket: NetSocket };
    readyState: string;
    pause(onPause: () => void): void;
    _poll(): void;
  };
  if (transport.name === 'websocket') {
    const tcp = transport.ws!._socket;
    return {
      stop: async () => void tcp.pause(),
      resume: () => void tcp.resume(),
    };
  }
  return {
    // What engine.io-client does before an upgrade: the poll under way completes, no other follows.
    stop: () => new Promise<void>((resolve) => transport.pause(resolve)),
    resume: () => {
      transport.readyState = 'open';
      transport._poll();
    },
  };
}

/**
 * Back-pressure (issue #12): when a client cannot keep up, typing indicators and presence changes are
 * dropped for it before messages, and messages never are, nor their changes (edits, deletes, reactions).
 * Typing is volatile (dropped while the socket's transport is busy); presence changes heard while the
 * socket is far behind are coalesced into the latest status, sent when it drains. Front nodes and workers are separate processes; the slow socket and a
 * keeping-up one are on node B, the sender on node A.
 */
describe('realtime: a slow client loses typing and presence before messages, never messages', function () {
  this.timeout(120_000);

  let A: string;
  let B: string;
  useCluster('backpressure', (cluster) => ([A, B] = cluster.urls));

  async function open(url: string, user: RegisteredUser, transport: Transport): Promise<ClientSocket> {
    return connectUpgraded(url, user.token, transport);
  }

  const ack = (socket: ClientSocket, event: string, payload: unknown) => socket.timeout(10_000).emitWithAck(event, payload);

  /**
   * How many messages of ~4 KB to send while the socket does not read, so that what is in flight overflows
   * into Engine.IO's write buffer. Over long-polling nothing leaves without a poll: a hundred packets are
   * plenty (presence coalesces from 64 waiting). Over WebSocket the kernel takes the first megabytes: at
   * most the server's send buffer (tcp_wmem's maximum, which autotuning may reach) and the client's
   * receive buffer (tcp_rmem's initial size: it grows only as the application reads). Twice that, so
   * the socket is surely backed up before the typing and presence events come.
   */
  function fillFor(transport: Transport): number {
    if (transport === 'polling') return 100;
    const field = (path: string, i: number) => Number(readFileSync(path, 'utf8').trim().split(/\s+/)[i]);
    const inFlight = field('/proc/sys/net/ipv4/tcp_wmem', 2) + field('/proc/sys/net/ipv4/tcp_rmem', 1);
    return Math.ceil((2 * inFlight) / MESSAGE_BYTES);
  }

  for (const transport of ['websocket', 'default', 'polling'] as const) {
    it(`When a socket (${transport}) stops reading while messages, changes, typing and presence flow, then on resuming it has every message and change once in order, no typing event and only the latest presence`, async () => {
      const fill = fillFor(transport);
      // Each filler stays within one burst of the default send rate limit (500 per user per 10 s).
      const team = await seedTeam(A, 4 + Math.ceil(fill / 400));
      const [alice, bob, carol, dave, ...others] = team.members;
      const channel = await seedChannel(A, team, [alice, bob, carol, ...others]);
      const sender = await open(A, alice, 'websocket');
      const fillers = [sender, ...(await Promise.all(others.map((u) => open(A, u, 'websocket'))))];

      const slowSocket = await open(B, bob, transport);
      const slow = { messages: new Collector(slowSocket), ephemeral: new EphemeralLog(slowSocket), changes: new EventLog('slow', slowSocket) };
      const keepingUpSocket = await open(B, carol, transport);
      const keepingUp = { messages: new Collector(keepingUpSocket), ephemeral: new EphemeralLog(keepingUpSocket), changes: new EventLog('keeping up', keepingUpSocket) };
      for (const socket of [slowSocket, keepingUpSocket]) {
        expect(await ack(socket, 'presence:subscribe', { userIds: [dave.user.id] })).to.deep.equal({ ok: true, presence: { [dave.user.id]: 'offline' } });
      }

      const sendAll = async (from: ClientSocket[], n: number, tag: string) => {
        for (let i = 0; i < n; i += 100) {
          await Promise.all(
            Array.from({ length: Math.min(100, n - i) }, (_, j) => {
              const body = `${tag} ${i + j} `.padEnd(MESSAGE_BYTES, 'x');
              return sendOk(from[(i + j) % from.length], { channelId: channel.id, clientMsgId: randomUUID(), body });
            }),
          );
        }
      };
      const received = (n: number) => () => `${keepingUp.messages.count(channel.id)} of ${n} messages`;

      const reader = slowReader(slowSocket);
      // A poll under way must complete first: one message does it.
      const stopped = reader.stop();
      const before = await sendOk(sender, { channelId: channel.id, clientMsgId: randomUUID(), body: 'before' });
      await stopped;
      await sendAll(fillers, fill, 'fill');
      await waitFor(() => keepingUp.messages.count(channel.id) === fill + 1, 30_000, received(fill + 1));
      // Changes while the socket is backed up: reactions added and one removed, an edit, a message deleted.
      const doomed = await sendOk(sender, { channelId: channel.id, clientMsgId: randomUUID(), body: 'doomed' });
      const change = async (event: string, payload: Record<string, unknown>) => {
        const answer = await ack(sender, event, { channelId: channel.id, messageId: before.id, ...payload });
        expect(answer.ok, `${event}: ${JSON.stringify(answer)}`).to.equal(true);
      };
      for (const emoji of ['eyes', 'tada', '+1']) await change('reaction:add', { emoji });
      await change('message:edit', { body: 'before, edited' });
      await change('reaction:remove', { emoji: 'tada' });
      await change('message:delete', { messageId: doomed.id });

      const rounds = 10;
      // One at a time, each waited for on the keeping-up socket, and sent only once that socket has had
      // time to poll again: a polling socket drops a typing event that comes between two of its polls, as
      // it should, and the comparison needs it to have them all.
      const next = async (emit: () => Promise<void>, log: unknown[], n: number) => {
        await sleep(50);
        await emit();
        await waitFor(() => log.length === n, 10_000, () => `${log.length} of ${n} on the keeping-up socket`);
      };
      for (let i = 0; i < rounds; i++) {
        const typing = (event: string) => async () => {
          expect(await ack(sender, event, { channelId: channel.id })).to.deep.equal({ ok: true });
        };
        await next(typing('typing:start'), keepingUp.ephemeral.typing, 2 * i + 1);
        await next(typing('typing:stop'), keepingUp.ephemeral.typing, 2 * i + 2);
        let daveSocket: ClientSocket | undefined;
        await next(async () => void (daveSocket = await open(A, dave, 'websocket')), keepingUp.ephemeral.presence, 2 * i + 1);
        await next(async () => void daveSocket!.close(), keepingUp.ephemeral.presence, 2 * i + 2);
      }
      await sendAll([sender], 10, 'after');
      const total = fill + 12;
      await waitFor(() => keepingUp.messages.count(channel.id) === total, 30_000, received(total));
      // Nothing reached the slow socket while it did not read (over WebSocket, it is all in the kernel).
      expect([slow.messages.count(), slow.ephemeral.typing.length, slow.ephemeral.presence.length]).to.deep.equal([
        transport === 'polling' ? 1 : 0,
        0,
        0,
      ]);

      reader.resume();
      await waitFor(() => slow.messages.count(channel.id) >= total, 30_000, () => `${slow.messages.count(channel.id)} of ${total} messages`);
      await waitFor(() => slow.ephemeral.presence.length > 0, 10_000, () => 'no presence after the drain');
      // Anything wrongly sent would have come with the rest: a margin for a straggler all the same.
      await sleep(300);

      const ids = (list: MessageDto[]) => list.map((m) => m.id);
      const history = await fullHistory(A, alice.token, channel.id);
      expect(ids(slow.messages.of(channel.id)), 'every message once, in seq order').to.deep.equal(ids(history));
      expect(ids(keepingUp.messages.of(channel.id))).to.deep.equal(ids(history));
      expect(keepingUp.ephemeral.typing).to.have.length(2 * rounds);
      expect(slow.ephemeral.typing, 'typing events while backed up').to.deep.equal([]);
      expect(keepingUp.ephemeral.presence).to.have.length(2 * rounds);
      expect(slow.ephemeral.presence, 'the latest status only').to.deep.equal([{ userId: dave.user.id, status: 'offline' }]);
      // Every event, changes included, once, gap-free in rev order, as the keeping-up socket had them.
      const events = slow.changes.of(channel.id);
      expect(events.map((e) => e.rev), 'revs in arrival order').to.deep.equal(range(latestRev(history as unknown as Msg[])));
      expect(events).to.deep.equal(keepingUp.changes.of(channel.id));
      expectHistoryMatchesEvents(history as unknown as Msg[], events);
    });
  }
});
