import type { Cluster } from '../scripts/cluster.js';
import type { Config } from '../shared/config.js';
import type { AgentPool } from './agents/pool.js';
import type { BenchOptions } from './cli.js';
import type { BenchEnv } from './env.js';
import type { CpuGroups } from './lib/procfs.js';

/** What every scenario gets. */
export interface BenchContext {
  readonly options: BenchOptions;
  readonly env: BenchEnv;
  readonly pool: AgentPool;
  /** The product's effective configuration (partitions, batch size...) as its processes see it. */
  readonly productConfig: Config;
  /** Undefined with --url. */
  readonly cluster?: Cluster;
  /** Base URLs of the running front nodes (the cluster's, or --url). */
  urls(): string[];
  /** The product's database URL, when known (always, unless --url without --database-url). */
  readonly productDatabaseUrl?: string;
  /** The product's Redis key prefix, when known (not with --url). */
  readonly productRedisPrefix?: string;
  /** Process groups for the CPU breakdown, plus `extra` ones. */
  cpuGroups(extra?: Record<string, number[]>): CpuGroups;
  /** With --cpu-prof: profiles the product's processes during a phase's load. */
  readonly profiler?: { start(): void; stop(label: string): Promise<void> };
  /** A fresh id for clientMsgIds. */
  phaseId(): string;
}
