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
