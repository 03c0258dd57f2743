/**
 * Order check at the shipped send rate limit: front nodes of their own with the product's default limiter
 * (MESSAGE_RATE_PER_SECOND, 50/s per user: bursts of 500 per 10 s, leased from Redis 10 points at a time),
 * senders that pipeline (closed loop, a window of 16 by default, so sends are in flight across every lease
 * boundary) and each stop within their budget, receivers that never emit (silent and resuming ones). Every
 * sender's acks must come in send order; every receiver must see each channel's seqs once, in order, none
 * missing. The load phases raise the limit (their senders exceed it); this one must not need to.
 */
import type { BenchContext } from '../context.js';
import { note } from '../lib/progress.js';
import { seedChannels, seedTeam, seedUsers } from '../seed.js';
import { runPhase, type PhaseResult } from './phase.js';
import { layout, productTarget } from './product.js';

export interface OrderResult {
  phase: PhaseResult;
  channels: number;
  sendersPerChannel: number;
  receiversPerChannel: number;
  resumingPerChannel: number;
  window: number;
  /** Most sends per sender in the phase (within the per-user budget). */
  sendsPerSender: number;
  /** The front nodes' MESSAGE_RATE_PER_SECOND (0 = off); null when they are not the bench's (--url). */
  ratePerSecond: number | null;
  nodes: number;
}

const CHANNELS = 4;
const SENDERS = 2;
const RECEIVERS = 2;
/** The limit's window (server/app.ts): a user may send ratePerSecond × 10 in any 10 s. */
const LIMIT_WINDOW_S = 10;
/** The share of a sender's budget the load may use: warm-up sends and lease rounding take some of the rest. */
const BUDGET_SHARE = 0.8;
/** Sends per sender when the limiter is off. */
const UNLIMITED_SENDS = 400;
const MAX_DURATION_S = 5;

/** `urls`: front nodes running the product's default limiter; `ratePerSecond`: theirs (null: unknown, --url). */
export async function runOrder(ctx: BenchContext, urls: string[], ratePerSecond: number | null, budgetRate: number): Promise<OrderResult> {
  const { options } = ctx;
  const started = Date.now();
  const team = await seedTeam(urls[0]);
  const users = await seedUsers(team, CHANNELS * (SENDERS + RECEIVERS));
  const channels = await seedChannels(team, users, CHANNELS);
  const l = layout(team, channels, { urls, senders: SENDERS, socketsPerUser: 1, resuming: options.resuming, tag: 'ord' });
  const sendsPerSender = budgetRate > 0 ? Math.max(1, Math.floor(budgetRate * LIMIT_WINDOW_S * BUDGET_SHARE)) : UNLIMITED_SENDS;
  note(
    `[order] ${users.length} users, ${channels.length} channels in ${((Date.now() - started) / 1000).toFixed(1)} s; ` +
      `send rate limit ${ratePerSecond === null ? 'as configured on the targets' : `${ratePerSecond}/s per user`}, ` +
      `${l.senders} senders × ≤ ${sendsPerSender} sends, window ${options.orderWindow}`,
  );
  await ctx.pool.connect(l.sockets);
  const durationMs = Math.min(options.durationS, MAX_DURATION_S) * 1000;
  const phase = await runPhase(
    productTarget(ctx, l, 'order @ default limit', {
      mode: 'closed',
      window: options.orderWindow,
      durationMs,
      bodyBytes: options.bodyBytes,
      maxSendsPerSender: sendsPerSender,
    }),
  );
  await ctx.pool.disconnect();
  if (phase.failed > 0) note(`[order] ${phase.failed} sends refused within the budget: ${JSON.stringify(phase.errors)}`);
  return {
    phase,
    channels: channels.length,
    sendersPerChannel: SENDERS,
    receiversPerChannel: RECEIVERS,
    resumingPerChannel: l.resuming,
    window: options.orderWindow,
    sendsPerSender,
    ratePerSecond,
    nodes: urls.length,
  };
}
