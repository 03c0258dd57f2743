/**
 * One measured load phase, the same for the product and for the raw Socket.IO baseline: warm up until every
 * socket provably receives its channels, arm the receivers' order checks, run the load, wait for every ack
 * and every delivery, collect what the clients measured.
 */
import type { AgentPool, PoolResult } from '../agents/pool.js';
import { CHANGE_KINDS, RECEIVER_KINDS, type ChangeKind, type ReceiverKind, type RevOrderCounts } from '../agents/protocol.js';
import { sleep } from '../lib/clock.js';
import type { LatencySummary } from '../lib/histogram.js';
import { round } from '../lib/histogram.js';
import { cpuPercent, sampleCpu, type CpuGroups } from '../lib/procfs.js';
import { Progress, note } from '../lib/progress.js';

export interface PhaseTarget {
  label: string;
  pool: AgentPool;
  /** Channel id → how many of the pool's sockets receive it. */
  receivers: Record<string, number>;
  /** Sends one warm-up message per channel (none may be in flight otherwise); the seq of each, by channel. */
  probe(): Promise<Record<string, number>>;
  /** Starts the load; it stops by itself after `durationMs`. */
  start(): Promise<void>;
  /** Each channel's last seq once every send is answered. */
  finals(): Promise<Record<string, number>>;
  /** Sends made and answered so far and when the first went out (µs), when the load is not the agents'. */
  counts?(): { sent: number; settled: number; firstSendUs: number };
  /**
   * Mixed phase: each channel's latest rev, as the senders' acks reported it. Given, the receivers check
   * every event kind's revs from the warm-up's on, and the phase also waits for every change event.
   */
  revs?(): Promise<Record<string, number>>;
  durationMs: number;
  /** For the CPU breakdown. */
  cpu?: CpuGroups;
  /** CPU profiles of the product's processes during the load (--cpu-prof). */
  profiler?: { start(): void; stop(label: string): Promise<void> };
}

export interface PhaseResult {
  label: string;
  /** Wall clock (ms since the epoch) when the load started and when the last delivery was awaited. */
  loadStartMs: number;
  loadEndMs: number;
  durationS: number;
  /** First send to the last ack / last delivery. */
  ackWindowS: number;
  deliverWindowS: number;
  sent: number;
  acked: number;
  failed: number;
  /** New rows (seqs) in the channels: last seq after minus before. */
  persisted: number;
  delivered: number;
  expectedDeliveries: number;
  ackedPerS: number;
  persistedPerS: number;
  deliveriesPerS: number;
  /** Messages acked, persisted and delivered to every receiver, per second of the whole window. */
  completedPerS: number;
  ack: LatencySummary;
  deliver: LatencySummary;
  /** send → deliver by kind of receiving socket (kinds the phase had; see ReceiverKind). */
  deliverBy: Partial<Record<ReceiverKind, LatencySummary>>;
  /** send → start of the transaction that stored it (see AgentResult.persistStart). */
  persistStart: LatencySummary;
  /** Open loop: scheduled send time → the agent actually sending (included in every latency above). */
  sendLag: LatencySummary;
  order: { violations: number; gaps: number; duplicates: number; ackOrder: number };
  errors: Record<string, number>;
  disconnects: number;
  lateSends: number;
  /** % of one core per process group during the load. */
  cpu?: Record<string, number>;
  /** Mixed phase: the changes made beside the sends (sent, acked, ack and deliver above are the sends'). */
  changes?: Record<ChangeKind, ChangeSummary>;
  /** Mixed phase: sends and changes acked per second of the ack window. */
  opsAckedPerS?: number;
  /** Mixed phase: every event kind's revs at the receivers (see RevCheck), and change → event matching. */
  revOrder?: RevOrderCounts;
  /** Mixed phase: events of every kind the receivers got, and how many the channels' revs said to expect. */
  revEvents?: { received: number; expected: number };
}

export interface ChangeSummary {
  sent: number;
  acked: number;
  failed: number;
  errors: Record<string, number>;
  ackedPerS: number;
  /** change → ack, at the client that made it. */
  ack: LatencySummary;
  /** change → its event, at every socket of the channel. */
  event: LatencySummary;
}

const WARM_UP_TIMEOUT_MS = 60_000;
const ACK_DRAIN_TIMEOUT_MS = 60_000;
/** A delivery drain that makes no progress for this long is over: what is missing is reported as gaps. */
const DELIVERY_STALL_MS = 10_000;

async function warmUp(target: PhaseTarget): Promise<Record<string, number>> {
  const deadline = Date.now() + WARM_UP_TIMEOUT_MS;
  for (;;) {
    const probed = await target.probe();
    const retryAt = Date.now() + 2_000;
    while (Date.now() < retryAt) {
      const marks = await target.pool.watermarks();
      if (Object.keys(target.receivers).every((c) => probed[c] !== undefined && (marks[c] ?? -1) >= probed[c])) return probed;
      await sleep(50);
    }
    if (Date.now() > deadline) {
      throw new Error(`${target.label}: sockets still miss warm-up messages after ${WARM_UP_TIMEOUT_MS / 1000} s (not subscribed?)`);
    }
  }
}

export async function runPhase(target: PhaseTarget): Promise<PhaseResult> {
  const { pool } = target;
  const bases = await warmUp(target);
  const revBases = target.revs ? await target.revs() : undefined;
  await pool.arm(bases, revBases);
  pool.resetStats();
  const counts = () => {
    const s = pool.stats();
    const own = target.counts?.();
    return {
      sent: own?.sent ?? s.sent + s.changesSent,
      settled: own?.settled ?? s.acked + s.failed + s.changesSettled,
      acked: own?.settled ?? s.acked,
      delivered: s.delivered,
      revEvents: s.revEvents,
    };
  };

  const progress = new Progress(target.label);
  const cpuStart = target.cpu ? sampleCpu(target.cpu) : undefined;
  target.profiler?.start();
  await target.start();
  const startedMs = Date.now();
  const loadStartMs = startedMs;
  while (Date.now() - startedMs < target.durationMs) {
    await sleep(Math.min(500, target.durationMs - (Date.now() - startedMs)));
    progress.update(counts());
  }
  const cpuEnd = target.cpu ? sampleCpu(target.cpu) : undefined;
  await target.profiler?.stop(target.label);

  // Every send answered (agents push their counters every 500 ms: wait for a push after the load ended).
  await sleep(600);
  const ackDeadline = Date.now() + ACK_DRAIN_TIMEOUT_MS;
  while (counts().settled < counts().sent && Date.now() < ackDeadline) {
    await sleep(100);
    progress.update(counts());
  }
  if (counts().settled < counts().sent) note(`${target.label}: ${counts().sent - counts().settled} sends still unanswered`);

  const finals = await target.finals();
  const finalRevs = revBases && target.revs ? await target.revs() : undefined;
  let expected = 0;
  let expectedEvents = 0;
  for (const [channelId, receivers] of Object.entries(target.receivers)) {
    expected += Math.max(0, (finals[channelId] ?? 0) - (bases[channelId] ?? 0)) * receivers;
    if (finalRevs && revBases) expectedEvents += Math.max(0, (finalRevs[channelId] ?? 0) - (revBases[channelId] ?? 0)) * receivers;
  }
  let lastDelivered = -1;
  let lastProgressMs = Date.now();
  for (;;) {
    const c = counts();
    // Deliveries of message:new and, in a mixed phase, events of every kind.
    const delivered = c.delivered + c.revEvents;
    if (c.delivered >= expected && c.revEvents >= expectedEvents) break;
    if (delivered !== lastDelivered) {
      lastDelivered = delivered;
      lastProgressMs = Date.now();
    } else if (Date.now() - lastProgressMs > DELIVERY_STALL_MS) {
      note(`${target.label}: deliveries stalled at ${c.delivered} of ${expected}${finalRevs ? `, events at ${c.revEvents} of ${expectedEvents}` : ''}`);
      break;
    }
    await sleep(100);
    progress.update(counts());
  }
  progress.update(counts(), true);

  const loadEndMs = Date.now();
  const revEvents = counts().revEvents;
  const result = await pool.collect(finals, finalRevs);
  const persisted = Object.keys(target.receivers).reduce((sum, c) => sum + Math.max(0, (finals[c] ?? 0) - (bases[c] ?? 0)), 0);
  const summary = summarise(target, result, persisted, expected, cpuStart && cpuEnd ? cpuPercent(cpuStart, cpuEnd) : undefined);
  if (!finalRevs) return { ...summary, loadStartMs, loadEndMs };
  return { ...summary, ...summariseChanges(result, summary.ackWindowS), revEvents: { received: revEvents, expected: expectedEvents }, loadStartMs, loadEndMs };
}

function summariseChanges(r: PoolResult, ackWindowS: number): Pick<PhaseResult, 'changes' | 'opsAckedPerS' | 'revOrder'> {
  const perS = (n: number) => (ackWindowS > 0 ? round(n / ackWindowS, 1) : 0);
  const changes = Object.fromEntries(
    CHANGE_KINDS.map((k) => {
      const c = r.changes[k];
      const summary: ChangeSummary = { sent: c.sent, acked: c.acked, failed: c.failed, errors: c.errors, ackedPerS: perS(c.acked), ack: c.ack.summary(), event: c.event.summary() };
      return [k, summary];
    }),
  ) as Record<ChangeKind, ChangeSummary>;
  const changesAcked = CHANGE_KINDS.reduce((sum, k) => sum + r.changes[k].acked, 0);
  return { changes, opsAckedPerS: perS(r.acked + changesAcked), revOrder: r.revOrder };
}

function summarise(
  target: PhaseTarget,
  r: PoolResult,
  persisted: number,
  expected: number,
  cpu: Record<string, number> | undefined,
): Omit<PhaseResult, 'loadStartMs' | 'loadEndMs'> {
  const own = target.counts?.();
  const acked = own?.settled ?? r.acked;
  const sent = own?.sent ?? r.sent;
  const start = own?.firstSendUs ?? r.firstSendUs;
  const ackWindowS = own ? (r.lastDeliverUs - start) / 1e6 : (r.lastAckUs - start) / 1e6;
  const deliverWindowS = (r.lastDeliverUs - start) / 1e6;
  const windowS = Math.max(ackWindowS, deliverWindowS);
  // Deliveries expressed in messages: each message goes to every receiver of its channel.
  const deliveredMessages = expected > 0 ? (r.delivered / expected) * persisted : 0;
  const perS = (n: number, s: number) => (s > 0 ? round(n / s, 1) : 0);
  return {
    label: target.label,
    durationS: target.durationMs / 1000,
    ackWindowS: round(ackWindowS, 3),
    deliverWindowS: round(deliverWindowS, 3),
    sent,
    acked,
    failed: r.failed,
    persisted,
    delivered: r.delivered,
    expectedDeliveries: expected,
    ackedPerS: perS(acked, ackWindowS),
    persistedPerS: perS(persisted, ackWindowS),
    deliveriesPerS: perS(r.delivered, deliverWindowS),
    completedPerS: perS(Math.min(acked, persisted, deliveredMessages), windowS),
    ack: r.ack.summary(),
    deliver: r.deliver.summary(),
    deliverBy: Object.fromEntries(RECEIVER_KINDS.filter((k) => r.deliverBy[k].count > 0).map((k) => [k, r.deliverBy[k].summary()])),
    persistStart: r.persistStart.summary(),
    sendLag: r.sendLag.summary(),
    order: r.order,
    errors: r.errors,
    disconnects: r.disconnects,
    lateSends: r.lateSends,
    cpu,
  };
}
