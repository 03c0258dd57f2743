/**
 * A load agent: a child process of the bench that owns real socket.io-client connections, sends and
 * receives, and timestamps everything itself. Driven over IPC by AgentPool (see protocol.ts); it never
 * shares an event loop with the product's processes.
 */
import { io, type Socket } from 'socket.io-client';
import { nowUs } from '../lib/clock.js';
import { timedGet } from '../lib/http.js';
import { Histogram } from '../lib/histogram.js';
import { AckOrder, StreamCheck, addOrderCounts, noOrderErrors } from '../lib/orderCheck.js';
import {
  RECEIVER_KINDS,
  type AgentCommand,
  type AgentMessage,
  type AgentRequest,
  type AgentResult,
  type AgentStats,
  type LoadSpec,
  type ReceiverKind,
  type SocketSpec,
  type TimedPage,
} from './protocol.js';

interface IncomingMessage {
  channelId: string;
  seq: number;
  body: string;
}

type SendOutcome = { ok: true; message: { seq: number; createdAt: string } } | { ok: false; error?: { code?: string } };
type SyncDone = { channels?: Record<string, { replayed?: number; latestSeq?: number; hasMore?: boolean; error?: unknown }> };

interface Client {
  spec: SocketSpec;
  kind: ReceiverKind;
  socket: Socket;
  /** Before arm: the highest seq seen per channel (warm-up). */
  seen: Map<string, number>;
  /** After arm: one check per channel. */
  checks: Map<string, StreamCheck>;
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
}

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
  };
}

function post(message: AgentMessage): void {
  // The bench may close the channel at any time (stop()): a message racing that is dropped, not an
  // EPIPE crash (an unhandled 'error' without a callback).
  if (process.connected) process.send?.(message, undefined, undefined, () => {});
}

function stats(): AgentStats {
  const { sent, acked, failed, delivered, disconnects } = counters;
  return { sent, acked, failed, delivered, disconnects };
}

function onMessage(client: Client, message: IncomingMessage): void {
  const now = nowUs();
  if (!armed) {
    const seen = client.seen.get(message.channelId) ?? -1;
    if (message.seq > seen) client.seen.set(message.channelId, message.seq);
    return;
  }
  const check = client.checks.get(message.channelId);
  if (!check || message.seq <= check.base) return;
  check.see(message.seq);
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
    client.sender = { client, channelId: spec.send.channelId, index: spec.send.index, inFlight: 0, next: 0, loadSent: 0, dueUs: 0, acks: new AckOrder() };
  }
  socket.on('message:new', (message: IncomingMessage) => onMessage(client, message));
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
    }),
  );
  return seqs;
}

function arm(bases: Record<string, number>): void {
  counters = freshCounters();
  ackHist = new Histogram();
  deliverHist = new Histogram();
  deliverBy = freshDeliverBy();
  persistStartHist = new Histogram();
  sendLagHist = new Histogram();
  for (const client of clients.values()) {
    client.checks = new Map(client.spec.channels.map((c) => [c, new StreamCheck(bases[c] ?? 0)]));
    if (client.sender) client.sender.acks = new AckOrder();
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

/** Sends what the load allows now: up to the window (closed), or what is due within the window (open). */
function pump(sender: Sender, now: number): void {
  if (!load || now >= load.endUs) return;
  const { spec } = load;
  const more = () => spec.maxSendsPerSender === undefined || sender.loadSent < spec.maxSendsPerSender;
  if (spec.mode === 'closed') {
    while (sender.inFlight < spec.window && more()) sendOne(sender, nowUs());
    return;
  }
  while (sender.dueUs <= now && sender.dueUs < load.endUs && sender.inFlight < spec.window && more()) {
    if (now - sender.dueUs > 1000) counters.lateSends++;
    sendLagHist.record(now - sender.dueUs);
    sendOne(sender, sender.dueUs);
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

function collect(finals: Record<string, number>): AgentResult {
  let order = noOrderErrors();
  let ackOrderViolations = 0;
  for (const client of clients.values()) {
    for (const [channelId, check] of client.checks) order = addOrderCounts(order, check.counts(finals[channelId] ?? check.base));
    if (client.sender) ackOrderViolations += client.sender.acks.violations();
  }
  armed = false;
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
      return arm(command.bases);
    case 'load':
      return startLoad(command.spec);
    case 'stop':
      return stopLoad();
    case 'collect':
      return collect(command.finals);
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
