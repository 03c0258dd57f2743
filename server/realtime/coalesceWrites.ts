import type { Socket as TcpSocket } from 'node:net';
import type { IoServer } from './types.js';

/** What Engine.IO's WebSocket transport holds: the `ws` socket, whose `_socket` is the TCP connection. */
interface WebSocketTransport {
  name: string;
  socket?: { _socket?: TcpSocket };
}

/**
 * Engine.IO writes every packet as its own WebSocket frame, and each frame is its own write syscall: a
 * batch of N messages for a channel cost each subscriber N syscalls, the largest item of a busy front
 * node's CPU profile. While Engine.IO flushes a socket's packets, its TCP connection is corked until the end of
 * the tick, so the frames of one flush (and anything else written in that tick) leave in one writev.
 * Nothing is delayed past the current tick; transports without a TCP socket at hand are left alone.
 */
export function coalesceWrites(io: IoServer): void {
  const corked = new WeakSet<TcpSocket>();
  io.engine.on('flush', (conn: { transport?: WebSocketTransport }) => {
    const transport = conn.transport;
    if (transport?.name !== 'websocket') return;
    const tcp = transport.socket?._socket;
    if (!tcp || corked.has(tcp) || typeof tcp.cork !== 'function') return;
    corked.add(tcp);
    tcp.cork();
    process.nextTick(() => {
      corked.delete(tcp);
      tcp.uncork();
    });
  });
}
