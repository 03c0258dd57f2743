/**
 * Scenario 2b, mixed load (issue #11): the senders of the throughput/latency layout, on the same sockets,
 * fill each op slot with a send or a change of the contract (docs/API.md, "Edits, deletes, reactions and threads"), by default 70 %
 * sends, 15 % reactions (adds and removes of the sender's own), 10 % edits and 5 % deletes. Edits and
 * deletes target the sender's own earlier messages, reactions any recent message of its channel; every
 * change is a real one (no event-less no-op). Each load shape of the send-only phases is repeated mixed:
 *  - closed loop with the throughput phase's window: total ops/s and sends/s beside its msg/s;
 *  - open loop at each latency phase's offered rate, counted in ops (sends + changes), from the scheduled
 *    time: the sends' send→ack and send→deliver beside that phase's at the same offered rate.
 * Sends are timed as in the send-only phases (same body stamp, same histograms); each change kind gets
 * change→ack at its sender and change→event at every socket of the channel (matched by the rev its ack
 * reported). Every receiver checks that the channel's events of all kinds come in gap-free rev order.
 */
import type { OpMix } from '../agents/protocol.js';
import type { BenchContext } from '../context.js';
import { pairLabel } from './latency.js';
import { runPhase, type PhaseResult } from './phase.js';
import { productTarget, type Layout } from './product.js';

export interface MixedPoint extends PhaseResult {
  mode: 'closed' | 'open';
  mix: OpMix;
  /** Open loop: ops/s offered (sends + changes), the send-only latency phase's rate. */
  offeredRate?: number;
  pctOfThroughput?: number;
  /** Open loop: which run of this rate (--pairs), from 0, as its send-only twin's. */
  pair?: number;
}

export const mixText = (m: OpMix) => `${m.send} % sends, ${m.reaction} % reactions, ${m.edit} % edits, ${m.delete} % deletes`;

/**
 * `closed`: also run the closed loop (beside throughput); `rates`: open-loop points (beside latency's).
 */
export async function runMixed(
  ctx: BenchContext,
  l: Layout,
  o: { closed: boolean; rates: Array<{ rate: number; pct?: number }>; pair?: number },
): Promise<MixedPoint[]> {
  const { options } = ctx;
  const mix = options.mix;
  const durationMs = options.durationS * 1000;
  const points: MixedPoint[] = [];
  const phase = async (label: string, load: Parameters<typeof productTarget>[3]) =>
    runPhase({ ...productTarget(ctx, l, label, load), revs: () => ctx.pool.revs() });
  if (o.closed) {
    const p = await phase('mixed closed loop', { mode: 'closed', window: options.window, durationMs, bodyBytes: options.bodyBytes, mix });
    points.push({ ...p, mode: 'closed', mix });
  }
  for (const { rate, pct } of o.rates) {
    const label = (pct === undefined ? `mixed @${Math.round(rate)}/s` : `mixed ${pct}% @${Math.round(rate)}/s`) + pairLabel(ctx, o.pair ?? 0);
    const p = await phase(label, { mode: 'open', window: options.window, ratePerSender: rate / l.senders, durationMs, bodyBytes: options.bodyBytes, mix });
    points.push({ ...p, mode: 'open', mix, offeredRate: rate, pctOfThroughput: pct, pair: o.pair ?? 0 });
  }
  return points;
}
