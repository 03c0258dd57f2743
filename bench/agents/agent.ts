/**
 * A load agent: a child process of the bench that owns real socket.io-client connections, sends and
 * receives, and timestamps everything itself. Driven over IPC by AgentPool (see protocol.ts); it never
 * shares an event loop with the product's processes.
 */
import { io, type Socket } from 'socket.io-client';
import { nowUs } from '../lib/clock.js';
import { timedGet } from '../lib/http.js';
import { Histogram } from '../lib/histogram.js';
import { AckOrder, RevCheck, StreamCheck, addOrderCounts, noOrderErrors } from '../lib/orderCheck.js';
import {
  CHANGE_EVENTS,
  CHANGE_KINDS,
  RECEIVER_KINDS,
  REV_EVENTS,
  type AgentCommand,
  type AgentMessage,
  type AgentRequest,
  type AgentResult,
  type AgentStats,
  type ChangeData,
  type ChangeIssue,
  type ChangeKind,
  type LoadSpec,
  type OpMix,
  type ReceiverKind,
  type RevOrderCounts,
  type SocketSpec,
  type TimedPage,
} from './protocol.js';

/**
 * The events as the bench reads them, typed here (docs/API.md, "Edits, deletes, reactions and threads") rather than from shared/, so
 * that the load agents stay a client of the wire format only.
 */
interface IncomingMessage {
  id: string;
  channelId: string;
  seq: number;
  /** The channel rev of the message's latest change: its creation, for message:new. */
  rev?: number;
  body: string;
}
interface AckedMessage {
  id: string;
  seq: number;
  rev?: number;
  createdAt: string;
  body?: string;
  editedAt?: string | null;
  deleted?: boolean;
  reactions?: Array<{ emoji: string; count: number }>;
}
interface RevPayload {
  channelId: string;
  rev?: number;
}
type MessageDeleted = RevPayload & { messageId: string; seq: number };

type SendOutcome = { ok: true; message: AckedMessage } | { ok: false; error?: { code?: string } };
type SyncDone = { channels?: Record<string, { replayed?: number; latestSeq?: number; hasMore?: boolean; error?: unknown }> };

interface Client {
  spec: SocketSpec;
  kind: ReceiverKind;
  socket: Socket;
  /** Before arm: the highest seq seen per channel (warm-up). */
  seen: Map<string, number>;
  /** After arm: one check per channel. */
  checks: Map<string, StreamCheck>;
  /** After an arm with rev bases (mixed phase): one rev check per channel, over every event kind. */
  revChecks?: Map<string, RevCheck>;
  sender?: Sender;
}

interface Sender {
  client: Client;
  channelId: string;
  index: number;
  inFlight: number;
  next: number;
  /** Sends of the current load (maxSendsPerSender). */
  loadSent: number;
  /** Open loop: when the next send is due (µs). */
  dueUs: number;
  acks: AckOrder;
  /** The highest channel rev of any ack (sends, changes, warm-up). */
  maxRev: number;
  /** What the changes of a mixed load may target; kept in every phase (an id per ack, bounded). */
  targets: Targets;
  /** Changes made since arm (client change ids). */
  nextChange: number;
  /** Changes acked since arm, with their revs. */
  issues: ChangeIssue[];
}

/** A sender's view of the messages its changes may target. */
interface Targets {
  /** Its own live messages, newest last: edits and deletes. */
  own: string[];
  /** Its channel's recent live messages, any author (from its socket's message:new), newest last: reactions. */
  recent: string[];
  /** Changes in flight per message id. */
  busy: Map<string, number>;
  /** Messages whose delete is in flight or done. */
  deleting: Set<string>;
  /** Its own reactions that are acked and not being removed: message id → emojis. */
  reactions: Map<string, Set<string>>;
  /** `${messageId} ${emoji}` with an add or a remove in flight. */
  reacting: Set<string>;
}

/** Targets kept per sender: the newest this many messages, own and of the channel. */
const RECENT = 64;
/** Reactions of the mixed load: names and one Unicode grapheme (the contract's two forms). */
const EMOJIS = ['thumbsup', '+1', 'tada', 'eyes', 'heart', 'rocket', 'white_check_mark', '\u{1F44D}'];

const STATS_INTERVAL_MS = 500;
/** How long a resuming socket may take from its handshake to `sync:done`. */
const SYNC_DONE_TIMEOUT_MS = 30_000;

const clients = new Map<string, Client>();
let armed = false;
let load: { spec: LoadSpec; endUs: number; intervalUs: number; timer?: NodeJS.Timeout; pad: string } | undefined;
let ackHist = new Histogram();
let deliverHist = new Histogram();
let deliverBy = freshDeliverBy();
let persistStartHist = new Histogram();
let sendLagHist = new Histogram();
let counters = freshCounters();
let changeStats = freshChangeStats();

interface ChangeStats {
  sent: number;
  acked: number;
  failed: number;
  errors: Record<string, number>;
  ack: Histogram;
}

function freshChangeStats(): Record<ChangeKind, ChangeStats> {
  return Object.fromEntries(CHANGE_KINDS.map((k) => [k, { sent: 0, acked: 0, failed: 0, errors: {}, ack: new Histogram() }])) as Record<ChangeKind, ChangeStats>;
}

function freshDeliverBy(): Record<ReceiverKind, Histogram> {
  return Object.fromEntries(RECEIVER_KINDS.map((k) => [k, new Histogram()])) as Record<ReceiverKind, Histogram>;
}

function freshCounters() {
  return {
    sent: 0,
    acked: 0,
    failed: 0,
    delivered: 0,
    disconnects: 0,
    lateSends: 0,
    firstSendUs: 0,
    lastAckUs: 0,
    lastDeliverUs: 0,
    errors: {} as Record<string, number>,
    changesSent: 0,
    changesSettled: 0,
    revEvents: 0,
    /** Change acks that break the contract (see RevOrderCounts.badAcks). */
    badAcks: 0,
  };
}

function post(message: AgentMessage): void {
  // The bench may close the channel at any time (stop()): a message racing that is dropped, not an
  // EPIPE crash (an unhandled 'error' without a callback).
  if (process.connected) process.send?.(message, undefined, undefined, () => {});
}

function stats(): AgentStats {
  const { sent, acked, failed, delivered, disconnects, changesSent, changesSettled, revEvents } = counters;
  return { sent, acked, failed, delivered, disconnects, changesSent, changesSettled, revEvents };
}

function pushRecent(list: string[], id: string): void {
  list.push(id);
  if (list.length > RECENT) list.shift();
}

function dropTarget(t: Targets, messageId: string): void {
  for (const list of [t.own, t.recent]) {
    const i = list.lastIndexOf(messageId);
    if (i >= 0) list.splice(i, 1);
  }
  t.reactions.delete(messageId);
}

/** Any event with a rev, at an armed socket of a rev-checked phase; `kind` indexes REV_EVENTS. */
function onRevEvent(client: Client, kind: number, channelId: string, rev: unknown, now: number): void {
  const check = client.revChecks?.get(channelId);
  if (check?.see(rev, kind, now)) counters.revEvents++;
}

function onMessage(client: Client, message: IncomingMessage): void {
  const now = nowUs();
  const sender = client.sender;
  if (sender && message.channelId === sender.channelId) pushRecent(sender.targets.recent, message.id);
  if (!armed) {
    const seen = client.seen.get(message.channelId) ?? -1;
    if (message.seq > seen) client.seen.set(message.channelId, message.seq);
    return;
  }
  const check = client.checks.get(message.channelId);
  if (!check || message.seq <= check.base) return;
  check.see(message.seq);
  if (client.revChecks) onRevEvent(client, 0, message.channelId, message.rev, now);
  counters.delivered++;
  counters.lastDeliverUs = now;
  const sentAt = Number.parseInt(message.body, 10);
  if (Number.isFinite(sentAt)) {
    deliverHist.record(now - sentAt);
    deliverBy[client.kind].record(now - sentAt);
  }
}

/**
 * Opens one socket. It never emits anything but its sends: a resuming socket declares its marks in the
 * handshake and is counted connected once the front node's `sync:done` says every replay is complete.
 */
function connectOne(spec: SocketSpec): Promise<void> {
  const socket = io(spec.url, {
    auth: spec.auth,
    transports: ['websocket'],
    forceNew: true,
    reconnection: false,
    timeout: 30_000,
  });
  const resume = spec.auth.resume as Record<string, number> | undefined;
  const kind: ReceiverKind = spec.send ? 'sender' : resume ? 'resuming' : 'silent';
  const client: Client = { spec, kind, socket, seen: new Map(), checks: new Map() };
  if (spec.send) {
    client.sender = {
      client,
      channelId: spec.send.channelId,
      index: spec.send.index,
      inFlight: 0,
      next: 0,
      loadSent: 0,
      dueUs: 0,
      acks: new AckOrder(),
      maxRev: 0,
      targets: { own: [], recent: [], busy: new Map(), deleting: new Set(), reactions: new Map(), reacting: new Set() },
      nextChange: 0,
      issues: [],
    };
  }
  socket.on('message:new', (message: IncomingMessage) => onMessage(client, message));
  // The change events: counted only in a rev-checked (mixed) phase, and a delete by anyone retires its
  // message as a target of this socket's sender.
  REV_EVENTS.forEach((name, kind) => {
    if (name === 'message:new') return;
    socket.on(name, (event: RevPayload) => {
      const now = nowUs();
      if (name === 'message:deleted' && client.sender && event?.channelId === client.sender.channelId) {
        dropTarget(client.sender.targets, (event as MessageDeleted).messageId);
      }
      if (armed && client.revChecks && event) onRevEvent(client, kind, event.channelId, event.rev, now);
    });
  });
  return new Promise((resolve, reject) => {
    let connected = false;
    let synced = resume === undefined;
    let timer: NodeJS.Timeout | undefined;
    const fail = (why: string) => {
      clearTimeout(timer);
      socket.close();
      reject(new Error(`socket ${spec.key} to ${spec.url}: ${why}`));
    };
    const ready = () => {
      if (!connected || !synced) return;
      clearTimeout(timer);
      clients.set(spec.key, client);
      resolve();
    };
    socket.once('connect', () => {
      connected = true;
      socket.on('disconnect', (reason) => {
        if (reason !== 'io client disconnect') counters.disconnects++;
      });
      if (!synced) timer = setTimeout(() => fail(`no sync:done ${SYNC_DONE_TIMEOUT_MS / 1000} s after the handshake`), SYNC_DONE_TIMEOUT_MS);
      ready();
    });
    if (resume) {
      socket.once('sync:done', (done: SyncDone) => {
        // A silent client cannot ask for more (that takes a `sync`): every replay must be complete.
        const bad = Object.keys(resume).filter((id) => {
          const channel = done?.channels?.[id];
          return !channel || channel.error !== undefined || channel.hasMore !== false;
        });
        if (bad.length > 0) return fail(`handshake resume of ${bad.join(', ')} not complete: ${JSON.stringify(done)}`);
        synced = true;
        ready();
      });
    }
    socket.once('connect_error', (err) => fail(err.message));
  });
}

async function connectAll(specs: SocketSpec[], concurrency: number): Promise<number> {
  let i = 0;
  const workers = Array.from({ length: Math.min(concurrency, specs.length) }, async () => {
    while (i < specs.length) await connectOne(specs[i++]);
  });
  await Promise.all(workers);
  return specs.length;
}

function watermarks(): Record<string, number> {
  const low: Record<string, number> = {};
  for (const client of clients.values()) {
    for (const channelId of client.spec.channels) {
      const seen = client.seen.get(channelId) ?? -1;
      low[channelId] = Math.min(low[channelId] ?? Infinity, seen);
    }
  }
  return low;
}

function emitSend(sender: Sender, payload: { channelId: string; body: string; clientMsgId: string }): Promise<SendOutcome> {
  return new Promise((resolve) => sender.client.socket.emit('message:send', payload, resolve));
}

async function probe(keys: string[], phase: string): Promise<Record<string, number>> {
  const seqs: Record<string, number> = {};
  await Promise.all(
    keys.map(async (key) => {
      const sender = clients.get(key)?.sender;
      if (!sender) throw new Error(`no sender socket ${key}`);
      const outcome = await emitSend(sender, {
        channelId: sender.channelId,
        body: 'warm-up',
        clientMsgId: `${phase}-probe-${sender.index}-${sender.next++}`,
      });
      if (!outcome.ok) throw new Error(`warm-up send refused: ${JSON.stringify(outcome.error)}`);
      seqs[sender.channelId] = Math.max(seqs[sender.channelId] ?? 0, outcome.message.seq);
      noteRev(sender, outcome.message.rev);
    }),
  );
  return seqs;
}

function noteRev(sender: Sender, rev: unknown): void {
  if (typeof rev === 'number' && rev > sender.maxRev) sender.maxRev = rev;
}

function arm(bases: Record<string, number>, revBases?: Record<string, number>): void {
  counters = freshCounters();
  changeStats = freshChangeStats();
  ackHist = new Histogram();
  deliverHist = new Histogram();
  deliverBy = freshDeliverBy();
  persistStartHist = new Histogram();
  sendLagHist = new Histogram();
  for (const client of clients.values()) {
    client.checks = new Map(client.spec.channels.map((c) => [c, new StreamCheck(bases[c] ?? 0)]));
    client.revChecks = revBases ? new Map(client.spec.channels.map((c) => [c, new RevCheck(revBases[c] ?? 0)])) : undefined;
    if (client.sender) {
      client.sender.acks = new AckOrder();
      client.sender.issues = [];
    }
  }
  armed = true;
}

function sendOne(sender: Sender, sentAtUs: number): void {
  const spec = load!.spec;
  const n = sender.next++;
  sender.loadSent++;
  sender.inFlight++;
  counters.sent++;
  if (counters.firstSendUs === 0) counters.firstSendUs = sentAtUs;
  const payload = {
    channelId: sender.channelId,
    body: `${Math.round(sentAtUs)}|${sender.index}|${n}|${load!.pad}`,
    clientMsgId: `${spec.phase}-${sender.index}-${n}`,
  };
  sender.client.socket.emit('message:send', payload, (outcome: SendOutcome) => {
    const now = nowUs();
    sender.inFlight--;
    counters.lastAckUs = now;
    if (outcome?.ok) {
      counters.acked++;
      ackHist.record(now - sentAtUs);
      noteRev(sender, outcome.message.rev);
      pushRecent(sender.targets.own, outcome.message.id);
      // createdAt is on the wall clock: the send time moved onto it (sub-ms) from the monotonic clock.
      const sentWallMs = performance.timeOrigin + performance.now() - (now - sentAtUs) / 1000;
      persistStartHist.record(Math.max(0, (Date.parse(outcome.message.createdAt) - sentWallMs) * 1000));
      sender.acks.record(n, outcome.message.seq);
    } else {
      counters.failed++;
      const code = (outcome && !outcome.ok && outcome.error?.code) || 'UNKNOWN';
      counters.errors[code] = (counters.errors[code] ?? 0) + 1;
    }
    if (load?.spec.mode === 'closed') pump(sender, now);
  });
}

type Change =
  | { kind: 'edit' | 'delete'; messageId: string }
  | { kind: 'reaction:add' | 'reaction:remove'; messageId: string; emoji: string };

/** A random element of `list` that `ok` accepts (a few random tries, then newest first), if any. */
function pick(list: string[], ok: (id: string) => boolean): string | undefined {
  for (let i = 0; i < 4 && list.length > 0; i++) {
    const id = list[Math.floor(Math.random() * list.length)];
    if (ok(id)) return id;
  }
  for (let i = list.length - 1; i >= 0; i--) if (ok(list[i])) return list[i];
  return undefined;
}

function reactionAdd(t: Targets): Change | undefined {
  const messageId = pick(t.recent, (id) => !t.deleting.has(id));
  if (!messageId) return undefined;
  const mine = t.reactions.get(messageId);
  const start = Math.floor(Math.random() * EMOJIS.length);
  for (let i = 0; i < EMOJIS.length; i++) {
    const emoji = EMOJIS[(start + i) % EMOJIS.length];
    if (!mine?.has(emoji) && !t.reacting.has(`${messageId} ${emoji}`)) return { kind: 'reaction:add', messageId, emoji };
  }
  return undefined;
}

function reactionRemove(t: Targets): Change | undefined {
  // The oldest of its own reactions not already on the way out.
  for (const [messageId, emojis] of t.reactions) {
    if (t.deleting.has(messageId)) continue;
    for (const emoji of emojis) if (!t.reacting.has(`${messageId} ${emoji}`)) return { kind: 'reaction:remove', messageId, emoji };
  }
  return undefined;
}

/**
 * The op of the next slot of a mixed load: drawn by the mix's weights; a change with nothing to target is a
 * send. Every change is a real one (it makes an event): edits and deletes of the sender's own live messages
 * with nothing in flight on them, adds of a reaction it has not made, removes of one it has (half the
 * reactions when it has any).
 */
function pickChange(sender: Sender, mix: OpMix): Change | undefined {
  const total = mix.send + mix.reaction + mix.edit + mix.delete;
  let r = Math.random() * total - mix.send;
  if (r < 0) return undefined;
  const t = sender.targets;
  if ((r -= mix.reaction) < 0) {
    return Math.random() < 0.5 ? (reactionRemove(t) ?? reactionAdd(t)) : (reactionAdd(t) ?? reactionRemove(t));
  }
  if ((r -= mix.edit) < 0) {
    const messageId = pick(t.own, (id) => !t.deleting.has(id));
    return messageId ? { kind: 'edit', messageId } : undefined;
  }
  const messageId = pick(t.own, (id) => !t.busy.has(id));
  return messageId ? { kind: 'delete', messageId } : undefined;
}

/** One op slot: a send, or in a mixed load maybe a change. */
function issueOne(sender: Sender, sentAtUs: number): void {
  const mix = load?.spec.mix;
  const change = mix ? pickChange(sender, mix) : undefined;
  if (change) changeOne(sender, change, sentAtUs);
  else sendOne(sender, sentAtUs);
}

/** Whether a change's ack shows the change (docs/API.md, "Edits, deletes, reactions and threads": the message after it). */
function ackShows(change: Change, body: string | undefined, m: AckedMessage | undefined): boolean {
  if (!m || m.id !== change.messageId || typeof m.rev !== 'number' || !Number.isInteger(m.rev)) return false;
  switch (change.kind) {
    case 'edit':
      return m.body === body && Boolean(m.editedAt) && m.deleted !== true;
    case 'delete':
      return m.deleted === true && m.body === '';
    case 'reaction:add':
      return Array.isArray(m.reactions) && m.reactions.some((r) => r.emoji === change.emoji && r.count >= 1);
    case 'reaction:remove':
      return Array.isArray(m.reactions);
  }
}

function changeOne(sender: Sender, change: Change, sentAtUs: number): void {
  const spec = load!.spec;
  const t = sender.targets;
  const kindIndex = CHANGE_KINDS.indexOf(change.kind);
  const stats = changeStats[change.kind];
  const n = sender.nextChange++;
  sender.loadSent++;
  sender.inFlight++;
  stats.sent++;
  counters.changesSent++;
  if (counters.firstSendUs === 0) counters.firstSendUs = sentAtUs;
  const { messageId } = change;
  t.busy.set(messageId, (t.busy.get(messageId) ?? 0) + 1);
  const reactionKey = change.kind === 'reaction:add' || change.kind === 'reaction:remove' ? `${messageId} ${change.emoji}` : undefined;
  if (reactionKey) t.reacting.add(reactionKey);
  if (change.kind === 'delete') {
    t.deleting.add(messageId);
    dropTarget(t, messageId);
  }
  // Same size as a send's body, stamped the same way.
  const body = change.kind === 'edit' ? `${Math.round(sentAtUs)}|${sender.index}|e${n}|${load!.pad}` : undefined;
  const payload: Record<string, string> = { channelId: sender.channelId, messageId, clientChangeId: `${spec.phase}-${sender.index}-c${n}` };
  if (body !== undefined) payload.body = body;
  if (change.kind === 'reaction:add' || change.kind === 'reaction:remove') payload.emoji = change.emoji;
  sender.client.socket.emit(CHANGE_EVENTS[change.kind].emit, payload, (outcome: SendOutcome) => {
    const now = nowUs();
    sender.inFlight--;
    counters.changesSettled++;
    counters.lastAckUs = now;
    const busy = (t.busy.get(messageId) ?? 1) - 1;
    if (busy > 0) t.busy.set(messageId, busy);
    else t.busy.delete(messageId);
    if (reactionKey) t.reacting.delete(reactionKey);
    if (outcome?.ok) {
      stats.acked++;
      stats.ack.record(now - sentAtUs);
      if (!ackShows(change, body, outcome.message)) counters.badAcks++;
      const rev = outcome.message?.rev;
      if (typeof rev === 'number') {
        noteRev(sender, rev);
        sender.issues.push([rev, kindIndex, sentAtUs]);
      }
      if (change.kind === 'reaction:add' && !t.deleting.has(messageId)) {
        const mine = t.reactions.get(messageId) ?? new Set<string>();
        mine.add(change.emoji);
        t.reactions.set(messageId, mine);
      }
    } else {
      stats.failed++;
      const code = (outcome && !outcome.ok && outcome.error?.code) || 'UNKNOWN';
      stats.errors[code] = (stats.errors[code] ?? 0) + 1;
    }
    if (change.kind === 'reaction:remove') {
      // Gone either way: removed, or refused (the message is gone, or it was never there).
      const mine = t.reactions.get(messageId);
      mine?.delete(change.emoji);
      if (mine?.size === 0) t.reactions.delete(messageId);
    }
    if (load?.spec.mode === 'closed') pump(sender, now);
  });
}

/** Sends what the load allows now: up to the window (closed), or what is due within the window (open). */
function pump(sender: Sender, now: number): void {
  if (!load || now >= load.endUs) return;
  const { spec } = load;
  const more = () => spec.maxSendsPerSender === undefined || sender.loadSent < spec.maxSendsPerSender;
  if (spec.mode === 'closed') {
    while (sender.inFlight < spec.window && more()) issueOne(sender, nowUs());
    return;
  }
  while (sender.dueUs <= now && sender.dueUs < load.endUs && sender.inFlight < spec.window && more()) {
    if (now - sender.dueUs > 1000) counters.lateSends++;
    sendLagHist.record(now - sender.dueUs);
    issueOne(sender, sender.dueUs);
    sender.dueUs += load.intervalUs;
  }
}

function startLoad(spec: LoadSpec): void {
  const start = nowUs();
  const senders = [...clients.values()].flatMap((c) => (c.sender ? [c.sender] : []));
  const intervalUs = spec.mode === 'open' ? 1e6 / (spec.ratePerSender ?? 1) : 0;
  load = { spec, endUs: start + spec.durationMs * 1000, intervalUs, pad: 'x'.repeat(Math.max(0, spec.bodyBytes - 40)) };
  for (const sender of senders) sender.loadSent = 0;
  if (spec.mode === 'closed') {
    for (const sender of senders) pump(sender, start);
    return;
  }
  // Each sender's first send at a random phase within its interval, so the senders do not fire in step.
  for (const sender of senders) sender.dueUs = start + Math.random() * intervalUs;
  const tick = () => {
    const now = nowUs();
    for (const sender of senders) pump(sender, now);
    if (load && now < load.endUs) load.timer = setTimeout(tick, 1);
  };
  tick();
}

function stopLoad(): void {
  if (!load) return;
  clearTimeout(load.timer);
  load.endUs = 0;
}

/** Per channel, the highest rev in any ack of this agent's senders. */
function revs(): Record<string, number> {
  const out: Record<string, number> = {};
  for (const client of clients.values()) {
    const s = client.sender;
    if (s) out[s.channelId] = Math.max(out[s.channelId] ?? 0, s.maxRev);
  }
  return out;
}

function issues(): Record<string, ChangeIssue[]> {
  const out: Record<string, ChangeIssue[]> = {};
  for (const client of clients.values()) {
    const s = client.sender;
    if (s && s.issues.length > 0) (out[s.channelId] ??= []).push(...s.issues);
  }
  return out;
}

/**
 * Rev order at this agent's sockets against the channels' final revs, and change → event: each change
 * event that arrived, matched by (channel, rev) with the acked change of every agent that made it.
 */
function revResults(finalRevs: Record<string, number>, issued: Record<string, ChangeIssue[]>) {
  const eventHist = Object.fromEntries(CHANGE_KINDS.map((k) => [k, new Histogram()])) as Record<ChangeKind, Histogram>;
  const counts: RevOrderCounts = { ...noOrderErrors(), unmatched: 0, mismatched: 0, badAcks: counters.badAcks };
  const byChannel = new Map<string, Map<number, ChangeIssue>>();
  for (const [channelId, list] of Object.entries(issued)) byChannel.set(channelId, new Map(list.map((i) => [i[0], i])));
  const eventOf = CHANGE_KINDS.map((k) => REV_EVENTS.indexOf(CHANGE_EVENTS[k].event as (typeof REV_EVENTS)[number]));
  let any = false;
  for (const client of clients.values()) {
    if (!client.revChecks) continue;
    any = true;
    for (const [channelId, check] of client.revChecks) {
      const c = check.stream.counts(finalRevs[channelId] ?? check.base);
      counts.violations += c.violations;
      counts.gaps += c.gaps;
      counts.duplicates += c.duplicates;
      counts.mismatched += check.noRev;
      const mine = byChannel.get(channelId);
      for (const [rev, [kind, atUs]] of check.arrivals) {
        const issue = mine?.get(rev);
        if (!issue) counts.unmatched++;
        else if (eventOf[issue[1]] !== kind) counts.mismatched++;
        else eventHist[CHANGE_KINDS[issue[1]]].record(atUs - issue[2]);
      }
    }
  }
  return any ? { counts, eventHist } : { counts: undefined, eventHist };
}

function collect(finals: Record<string, number>, finalRevs: Record<string, number> = {}, issued: Record<string, ChangeIssue[]> = {}): AgentResult {
  let order = noOrderErrors();
  let ackOrderViolations = 0;
  for (const client of clients.values()) {
    for (const [channelId, check] of client.checks) order = addOrderCounts(order, check.counts(finals[channelId] ?? check.base));
    if (client.sender) ackOrderViolations += client.sender.acks.violations();
  }
  const rev = revResults(finalRevs, issued);
  const changes = Object.fromEntries(
    CHANGE_KINDS.map((k) => {
      const c = changeStats[k];
      const data: ChangeData = { sent: c.sent, acked: c.acked, failed: c.failed, errors: c.errors, ack: c.ack.toJSON(), event: rev.eventHist[k].toJSON() };
      return [k, data];
    }),
  ) as Record<ChangeKind, ChangeData>;
  armed = false;
  for (const client of clients.values()) client.revChecks = undefined;
  for (const client of clients.values()) client.seen.clear();
  return {
    ...stats(),
    ack: ackHist.toJSON(),
    deliver: deliverHist.toJSON(),
    deliverBy: Object.fromEntries(RECEIVER_KINDS.map((k) => [k, deliverBy[k].toJSON()])) as AgentResult['deliverBy'],
    persistStart: persistStartHist.toJSON(),
    sendLag: sendLagHist.toJSON(),
    errors: counters.errors,
    order,
    ackOrderViolations,
    lateSends: counters.lateSends,
    firstSendUs: counters.firstSendUs,
    lastAckUs: counters.lastAckUs,
    lastDeliverUs: counters.lastDeliverUs,
    changes,
    revOrder: rev.counts,
  };
}

function closeAll(): void {
  stopLoad();
  load = undefined;
  armed = false;
  for (const client of clients.values()) client.socket.close();
  clients.clear();
}

async function timedGets(urls: string[], token: string): Promise<TimedPage[]> {
  const pages: TimedPage[] = [];
  for (const url of urls) {
    const res = await timedGet(url, token);
    const messages: Array<{ seq: number }> = Array.isArray(res.body?.messages) ? res.body.messages : [];
    pages.push({ status: res.status, us: res.us, seqs: messages.map((m) => m.seq) });
  }
  return pages;
}

async function handle(command: AgentCommand): Promise<unknown> {
  switch (command.type) {
    case 'connect':
      return connectAll(command.sockets, command.concurrency);
    case 'watermarks':
      return watermarks();
    case 'probe':
      return probe(command.keys, command.phase);
    case 'arm':
      return arm(command.bases, command.revBases);
    case 'load':
      return startLoad(command.spec);
    case 'stop':
      return stopLoad();
    case 'revs':
      return revs();
    case 'issues':
      return issues();
    case 'collect':
      return collect(command.finals, command.finalRevs, command.issues);
    case 'close':
      return closeAll();
    case 'get':
      return timedGets(command.urls, command.token);
  }
}

process.on('message', (request: AgentRequest) => {
  handle(request).then(
    (result) => post({ type: 'reply', id: request.id, ok: true, result: result ?? null }),
    (err: unknown) => post({ type: 'reply', id: request.id, ok: false, error: err instanceof Error ? err.message : String(err) }),
  );
});
// The bench going away (even by SIGKILL) closes the IPC channel: nothing is left behind.
process.on('disconnect', () => {
  closeAll();
  process.exit(0);
});
setInterval(() => post({ type: 'stats', stats: stats() }), STATS_INTERVAL_MS).unref();
