/**
 * Scenario 2, latency under load: open loop at fixed offered rates, spread evenly over the senders, each
 * send stamped with its scheduled time (no coordinated omission: a send held back by a full window still
 * counts from when it was due).
 */
import type { BenchContext } from '../context.js';
import { runPhase, type PhaseResult } from './phase.js';
import { productTarget, type Layout } from './product.js';

export interface LatencyPoint extends PhaseResult {
  offeredRate: number;
  /** % of the measured throughput, when the rate was derived from it. */
  pctOfThroughput?: number;
  /** Which run of this rate (--pairs), from 0; its mixed twin has the same. */
  pair?: number;
}

/** ` (pair k of n)` when the rates run in pairs, for phase labels. */
export const pairLabel = (ctx: BenchContext, pair: number) => (ctx.options.pairs > 1 ? ` (pair ${pair + 1} of ${ctx.options.pairs})` : '');

export async function runLatency(ctx: BenchContext, l: Layout, rates: Array<{ rate: number; pct?: number }>, pair = 0): Promise<LatencyPoint[]> {
  const { options } = ctx;
  const points: LatencyPoint[] = [];
  for (const { rate, pct } of rates) {
    const label = (pct === undefined ? `latency @${Math.round(rate)}/s` : `latency ${pct}% @${Math.round(rate)}/s`) + pairLabel(ctx, pair);
    const phase = await runPhase(
      productTarget(ctx, l, label, {
        mode: 'open',
        window: options.window,
        ratePerSender: rate / l.senders,
        durationMs: options.durationS * 1000,
        bodyBytes: options.bodyBytes,
      }),
    );
    points.push({ ...phase, offeredRate: rate, pctOfThroughput: pct, pair });
  }
  return points;
}
