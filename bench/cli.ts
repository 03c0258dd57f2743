import { parseArgs } from 'node:util';
import type { OpMix } from './agents/protocol.js';

export const SCENARIOS = ['baselines', 'throughput', 'latency', 'mixed', 'order', 'fanout', 'history', 'search'] as const;
export type Scenario = (typeof SCENARIOS)[number];
/** Without --scenarios: all but search, which seeds a million messages (minutes) and is asked for by name. */
const DEFAULT_SCENARIOS = SCENARIOS.filter((s) => s !== 'search');

export interface BenchOptions {
  smoke: boolean;
  /** Front nodes and workers for throughput and latency (fan-out adds front nodes up to fanoutNodes). */
  servers: number;
  workers: number;
  users: number;
  channels: number;
  /** Users per channel that send (on their first socket); every socket of the channel receives. */
  senders: number;
  /** Receive-only users per channel whose sockets resume in the handshake (the others connect silently). */
  resuming: number;
  socketsPerUser: number;
  /** Most unacked sends per sender socket. */
  window: number;
  durationS: number;
  /** Offered rates of the latency scenario, in % of the measured closed-loop throughput. */
  ratesPct: number[];
  /** Absolute offered rates (msg/s), used instead of ratesPct when given. */
  rates: number[];
  /** Window of the order check's senders (at the default send rate limit). */
  orderWindow: number;
  /** The mixed phases' op mix, in % of the op slots. */
  mix: OpMix;
  /**
   * How many times each open-loop rate runs as a pair (send-only, then mixed): one pair's ratio moves by
   * as much as the mixed load itself on a shared 2-core machine; the target is judged on the median.
   */
  pairs: number;
  fanoutSockets: number;
  fanoutUsers: number;
  fanoutNodes: number;
  fanoutWindow: number;
  historyDepth: number;
  historyShallow: number;
  historyRequests: number;
  bodyBytes: number;
  clientProcs: number;
  baselineDurationS: number;
  scenarios: Set<Scenario>;
  urls: string[];
  databaseUrl?: string;
  productEnv: Record<string, string>;
  /** PostgreSQL settings applied to the bench database only (ALTER DATABASE ... SET), to measure levers. */
  pgSettings: Record<string, string>;
  json?: string;
  markdown?: string;
  chart: string;
  cpuProf?: string;
}

const HELP = `Usage: npm run bench -- [options]

Starts PostgreSQL/Redis if needed (as npm start does), its own database and Redis prefix, the product's
front nodes and workers, and load agents (child processes with real socket.io clients); runs the baselines
and scenarios, prints a table with every figure, its ratio to the baselines and the targets. The product
runs with its defaults, except the per-user send rate limit of throughput, latency and fan-out, whose
senders exceed it (raised to 100,000/s); the order check keeps the default. No receiver ever emits.

Load shape
  --servers N            front nodes for throughput, latency, order check     (default 1)
  --workers N            worker processes                                     (default 1)
  --users N              users for throughput/latency, one channel each        (default 192)
  --channels N           channels; users are spread evenly over them          (default 32)
  --senders N            sending users per channel; the others only receive   (default 1)
  --resuming N           receive-only users per channel whose sockets resume in the handshake
                         (auth.resume); the other receivers connect with a token only. No receiver
                         ever emits anything                                  (default 1)
  --sockets-per-user N   sockets each user opens (all receive)                (default 1)
  --window N             in-flight window: most unacked sends per sender      (default 8)
  --duration S           seconds of load per phase                            (default 10)
  --rates P,P,...        latency phases' offered rates, % of the throughput   (default 25,50,75)
  --rate R,R,...         latency phases' offered rates in msg/s (instead of --rates)
Mixed load (changes of issue #11 beside sends, same layout and sockets as throughput and latency)
  --mix S,R,E,D          % of op slots that are sends, reactions (add/remove), edits, deletes
                         (default 70,15,10,5). The mixed scenario repeats the throughput phase's closed
                         loop and each latency rate (in ops/s) with this mix; --smoke runs only one
                         open-loop point
  --pairs N              run each open-loop rate N times as a pair, send-only then mixed, every other
                         pair the other way round, so a slower product later in the run does not always
                         count against the same half (default 1): the report gives each pair's sends'
                         send→deliver p50 ratio, and the mixed target
                         is judged on their median. --mix 100,0,0,0 makes both halves the same load: the
                         ratios are then the bench's own noise (an A/A run)
  --body-bytes N         message body size                                    (default 100)
  --client-procs N       load agent processes                                 (default 2)
Order check (at the product's default send rate limit)
  --order-window N       in-flight window of its senders, closed loop within the per-user budget
                                                                              (default 16)
Fan-out
  --fanout-sockets N     sockets in the one fan-out channel                   (default 1000)
  --fanout-users N       users owning them                                    (default = sockets)
  --fanout-nodes N       front nodes they are spread over                     (default 2)
  --fanout-window N      in-flight window of the fan-out sender               (default 4)
History
  --history-depth N      messages in the deep channel (bulk-seeded in SQL)    (default 1000000)
  --history-shallow N    messages in the shallow channel                      (default 1000)
  --history-requests N   timed requests per page kind and depth               (default 1000)
Search (only when named: --scenarios search; seeds 1,000,000 messages in a scratch database, minutes)
                         times --history-requests searches and history pages, alternating, and the
                         search column's cost to persistMessages()
Run
  --scenarios LIST       any of ${SCENARIOS.join(',')} (default all but search)
  --baseline-duration S  seconds per baseline measurement                     (default 4)
  --smoke                every scenario at tiny scale (CI): fails only on bench errors and order errors
  --url URL[,URL]        target running front nodes instead of starting them
  --database-url URL     with --url: the product's database (history seeding); history is skipped without
  --env KEY=VALUE        extra environment for the product's processes (repeatable), e.g. QUEUE_MAX_BATCH=50;
                         MESSAGE_RATE_PER_SECOND here applies to every phase, also those that raise it
  --pg-set KEY=VALUE     a PostgreSQL setting for the bench database only (repeatable), e.g.
                         synchronous_commit=off: measures a lever without touching other databases
  --cpu-prof DIR         CPU-profile the front nodes and workers during each load phase into DIR;
                         summarise with: npx tsx bench/profile/cpuprofile.ts DIR
  --json FILE            write every figure as JSON
  --markdown FILE        write the table as Markdown (for docs/PERFORMANCE.md)
  --chart FILE           latency chart (SVG)                                  (default bench-results/latency.svg)
  -h, --help
`;

const DEFAULT_MIX: OpMix = { send: 70, reaction: 15, edit: 10, delete: 5 };

function parseMix(raw: string | undefined): OpMix {
  if (raw === undefined) return DEFAULT_MIX;
  const parts = raw.split(',').map((v) => Number(v.trim()));
  if (parts.length !== 4 || parts.some((v) => !Number.isFinite(v) || v < 0) || parts[0] <= 0) {
    throw new Error(`--mix needs four weights S,R,E,D (sends > 0), got ${raw}`);
  }
  const [send, reaction, edit, del] = parts;
  return { send, reaction, edit, delete: del };
}

const SMOKE: Partial<BenchOptions> = {
  users: 6,
  channels: 2,
  window: 4,
  durationS: 1.5,
  ratesPct: [50],
  fanoutSockets: 20,
  fanoutWindow: 2,
  historyDepth: 2000,
  historyShallow: 200,
  historyRequests: 20,
  clientProcs: 1,
  baselineDurationS: 0.5,
};

function int(name: string, raw: string | undefined, fallback: number, min = 0): number {
  if (raw === undefined) return fallback;
  const value = Number(raw);
  if (!Number.isFinite(value) || value < min) throw new Error(`--${name} must be a number ≥ ${min}, got ${raw}`);
  return value;
}

function list(name: string, raw: string | undefined): number[] | undefined {
  if (raw === undefined) return undefined;
  const values = raw.split(',').map((v) => int(name, v.trim(), 0, 0.0001));
  if (values.length === 0) throw new Error(`--${name} needs at least one value`);
  return values;
}

/** Parsed options, or null after printing --help. */
export function parseOptions(argv: string[]): BenchOptions | null {
  const { values: v } = parseArgs({
    args: argv,
    strict: true,
    options: {
      help: { type: 'boolean', short: 'h' },
      smoke: { type: 'boolean' },
      servers: { type: 'string' },
      workers: { type: 'string' },
      users: { type: 'string' },
      channels: { type: 'string' },
      senders: { type: 'string' },
      resuming: { type: 'string' },
      'order-window': { type: 'string' },
      'sockets-per-user': { type: 'string' },
      window: { type: 'string' },
      duration: { type: 'string' },
      rates: { type: 'string' },
      rate: { type: 'string' },
      mix: { type: 'string' },
      pairs: { type: 'string' },
      'body-bytes': { type: 'string' },
      'client-procs': { type: 'string' },
      'fanout-sockets': { type: 'string' },
      'fanout-users': { type: 'string' },
      'fanout-nodes': { type: 'string' },
      'fanout-window': { type: 'string' },
      'history-depth': { type: 'string' },
      'history-shallow': { type: 'string' },
      'history-requests': { type: 'string' },
      scenarios: { type: 'string' },
      'baseline-duration': { type: 'string' },
      url: { type: 'string' },
      'database-url': { type: 'string' },
      env: { type: 'string', multiple: true },
      'pg-set': { type: 'string', multiple: true },
      'cpu-prof': { type: 'string' },
      json: { type: 'string' },
      markdown: { type: 'string' },
      chart: { type: 'string' },
    },
  });
  if (v.help) {
    process.stdout.write(HELP);
    return null;
  }
  const smoke = Boolean(v.smoke);
  const d = { ...defaults(), ...(smoke ? SMOKE : {}) };
  const scenarios = v.scenarios === undefined ? new Set(DEFAULT_SCENARIOS) : new Set(v.scenarios.split(',').map((s) => s.trim()));
  for (const s of scenarios) if (!SCENARIOS.includes(s as Scenario)) throw new Error(`unknown scenario ${s}; known: ${SCENARIOS.join(', ')}`);
  const pairs = (name: string, list: string[] | undefined, key: RegExp) => {
    const out: Record<string, string> = {};
    for (const pair of list ?? []) {
      const eq = pair.indexOf('=');
      if (eq <= 0 || !key.test(pair.slice(0, eq))) throw new Error(`--${name} needs KEY=VALUE, got ${pair}`);
      out[pair.slice(0, eq)] = pair.slice(eq + 1);
    }
    return out;
  };
  const productEnv = pairs('env', v.env, /^[A-Za-z_][A-Za-z0-9_]*$/);
  const pgSettings = pairs('pg-set', v['pg-set'], /^[a-z_][a-z0-9_.]*$/);
  const fanoutSockets = int('fanout-sockets', v['fanout-sockets'], d.fanoutSockets, 1);
  const options: BenchOptions = {
    smoke,
    servers: int('servers', v.servers, d.servers, 1),
    workers: int('workers', v.workers, d.workers, 1),
    users: int('users', v.users, d.users, 2),
    channels: int('channels', v.channels, d.channels, 1),
    senders: int('senders', v.senders, d.senders, 1),
    resuming: int('resuming', v.resuming, d.resuming, 0),
    orderWindow: int('order-window', v['order-window'], d.orderWindow, 1),
    socketsPerUser: int('sockets-per-user', v['sockets-per-user'], d.socketsPerUser, 1),
    window: int('window', v.window, d.window, 1),
    durationS: int('duration', v.duration, d.durationS, 0.1),
    ratesPct: list('rates', v.rates) ?? d.ratesPct,
    rates: list('rate', v.rate) ?? [],
    mix: parseMix(v.mix),
    pairs: int('pairs', v.pairs, 1, 1),
    fanoutSockets,
    fanoutUsers: Math.min(fanoutSockets, int('fanout-users', v['fanout-users'], fanoutSockets, 1)),
    fanoutNodes: int('fanout-nodes', v['fanout-nodes'], d.fanoutNodes, 1),
    fanoutWindow: int('fanout-window', v['fanout-window'], d.fanoutWindow, 1),
    historyDepth: int('history-depth', v['history-depth'], d.historyDepth, 1),
    historyShallow: int('history-shallow', v['history-shallow'], d.historyShallow, 1),
    historyRequests: int('history-requests', v['history-requests'], d.historyRequests, 1),
    bodyBytes: int('body-bytes', v['body-bytes'], d.bodyBytes, 1),
    clientProcs: int('client-procs', v['client-procs'], d.clientProcs, 1),
    baselineDurationS: int('baseline-duration', v['baseline-duration'], d.baselineDurationS, 0.1),
    scenarios: scenarios as Set<Scenario>,
    urls: v.url ? v.url.split(',').map((u) => u.trim().replace(/\/$/, '')) : [],
    databaseUrl: v['database-url'],
    productEnv,
    pgSettings,
    json: v.json,
    markdown: v.markdown,
    chart: v.chart ?? d.chart,
    cpuProf: v['cpu-prof'],
  };
  const perChannel = Math.floor(options.users / options.channels);
  if (perChannel <= options.senders) {
    throw new Error(`--users ${options.users} over --channels ${options.channels} leaves ${perChannel} per channel: need more than --senders ${options.senders}`);
  }
  return options;
}

function defaults() {
  return {
    servers: 1,
    workers: 1,
    users: 192,
    channels: 32,
    senders: 1,
    resuming: 1,
    orderWindow: 16,
    socketsPerUser: 1,
    window: 8,
    durationS: 10,
    ratesPct: [25, 50, 75],
    fanoutSockets: 1000,
    fanoutNodes: 2,
    fanoutWindow: 4,
    historyDepth: 1_000_000,
    historyShallow: 1000,
    historyRequests: 1000,
    bodyBytes: 100,
    clientProcs: 2,
    baselineDurationS: 4,
    chart: 'bench-results/latency.svg',
  };
}
