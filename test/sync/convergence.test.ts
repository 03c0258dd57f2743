/**
 * Convergence of message changes (docs/API.md, "Edits, deletes, reactions and threads", issue #11), property-based.
 *
 * A real cluster (2 front nodes, 2 workers); per run a fresh workspace: an owner and three members
 * (alice, bob, reader), channel 0 with all four, channel 1 without bob. Every user keeps a socket open
 * for the whole run (alice two), spread over both nodes and over the `websocket` and `default` transports,
 * some declaring `auth.resume = {[channelId]: {rev: 0}}`, some not; an observer (the reader again)
 * disconnects and reconnects through either node and any transport, resuming each channel in its handshake
 * from the last rev it has, and paging with `sync {rev: latestRev}` while the answer says `hasMore`.
 *
 * fast-check generates a program of 30–60 steps: sends (some replies to a top-level, not deleted
 * message, some mentioning members, a non-member and nobody), edits of one's own message, deletes (one's
 * own, or any as the owner), reaction adds and removals (👍, ❤️, +1, tada; sometimes made twice at once, and
 * undone), over the sockets mostly and REST sometimes, alone or 2–4 at once; retries of an earlier change
 * with its clientChangeId (mostly one whose message changed or was deleted since, or one that changed
 * nothing), which must answer ok and take no rev; the observer going away and coming back; short pauses.
 * About one operation in seven is one the contract refuses (someone else's message, a deleted one, a bad
 * emoji or parentId, a channel one is not in, an empty body): each must be answered with exactly the
 * contract's code (over REST with its status), anything else (INTERNAL, RATE_LIMITED, no ack) fails.
 * Operations at once may also get the answer their race allows (NOT_FOUND for a change of a message another
 * deletes, VALIDATION_FAILED for a reply to it). An operation alone is checked exactly against a model of
 * the channels kept from the acks: its ack (content, mentions, reactions) and the revs it takes (a reply
 * or a reply's deletion two, a repeated add or a missing removal none).
 *
 * Every client materialises what it receives (./materialise.ts: message:new, message:updated,
 * message:deleted, reaction:added, reaction:removed, in rev order, gap-free, applying the contract's
 * rules, each payload checked against what the client has). At the end, once every client has each
 * channel's latest rev (the highest message rev in the REST history, which must also be the revs the acks
 * accounted for), every client that stayed connected and the observer must hold, per channel, exactly the
 * REST history (paged with `after`), message by message, field by field; every socket must have got each
 * rev as the same event (the observer's replays "exactly as emitted live", but for the erased content of
 * messages deleted since); and the history itself must follow the message shape's rules, each thread read
 * with GET …/replies included.
 *
 * The product's rate limits stay on (the defaults, as users run them): a run makes a few dozen changes
 * per user, far below every budget. SYNC_REPLAY_LIMIT is small so that the observer's resumes page.
 *
 * PROPERTY_SEED, PROPERTY_RUNS_FACTOR and PROPERTY_SHRINK=1 explore other cases by hand
 * (test/support/properties.ts); the fixed seed is what the suite runs.
 */
import { randomUUID } from 'node:crypto';
import { isDeepStrictEqual } from 'node:util';
import { expect } from 'chai';
import fc from 'fast-check';
import type { Cluster } from '../../scripts/cluster.js';
import { ERROR_STATUS } from '../../shared/errors.js';
import { request, type RegisteredUser } from '../support/api.js';
import { TRANSPORTS, type ClientSocket, type Transport } from '../support/sockets.js';
import { Queue, type Job } from 'bullmq';
import { loadConfig } from '../../shared/config.js';
import { MESSAGE_BATCH_JOB, batchJobOptions, bullPrefix, messageQueueName, partitionOf, type BatchOutcome, type BatchResult, type MessageBatchJob } from '../../shared/queues.js';
import { closeDb, clusterRedisPrefix, deadProcesses, fullHistory, seedChannel, seedTeam, startPipelineCluster } from '../pipeline/fixtures.js';
import { latestRev } from '../pipeline/changes-harness.js';
import { closeSockets, openSocket, sleep, waitFor, whenConnected } from './helpers.js';
import { REV_EVENTS } from '../support/changes.js';
import {
  Materialiser,
  type ChangeMessage,
  type RevPoint,
  type RevSyncAck,
  type RevSyncChannelAck,
  type RevSyncDone,
} from './materialise.js';
import { endOnFailure, propertyRuns, propertySeed } from '../support/properties.js';

const SEED = propertySeed(20_261_202);
const NUM_RUNS = propertyRuns(5);
/** Small, so that an observer away for a dozen changes resumes in several pages (hasMore). */
const REPLAY_LIMIT = 4;
const ACK_TIMEOUT_MS = 15_000;
/** Page size of the final history reads: several pages per channel. */
const HISTORY_PAGE = 7;

const EMOJIS = ['👍', '❤️', '+1', 'tada'] as const;
/** Emoji the contract refuses: two graphemes, a space, punctuation, too long. */
const BAD_EMOJIS = ['👍👍', 'Thumbs Up', ':)', 'x'.repeat(65)] as const;
const WORDS = ['hello', 'ok 👍', 'naïve café', 'a < b & c', 'ünïcödé 🎉 text'] as const;
const USER_NAMES = ['owner', 'alice', 'bob', 'reader'] as const;
const OWNER = 0;
const BOB = 2;
/** The transports of the sockets that stay: WebSocket only, and socket.io-client's default (polling, then the upgrade). */
const STAYING_TRANSPORTS: Transport[] = TRANSPORTS.filter((t) => t === 'websocket' || t === 'default');

// ---------------------------------------------------------------------------------------------------
// The generated program.

type Via = 'socket' | 'rest';
interface OpBase {
  actor: number;
  channel: number;
  via: Via;
  /** Picks the target among the eligible messages at the time (modulo their number). */
  target: number;
  /** False: one of the refusals the contract defines, with its exact code. */
  valid: boolean;
  /** Sends a clientChangeId (changes only): such changes may be retried later. */
  changeId: boolean;
}
type ChangeOp =
  | (OpBase & { kind: 'send'; reply: boolean; text: string; mentions: number[] })
  | (OpBase & { kind: 'edit'; text: string; mentions: number[] })
  | (OpBase & { kind: 'delete' })
  /**
   * `again`: alone, the same reaction change is made again at once (ok, no event the 2nd time), and with
   * `undo` then undone (a double click, then a change of mind).
   */
  | (OpBase & { kind: 'react'; add: boolean; emoji: string; again: 'no' | 'again' | 'undo' });
type RetryFocus = 'any' | 'changed-since' | 'deleted-since' | 'no-op';
type Step =
  | { kind: 'ops'; ops: ChangeOp[] }
  | { kind: 'observer'; up: boolean; node: number; transport: Transport }
  /** Retries an earlier change with its clientChangeId; `focus`: preferably one whose message changed since. */
  | { kind: 'retry'; target: number; via: Via; focus: RetryFocus }
  /** Runs a completed batch of the run's channels again, as a worker does that died after its commit, before completing the job. */
  | { kind: 'rerun'; target: number; focus: 'any' | 'deleted-since' | 'reversed-since' }
  | { kind: 'pause'; ms: number };
interface Program {
  steps: Step[];
  /** Swaps the nodes of every socket of the run. */
  flip: boolean;
  /** Where the observer comes back at the end if it was away. */
  finalNode: number;
}

const weighted = <T>(a: T, wa: number, b: T, wb: number) =>
  fc.oneof({ weight: wa, arbitrary: fc.constant(a) }, { weight: wb, arbitrary: fc.constant(b) });

const opBase = {
  actor: fc.integer({ min: 0, max: USER_NAMES.length - 1 }),
  channel: fc.integer({ min: 0, max: 1 }),
  via: weighted<Via>('socket', 3, 'rest', 1),
  target: fc.nat({ max: 9999 }),
  valid: weighted(true, 6, false, 1),
  changeId: weighted(true, 3, false, 1),
};
const mentionPicks = fc.array(fc.integer({ min: 0, max: USER_NAMES.length }), { maxLength: 3 });
const changeOp: fc.Arbitrary<ChangeOp> = fc.oneof(
  {
    weight: 4,
    arbitrary: fc.record({ kind: fc.constant('send' as const), ...opBase, reply: weighted(false, 2, true, 1), text: fc.constantFrom(...WORDS), mentions: mentionPicks }),
  },
  { weight: 2, arbitrary: fc.record({ kind: fc.constant('edit' as const), ...opBase, text: fc.constantFrom(...WORDS), mentions: mentionPicks }) },
  { weight: 2, arbitrary: fc.record({ kind: fc.constant('delete' as const), ...opBase }) },
  { weight: 4, arbitrary: fc.record({
      kind: fc.constant('react' as const),
      ...opBase,
      add: weighted(true, 2, false, 1),
      emoji: fc.constantFrom<string>(...EMOJIS),
      again: fc.oneof(
        { weight: 4, arbitrary: fc.constant('no' as const) },
        { weight: 1, arbitrary: fc.constant('again' as const) },
        { weight: 1, arbitrary: fc.constant('undo' as const) },
      ),
    }) },
);
const step: fc.Arbitrary<Step> = fc.oneof(
  { weight: 12, arbitrary: changeOp.map((op): Step => ({ kind: 'ops', ops: [op] })) },
  { weight: 3, arbitrary: fc.array(changeOp, { minLength: 2, maxLength: 4 }).map((ops): Step => ({ kind: 'ops', ops })) },
  {
    weight: 3,
    arbitrary: fc.record({ kind: fc.constant('observer' as const), up: fc.boolean(), node: fc.integer({ min: 0, max: 1 }), transport: fc.constantFrom(...TRANSPORTS) }),
  },
  {
    weight: 2,
    arbitrary: fc.record({
      kind: fc.constant('retry' as const),
      target: fc.nat({ max: 9999 }),
      via: weighted<Via>('socket', 1, 'rest', 1),
      focus: fc.constantFrom<RetryFocus>('any', 'changed-since', 'deleted-since', 'no-op'),
    }),
  },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('pause' as const), ms: fc.integer({ min: 20, max: 200 }) }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('rerun' as const), target: fc.nat({ max: 9999 }), focus: fc.constantFrom('any' as const, 'deleted-since' as const, 'reversed-since' as const) }) },
);
const program: fc.Arbitrary<Program> = fc.record({
  steps: fc.array(step, { minLength: 30, maxLength: 60 }),
  flip: fc.boolean(),
  finalNode: fc.integer({ min: 0, max: 1 }),
});

/**
 * Programs that once failed, run before the generated ones (fast-check's `examples`): each is the shortest
 * form of a counterexample another seed found.
 */
const FOUND_BEFORE: Program[] = [
  // Seed 9: a removal of a reaction the user did not have (a no-op), then their addition of it; a rerun of
  // the removal's batch removed it again (before no-ops were recorded as final).
  {
    steps: [
      { kind: 'ops', ops: [{ kind: 'send', actor: 1, channel: 0, via: 'socket', target: 0, valid: true, changeId: false, reply: false, text: 'hello', mentions: [] }] },
      { kind: 'ops', ops: [{ kind: 'react', actor: 0, channel: 0, via: 'socket', target: 0, valid: true, changeId: false, add: false, emoji: 'tada', again: 'undo' }] },
      { kind: 'rerun', target: 0, focus: 'reversed-since' },
    ],
    flip: false,
    finalNode: 1,
  },
];

// ---------------------------------------------------------------------------------------------------
// Clients that materialise what they receive.

interface Session {
  readonly index: number;
  readonly tag: string;
  socket: ClientSocket;
  closed: boolean;
  /** Where the handshake resumed from (set when the connection attempt reads it). */
  from?: Record<string, RevPoint>;
  /** Resolves when no channel has hasMore left, or the session ended. */
  synced: Promise<void>;
  settle: () => void;
}

/** A socket client of one user: every change event goes through its materialiser; what goes wrong is recorded. */
class Follower {
  readonly mat: Materialiser;
  readonly problems: string[] = [];
  readonly sessions: Session[] = [];
  /** Per channel, per rev, the event as it first arrived (whichever session). */
  readonly received = new Map<string, Map<number, { name: string; payload: unknown }>>();
  stats = { syncCalls: 0, hasMore: 0 };

  constructor(
    readonly label: string,
    readonly token: string,
    readonly channelIds: string[],
    private readonly nameOf: (url: string) => string,
  ) {
    this.mat = new Materialiser(channelIds);
  }

  get current(): Session | undefined {
    return this.sessions[this.sessions.length - 1];
  }

  get connected(): boolean {
    return !!this.current && !this.current.closed;
  }

  get socket(): ClientSocket {
    if (!this.connected) throw new Error(`${this.label} has no open socket`);
    return this.current!.socket;
  }

  problem(text: string): void {
    if (this.problems.length < 20) this.problems.push(`${this.label}: ${text}`);
  }

  /** Opens a session (closing the current one); with `resume`, declares every channel's last rev in the handshake. */
  async connect(url: string, transport: Transport, resume: boolean): Promise<Session> {
    this.disconnect();
    let settle!: () => void;
    const synced = new Promise<void>((r) => (settle = r));
    const session: Session = {
      index: this.sessions.length,
      tag: `session ${this.sessions.length} (${this.nameOf(url)}, ${transport}${resume ? ', resume' : ''})`,
      socket: undefined as unknown as ClientSocket,
      closed: false,
      synced,
      settle,
    };
    if (!resume) settle();
    this.sessions.push(session);
    session.socket = openSocket(url, this.token, {
      transport,
      auth: resume
        ? (cb) => {
            // Read at the connection attempt: the revs the client has then.
            session.from = this.mat.resumePoints();
            cb({ token: this.token, resume: session.from });
          }
        : undefined,
    });
    for (const name of REV_EVENTS) {
      session.socket.on(name, (payload: unknown) => {
        if (session.closed) return;
        const { channelId, rev } = (payload ?? {}) as { channelId?: unknown; rev?: unknown };
        if (typeof channelId === 'string' && typeof rev === 'number') {
          let byRev = this.received.get(channelId);
          if (!byRev) this.received.set(channelId, (byRev = new Map()));
          if (!byRev.has(rev)) byRev.set(rev, { name, payload });
        }
        try {
          this.mat.apply(name, payload);
        } catch (err) {
          this.problem(`${session.tag}: ${(err as Error).message}`);
        }
      });
    }
    session.socket.on('disconnect', (reason) => {
      if (session.closed) return;
      session.closed = true;
      session.settle();
      this.problem(`${session.tag}: disconnected by the other side (${reason})`);
    });
    if (resume) {
      session.socket.once('sync:done', (done: RevSyncDone) => {
        this.followUp(session, session.from ?? {}, done?.channels, 'sync:done')
          .catch((err) => {
            if (!session.closed) this.problem(`${session.tag}: ${String(err)}`);
          })
          .finally(() => session.settle());
      });
    }
    try {
      await whenConnected(session.socket);
    } catch (err) {
      session.closed = true;
      session.settle();
      throw new Error(`${this.label}: ${session.tag} did not connect: ${String(err)}`);
    }
    return session;
  }

  /** While a channel's answer says hasMore, `sync` it again from that answer's latestRev (the contract). */
  private async followUp(
    session: Session,
    requested: Record<string, RevPoint>,
    first: Record<string, RevSyncChannelAck> | undefined,
    what: string,
  ): Promise<void> {
    let pending = requested;
    let answers = first;
    let kind = what;
    for (;;) {
      if (session.closed) return;
      if (!answers || typeof answers !== 'object') {
        this.problem(`${session.tag}: ${kind} without channels`);
        return;
      }
      const next: Record<string, RevPoint> = {};
      for (const [id, point] of Object.entries(pending)) {
        const r = answers[id];
        const label = `${session.tag}: ${kind} of channel ${id} from rev ${point.rev} answered ${JSON.stringify(r)}`;
        if (!r || 'error' in r) {
          this.problem(`${label}: refused`);
          continue;
        }
        if (!Number.isInteger(r.replayed) || r.replayed < 0 || r.replayed > REPLAY_LIMIT) this.problem(`${label}: replayed outside 0..${REPLAY_LIMIT}`);
        if (!Number.isInteger(r.latestRev) || typeof r.hasMore !== 'boolean') {
          this.problem(`${label}: latestRev or hasMore missing`);
          continue;
        }
        if (!r.hasMore) continue;
        this.stats.hasMore++;
        // The page came before its answer; the client syncs on from latestRev, so it must have all up to it.
        const have = this.mat.channel(id).rev;
        if (r.latestRev !== have) this.problem(`${label}: hasMore up to latestRev ${r.latestRev}, but the replay before this answer left the client at rev ${have}`);
        if (r.latestRev <= point.rev) {
          this.problem(`${label}: hasMore without progress`);
          continue;
        }
        next[id] = { rev: r.latestRev };
      }
      if (Object.keys(next).length === 0 || session.closed) return;
      this.stats.syncCalls++;
      const ack = (await session.socket.timeout(ACK_TIMEOUT_MS).emitWithAck('sync', { channels: next })) as RevSyncAck;
      if (session.closed) return;
      if (!ack?.ok) {
        this.problem(`${session.tag}: sync ${JSON.stringify(next)} answered ${JSON.stringify(ack)}`);
        return;
      }
      pending = next;
      answers = ack.channels;
      kind = `sync ${JSON.stringify(next)}`;
    }
  }

  disconnect(): void {
    const session = this.current;
    if (!session || session.closed) return;
    session.closed = true;
    session.settle();
    session.socket.close();
  }
}

// ---------------------------------------------------------------------------------------------------
// What the test knows of each channel: the messages as the acks (or, after concurrent operations, the REST
// history) last showed them, and the channel's latest rev.

class Model {
  private readonly channels = new Map<string, { messages: Map<string, ChangeMessage>; latest: number }>();

  constructor(readonly channelIds: string[]) {
    for (const id of channelIds) this.channels.set(id, { messages: new Map(), latest: 0 });
  }

  private of(channelId: string) {
    return this.channels.get(channelId)!;
  }

  list(channelId: string): ChangeMessage[] {
    return [...this.of(channelId).messages.values()].sort((a, b) => a.seq - b.seq);
  }

  get(id: string): ChangeMessage | undefined {
    for (const c of this.channels.values()) {
      const m = c.messages.get(id);
      if (m) return m;
    }
    return undefined;
  }

  latest(channelId: string): number {
    return this.of(channelId).latest;
  }

  maxSeq(channelId: string): number {
    return this.of(channelId).messages.size;
  }

  /** After an operation alone: the acked message, and the revs it took. */
  apply(m: ChangeMessage, revs: number): void {
    const c = this.of(m.channelId);
    c.messages.set(m.id, m);
    c.latest += revs;
  }

  load(channelId: string, history: ChangeMessage[]): void {
    const c = this.of(channelId);
    c.messages = new Map(history.map((m) => [m.id, m]));
    c.latest = latestRev(history);
  }

  /** `ch0#3` for the trace. */
  name(id: string): string {
    const m = this.get(id);
    return m ? `ch${this.channelIds.indexOf(m.channelId)}#${m.seq}${m.parentId ? 'r' : ''}${m.deleted ? 'x' : ''}` : `?${id.slice(0, 8)}`;
  }
}

type ChangeEventSent = 'message:send' | 'message:edit' | 'message:delete' | 'reaction:add' | 'reaction:remove';

/** One operation, resolved against the model: what to send, over which route, and what may come back. */
interface Action {
  what: string;
  actor: number;
  channelId: string;
  via: Via;
  event: ChangeEventSent;
  payload: Record<string, unknown>;
  rest: { method: string; path: string; body?: Record<string, unknown> };
  /** 'ok' and the error codes the contract allows for it. */
  expect: Set<string>;
  /** The revs it takes when it succeeds. */
  revs: number;
  /** The message it changes; the one it deletes; the parent of a reply it sends. */
  messageId?: string;
  deletes?: string;
  parentId?: string;
  changeId?: string;
  /** What is wrong with the acked message, if anything; `alone`: the model is exact for it. */
  check: (m: ChangeMessage, alone: boolean) => string | undefined;
}

/** The outcome of an operation, whichever route it took. */
type Outcome = { ok: true; message: ChangeMessage } | { ok: false; error: { code: string; message?: string }; status?: number };

const show = (v: unknown) => JSON.stringify(v);

/** An event with the content of a message deleted since erased (as a replay carries it); others as they are. */
function erase(event: { name: string; payload: unknown } | undefined, deletedIds: Set<string>): unknown {
  if (!event) return event;
  const blank = (m: ChangeMessage) => (deletedIds.has(m.id) ? { ...m, body: '', mentions: [], reactions: m.deleted ? m.reactions : [] } : m);
  if (event.name === 'message:new') return { ...event, payload: blank(event.payload as ChangeMessage) };
  if (event.name === 'message:updated') {
    const u = event.payload as { message: ChangeMessage };
    return { ...event, payload: { ...u, message: blank(u.message) } };
  }
  return event;
}

describe('sync: every client converges on the history through message changes (edits, deletes, reactions, replies), resuming by rev', function () {
  this.timeout(600_000);

  let cluster: Cluster;
  let runs = 0;
  const totals = { ops: 0, refused: {} as Record<string, number>, observerSessions: 0, syncCalls: 0, hasMore: 0, events: 0, erasedReplays: 0, retries: 0, reruns: 0 };

  before(async () => {
    // The product's defaults, rate limits included; only the replay page is small, to make resumes page.
    cluster = await startPipelineCluster('convergence', { SYNC_REPLAY_LIMIT: String(REPLAY_LIMIT) });
  });

  after(async () => {
    closeSockets();
    await cluster?.stop();
    await closeDb();
    console.log(`      [convergence stats] ${JSON.stringify({ runs, ...totals })}`);
  });

  async function pagedHistory(url: string, token: string, channelId: string): Promise<ChangeMessage[]> {
    const all: ChangeMessage[] = [];
    for (let after = 0; ; ) {
      const res = await request(url, 'GET', `/channels/${channelId}/messages?after=${after}&limit=${HISTORY_PAGE}`, { token });
      if (res.status !== 200) throw new Error(`history of ${channelId} after ${after}: HTTP ${res.status}: ${res.text}`);
      all.push(...res.body.messages);
      if (!res.body.hasMore) return all;
      after = res.body.messages[res.body.messages.length - 1].seq;
    }
  }

  /** Field by field, the first difference first, then the whole lists. */
  function expectSameMessages(got: ChangeMessage[], want: ChangeMessage[], what: string): void {
    const bySeq = new Map(got.map((m) => [m.seq, m]));
    for (const w of want) {
      const g = bySeq.get(w.seq);
      expect(g, `${what}: the client lacks message #${w.seq} ${show(w)}`).to.not.equal(undefined);
      const fields = [...new Set([...Object.keys(w), ...Object.keys(g!)])] as Array<keyof ChangeMessage>;
      for (const f of fields) {
        expect(g![f], `${what}: message #${w.seq} (${w.id}), field ${f}; the client has ${show(g)}, REST has ${show(w)}`).to.deep.equal(w[f]);
      }
    }
    expect(got.map((m) => m.seq), `${what}: the messages (seqs) the client has`).to.deep.equal(want.map((m) => m.seq));
    expect(got, `${what}: whole messages`).to.deep.equal(want);
  }

  async function oneRun(p: Program): Promise<void> {
    const run = runs++;
    const label = `seed ${SEED}, run ${run}`;
    const urls = cluster.urls.slice(0, 2);
    const node = (k: number) => urls[(k + (p.flip ? 1 : 0)) % 2];
    const nameOf = (url: string) => `node ${urls.indexOf(url) === 0 ? 'A' : 'B'}`;

    const team = await seedTeam(urls[0], 3);
    const users: RegisteredUser[] = [team.owner, ...team.members];
    const channels = [await seedChannel(urls[0], team, team.members), await seedChannel(urls[1], team, [team.members[0], team.members[2]])];
    const ids = channels.map((c) => c.id);
    const memberIds = [new Set(users.map((u) => u.user.id)), new Set([OWNER, 1, 3].map((k) => users[k].user.id))];
    const isMember = (actor: number, c: number) => memberIds[c].has(users[actor].user.id);
    const followed = (actor: number) => ids.filter((_, c) => isMember(actor, c));
    // Mentionable: the four users (bob is not in channel 1) and an id that is nobody's.
    const mentionIds = [...users.map((u) => u.user.id), randomUUID()];

    const trace: string[] = [];
    const model = new Model(ids);
    /** Changes answered ok that carried a clientChangeId; `noop`: one that changed nothing (no rev). */
    const changes: Array<{ action: Action; message: ChangeMessage; noop: boolean }> = [];
    // One socket per user for the whole run, and a second one for alice: both nodes, both transports,
    // with and without a handshake resume from rev 0.
    const layout: Array<{ actor: number; node: number; transport: Transport; resume: boolean }> = [
      { actor: 0, node: 0, transport: STAYING_TRANSPORTS[0], resume: false },
      { actor: 1, node: 1, transport: STAYING_TRANSPORTS[1], resume: true },
      { actor: 2, node: 0, transport: STAYING_TRANSPORTS[1], resume: true },
      { actor: 3, node: 1, transport: STAYING_TRANSPORTS[0], resume: false },
      { actor: 1, node: 0, transport: STAYING_TRANSPORTS[0], resume: true },
    ];
    const stayers = layout.map((l, k) => new Follower(`${USER_NAMES[l.actor]}${k === 4 ? '#2' : ''} (stays)`, users[l.actor].token, followed(l.actor), nameOf));
    const observer = new Follower('observer (reader, comes and goes)', users[3].token, ids, nameOf);
    const followers = [...stayers, observer];
    const problems = () => followers.flatMap((f) => f.problems);

    try {
      await Promise.all(stayers.map((f, k) => f.connect(node(layout[k].node), layout[k].transport, layout[k].resume)));
      await observer.connect(node(0), 'default', true);
      await Promise.all(followers.map((f) => f.current!.synced));
      trace.push(`${label}: stayers ${layout.map((l, k) => `${stayers[k].label}@${nameOf(node(l.node))}/${l.transport}`).join(', ')}`);

      // ---- resolving an operation against the model
      const tagOf = (i: string) => `r${run}-${i.replace('.', '-')}`;
      const bodyOf = (text: string, mentions: number[], i: string) => `${text} s${i}${mentions.map((k) => ` <@${mentionIds[k]}>`).join('')}`;
      const mentionsIn = (body: string, c: number) =>
        [...new Set([...body.matchAll(/<@([^>]+)>/g)].map((x) => x[1]))].filter((id) => memberIds[c].has(id)).sort();
      const pick = <T>(list: T[], n: number): T | undefined => (list.length === 0 ? undefined : list[n % list.length]);
      const reactionUsers = (m: ChangeMessage | undefined, emoji: string) => m?.reactions.find((r) => r.emoji === emoji)?.userIds ?? [];
      const complain = (cond: boolean, text: string) => (cond ? undefined : text);

      function sendAction(op: ChangeOp & { kind: 'send' | 'edit' | 'delete' | 'react' }, c: number, i: string, opts: { parentId?: string; body?: string; expect?: string; revs?: number } = {}): Action {
        const channelId = ids[c];
        const body = opts.body ?? bodyOf('text' in op ? op.text : 'fallback', 'mentions' in op ? op.mentions : [], i);
        const clientMsgId = tagOf(i);
        const payload: Record<string, unknown> = { channelId, body, clientMsgId, ...(opts.parentId ? { parentId: opts.parentId } : {}) };
        const actorId = users[op.actor].user.id;
        const seqBefore = model.maxSeq(channelId);
        const latest = model.latest(channelId);
        const parentId = opts.parentId;
        return {
          what: `${USER_NAMES[op.actor]} message:send ch${c}${parentId ? ` reply to ${model.name(parentId)}` : ''} ${show(body.slice(0, 24))}`,
          actor: op.actor,
          channelId,
          via: op.via,
          event: 'message:send',
          payload,
          rest: { method: 'POST', path: `/channels/${channelId}/messages`, body: { body, clientMsgId, ...(parentId ? { parentId } : {}) } },
          expect: new Set([opts.expect ?? 'ok']),
          revs: opts.revs ?? (parentId ? 2 : 1),
          parentId,
          check: (m, alone) =>
            complain(
              m.channelId === channelId &&
                m.userId === actorId &&
                m.body === body &&
                m.clientMsgId === clientMsgId &&
                m.parentId === (parentId ?? null) &&
                m.deleted === false &&
                m.editedAt === null &&
                m.replyCount === 0 &&
                isDeepStrictEqual(m.reactions, []) &&
                isDeepStrictEqual(m.mentions, mentionsIn(body, c)),
              `the acked message is not the one sent (mentions expected ${show(mentionsIn(body, c))})`,
            ) ??
            (alone
              ? complain(m.seq === seqBefore + 1 && m.rev === latest + 1, `seq ${m.seq} rev ${m.rev}, expected seq ${seqBefore + 1} rev ${latest + 1}`)
              : undefined),
        };
      }

      function changeAction(
        op: ChangeOp,
        c: number,
        i: string,
        event: Exclude<ChangeEventSent, 'message:send'>,
        messageId: string,
        extra: { body?: string; emoji?: string },
        expectCodes: string[],
        revs: number,
        check: (m: ChangeMessage, alone: boolean) => string | undefined,
      ): Action {
        const channelId = ids[c];
        const changeId = op.changeId ? tagOf(i) : undefined;
        const withId = changeId ? { clientChangeId: changeId } : {};
        const base = `/channels/${channelId}/messages/${messageId}`;
        const rest =
          event === 'message:edit'
            ? { method: 'PATCH', path: base, body: { body: extra.body, ...withId } }
            : event === 'message:delete'
              ? { method: 'DELETE', path: base, body: changeId ? withId : undefined }
              : { method: event === 'reaction:add' ? 'PUT' : 'DELETE', path: `${base}/reactions/${encodeURIComponent(extra.emoji!)}`, body: changeId ? withId : undefined };
        const detail = extra.emoji !== undefined ? ` ${extra.emoji}` : extra.body !== undefined ? ` ${show(extra.body.slice(0, 24))}` : '';
        return {
          what: `${USER_NAMES[op.actor]} ${event}${detail} ${model.name(messageId)}`,
          actor: op.actor,
          channelId,
          via: op.via,
          event,
          payload: { channelId, messageId, ...(extra.body !== undefined ? { body: extra.body } : {}), ...(extra.emoji !== undefined ? { emoji: extra.emoji } : {}), ...withId },
          rest,
          expect: new Set(expectCodes),
          revs,
          messageId,
          deletes: event === 'message:delete' && expectCodes.includes('ok') ? messageId : undefined,
          changeId,
          check,
        };
      }

      function resolve(op: ChangeOp, i: string): Action {
        let c = op.channel;
        if (!isMember(op.actor, c) && op.valid) c = 0;
        const channelId = ids[c];
        const actorId = users[op.actor].user.id;
        const list = model.list(channelId);
        const alive = list.filter((m) => !m.deleted);
        const latest = model.latest(channelId);
        const other = model.list(ids[1 - c]).filter((m) => !m.deleted);
        const topLevelSend = () => sendAction(op, c, i);

        if (!isMember(op.actor, c)) {
          // Not in the channel: NOT_FOUND, whatever the operation.
          const target = pick(alive, op.target)?.id ?? randomUUID();
          if (op.kind === 'send') return sendAction(op, c, i, { expect: 'NOT_FOUND', revs: 0 });
          if (op.kind === 'edit') return changeAction(op, c, i, 'message:edit', target, { body: bodyOf(op.text, op.mentions, i) }, ['NOT_FOUND'], 0, () => undefined);
          if (op.kind === 'delete') return changeAction(op, c, i, 'message:delete', target, {}, ['NOT_FOUND'], 0, () => undefined);
          return changeAction(op, c, i, op.add ? 'reaction:add' : 'reaction:remove', target, { emoji: op.emoji }, ['NOT_FOUND'], 0, () => undefined);
        }

        const editCheck = (id: string, body: string) => (m: ChangeMessage, alone: boolean) =>
          complain(
            m.id === id && m.body === body && m.deleted === false && m.editedAt !== null && isDeepStrictEqual(m.mentions, mentionsIn(body, c)),
            `the acked message is not the edited one (body ${show(body)}, mentions ${show(mentionsIn(body, c))}, editedAt set)`,
          ) ??
          (alone
            ? complain(m.rev === latest + 1 && isDeepStrictEqual(m.reactions, model.get(id)!.reactions), `rev ${m.rev} (expected ${latest + 1}) or reactions changed by an edit`)
            : undefined);
        const deleteCheck = (id: string) => (m: ChangeMessage, alone: boolean) =>
          complain(
            m.id === id && m.deleted === true && m.body === '' && isDeepStrictEqual(m.mentions, []) && isDeepStrictEqual(m.reactions, []),
            'the acked message is not the deleted one (deleted true, body "", mentions [], reactions [])',
          ) ?? (alone ? complain(m.rev === latest + 1, `rev ${m.rev}, expected ${latest + 1}`) : undefined);
        const reactCheck = (id: string, emoji: string, add: boolean, revs: number) => (m: ChangeMessage, alone: boolean) => {
          const has = reactionUsers(m, emoji).includes(actorId);
          const entry = m.reactions.find((r) => r.emoji === emoji);
          return (
            complain(m.id === id && m.deleted === false && has === add, `the acked message ${add ? 'lacks' : 'still has'} the reaction`) ??
            complain(!entry || (entry.count === entry.userIds.length && entry.count > 0), `reaction counts ${show(m.reactions)}`) ??
            (alone
              ? revs === 1
                ? complain(m.rev === latest + 1, `rev ${m.rev}, expected ${latest + 1}`)
                : complain(m.rev <= latest && isDeepStrictEqual(m.reactions, model.get(id)!.reactions), `a change that changes nothing: rev ${m.rev} (latest ${latest}), reactions ${show(m.reactions)}, were ${show(model.get(id)!.reactions)}`)
              : undefined)
          );
        };

        switch (op.kind) {
          case 'send': {
            if (op.valid) {
              const parent = op.reply ? pick(alive.filter((m) => m.parentId === null), op.target) : undefined;
              return sendAction(op, c, i, { parentId: parent?.id });
            }
            const variants: Array<() => Action> = [
              () => sendAction(op, c, i, { body: '   ', expect: 'VALIDATION_FAILED', revs: 0 }),
              () => sendAction(op, c, i, { parentId: randomUUID(), expect: 'VALIDATION_FAILED', revs: 0 }),
            ];
            const reply = pick(list.filter((m) => m.parentId !== null), op.target);
            if (reply) variants.push(() => sendAction(op, c, i, { parentId: reply.id, expect: 'VALIDATION_FAILED', revs: 0 }));
            const gone = pick(list.filter((m) => m.parentId === null && m.deleted), op.target);
            if (gone) variants.push(() => sendAction(op, c, i, { parentId: gone.id, expect: 'VALIDATION_FAILED', revs: 0 }));
            const elsewhere = pick(other.filter((m) => m.parentId === null), op.target);
            if (elsewhere) variants.push(() => sendAction(op, c, i, { parentId: elsewhere.id, expect: 'VALIDATION_FAILED', revs: 0 }));
            return pick(variants, op.target >> 3)!();
          }
          case 'edit': {
            const body = bodyOf(`edited ${op.text}`, op.mentions, i);
            const own = alive.filter((m) => m.userId === actorId);
            if (op.valid) {
              const target = pick(own, op.target);
              return target ? changeAction(op, c, i, 'message:edit', target.id, { body }, ['ok'], 1, editCheck(target.id, body)) : topLevelSend();
            }
            const none = () => undefined;
            const variants: Array<() => Action> = [() => changeAction(op, c, i, 'message:edit', randomUUID(), { body }, ['NOT_FOUND'], 0, none)];
            const others = pick(alive.filter((m) => m.userId !== actorId), op.target);
            if (others) variants.push(() => changeAction(op, c, i, 'message:edit', others.id, { body }, ['FORBIDDEN'], 0, none));
            const ownGone = pick(list.filter((m) => m.userId === actorId && m.deleted), op.target);
            if (ownGone) variants.push(() => changeAction(op, c, i, 'message:edit', ownGone.id, { body }, ['NOT_FOUND'], 0, none));
            const mine = pick(own, op.target);
            if (mine) variants.push(() => changeAction(op, c, i, 'message:edit', mine.id, { body: ' \n ' }, ['VALIDATION_FAILED'], 0, none));
            const elsewhere = pick(other, op.target);
            if (elsewhere) variants.push(() => changeAction(op, c, i, 'message:edit', elsewhere.id, { body }, ['NOT_FOUND'], 0, none));
            return pick(variants, op.target >> 3)!();
          }
          case 'delete': {
            const isOwner = op.actor === OWNER;
            if (op.valid) {
              const target = pick(alive.filter((m) => isOwner || m.userId === actorId), op.target);
              return target ? changeAction(op, c, i, 'message:delete', target.id, {}, ['ok'], target.parentId ? 2 : 1, deleteCheck(target.id)) : topLevelSend();
            }
            const none = () => undefined;
            const variants: Array<() => Action> = [() => changeAction(op, c, i, 'message:delete', randomUUID(), {}, ['NOT_FOUND'], 0, none)];
            const others = isOwner ? undefined : pick(alive.filter((m) => m.userId !== actorId), op.target);
            if (others) variants.push(() => changeAction(op, c, i, 'message:delete', others.id, {}, ['FORBIDDEN'], 0, none));
            const gone = pick(list.filter((m) => m.deleted && (isOwner || m.userId === actorId)), op.target);
            if (gone) variants.push(() => changeAction(op, c, i, 'message:delete', gone.id, {}, ['NOT_FOUND'], 0, none));
            const elsewhere = pick(other.filter((m) => isOwner || m.userId === actorId), op.target);
            if (elsewhere) variants.push(() => changeAction(op, c, i, 'message:delete', elsewhere.id, {}, ['NOT_FOUND'], 0, none));
            return pick(variants, op.target >> 3)!();
          }
          case 'react': {
            const event = op.add ? 'reaction:add' : 'reaction:remove';
            if (op.valid) {
              let target = pick(alive, op.target);
              let emoji = op.emoji;
              if (!op.add) {
                // Mostly one of the actor's own reactions; sometimes one it does not have (ok, no event).
                const mine = alive.flatMap((m) => m.reactions.filter((r) => r.userIds.includes(actorId)).map((r) => ({ m, emoji: r.emoji })));
                const chosen = op.target % 4 === 0 ? undefined : pick(mine, op.target >> 2);
                if (chosen) [target, emoji] = [chosen.m, chosen.emoji];
              }
              if (!target) return topLevelSend();
              const had = reactionUsers(target, emoji).includes(actorId);
              const revs = had === op.add ? 0 : 1;
              return changeAction(op, c, i, event, target.id, { emoji }, ['ok'], revs, reactCheck(target.id, emoji, op.add, revs));
            }
            const none = () => undefined;
            const variants: Array<() => Action> = [() => changeAction(op, c, i, event, randomUUID(), { emoji: op.emoji }, ['NOT_FOUND'], 0, none)];
            const gone = pick(list.filter((m) => m.deleted), op.target);
            if (gone) variants.push(() => changeAction(op, c, i, event, gone.id, { emoji: op.emoji }, ['NOT_FOUND'], 0, none));
            const target = pick(alive, op.target);
            if (target) variants.push(() => changeAction(op, c, i, event, target.id, { emoji: pick([...BAD_EMOJIS], op.target)! }, ['VALIDATION_FAILED'], 0, none));
            const elsewhere = pick(other, op.target);
            if (elsewhere) variants.push(() => changeAction(op, c, i, event, elsewhere.id, { emoji: op.emoji }, ['NOT_FOUND'], 0, none));
            return pick(variants, op.target >> 3)!();
          }
        }
      }

      /**
       * Operations at the same time: one may delete what another changes, or the parent another replies to.
       * Then NOT_FOUND (a change of a deleted message) or VALIDATION_FAILED (a reply to one) is the contract's
       * answer as well, depending on which the server takes first.
       */
      function relax(actions: Action[]): void {
        for (const a of actions) {
          for (const b of actions) {
            if (a === b) continue;
            if (b.deletes && a.messageId === b.deletes) a.expect.add('NOT_FOUND');
            if (b.deletes && a.parentId === b.deletes) a.expect.add('VALIDATION_FAILED');
          }
        }
      }

      async function perform(a: Action, url: string): Promise<Outcome> {
        if (a.via === 'socket') {
          // Alice has two sockets, on both nodes: her operations alternate between them.
          const own = stayers.filter((_, k) => layout[k].actor === a.actor);
          const socket = own[url === urls[0] ? 0 : own.length - 1].socket;
          try {
            return (await socket.timeout(ACK_TIMEOUT_MS).emitWithAck(a.event, a.payload)) as Outcome;
          } catch (err) {
            return { ok: false, error: { code: 'NO_ACK', message: String(err) } };
          }
        }
        const res = await request(url, a.rest.method, a.rest.path, { token: users[a.actor].token, body: a.rest.body });
        const okStatus = a.event === 'message:send' ? 201 : 200;
        if (res.status === okStatus && res.body?.message) return { ok: true, message: res.body.message };
        const error = res.body?.error?.code ? res.body.error : { code: `HTTP_${res.status}`, message: res.text };
        // The status of a refusal is the one docs/API.md gives its code.
        if ((ERROR_STATUS as Record<string, number>)[error.code] !== res.status) error.code = `${error.code}(HTTP ${res.status})`;
        return { ok: false, error, status: res.status };
      }

      async function refresh(): Promise<void> {
        for (const id of ids) model.load(id, (await fullHistory(urls[0], users[3].token, id)) as unknown as ChangeMessage[]);
      }

      // ---- the program
      for (const [n, s] of p.steps.entries()) {
        const i = String(n);
        if (problems().length > 0) break;
        switch (s.kind) {
          case 'pause':
            await sleep(s.ms);
            trace.push(`#${i} pause ${s.ms} ms`);
            break;
          case 'observer': {
            if (!s.up) {
              trace.push(`#${i} observer ${observer.connected ? 'goes away' : 'stays away'} at revs ${show(Object.values(observer.mat.revs()))}`);
              observer.disconnect();
              break;
            }
            const url = urls[s.node];
            const from = Object.values(observer.mat.revs());
            const session = await observer.connect(url, s.transport, true);
            trace.push(`#${i} observer ${session.tag} from revs ${show(from)}`);
            break;
          }
          case 'retry': {
            // A change made with a clientChangeId that was answered ok, over either route, by the same user:
            // preferably one whose message changed or was deleted since, or one that changed nothing.
            const focused = changes.filter(({ action, message, noop }) => {
              const now = model.get(action.messageId!);
              if (s.focus === 'changed-since') return !!now && now.rev > message.rev;
              if (s.focus === 'deleted-since') return !!now?.deleted;
              if (s.focus === 'no-op') return noop;
              return true;
            });
            // Of the changes that changed nothing (a second add, the removal of a missing reaction), those whose
            // reaction the user has changed since: a retry must not apply them now.
            const flipped = focused.filter(({ action, message }) => {
              const emoji = action.payload.emoji as string | undefined;
              const userId = users[action.actor].user.id;
              const now = model.get(action.messageId!);
              return emoji !== undefined && !!now && reactionUsers(message, emoji).includes(userId) !== reactionUsers(now, emoji).includes(userId);
            });
            const chosen = pick(s.focus === 'no-op' && flipped.length > 0 ? flipped : focused.length > 0 ? focused : changes, s.target);
            if (!chosen) break;
            const a: Action = {
              ...chosen.action,
              via: s.via,
              what: `retry (${chosen.action.changeId}, ${s.focus}) of ${chosen.action.what}${chosen.noop ? ' (which changed nothing)' : ''}`,
              expect: new Set(['ok']),
            };
            const outcome = await perform(a, urls[n % 2]);
            totals.ops++;
            totals.retries++;
            trace.push(`#${i} ${a.what} via ${s.via} → ${outcome.ok ? `ok #${outcome.message.seq} rev ${outcome.message.rev}` : show(outcome.error)}`);
            const where = `${label}, step #${i}: ${a.what} via ${s.via} (first answered ${show(chosen.message)})`;
            expect(outcome.ok, `${where}: a retry with the same clientChangeId answers the stored result, got ${show(outcome)}`).to.equal(true);
            if (!outcome.ok) break;
            // "The stored result": the first answer, or the message as stored now; the content of a message
            // deleted since is erased everywhere, so then the message as it is now (or the first answer erased).
            const history = (await fullHistory(urls[0], users[3].token, a.channelId)) as unknown as ChangeMessage[];
            const latestNow = latestRev(history);
            expect(latestNow, `${where}: a retry changes nothing more, but the channel's latest rev moved from ${model.latest(a.channelId)}`).to.equal(model.latest(a.channelId));
            const now = history.find((m) => m.id === chosen.message.id);
            const erased = { ...chosen.message, body: '', mentions: [], reactions: [] };
            const allowed = now?.deleted && !chosen.message.deleted ? [now, erased] : [chosen.message, now];
            expect(
              allowed.some((m) => isDeepStrictEqual(outcome.message, m)),
              `${where}: the retry answered ${show(outcome.message)}; the message is now ${show(now)}`,
            ).to.equal(true);
            break;
          }
          case 'rerun': {
            const config = loadConfig(process.env);
            const partitions = [...new Set(ids.map((id) => partitionOf(id, config.queue.partitions)))];
            const queues = partitions.map(
              (n) => new Queue<MessageBatchJob, BatchResult>(messageQueueName(n), { connection: { url: config.redis.url, maxRetriesPerRequest: null }, prefix: bullPrefix(clusterRedisPrefix('convergence')) }),
            );
            try {
              const done = (await Promise.all(queues.map(async (q) => (await q.getJobs(['completed'], 0, 200)).map((job) => ({ q, job })))))
                .flat()
                .filter(({ job }) => job.data.sends.some((c) => ids.includes(c.channelId)))
                .sort((a, b) => a.job.timestamp - b.job.timestamp);
              // Preferably one holding a change to a message deleted since: its first run was decided on a message
              // that is gone now, and is answered as applied all the same.
              // Or one holding a reaction change the user has reversed since (a removal of a reaction they have now,
              // an addition of one they no longer have): applied again, it would undo the user's later change.
              const focused = done.filter(({ job }) =>
                job.data.sends.some((c) => {
                  if (!('messageId' in c) || c.kind === undefined) return false;
                  const now = model.get(c.messageId);
                  if (s.focus === 'deleted-since') return !!now?.deleted;
                  return (c.kind === 'reaction:add' || c.kind === 'reaction:remove') && !!now && reactionUsers(now, c.emoji).includes(c.userId) === (c.kind === 'reaction:remove');
                }),
              );
              const chosen = pick(s.focus !== 'any' && focused.length > 0 ? focused : done, s.target);
              if (!chosen) break;
              const first = chosen.job;
              const what = `batch ${first.id} [${first.data.sends.map((c) => c.kind ?? 'send').join(', ')}] run again (${s.focus})`;
              const added = await chosen.q.add(MESSAGE_BATCH_JOB, first.data, batchJobOptions(1000));
              let again: Job<MessageBatchJob, BatchResult> | undefined;
              await waitFor(async () => (again = await chosen.q.getJob(added.id!))?.finishedOn !== undefined, 15_000);
              totals.reruns++;
              trace.push(`#${i} ${what}`);
              const where = `${label}, step #${i}: ${what}`;
              expect(again!.failedReason, where).to.equal(undefined);
              const now = new Map<string, ChangeMessage>();
              for (const id of ids) for (const m of (await fullHistory(urls[0], users[3].token, id)) as unknown as ChangeMessage[]) now.set(m.id, m);
              for (const id of ids) {
                const latest = latestRev([...now.values()].filter((m) => m.channelId === id));
                expect(latest, `${where}: a batch run again changes nothing, but the channel's latest rev moved`).to.equal(model.latest(id));
              }
              // What was applied is answered again: as the first time, or with the message as it is now.
              for (const c of first.data.sends) {
                const before: BatchOutcome = first.returnvalue.outcomes[c.id];
                const after: BatchOutcome = again!.returnvalue.outcomes[c.id];
                if (!before.ok) continue;
                const current = 'message' in after ? now.get(after.message.id) : undefined;
                expect(
                  isDeepStrictEqual(after, before) || ('message' in after && isDeepStrictEqual(after.message, current)),
                  `${where}: ${c.kind ?? 'send'} ${c.id} first answered ${show(before)}, now ${show(after)}; the message is now ${show(current)}`,
                ).to.equal(true);
              }
            } finally {
              await Promise.all(queues.map((q) => q.close()));
            }
            break;
          }
          case 'ops': {
            const alone = s.ops.length === 1;
            const actions = s.ops.map((op, k) => resolve(op, alone ? i : `${i}.${k}`));
            relax(actions);
            const outcomes = await Promise.all(actions.map((a, k) => perform(a, urls[(n + k) % 2])));
            const first = s.ops[0];
            if (alone && first.kind === 'react' && first.again !== 'no' && outcomes[0].ok && actions[0].event.startsWith('reaction:')) {
              const a = actions[0];
              const messageId = a.messageId!;
              const emoji = a.payload.emoji as string;
              const userId = users[a.actor].user.id;
              const after = outcomes[0].message;
              const variant = (suffix: string, event: ChangeEventSent, fields: Partial<Action>): Action => {
                const changeId = a.changeId ? `${a.changeId}-${suffix}` : undefined;
                const withId = changeId ? { clientChangeId: changeId } : {};
                const method = event === 'reaction:add' ? 'PUT' : 'DELETE';
                const { clientChangeId: _first, ...payload } = a.payload;
                return {
                  ...a,
                  event,
                  payload: { ...payload, ...withId },
                  rest: { method, path: a.rest.path, body: changeId ? withId : undefined },
                  expect: new Set(['ok']),
                  changeId,
                  ...fields,
                } as Action;
              };
              // The same change again, with a clientChangeId of its own: it changes nothing.
              actions.push(
                variant('again', a.event, {
                  what: `${a.what} again`,
                  revs: 0,
                  check: (m) =>
                    complain(
                      m.id === messageId && isDeepStrictEqual(m.reactions, after.reactions) && m.rev === after.rev,
                      `a second identical reaction change changed something: it was ${show(after)}`,
                    ),
                }),
              );
              outcomes.push(await perform(actions[1], urls[(n + 1) % 2]));
              if (first.again === 'undo' && outcomes[1].ok) {
                const undo: ChangeEventSent = a.event === 'reaction:add' ? 'reaction:remove' : 'reaction:add';
                actions.push(
                  variant('undo', undo, {
                    what: `${a.what}, undone (${undo})`,
                    revs: 1,
                    check: (m) =>
                      complain(
                        m.id === messageId && reactionUsers(m, emoji).includes(userId) === (undo === 'reaction:add') && m.rev === model.latest(a.channelId) + 1,
                        `the undo did not take the next rev ${model.latest(a.channelId) + 1} or did not change the reaction`,
                      ),
                  }),
                );
                outcomes.push(await perform(actions[2], urls[n % 2]));
              }
            }
            for (const [k, a] of actions.entries()) {
              const o = outcomes[k];
              const verdict = o.ok ? 'ok' : o.error.code;
              totals.ops++;
              if (!o.ok) totals.refused[verdict] = (totals.refused[verdict] ?? 0) + 1;
              const at = alone && k === 0 ? i : `${i}.${k}`;
              trace.push(`#${at} ${a.what} via ${a.via} → ${o.ok ? `ok #${o.message.seq} rev ${o.message.rev}` : verdict}`);
              const where = `${label}, step #${at}: ${a.what} via ${a.via}`;
              if (!a.expect.has(verdict)) throw new Error(`${where}: answered ${show(o)}; the contract's answer is ${[...a.expect].join(' or ')}`);
              if (!o.ok) continue;
              const wrong = a.check(o.message, alone);
              if (wrong) throw new Error(`${where}: ${wrong}; acked ${show(o.message)}`);
              if (a.changeId) changes.push({ action: a, message: o.message, noop: alone && a.revs === 0 });
              if (alone) model.apply(o.message, a.revs);
            }
            // At the same time, the order the server took them in decides: read what it made of them.
            if (!alone) await refresh();
            break;
          }
        }
      }

      // ---- convergence
      if (!observer.connected) {
        const session = await observer.connect(urls[p.finalNode], 'websocket', true);
        trace.push(`end: observer ${session.tag} from revs ${show(Object.values(observer.mat.revs()))}`);
      }
      const nodeOf = (channelId: string) => ids.indexOf(channelId) % 2;
      const truth = new Map<string, ChangeMessage[]>();
      const latest: Record<string, number> = {};
      for (const id of ids) {
        const history = await pagedHistory(urls[1], users[3].token, id);
        truth.set(id, history);
        latest[id] = latestRev(history);
        expect(history.map((m) => m.seq), `${label}: REST history of ${id} in seq order, gap-free`).to.deep.equal(history.map((_, k) => k + 1));
        expect(history, `${label}: REST history of ${id}, paged by ${HISTORY_PAGE} and by 200`).to.deep.equal(await fullHistory(urls[0], users[0].token, id));
        // Every rev is one the acks accounted for (the last step alone was checked exactly).
        expect(model.latest(id), `${label}: the channel's latest rev against the revs the operations took`).to.equal(latest[id]);
        // The message shape's rules hold in the history itself, and each thread reads the same on its own.
        for (const m of history) {
          const what = `${label}: REST message #${m.seq} ${show(m)}`;
          if (m.deleted) expect({ body: m.body, mentions: m.mentions, reactions: m.reactions }, `${what}: deleted`).to.deep.equal({ body: '', mentions: [], reactions: [] });
          for (const r of m.reactions) expect(r.count, `${what}: reaction ${r.emoji}`).to.equal(r.userIds.length).and.be.above(0);
          if (m.parentId !== null) continue;
          const replies = history.filter((x) => x.parentId === m.id);
          const alive = replies.filter((x) => !x.deleted);
          const newest = alive.reduce<string | null>((t, x) => (t === null || Date.parse(x.createdAt) > Date.parse(t) ? x.createdAt : t), null);
          expect({ replyCount: m.replyCount, lastReplyAt: m.lastReplyAt }, `${what}: its thread`).to.deep.equal({ replyCount: alive.length, lastReplyAt: newest });
          if (replies.length === 0) continue;
          const res = await request(urls[nodeOf(id)], 'GET', `/channels/${id}/messages/${m.id}/replies?after=0&limit=200`, { token: users[3].token });
          expect(res.status, `${what}: GET replies: ${res.text}`).to.equal(200);
          expect(res.body, `${what}: GET replies, against the history`).to.deep.equal({ messages: replies, hasMore: false });
        }
      }
      trace.push(`end: latest revs ${show(Object.values(latest))}, messages ${show(ids.map((id) => truth.get(id)!.length))}`);
      await waitFor(
        () => problems().length > 0 || followers.every((f) => f.channelIds.every((id) => f.mat.channel(id).rev >= latest[id])),
        20_000,
        () => `${label}: clients at revs ${followers.map((f) => `${f.label} ${show(f.mat.revs())}`).join('; ')}; latest ${show(latest)}`,
      );
      await Promise.race([observer.current!.synced, sleep(10_000)]);
      // A late duplicate or a stray event would arrive in this window.
      await sleep(250);

      expect(problems().join('\n'), `${label}: what the clients saw breaks the contract`).to.equal('');
      for (const f of followers) {
        expect(f.connected, `${label}: ${f.label} is still connected`).to.equal(true);
        for (const id of f.channelIds) {
          const state = f.mat.channel(id);
          expect(state.pending(), `${label}: ${f.label}, channel ${ids.indexOf(id)}: owed events`).to.deep.equal([]);
          expect(state.rev, `${label}: ${f.label}, channel ${ids.indexOf(id)}: rev`).to.equal(latest[id]);
          expectSameMessages(state.snapshot(), truth.get(id)!, `${label}: ${f.label}, channel ${ids.indexOf(id)} against the REST history`);
          totals.events += state.log.length;
        }
      }
      // Each rev reached every socket as the same event: live everywhere alike, and replayed "exactly as
      // emitted live", but for the content of messages deleted since (erased everywhere).
      const deletedIds = new Set([...truth.values()].flat().filter((m) => m.deleted).map((m) => m.id));
      const reference = stayers[0];
      for (const f of followers.slice(1)) {
        for (const id of f.channelIds) {
          for (let rev = 1; rev <= latest[id]; rev++) {
            const want = reference.received.get(id)?.get(rev);
            const got = f.received.get(id)?.get(rev);
            const what = `${label}: ${f.label}, channel ${ids.indexOf(id)}, rev ${rev}: the event it got, against ${reference.label}'s`;
            if (f === observer) expect(erase(got, deletedIds), what).to.deep.equal(erase(want, deletedIds));
            else expect(got, what).to.deep.equal(want);
          }
        }
      }
    } catch (err) {
      const dead = deadProcesses(cluster);
      const lines = [
        (err as Error).message,
        `--- ${label}: the program as run (${p.steps.length} steps, flip ${p.flip}):`,
        ...trace,
        '--- problems:',
        ...problems(),
        ...followers.flatMap((f) =>
          f.channelIds.map((id) => `--- ${f.label}, channel ${ids.indexOf(id)} (last events): ${f.mat.channel(id).log.slice(-25).join(' | ')}`),
        ),
        ...dead,
      ];
      const wrapped = new Error(lines.join('\n'));
      wrapped.stack = `${wrapped.message}\n${(err as Error).stack ?? ''}`;
      throw wrapped;
    } finally {
      totals.observerSessions += observer.sessions.length;
      for (const state of observer.mat.channels.values()) totals.erasedReplays += state.erasedSeen;
      for (const f of followers) {
        totals.syncCalls += f.stats.syncCalls;
        totals.hasMore += f.stats.hasMore;
        f.disconnect();
      }
      closeSockets();
    }
  }

  it('When users send, reply, edit, delete and react over sockets and REST on both nodes, alone and at once, while an observer comes and goes resuming by rev, then the contract refuses exactly what it defines, and every connected client and the observer materialise exactly the REST history', async () => {
    await fc.assert(
      fc.asyncProperty(program, async (p) => {
        await oneRun(p);
      }),
      { seed: SEED, numRuns: NUM_RUNS, endOnFailure: endOnFailure(), examples: FOUND_BEFORE.map((p) => [p] as [Program]) },
    );
    expect(deadProcesses(cluster), 'every process of the cluster is alive').to.deep.equal([]);
  });
});
