import { Counter, Histogram, type Registry } from 'prom-client';

/** A worker's metrics (README, "Metrics"), on its own registry. */
export interface WorkerMetrics {
  readonly batchSize: Histogram;
  readonly batchDuration: Histogram;
  readonly messagesPersisted: Counter;
  /** Per send or change: from its batch's enqueue (the front node's clock) to its commit. */
  readonly sendToPersist: Histogram;
  /** Per batch with events: from its commit until Redis has its publish to the front nodes. */
  readonly persistToEmit: Histogram;
  readonly searchIndexPagesMerged: Counter;
  readonly refusalsPruned: Counter;
  readonly clientChangesPruned: Counter;
}

export function createWorkerMetrics(registry: Registry): WorkerMetrics {
  return {
    batchSize: new Histogram({
      name: 'worker_batch_size',
      help: 'Sends per message batch processed',
      buckets: [1, 2, 5, 10, 20, 50, 100, 200, 500, 1000],
      registers: [registry],
    }),
    batchDuration: new Histogram({
      name: 'worker_batch_duration_seconds',
      help: 'Time to process a message batch: validation, persistence (with its in-place retries) and publish',
      buckets: [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
      registers: [registry],
    }),
    messagesPersisted: new Counter({
      name: 'worker_messages_persisted_total',
      help: 'Messages stored by this worker (duplicates of stored messages not counted)',
      registers: [registry],
    }),
    sendToPersist: new Histogram({
      name: 'worker_send_to_persist_seconds',
      help: 'Per send or change: time from its batch being enqueued by a front node to its commit (queue wait, in-place retries and persistence)',
      buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30],
      registers: [registry],
    }),
    persistToEmit: new Histogram({
      name: 'worker_persist_to_emit_seconds',
      help: 'Per batch with events: time from its commit until Redis has published them to the front nodes',
      buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1],
      registers: [registry],
    }),
    searchIndexPagesMerged: new Counter({
      name: 'worker_search_index_pages_merged_total',
      help: "Pending-list pages of the messages' GIN indexes (search, mentions) this worker merged into the indexes",
      registers: [registry],
    }),
    refusalsPruned: new Counter({
      name: 'worker_change_refusals_pruned_total',
      help: 'Refusals (change_refusals) this worker deleted once older than CHANGE_REFUSALS_KEEP_HOURS',
      registers: [registry],
    }),
    clientChangesPruned: new Counter({
      name: 'worker_client_changes_pruned_total',
      help: 'Retry keys of changes (client_changes) this worker deleted once older than CLIENT_CHANGES_KEEP_HOURS',
      registers: [registry],
    }),
  };
}
