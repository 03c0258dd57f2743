/**
 * A plain Socket.IO server with the Redis adapter and no application logic, for the raw broadcast baseline:
 * a socket joins the rooms its handshake names ({auth: {rooms: [...]}}); broadcasts come from an emitter
 * through Redis, as the product's do. Same server options as the product's front node.
 */
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { createAdapter } from '@socket.io/redis-adapter';
import { Redis } from 'ioredis';
import { Server } from 'socket.io';

const redisUrl = process.env.BENCH_REDIS_URL;
const key = process.env.BENCH_ADAPTER_KEY;
if (!redisUrl || !key) throw new Error('BENCH_REDIS_URL and BENCH_ADAPTER_KEY are required');

const pub = new Redis(redisUrl, { maxRetriesPerRequest: null });
const sub = pub.duplicate();
const httpServer = createServer();
const io = new Server(httpServer, {
  maxHttpBufferSize: 64 * 1024,
  perMessageDeflate: false,
  adapter: createAdapter(pub, sub, { key, requestsTimeout: 5000 }),
});
io.on('connection', (socket) => {
  const rooms = socket.handshake.auth?.rooms;
  if (Array.isArray(rooms)) socket.join(rooms.map(String));
});
httpServer.listen(0, '127.0.0.1', () => {
  const { port } = httpServer.address() as AddressInfo;
  process.stdout.write(`${JSON.stringify({ msg: 'plain listening', port })}\n`);
});
const stop = () => {
  io.close();
  pub.disconnect();
  sub.disconnect();
  process.exit(0);
};
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
