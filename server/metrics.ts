import type { Queue } from 'bullmq';
import { Counter, Gauge, Histogram, type Registry } from 'prom-client';

/** A front node's metrics (README, "Metrics"), on its own registry. */
export interface FrontMetrics {
  readonly registry: Registry;
  readonly httpDuration: Histogram<'method' | 'route' | 'status'>;
  readonly socketEvents: Counter<'event' | 'outcome'>;
  readonly messages: Counter<'outcome'>;
  readonly rateLimited: Counter<'policy'>;
}

export function createFrontMetrics(registry: Registry, connectedSockets: () => number): FrontMetrics {
  new Gauge({
    name: 'socketio_connected_sockets',
    help: 'Socket.IO sockets connected to this front node',
    registers: [registry],
    collect() {
      this.set(connectedSockets());
    },
  });
  return {
    registry,
    httpDuration: new Histogram({
      name: 'http_request_duration_seconds',
      help: 'HTTP request duration by method, Express route pattern and status',
      labelNames: ['method', 'route', 'status'],
      buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5],
      registers: [registry],
    }),
    socketEvents: new Counter({
      name: 'socketio_events_total',
      help: 'Socket events handled, by event and outcome (ok or the error code)',
      labelNames: ['event', 'outcome'],
      registers: [registry],
    }),
    messages: new Counter({
      name: 'messages_sends_total',
      help: 'Message sends (socket and REST) by outcome: accepted, or the error code they were rejected with',
      labelNames: ['outcome'],
      registers: [registry],
    }),
    rateLimited: new Counter({
      name: 'rate_limit_refusals_total',
      help: 'Requests and events refused by a rate limit, by policy name',
      labelNames: ['policy'],
      registers: [registry],
    }),
  };
}

/** The job states a partition's depth is reported in. */
const QUEUE_STATES = ['waiting', 'active', 'delayed', 'failed'] as const;

interface PartitionStats {
  counts: Record<(typeof QUEUE_STATES)[number], number>;
  /** Seconds since the oldest waiting or active batch was enqueued; 0 when there is none. */
  oldestAge: number;
}

/** How long a scrape may wait for Redis: a scrape must answer, with or without the queue figures. */
const QUEUE_READ_TIMEOUT_MS = 2_000;

async function readPartition(queue: Queue): Promise<PartitionStats> {
  // Two Redis round trips per partition whatever the queue holds: its counts and oldest job ids, then
  // the enqueue time of at most two jobs (not their data, which holds up to QUEUE_MAX_BATCH sends).
  const [counts, oldestIds] = await Promise.all([
    queue.getJobCounts(...QUEUE_STATES),
    queue.getRanges(['wait', 'active'], 0, 0, true),
  ]);
  const client = await queue.client;
  const stamps = await Promise.all(oldestIds.map((id) => client.hget(queue.toKey(id), 'timestamp')));
  const enqueued = stamps.map(Number).filter((t) => t > 0);
  const oldestAge = enqueued.length > 0 ? Math.max(0, Date.now() - Math.min(...enqueued)) / 1000 : 0;
  return {
    // `waiting` includes the jobs of a paused queue (BullMQ adds `paused` to the counts it was asked).
    counts: { waiting: counts.waiting + (counts.paused ?? 0), active: counts.active, delayed: counts.delayed, failed: counts.failed },
    oldestAge,
  };
}

/**
 * The message partitions' depth and the age of their oldest unfinished batch, read from Redis when
 * scraped. Front nodes export them rather than workers: the queue matters most when no worker takes
 * from it, and a front node's fail-fast connection cannot hang a scrape while Redis is away. Every
 * front node reports the same figures (aggregate with max, not sum). While Redis does not answer,
 * the series are absent rather than stale.
 */
export function registerQueueMetrics(registry: Registry, queues: readonly Queue[]): void {
  // Both gauges of a scrape share one read: the registry collects them at the same time.
  let inFlight: Promise<PartitionStats[]> | undefined;
  const read = (): Promise<PartitionStats[]> => {
    if (inFlight) return inFlight;
    let timer: NodeJS.Timeout | undefined;
    inFlight = Promise.race([
      Promise.all(queues.map(readPartition)),
      new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error('queue read timed out')), QUEUE_READ_TIMEOUT_MS))),
    ]).finally(() => {
      clearTimeout(timer);
      inFlight = undefined;
    });
    return inFlight;
  };
  new Gauge({
    name: 'message_queue_jobs',
    help: 'Batches in each message partition queue, by state (waiting, active, delayed, failed)',
    labelNames: ['partition', 'state'],
    registers: [registry],
    async collect() {
      this.reset();
      const stats = await read().catch(() => []);
      stats.forEach(({ counts }, partition) => {
        for (const state of QUEUE_STATES) this.set({ partition: String(partition), state }, counts[state]);
      });
    },
  });
  new Gauge({
    name: 'message_queue_oldest_job_age_seconds',
    help: 'Seconds since the oldest waiting or active batch of each message partition was enqueued (0: none)',
    labelNames: ['partition'],
    registers: [registry],
    async collect() {
      this.reset();
      const stats = await read().catch(() => []);
      stats.forEach(({ oldestAge }, partition) => this.set({ partition: String(partition) }, oldestAge));
    },
  });
}
