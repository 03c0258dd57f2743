import type { IoServer } from './types.js';

/** What Engine.IO keeps per connection and does not type publicly. */
interface EngineClient {
  writeBuffer?: unknown[];
}

/**
 * Waits until every connection has written what it was given (acks included), at most `graceMs`.
 * Engine.IO's close discards unsent packets, and a long-polling client gets its packets only with its next
 * poll: closing right after the last acks were emitted would lose them.
 */
export async function drainConnections(io: IoServer, graceMs: number): Promise<void> {
  const clients = (io.engine as unknown as { clients: Record<string, EngineClient> }).clients;
  const deadline = Date.now() + graceMs;
  while (Date.now() < deadline && Object.values(clients).some((c) => (c.writeBuffer?.length ?? 0) > 0)) {
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}
