/** What a test socket heard of its session's end: the `session:revoked` event, then the disconnect. */
import type { ClientSocket } from './sockets.js';

export interface SessionWatch {
  /** The `session:revoked` payload, once received. */
  revoked?: { code: string; message: string };
  revokedAt?: number;
  disconnectedAt?: number;
  reason?: string;
  /** True once `session:revoked` arrived before the disconnect. */
  readonly toldFirst: boolean;
}

export function watchSession(socket: ClientSocket): SessionWatch {
  const watch = {
    revoked: undefined as SessionWatch['revoked'],
    revokedAt: undefined as number | undefined,
    disconnectedAt: undefined as number | undefined,
    reason: undefined as string | undefined,
    get toldFirst() {
      return this.revokedAt !== undefined && (this.disconnectedAt === undefined || this.revokedAt <= this.disconnectedAt);
    },
  };
  socket.on('session:revoked', (payload: SessionWatch['revoked']) => {
    watch.revoked = payload;
    watch.revokedAt = Date.now();
  });
  socket.on('disconnect', (reason: string) => {
    watch.disconnectedAt = Date.now();
    watch.reason = reason;
  });
  return watch;
}
