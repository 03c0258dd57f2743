import type { NoopBullmqResult } from './baselines/noopBullmq.js';
import type { PgInsertResult } from './baselines/pgInserts.js';
import type { BatchProfile } from './profile/batches.js';
import type { PersistProfile } from './profile/persistBatch.js';
import type { FanoutResult } from './scenarios/fanout.js';
import type { HistoryResult } from './scenarios/history.js';
import type { SearchResult } from './scenarios/search.js';
import type { LatencyPoint } from './scenarios/latency.js';
import type { MixedPoint } from './scenarios/mixed.js';
import type { OrderResult } from './scenarios/order.js';
import type { PhaseResult } from './scenarios/phase.js';

export interface Machine {
  nproc: number;
  cpuModel: string;
  memTotalGb: number;
  node: string;
  platform: string;
  postgres?: string;
  redis?: string;
  /** 1-minute load average when the run started: other work on the machine skews every figure. */
  loadAvgAtStart: number;
}

export interface TargetCheck {
  name: string;
  /** Human-readable: what was measured against what. */
  measured: string;
  target: string;
  ok: boolean | null;
  /** How far off, when missed (e.g. "-31 %"). */
  miss?: string;
}

/** Everything one run measured; written as is by --json. */
export interface BenchResults {
  version: 1;
  startedAt: string;
  finishedS: number;
  smoke: boolean;
  command: string;
  machine: Machine;
  /** The product's settings the run used. */
  product: {
    servers: number;
    workers: number;
    partitions: number;
    maxBatch: number;
    dbPoolMax: number;
    env: Record<string, string>;
    pgSettings: Record<string, string>;
    target: string;
    /**
     * MESSAGE_RATE_PER_SECOND per user (0 = off; a user may send 10 × that per 10 s): `default` for the
     * order check, history and the workers, `overBudget` for the front nodes of throughput, latency and
     * fan-out, whose senders exceed the default budget. Null with --url (the targets' own).
     */
    sendRateLimit: { default: number; overBudget: number } | null;
  };
  layout?: {
    users: number;
    channels: number;
    sendersPerChannel: number;
    socketsPerUser: number;
    receiversPerChannel: number;
    /** Of the receivers, sockets that resume in the handshake (the others connect silently). */
    resumingPerChannel: number;
    window: number;
  };
  baselines: {
    postgres?: PgInsertResult;
    bullmq?: NoopBullmqResult;
    rawFanout?: PhaseResult;
    rawLatency?: Array<PhaseResult & { offeredRate: number }>;
  };
  throughput?: PhaseResult & { batches?: BatchProfile };
  latency?: Array<LatencyPoint & { batches?: BatchProfile }>;
  /** Mixed sends and changes: the closed loop beside throughput, open-loop points beside latency's. */
  mixed?: Array<MixedPoint & { batches?: BatchProfile }>;
  /** Order check at the product's default send rate limit. */
  order?: OrderResult;
  fanout?: FanoutResult;
  history?: HistoryResult;
  /** Search p99 vs history page p99 on a 1,000,000-message workspace (--scenarios search). */
  search?: SearchResult;
  /** The worker's persistMessages() alone: on an empty table, and on the product's after history seeding. */
  persistProfile?: PersistProfile[];
  /**
   * Order violations + gaps + duplicates (+ ack order violations) over every scenario, and in the mixed
   * phases those of the revs of every event kind (+ events unmatched or of the wrong kind).
   */
  orderErrors: number;
  targets: TargetCheck[];
}
