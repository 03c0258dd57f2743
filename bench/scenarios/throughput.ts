/**
 * Scenario 1, throughput: closed loop, every sender keeps `window` sends unacked; users spread over many
 * channels, each channel with its senders and receive-only members. Also builds the layout the latency
 * scenario reuses.
 */
import type { BenchContext } from '../context.js';
import { note } from '../lib/progress.js';
import { seedChannels, seedTeam, seedUsers } from '../seed.js';
import { runPhase, type PhaseResult } from './phase.js';
import { layout, productTarget, type Layout } from './product.js';

export async function prepareChannels(ctx: BenchContext): Promise<Layout> {
  const { options } = ctx;
  const urls = ctx.urls().slice(0, options.servers);
  const started = Date.now();
  const team = await seedTeam(urls[0]);
  const users = await seedUsers(team, options.users);
  const channels = await seedChannels(team, users, options.channels);
  const l = layout(team, channels, { urls, senders: options.senders, socketsPerUser: options.socketsPerUser, resuming: options.resuming, tag: 'tp' });
  note(`[seed] ${users.length} users, ${channels.length} channels in ${((Date.now() - started) / 1000).toFixed(1)} s; connecting ${l.sockets.length} sockets`);
  await ctx.pool.connect(l.sockets);
  return l;
}

export function runThroughput(ctx: BenchContext, l: Layout): Promise<PhaseResult> {
  const { options } = ctx;
  return runPhase(
    productTarget(ctx, l, 'throughput', { mode: 'closed', window: options.window, durationMs: options.durationS * 1000, bodyBytes: options.bodyBytes }),
  );
}
