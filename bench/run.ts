import path from 'node:path';
import { startCluster, type Cluster } from '../scripts/cluster.js';
import { loadConfig } from '../shared/config.js';
import type { AgentPool } from './agents/pool.js';
import { noopBullmq } from './baselines/noopBullmq.js';
import { pgInserts } from './baselines/pgInserts.js';
import { rawFanout, rawLatency, type RawEnv } from './baselines/rawBroadcast.js';
import type { BenchOptions } from './cli.js';
import type { BenchContext } from './context.js';
import type { BenchEnv } from './env.js';
import { describeMachine } from './lib/machine.js';
import type { CpuGroups } from './lib/procfs.js';
import { note } from './lib/progress.js';
import { batchProfile } from './profile/batches.js';
import { persistBatchProfile, persistProfileFresh } from './profile/persistBatch.js';
import { PhaseProfiler } from './profile/profiler.js';
import { evaluateTargets, totalOrderErrors } from './report.js';
import type { BenchResults } from './results.js';
import { runFanout } from './scenarios/fanout.js';
import { runHistory } from './scenarios/history.js';
import { runLatency } from './scenarios/latency.js';
import { runMixed } from './scenarios/mixed.js';
import { runOrder } from './scenarios/order.js';
import { runSearch } from './scenarios/search.js';
import type { PhaseResult } from './scenarios/phase.js';
import { prepareChannels, runThroughput } from './scenarios/throughput.js';

/**
 * One bench run, in order: part limits on an idle machine, then the product (started here unless --url):
 * throughput and latency on one layout, the raw broadcast at the same rates, fan-out, history.
 */
export async function run(options: BenchOptions, env: BenchEnv, pool: AgentPool, setCluster: (c: Cluster) => void): Promise<BenchResults> {
  const startedAt = new Date();
  const t0 = performance.now();
  const productConfig = loadConfig({ ...process.env, ...env.productEnv });
  const overBudgetRate = loadConfig({ ...process.env, ...env.productEnv, ...env.overBudgetEnv }).messages.ratePerSecond;
  const managed = options.urls.length === 0;
  const has = (s: Parameters<BenchOptions['scenarios']['has']>[0]) => options.scenarios.has(s);
  const durationMs = options.durationS * 1000;
  const baselineMs = options.baselineDurationS * 1000;
  let cluster: Cluster | undefined;

  const cpuGroups = (extra: Record<string, number[]> = {}): CpuGroups => ({
    byPid: {
      'front nodes': cluster?.servers.map((p) => p.pid) ?? [],
      workers: cluster?.workers.map((p) => p.pid) ?? [],
      'load agents': pool.pids,
      bench: [process.pid],
      ...extra,
    },
    byComm: { postgres: ['postgres'], redis: ['redis-server'] },
  });
  const results: BenchResults = {
    version: 1,
    startedAt: startedAt.toISOString(),
    finishedS: 0,
    smoke: options.smoke,
    command: `npm run bench --${process.argv.slice(2).length ? ` ${process.argv.slice(2).join(' ')}` : ''}`,
    machine: await describeMachine(env.databaseUrl, env.redisUrl),
    product: {
      servers: options.servers,
      workers: options.workers,
      partitions: productConfig.queue.partitions,
      maxBatch: productConfig.queue.maxBatch,
      dbPoolMax: productConfig.db.poolMax,
      env: options.productEnv,
      pgSettings: options.pgSettings,
      target: options.urls.length ? options.urls.join(', ') : 'started by the bench',
      sendRateLimit: managed ? { default: productConfig.messages.ratePerSecond, overBudget: overBudgetRate } : null,
    },
    baselines: {},
    orderErrors: 0,
    targets: [],
  };
  if (results.machine.loadAvgAtStart > results.machine.nproc / 2) {
    note(`[warning] load average ${results.machine.loadAvgAtStart} on ${results.machine.nproc} cores: other work will skew the figures`);
  }
  const rawEnv: RawEnv = { redisUrl: env.redisUrl, adapterKey: `${env.redisPrefix}:raw-socket.io`, pool, bodyBytes: options.bodyBytes, cpu: cpuGroups };

  // Part limits first, on an idle machine.
  if (has('baselines')) {
    results.baselines.postgres = await pgInserts({ databaseUrl: env.databaseUrl, connections: productConfig.queue.partitions, durationMs: baselineMs });
    results.baselines.bullmq = await noopBullmq({
      redisUrl: env.redisUrl,
      bullPrefix: `${env.redisPrefix}:noop`,
      partitions: productConfig.queue.partitions,
      keepCompleted: productConfig.queue.keepCompleted,
      durationMs: baselineMs,
      bodyBytes: options.bodyBytes,
    });
    if (has('fanout')) {
      results.baselines.rawFanout = await rawFanout(rawEnv, {
        // As many plain servers as front nodes the product's fan-out will use.
        servers: options.urls.length ? Math.min(options.fanoutNodes, options.urls.length) : options.fanoutNodes,
        sockets: options.fanoutSockets,
        window: options.fanoutWindow,
        durationMs,
      });
    }
  }

  const persistSizes = options.smoke ? [1, 10] : [1, 10, 50, 200];
  const persistMs = options.smoke ? 300 : 1500;
  if (has('baselines') && managed) {
    note('[profile] persistMessages() by batch size, empty table');
    results.persistProfile = [await persistProfileFresh({ config: env.config, sizes: persistSizes, durationMs: persistMs })];
  }
  if (managed) {
    // The workers and every process not started below run the product's defaults; these front nodes (for
    // throughput and latency, whose senders exceed one user's send budget) get the limit raised.
    note(`[cluster] starting ${options.servers} front node(s) and ${options.workers} worker(s)`);
    cluster = await startCluster({ servers: 0, workers: options.workers, env: env.productEnv });
    setCluster(cluster);
    const started = cluster;
    await Promise.all(Array.from({ length: options.servers }, () => started.addServer(env.overBudgetEnv)));
  }
  const c = cluster;
  let phaseCounter = 0;
  const ctx: BenchContext = {
    options,
    env,
    pool,
    productConfig,
    cluster: c,
    urls: () => (c ? c.servers.filter((p) => p.alive).map((p) => p.url!) : options.urls),
    productDatabaseUrl: managed ? env.databaseUrl : options.databaseUrl,
    productRedisPrefix: managed ? env.redisPrefix : undefined,
    cpuGroups,
    profiler:
      c && options.cpuProf
        ? new PhaseProfiler(path.resolve(options.cpuProf), () => [...c.servers, ...c.workers].filter((p) => p.alive).map((p) => ({ pid: p.pid, kind: p.kind })))
        : undefined,
    phaseId: () => `b${env.id}p${phaseCounter++}`,
  };
  const profileBatches = async (phase: PhaseResult) =>
    ctx.productRedisPrefix
      ? batchProfile({ redisUrl: env.redisUrl, redisPrefix: ctx.productRedisPrefix, partitions: productConfig.queue.partitions, keepCompleted: productConfig.queue.keepCompleted, fromMs: phase.loadStartMs, toMs: phase.loadEndMs })
      : undefined;

  if (has('throughput') || has('latency') || has('mixed')) {
    const l = await prepareChannels(ctx);
    const perChannel = Math.floor(options.users / options.channels);
    results.layout = {
      users: l.channels.length * perChannel,
      channels: l.channels.length,
      sendersPerChannel: options.senders,
      socketsPerUser: options.socketsPerUser,
      receiversPerChannel: (perChannel - options.senders) * options.socketsPerUser,
      resumingPerChannel: l.resuming * options.socketsPerUser,
      window: options.window,
    };
    // Each mixed phase runs right beside its send-only counterpart, on the same sockets: this VM's speed
    // drifts over minutes, and the pairs are what the report compares. Smoke: one open-loop point only
    // (the closed loop when there is no rate).
    const mixed = async (o: Parameters<typeof runMixed>[2]) => {
      for (const p of await runMixed(ctx, l, o)) (results.mixed ??= []).push({ ...p, batches: await profileBatches(p) });
    };
    if (has('throughput')) {
      const tp = await runThroughput(ctx, l);
      results.throughput = { ...tp, batches: await profileBatches(tp) };
      if (has('mixed') && !options.smoke) await mixed({ closed: true, rates: [] });
    }
    let rates: Array<{ rate: number; pct?: number }> = options.rates.map((rate) => ({ rate }));
    if (rates.length === 0 && (has('latency') || has('mixed'))) {
      if (results.throughput) {
        const max = results.throughput.completedPerS;
        rates = options.ratesPct.map((pct) => ({ rate: Math.max(1, Math.round((max * pct) / 100)), pct }));
      } else if (has('latency')) {
        throw new Error('latency rates in % need the throughput scenario; give --rate R,R,... instead');
      } else {
        note('[mixed] no throughput scenario and no --rate: the mixed load runs in closed loop only');
      }
    }
    if (has('mixed') && !has('throughput') && (!options.smoke || rates.length === 0)) await mixed({ closed: true, rates: [] });
    for (const [i, rate] of rates.entries()) {
      for (let pair = 0; pair < options.pairs; pair++) {
        const halves: Array<() => Promise<void>> = [];
        if (has('latency')) {
          halves.push(async () => {
            const [p] = await runLatency(ctx, l, [rate], pair);
            (results.latency ??= []).push({ ...p, batches: await profileBatches(p) });
          });
        }
        if (has('mixed') && (!options.smoke || i === 0)) halves.push(() => mixed({ closed: false, rates: [rate], pair }));
        // Every phase leaves the database bigger (and the mixed ones dead rows for autovacuum): the later half
        // of a pair runs on a slightly slower product. Every other pair runs its halves the other way round
        // (send-only, mixed, mixed, send-only, …), so that drift does not always count against the same one.
        if (pair % 2 === 1) halves.reverse();
        for (const half of halves) await half();
      }
    }
    await pool.disconnect();
    if (has('latency') && has('baselines')) {
      results.baselines.rawLatency = await rawLatency(rawEnv, {
        servers: new Set(l.sockets.map((spec) => spec.url)).size,
        rooms: l.channels.length,
        socketsPerRoom: l.receivers[l.channels[0].id],
        rates: rates.map((r) => r.rate),
        durationMs,
      });
    }
  }
  if (has('order')) {
    let urls = ctx.urls().slice(0, options.servers);
    if (c) {
      note(`[cluster] starting ${options.servers} front node(s) at the default send rate limit for the order check`);
      urls = (await Promise.all(Array.from({ length: options.servers }, () => c.addServer()))).map((p) => p.url!);
    }
    results.order = await runOrder(ctx, urls, managed ? productConfig.messages.ratePerSecond : null, productConfig.messages.ratePerSecond);
  }
  if (has('fanout')) results.fanout = await runFanout(ctx);
  if (has('history')) results.history = (await runHistory(ctx)) ?? undefined;
  if (has('search')) results.search = (await runSearch(ctx)) ?? undefined;
  if (has('baselines') && managed && results.history) {
    note('[profile] persistMessages() by batch size, after history seeding');
    results.persistProfile?.push(await persistBatchProfile({ databaseUrl: env.databaseUrl, sizes: persistSizes.slice(0, 2), durationMs: persistMs }));
  }

  results.orderErrors = totalOrderErrors(results);
  results.targets = evaluateTargets(results);
  results.finishedS = Math.round((performance.now() - t0) / 100) / 10;
  return results;
}
