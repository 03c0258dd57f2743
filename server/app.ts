import { createServer, type Server as HttpServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { randomUUID } from 'node:crypto';
import type { Config } from '../shared/config.js';
import { createDb } from '../shared/db.js';
import { createLogger, type Logger } from '../shared/logger.js';
import { createRedis } from '../shared/redis.js';
import { createTokenService } from './auth.js';
import { createRateLimit } from './domain/rateLimit.js';
import { createHttpApp } from './http/app.js';
import { SendQueue } from './messaging/sendQueue.js';
import { createSocketServer, type IoServer } from './realtime/socketServer.js';

export interface FrontNode {
  readonly nodeId: string;
  readonly httpServer: HttpServer;
  readonly io: IoServer;
  /** Listens on config.port (0: any free port) and resolves with the port. */
  start(): Promise<number>;
  stop(): Promise<void>;
}

/** Composition root of a front node: Express for REST, Socket.IO for real time, BullMQ producer for sends. */
export function createFrontNode(config: Config, options: { logger?: Logger } = {}): FrontNode {
  const logger = options.logger ?? createLogger(config, 'server');
  const nodeId = randomUUID();
  const knex = createDb(config);
  const redis = createRedis(config, 'fail-fast', 'front');
  const adapterPub = createRedis(config, 'blocking', 'front-adapter-pub');
  const adapterSub = createRedis(config, 'blocking', 'front-adapter-sub');
  const replySub = createRedis(config, 'blocking', 'front-replies');
  for (const [name, client] of Object.entries({ redis, adapterPub, adapterSub, replySub })) {
    client.on('error', (err) => logger.warn({ err: err.message, client: name }, 'redis connection error'));
  }

  const tokens = createTokenService(config);
  const sendQueue = new SendQueue({ config, connection: redis, subscriber: replySub, nodeId, logger });
  const messaging = {
    sendQueue,
    rateLimit: createRateLimit(
      redis,
      `${config.redis.prefix}:rl:send`,
      config.messages.ratePerSecond * 10,
      10,
    ),
    maxBodyLength: config.messages.maxBodyLength,
  };
  const loginFailures = createRateLimit(redis, `${config.redis.prefix}:rl:login`, 10, 15 * 60);

  const httpServer = createServer();
  const { io, subscriptions, notifyRead, close: closeSockets } = createSocketServer({
    httpServer,
    config,
    tokens,
    pubClient: adapterPub,
    subClient: adapterSub,
    messaging,
    logger,
  });
  const app = createHttpApp({
    knex,
    redis,
    logger,
    tokens,
    bcryptRounds: config.bcryptRounds,
    loginFailures,
    subscriptions,
    messaging,
    notifyRead,
  });
  httpServer.on('request', app);

  return {
    nodeId,
    httpServer,
    io,
    async start() {
      await sendQueue.start();
      await new Promise<void>((resolve, reject) => {
        httpServer.once('error', reject);
        httpServer.listen(config.port, () => resolve());
      });
      const port = (httpServer.address() as AddressInfo).port;
      logger.info({ port, nodeId }, 'front node listening');
      return port;
    },
    async stop() {
      // New connections stop first; sends already queued get their answers before the queue closes.
      const socketsClosed = closeSockets();
      await sendQueue.stop();
      await socketsClosed;
      await knex.destroy();
      await Promise.all([redis, adapterPub, adapterSub, replySub].map((c) => c.quit().catch(() => c.disconnect())));
      logger.info({ nodeId }, 'front node stopped');
    },
  };
}
