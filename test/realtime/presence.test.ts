import { expect } from 'chai';
import { randomUUID } from 'node:crypto';
import type { Cluster, Proc } from '../../scripts/cluster.js';
import { addWorkspaceMember, registerUser, request, type RegisteredUser } from '../support/api.js';
import { connect, disconnectAll, sendOk, sleep, waitFor, type ClientSocket, type Transport } from '../support/sockets.js';
import { closeDb, dbQuery, killAdapterSubscribers, seedChannel, seedTeam, startPipelineCluster, type Team } from '../pipeline/fixtures.js';

type Status = 'online' | 'offline';

interface PresenceEvent {
  userId: string;
  status: Status;
}

/**
 * A front node that dies must not leave its users online for longer than PRESENCE_TTL_MS. The default
 * (30 s) would make the SIGKILL test wait half a minute, and the restart test longer: this cluster runs
 * with 3 s, which exercises the same heartbeat, expiry and reaping, ten times faster.
 */
const TTL_MS = 3000;
/** Past the TTL: what the bound allows, plus a reaper tick and the publish. */
const DEAD_NODE_BOUND_MS = TTL_MS + 1500;

/** The `presence` events a socket receives, in arrival order. */
class PresenceLog {
  readonly events: PresenceEvent[] = [];

  constructor(readonly socket: ClientSocket) {
    socket.on('presence', (event: PresenceEvent) => this.events.push(event));
  }

  of(user: RegisteredUser): Status[] {
    return this.events.filter((e) => e.userId === user.user.id).map((e) => e.status);
  }

  async subscribe(users: Array<RegisteredUser | string>): Promise<any> {
    const userIds = users.map((u) => (typeof u === 'string' ? u : u.user.id));
    return this.socket.timeout(10_000).emitWithAck('presence:subscribe', { userIds });
  }
}

/**
 * Presence across a cluster (front nodes as separate processes): a user is online while any of their
 * sockets is connected to any node; subscribers get the status in the ack and every later change.
 */
describe('realtime: presence across nodes', function () {
  this.timeout(90_000);

  let cluster: Cluster;
  let A: string;
  let B: string;
  /** Nodes a test started (and stops or kills) itself, so A and B outlive every test. */
  const extra: Proc[] = [];

  before(async () => {
    cluster = await startPipelineCluster('presence', { PRESENCE_TTL_MS: String(TTL_MS) });
    [A, B] = cluster.urls;
  });

  afterEach(async () => {
    disconnectAll();
    await Promise.all(extra.splice(0).map((p) => p.stop()));
  });

  after(async () => {
    disconnectAll();
    const dead = [...(cluster?.servers.slice(0, 2) ?? []), ...(cluster?.workers ?? [])].filter((p) => !p.alive).map((p) => `${p.kind} ${p.pid}: ${p.output}`);
    await cluster?.stop();
    await closeDb();
    expect(dead, dead.join('\n')).to.deep.equal([]);
  });

  async function open(url: string, user: RegisteredUser, transport: Transport = 'websocket'): Promise<ClientSocket> {
    return connect(url, user.token, { transport });
  }

  async function watcher(url: string, team: Team, transport: Transport = 'websocket'): Promise<PresenceLog> {
    return new PresenceLog(await open(url, team.owner, transport));
  }

  function closed(socket: ClientSocket): Promise<void> {
    return new Promise((resolve) => {
      socket.once('disconnect', () => resolve());
      socket.close();
    });
  }

  async function addNode(): Promise<Proc> {
    const node = await cluster.addServer();
    extra.push(node);
    return node;
  }

  it('When a socket subscribes, then the ack has the current status of each user', async () => {
    const team = await seedTeam(A, 2);
    const [online, offline] = team.members;
    await open(B, online);
    const w = await watcher(A, team);
    const ack = await w.subscribe([online, offline]);
    expect(ack).to.deep.equal({ ok: true, presence: { [online.user.id]: 'online', [offline.user.id]: 'offline' } });
  });

  for (const transport of ['websocket', 'default'] as const) {
    it(`When a user's socket connects on either node, then a subscriber (${transport}) gets online; when it closes, offline`, async () => {
      const team = await seedTeam(A, 1);
      const [user] = team.members;
      const w = await watcher(A, team, transport);
      expect((await w.subscribe([user])).presence).to.deep.equal({ [user.user.id]: 'offline' });

      for (const url of [B, A]) {
        const socket = await open(url, user, transport);
        await waitFor(() => w.of(user).length % 2 === 1, 10_000, () => `${url}: ${w.of(user).join(',')}`);
        await closed(socket);
        await waitFor(() => w.of(user).length % 2 === 0, 10_000, () => `${url}: ${w.of(user).join(',')}`);
      }
      expect(w.of(user)).to.deep.equal(['online', 'offline', 'online', 'offline']);
    });
  }

  it('When one of a user’s two sockets closes, then nothing changes; when the last one closes, offline', async () => {
    const team = await seedTeam(A, 1);
    const [user] = team.members;
    const onA = await open(A, user);
    const onB = await open(B, user);
    const sameNode = await open(B, user);
    const w = await watcher(A, team);
    expect((await w.subscribe([user])).presence).to.deep.equal({ [user.user.id]: 'online' });

    await closed(onA);
    await closed(sameNode);
    await sleep(500);
    expect(w.of(user)).to.deep.equal([]);
    await closed(onB);
    await waitFor(() => w.of(user).length === 1);
    expect(w.of(user)).to.deep.equal(['offline']);
    expect((await w.subscribe([user])).presence).to.deep.equal({ [user.user.id]: 'offline' });
  });

  it('When a front node is SIGKILLed, then its users go offline within the TTL, and a user also connected elsewhere stays online', async () => {
    const team = await seedTeam(A, 2);
    const [only, both] = team.members;
    const node = await addNode();
    await open(node.url!, only);
    await open(node.url!, both);
    await open(B, both);
    const w = await watcher(A, team);
    expect((await w.subscribe([only, both])).presence).to.deep.equal({ [only.user.id]: 'online', [both.user.id]: 'online' });

    const killed = Date.now();
    node.kill('SIGKILL');
    await node.exited;
    await waitFor(() => w.of(only).length === 1, DEAD_NODE_BOUND_MS, () => `still ${w.of(only).join(',') || 'online'} after ${Date.now() - killed} ms`);
    expect(w.of(only)).to.deep.equal(['offline']);
    // Another reaper tick and more: nothing for the user still connected to B.
    await sleep(TTL_MS / 2);
    expect(w.of(both)).to.deep.equal([]);
    expect((await w.subscribe([only, both])).presence).to.deep.equal({ [only.user.id]: 'offline', [both.user.id]: 'online' });
  });

  it('When a node restarts (SIGTERM, then a new process), then users who reconnected elsewhere or are connected elsewhere never go offline', async () => {
    const team = await seedTeam(A, 2);
    const [moving, both] = team.members;
    const node = await addNode();
    const movingSocket = await open(node.url!, moving);
    await open(node.url!, both);
    await open(B, both);
    const w = await watcher(A, team);
    expect((await w.subscribe([moving, both])).presence).to.deep.equal({ [moving.user.id]: 'online', [both.user.id]: 'online' });

    // The node closes its sockets as it stops; the client reconnects to another node, as a real one does.
    const dropped = new Promise<void>((resolve) => movingSocket.once('disconnect', () => resolve()));
    await Promise.all([node.stop(), dropped.then(() => open(B, moving))]);
    const restarted = await addNode();
    await open(restarted.url!, both);
    // Past the TTL of the stopped node's registration, and a reaper tick more.
    await sleep(DEAD_NODE_BOUND_MS + 500);
    expect(w.events).to.deep.equal([]);
    expect((await w.subscribe([moving, both])).presence).to.deep.equal({ [moving.user.id]: 'online', [both.user.id]: 'online' });
  });

  it('When a node is SIGKILLed and restarted, then a user connected elsewhere all along gets no presence event', async () => {
    const team = await seedTeam(A, 1);
    const [user] = team.members;
    const node = await addNode();
    await open(node.url!, user);
    await open(B, user);
    const w = await watcher(A, team);
    expect((await w.subscribe([user])).presence).to.deep.equal({ [user.user.id]: 'online' });

    node.kill('SIGKILL');
    await node.exited;
    const restarted = await addNode();
    await open(restarted.url!, user);
    await sleep(DEAD_NODE_BOUND_MS + 500);
    expect(w.events).to.deep.equal([]);
  });

  it('When a subscription names users who share no workspace with the caller, or whom a guest shares no channel with, then they are ignored', async () => {
    const team = await seedTeam(A, 2);
    const [colleague, unseen] = team.members;
    const guest = await registerUser(A);
    await addWorkspaceMember(A, team.owner.token, team.workspace.id, guest.email, 'guest');
    await seedChannel(A, team, [guest, colleague], { isPrivate: true });
    const stranger = await registerUser(A);
    const strangerSocket = await open(B, stranger);

    const w = await watcher(A, team);
    const ack = await w.subscribe([colleague, stranger, randomUUID(), 'not-an-id', team.owner]);
    expect(ack).to.deep.equal({ ok: true, presence: { [colleague.user.id]: 'offline', [team.owner.user.id]: 'online' } });
    const g = new PresenceLog(await open(A, guest));
    const guestAck = await g.subscribe([colleague, unseen, team.owner, guest]);
    // The owner created the guest's channel, so shares it; `unseen` shares none with the guest.
    expect(guestAck).to.deep.equal({
      ok: true,
      presence: { [colleague.user.id]: 'offline', [team.owner.user.id]: 'online', [guest.user.id]: 'online' },
    });

    // Changes of the ignored users, then one of a subscribed user: all travel the same way, in order.
    await closed(strangerSocket);
    await closed(await open(B, unseen));
    await open(B, colleague);
    await waitFor(() => w.of(colleague).length === 1 && g.of(colleague).length === 1);
    await sleep(300);
    expect(w.events).to.deep.equal([{ userId: colleague.user.id, status: 'online' }]);
    expect(g.events).to.deep.equal([{ userId: colleague.user.id, status: 'online' }]);
  });

  it('When a subscription names more than 500 users, then VALIDATION_FAILED and nothing is subscribed', async () => {
    const team = await seedTeam(A, 1);
    const [user] = team.members;
    const w = await watcher(A, team);
    const ids = [user.user.id, ...Array.from({ length: 500 }, () => randomUUID())];
    const refused = await w.subscribe(ids);
    expect(refused.ok).to.equal(false);
    expect(refused.error.code).to.equal('VALIDATION_FAILED');
    const fine = await w.subscribe(ids.slice(0, 500));
    expect(fine).to.deep.equal({ ok: true, presence: { [user.user.id]: 'offline' } });
  });

  it('When a socket unsubscribes from a user, then it gets no more presence events of that user', async () => {
    const team = await seedTeam(A, 2);
    const [first, second] = team.members;
    const w = await watcher(A, team);
    await w.subscribe([first, second]);
    expect(await w.socket.timeout(10_000).emitWithAck('presence:unsubscribe', { userIds: [first.user.id] })).to.deep.equal({ ok: true });
    await open(B, first);
    await open(B, second);
    await waitFor(() => w.of(second).length === 1);
    await sleep(300);
    expect(w.events).to.deep.equal([{ userId: second.user.id, status: 'online' }]);
  });

  it("When a member is removed from the workspace where no node hears of it and the nodes' adapter subscriptions drop and come back, then their presence subscriptions are dropped", async () => {
    const team = await seedTeam(A, 3);
    const [ticker, member, witness] = team.members;
    const memberWatch = new PresenceLog(await open(B, member));
    expect((await memberWatch.subscribe([ticker])).presence).to.deep.equal({ [ticker.user.id]: 'offline' });
    const owners = await watcher(A, team);
    await owners.subscribe([ticker]);
    // Removed in SQL, as a removal published while a node's subscriber is away is never heard of there.
    await dbQuery('DELETE FROM channel_members cm USING channels c WHERE c.id = cm.channel_id AND c.workspace_id = $1 AND cm.user_id = $2', [
      team.workspace.id,
      member.user.id,
    ]);
    await dbQuery('DELETE FROM workspace_members WHERE workspace_id = $1 AND user_id = $2', [team.workspace.id, member.user.id]);
    // The witness is added to a channel in SQL too: once its socket on B gets the channel's messages, B has
    // read its sockets' memberships again, and checked its presence subscriptions right after.
    const channel = await seedChannel(A, team, []);
    const witnessSocket = await open(B, witness);
    const heard: string[] = [];
    witnessSocket.on('message:new', (m: { body: string }) => heard.push(m.body));
    await dbQuery('INSERT INTO channel_members (channel_id, user_id) VALUES ($1, $2)', [channel.id, witness.user.id]);
    expect(await killAdapterSubscribers('presence'), 'one adapter subscriber per front node').to.equal(2);
    const speaker = await open(A, team.owner);
    let n = 0;
    await waitFor(
      async () => {
        await sendOk(speaker, { channelId: channel.id, body: `after-drop-${n}`, clientMsgId: `after-drop-${n++}` });
        await sleep(100);
        return heard.length > 0;
      },
      20_000,
      () => 'the witness never got the channel',
    );
    await sleep(500);

    await open(A, ticker);
    await waitFor(() => owners.of(ticker).length === 1);
    await sleep(300);
    expect(memberWatch.events, 'a removed member hears nothing of the workspace').to.deep.equal([]);
  });

  for (const how of ['is removed from the workspace', 'leaves the workspace', 'is made a guest'] as const) {
    it(`When a member ${how}, then by the answer every node has dropped the presence subscriptions policy no longer allows, both ways`, async () => {
      const team = await seedTeam(A, 3);
      const [colleague, ticker, member] = team.members;
      // The member follows the ticker from node B; a colleague follows the member from node A.
      const memberWatch = new PresenceLog(await open(B, member));
      expect((await memberWatch.subscribe([ticker])).presence).to.deep.equal({ [ticker.user.id]: 'offline' });
      const colleagueWatch = new PresenceLog(await open(A, colleague));
      expect((await colleagueWatch.subscribe([member])).presence).to.deep.equal({ [member.user.id]: 'online' });
      const owners = await watcher(A, team);
      await owners.subscribe([ticker]);

      const path = `/workspaces/${team.workspace.id}`;
      const res =
        how === 'is removed from the workspace'
          ? await request(A, 'DELETE', `${path}/members/${member.user.id}`, { token: team.owner.token })
          : how === 'leaves the workspace'
            ? await request(B, 'POST', `${path}/leave`, { token: member.token })
            : await request(B, 'PATCH', `${path}/members/${member.user.id}`, { token: team.owner.token, body: { role: 'guest' } });
      expect(res.status, res.text).to.be.oneOf([200, 204]);

      // Theirs: the ticker comes online; the owner hears it, the member (sharing no workspace with the
      // ticker, or as a guest no channel) does not.
      await open(A, ticker);
      await waitFor(() => owners.of(ticker).length === 1);
      await sleep(300);
      expect(memberWatch.events).to.deep.equal([]);

      // Others' to them: the member goes offline. A colleague still sees a guest of their workspace.
      await closed(memberWatch.socket);
      if (how === 'is made a guest') {
        await waitFor(() => colleagueWatch.of(member).length === 1);
        expect(colleagueWatch.events).to.deep.equal([{ userId: member.user.id, status: 'offline' }]);
      } else {
        await sleep(1000);
        expect(colleagueWatch.events).to.deep.equal([]);
      }
    });
  }
});
