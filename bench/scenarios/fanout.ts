/**
 * Scenario 3, fan-out: one channel with many sockets spread over several front nodes, one closed-loop
 * sender. Before any message, the front nodes' resident memory is sampled without and with the sockets
 * connected: memory per idle connected socket.
 */
import type { Proc } from '../../scripts/cluster.js';
import type { SocketSpec } from '../agents/protocol.js';
import type { BenchContext } from '../context.js';
import { sleep } from '../lib/clock.js';
import { rssBytes } from '../lib/procfs.js';
import { round } from '../lib/histogram.js';
import { median } from '../lib/stats.js';
import { note } from '../lib/progress.js';
import { lastSeqs, seedChannel, seedTeam, seedUsers } from '../seed.js';
import { runPhase, type PhaseResult } from './phase.js';

export interface NodeMemory {
  pid: number;
  sockets: number;
  rssBeforeMb: number;
  rssAfterMb: number;
  kbPerSocket: number;
}

export interface FanoutResult {
  nodes: number;
  sockets: number;
  users: number;
  phase: PhaseResult;
  /** Per front node (only when the bench started them). */
  memory: NodeMemory[];
  /** Over all nodes: RSS growth / sockets. */
  kbPerIdleSocket: number | null;
}

const settle = () => sleep(3000);
const sampleRss = async (pid: number) => {
  const samples: number[] = [];
  for (let i = 0; i < 5; i++) {
    samples.push(rssBytes(pid));
    await sleep(200);
  }
  return median(samples);
};

export async function runFanout(ctx: BenchContext): Promise<FanoutResult> {
  const { options, cluster } = ctx;
  const procs: Proc[] = [];
  if (cluster) {
    // Fresh front nodes: the same starting point for each node's memory, and no leftovers of earlier phases.
    await Promise.all(cluster.servers.map((p) => p.stop()));
    // The one sender sends ~80 msg/s in closed loop, above a user's default 500 per 10 s: the limit is raised.
    for (let i = 0; i < options.fanoutNodes; i++) procs.push(await cluster.addServer(ctx.env.overBudgetEnv));
  }
  const urls = cluster ? procs.map((p) => p.url!) : ctx.urls().slice(0, options.fanoutNodes);

  const started = Date.now();
  const team = await seedTeam(urls[0]);
  const users = await seedUsers(team, options.fanoutUsers);
  const channel = await seedChannel(team, users);
  note(`[seed] ${users.length} users in one channel in ${((Date.now() - started) / 1000).toFixed(1)} s`);

  const sockets: SocketSpec[] = Array.from({ length: options.fanoutSockets }, (_, i) => {
    const user = users[i % users.length];
    return {
      key: `fan-${i}`,
      url: urls[i % urls.length],
      auth: { token: user.token },
      channels: [channel.id],
      send: i === 0 ? { channelId: channel.id, index: 1_000_000 } : undefined,
    };
  });

  await settle();
  const before = await Promise.all(procs.map((p) => sampleRss(p.pid)));
  note(`[fan-out] connecting ${sockets.length} sockets over ${urls.length} front nodes`);
  // The sender gets an agent of its own, as the raw broadcast's publisher and tail sockets have the
  // bench process: in an agent that also receives for hundreds of sockets, its acks would wait behind
  // their frames, and its window would measure that agent's backlog instead of the pipeline.
  const receiverAgents = ctx.pool.pids.map((_, i) => i);
  const senderAgent = ctx.pool.addAgent();
  await ctx.pool.connect(sockets.slice(1), 25, receiverAgents);
  await ctx.pool.connect(sockets.slice(0, 1), 1, [senderAgent]);
  await settle();
  const after = await Promise.all(procs.map((p) => sampleRss(p.pid)));
  const memory = procs.map((p, i) => {
    const count = sockets.filter((s) => s.url === p.url).length;
    return {
      pid: p.pid,
      sockets: count,
      rssBeforeMb: round(before[i] / 2 ** 20, 1),
      rssAfterMb: round(after[i] / 2 ** 20, 1),
      kbPerSocket: round((after[i] - before[i]) / 1024 / count, 1),
    };
  });
  const grown = after.reduce((s, v) => s + v, 0) - before.reduce((s, v) => s + v, 0);

  const phaseId = ctx.phaseId();
  const durationMs = options.durationS * 1000;
  const phase = await runPhase({
    label: 'fan-out',
    pool: ctx.pool,
    receivers: { [channel.id]: sockets.length },
    probe: () => ctx.pool.probe(['fan-0'], `${phaseId}w`),
    start: () => ctx.pool.load({ mode: 'closed', window: options.fanoutWindow, durationMs, bodyBytes: options.bodyBytes, phase: phaseId }),
    finals: () => lastSeqs(team.baseUrl, team.owner.token, [channel.id]),
    durationMs,
    cpu: ctx.cpuGroups(),
    profiler: ctx.profiler,
  });
  await ctx.pool.disconnect();
  return {
    nodes: urls.length,
    sockets: sockets.length,
    users: users.length,
    phase,
    memory,
    kbPerIdleSocket: procs.length > 0 ? round(grown / 1024 / sockets.length, 1) : null,
  };
}
