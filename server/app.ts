import { createServer, type Server as HttpServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { randomUUID } from 'node:crypto';
import { Queue } from 'bullmq';
import type { Config } from '../shared/config.js';
import { createDb } from '../shared/db.js';
import { createLogger, type Logger } from '../shared/logger.js';
import { createRedis } from '../shared/redis.js';
import { CHANNEL_EVENTS, channelRoom, roomChannel, userRoom } from '../shared/events.js';
import { createTokenService } from './auth.js';
import { eventsBetween, messagesAfter } from './domain/messages.js';
import { createRateLimit, type RateLimit } from './domain/rateLimit.js';
import { RateLimitedError } from '../shared/errors.js';
import { countRedisErrors, createRegistry, registerDbPoolMetrics } from '../shared/metrics.js';
import { reportReady } from '../shared/health.js';
import { bullPrefix, messageQueueName } from '../shared/queues.js';
import { createFrontMetrics, registerQueueMetrics } from './metrics.js';
import type { ChannelNotifier } from './domain/channels.js';
import type { ReadNotifier } from './domain/readState.js';
import { createHttpApp } from './http/app.js';
import { answerParserErrors } from './http/errors.js';
import { SendAdmission } from './messaging/admission.js';
import { SendQueue } from './messaging/sendQueue.js';
import { Delivery } from './realtime/delivery.js';
import { drainConnections } from './realtime/drain.js';
import { ChannelSequencer } from './realtime/sequencer.js';
import { attachIoServer, createIoServer, registerSocketHandlers, type IoServer } from './realtime/socketServer.js';
import { createSessionSockets } from './realtime/sessions.js';
import { createSubscriptions } from './realtime/subscriptions.js';
import { createPresence } from './realtime/presence.js';
import { createTyping } from './realtime/typing.js';

export interface FrontNode {
  readonly nodeId: string;
  readonly httpServer: HttpServer;
  readonly io: IoServer;
  /** Listens on config.port (0: any free port) and resolves with the port. */
  start(): Promise<number>;
  stop(): Promise<void>;
}

/**
 * Composition root of a front node: every collaborator is built here and handed to the pieces that use
 * it. Express for REST, Socket.IO for real time (attached after Express, so it owns its path), the
 * sequencer and delivery between the workers' publishes and the sockets, the BullMQ producer for sends.
 */
export function createFrontNode(config: Config, options: { logger?: Logger } = {}): FrontNode {
  const logger = options.logger ?? createLogger(config, 'server');
  const nodeId = randomUUID();
  const knex = createDb(config);
  const redis = createRedis(config, 'fail-fast', 'front');
  const adapterPub = createRedis(config, 'blocking', 'front-adapter-pub');
  const adapterSub = createRedis(config, 'blocking', 'front-adapter-sub');
  const replySub = createRedis(config, 'blocking', 'front-replies');
  const presenceSub = createRedis(config, 'blocking', 'front-presence');
  const redisClients = { redis, adapterPub, adapterSub, replySub, presenceSub };
  for (const [name, client] of Object.entries(redisClients)) {
    client.on('error', (err) => logger.warn({ err: err.message, client: name }, 'redis connection error'));
  }

  // Metrics on a registry of this node's own; the sockets gauge reads `io` (built below) when scraped.
  let connectedSockets = () => 0;
  const metrics = createFrontMetrics(createRegistry(), () => connectedSockets());
  registerDbPoolMetrics(metrics.registry, knex, config.db.poolMax);
  countRedisErrors(metrics.registry, redisClients);
  // The partition queues as read by the queue metrics and dashboard (the producers are SendQueue's);
  // skipMetasUpdate: only the producers and workers set a queue's options in Redis.
  const partitionQueues = Array.from(
    { length: config.queue.partitions },
    (_, p) => new Queue(messageQueueName(p), { connection: redis, prefix: bullPrefix(config.redis.prefix), skipMetasUpdate: true }),
  );
  registerQueueMetrics(metrics.registry, partitionQueues);
  /** Every limit's refusals are counted by its policy name. */
  const counted = (rateLimit: RateLimit): RateLimit => {
    const count = (err: unknown) => {
      if (err instanceof RateLimitedError) metrics.rateLimited.inc({ policy: err.policy?.name ?? 'unknown' });
      throw err;
    };
    return {
      consume: (key) => rateLimit.consume(key).catch(count),
      check: (key) => rateLimit.check(key).catch(count),
    };
  };

  const sendQueue = new SendQueue({ config, connection: redis, subscriber: replySub, nodeId, logger });
  const sendLimit = counted(
    createRateLimit(redis, `${config.redis.prefix}:rl:send`, config.messages.ratePerSecond * 10, 10, 'sends-per-user'),
  );
  const messaging = {
    admission: new SendAdmission({ rateLimit: sendLimit, sink: sendQueue }),
    maxBodyLength: config.messages.maxBodyLength,
    onOutcome: (outcome: string) => metrics.messages.inc({ outcome }),
  };
  // The abuse budgets (README, "Rate limits"): each in Redis, shared by every front node. Those of reads
  // (REST calls, socket connections and events) fall back to a count per node while Redis is down.
  const rl = config.rateLimits;
  const limit = (name: string, points: number, seconds: number, options?: { perNodeWhenRedisDown: boolean }) =>
    counted(createRateLimit(redis, `${config.redis.prefix}:rl:${name}`, points, seconds, name, options));
  const httpLimits = {
    perToken: limit('rest-per-token', rl.restPerSecond * 10, 10, { perNodeWhenRedisDown: true }),
    register: limit('register-per-ip', rl.registerPerMinute, 60),
    login: limit('login-per-ip', rl.loginPerMinute, 60),
    loginFailuresPerIp: limit('login-failures-per-ip', rl.loginFailuresPerIp, 15 * 60),
    loginFailuresPerAccount: limit('login-failures-per-account', rl.loginFailuresPerAccount, 15 * 60),
    loginFailuresPerAccountAndIp: limit('login-failures-per-account-ip', rl.loginFailuresPerAccountAndIp, 15 * 60),
  };
  const socketLimits = {
    events: limit('socket-events-per-user', rl.socketEventPerSecond * 10, 10, { perNodeWhenRedisDown: true }),
    connectionsPerUser: limit('connections-per-user', rl.connectionsPerUserPerMinute, 60, { perNodeWhenRedisDown: true }),
    connectionsPerIp: limit('connections-per-ip', rl.connectionsPerIpPerMinute, 60, { perNodeWhenRedisDown: true }),
  };

  const io = createIoServer({
    redisPrefix: config.redis.prefix,
    pubClient: adapterPub,
    subClient: adapterSub,
    corsOrigins: config.cors.origins,
  });
  connectedSockets = () => io.of('/').sockets.size;
  const sessionSockets = createSessionSockets(io);
  const tokens = createTokenService(config, { redis, listener: sessionSockets });
  const subscriptions = createSubscriptions(io, logger);
  // When the adapter's subscriber connection was lost and is back, membership changes published meanwhile
  // never reached this node: its sockets' rooms are read again. ioredis re-sends the SUBSCRIBEs right after
  // 'ready'; a PING sent after them is answered once they are in force.
  let adapterSubLost = false;
  adapterSub.on('close', () => {
    adapterSubLost = true;
  });
  adapterSub.on('ready', () => {
    if (!adapterSubLost) return;
    adapterSubLost = false;
    setImmediate(() => {
      adapterSub
        .ping()
        .then(() => subscriptions.resync())
        // Narrowed memberships were missed too: presence subscriptions are checked again.
        .then(() => presence.recheckAll())
        .catch((err: unknown) => logger.warn({ err }, 'could not rebuild channel rooms and presence subscriptions after the adapter subscription came back'));
    });
  });
  const notifyRead: ReadNotifier = (userId, read) => {
    io.to(userRoom(userId)).emit('channel:read', read);
  };
  // Every member's sockets, on every node (the Redis adapter), hear of a rename, topic or archive.
  const notifyChannel: ChannelNotifier = (channel) => {
    io.to(channelRoom(channel.id)).emit('channel:updated', { channel });
  };
  const delivery = new Delivery(io, {
    replay: {
      messagesAfter,
      eventsAfter: (channelId, afterRev, limit) => eventsBetween(channelId, afterRev, null, limit),
    },
    replayLimit: config.sync.replayLimit,
    logger,
  });
  // A socket out of a channel's room (a leave, a removal, a disconnect) starts afresh if it comes back.
  io.of('/').adapter.on('leave-room', (room: string, socketId: string) => {
    const channelId = roomChannel(room);
    if (channelId) delivery.leave(socketId, channelId);
  });
  subscriptions.onJoined((socketId, join) => delivery.joined(socketId, join));
  const sequencer = new ChannelSequencer({
    source: { between: (channelId, afterRev, beforeRev) => eventsBetween(channelId, afterRev, beforeRev, 10_000) },
    deliver: (events) => delivery.deliver(events),
    logger,
  });
  io.on(CHANNEL_EVENTS, (events) => sequencer.accept(events));
  const typing = createTyping({ io, redis, redisPrefix: config.redis.prefix });
  const presence = createPresence({
    io,
    redis,
    subscriber: presenceSub,
    redisPrefix: config.redis.prefix,
    ttlMs: config.presence.ttlMs,
    logger,
  });
  subscriptions.onNarrowed((userId) => presence.recheck(userId));

  const app = createHttpApp({
    knex,
    redis,
    logger,
    tokens,
    bcryptRounds: config.bcryptRounds,
    limits: httpLimits,
    corsOrigins: config.cors.origins,
    subscriptions,
    messaging,
    notifyRead,
    notifyChannel,
    metrics,
    metricsToken: config.metricsToken,
    ...(config.admin && { admin: { ...config.admin, queues: partitionQueues } }),
  });
  const httpServer = createServer(app);
  answerParserErrors(httpServer, logger);
  attachIoServer(io, httpServer);
  let closing = false;
  registerSocketHandlers(io, {
    isClosing: () => closing,
    tokens,
    subscribe: (socket) => subscriptions.subscribe(socket),
    watchExpiry: (socket) => sessionSockets.watchExpiry(socket),
    delivery,
    typing,
    presence,
    messaging,
    notifyRead,
    logger,
    limits: socketLimits,
    onEvent: (event, outcome) => metrics.socketEvents.inc({ event, outcome }),
  });

  return {
    nodeId,
    httpServer,
    io,
    async start() {
      await sendQueue.start();
      // Registered before the first socket can connect.
      await presence.start();
      await new Promise<void>((resolve, reject) => {
        httpServer.once('error', reject);
        httpServer.listen(config.port, () => resolve());
      });
      const port = (httpServer.address() as AddressInfo).port;
      logger.info({ port, nodeId }, 'front node listening');
      reportReady({ ready: 'server', port });
      return port;
    },
    async stop() {
      // No new Socket.IO sessions and no new sends; every send already received is answered on its socket
      // before the sockets close (a transport close: clients reconnect, to another node). The port stays
      // open until then: a long-polling client fetches its acks with a new request.
      closing = true;
      // Most of the grace for the sends in flight, the rest (up to 2 s) for their acks to leave.
      const grace = config.shutdownGraceMs;
      const deadline = Date.now() + grace;
      await sendQueue.stop(grace - Math.min(2000, grace / 2));
      sequencer.stop();
      await drainConnections(io, Math.max(0, deadline - Date.now()));
      // Before the sockets close: their users stay online a moment, to reconnect elsewhere without a flap.
      await presence.stop();
      await io.close();
      await Promise.all(partitionQueues.map((q) => q.close()));
      await knex.destroy();
      await Promise.all([redis, adapterPub, adapterSub, replySub, presenceSub].map((c) => c.quit().catch(() => c.disconnect())));
      logger.info({ nodeId }, 'front node stopped');
    },
  };
}
