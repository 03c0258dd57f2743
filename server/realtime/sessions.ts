import { tokenRoom, userRoom, type SessionRevoked } from '../../shared/events.js';
import type { RevocationListener } from '../auth.js';
import type { IoServer, IoSocket } from './types.js';

const REVOKED: SessionRevoked = { code: 'UNAUTHORIZED', message: 'Session revoked or expired' };
/** setTimeout's longest delay; a later expiry re-arms the timer. */
const MAX_TIMER_MS = 2 ** 31 - 1;

/**
 * Ends sockets whose token no longer holds. Each socket is in its token's room (`token:<jti>`) and its
 * user's room from its handshake on; the Redis adapter carries both the `session:revoked` event and the
 * disconnect to every front node, in that order (one publisher connection, one subscriber connection).
 */
export function createSessionSockets(io: IoServer): RevocationListener & { watchExpiry(socket: IoSocket): void } {
  function end(room: string): void {
    io.to(room).emit('session:revoked', REVOKED);
    io.in(room).disconnectSockets(true);
  }

  return {
    tokenRevoked: (jti) => end(tokenRoom(jti)),
    userTokensRevoked: (userId) => end(userRoom(userId)),

    /** Disconnects the socket when its token expires. */
    watchExpiry(socket) {
      let timer: NodeJS.Timeout | undefined;
      const arm = () => {
        const left = socket.data.exp * 1000 - Date.now();
        if (left <= 0) {
          socket.emit('session:revoked', REVOKED);
          socket.disconnect(true);
          return;
        }
        timer = setTimeout(arm, Math.min(left, MAX_TIMER_MS));
        timer.unref();
      };
      arm();
      socket.on('disconnect', () => clearTimeout(timer));
    },
  };
}
