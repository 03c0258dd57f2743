import type { Server as HttpServer } from 'node:http';
import { createAdapter } from '@socket.io/redis-adapter';
import type { Redis } from 'ioredis';
import Joi from 'joi';
import { Server } from 'socket.io';
import type { Config } from '../../shared/config.js';
import {
  AppError,
  InternalError,
  NotFoundError,
  ServiceUnavailableError,
  ValidationError,
  toAppError,
} from '../../shared/errors.js';
import { socketAdapterKey, userRoom, type SyncAck, type SyncChannelAck } from '../../shared/events.js';
import type { Logger } from '../../shared/logger.js';
import { ChannelMember } from '../../shared/models/index.js';
import type { TokenService } from '../auth.js';
import { CLIENT_MSG_ID, UUID_PATTERN, messagesInRange, sendMessage, type MessagingDeps } from '../domain/messages.js';
import { markRead, type ReadNotifier } from '../domain/readState.js';
import type { Subscriptions } from '../domain/subscriptions.js';
import { coalesceWrites } from './coalesceWrites.js';
import { Delivery } from './delivery.js';
import { createSubscriptions } from './subscriptions.js';
import { ChannelSequencer } from './sequencer.js';
import type { IoServer, IoSocket } from './types.js';

export type { IoServer, IoSocket };

/** Socket.IO frames larger than this close the offending socket; a message body is at most a few KB. */
export const MAX_SOCKET_FRAME_BYTES = 64 * 1024;

const sendSchema = Joi.object({
  channelId: Joi.string().max(64).required(),
  body: Joi.string().required(),
  clientMsgId: CLIENT_MSG_ID.required(),
});
const MAX_SYNC_CHANNELS = 1000;
const syncSchema = Joi.object({
  channels: Joi.object()
    .pattern(Joi.string().max(64), Joi.number().integer().min(0).required())
    .max(MAX_SYNC_CHANNELS)
    .required(),
});
const readSchema = Joi.object({
  channelId: Joi.string().max(64).required(),
  seq: Joi.number().integer().min(0).required(),
});

function validationAck(error: Joi.ValidationError) {
  return { ok: false as const, error: new ValidationError(error.message, [{ field: error.details[0].path.join('.') }]).toBody() };
}

export function createSocketServer(deps: {
  httpServer: HttpServer;
  config: Config;
  tokens: TokenService;
  pubClient: Redis;
  subClient: Redis;
  messaging: MessagingDeps;
  logger: Logger;
}): { io: IoServer; subscriptions: Subscriptions; notifyRead: ReadNotifier; close(): Promise<void> } {
  const { logger } = deps;
  const io: IoServer = new Server(deps.httpServer, {
    maxHttpBufferSize: MAX_SOCKET_FRAME_BYTES,
    // Compressing each frame costs more CPU than small chat messages save on the wire.
    perMessageDeflate: false,
    adapter: createAdapter(deps.pubClient, deps.subClient, { key: socketAdapterKey(deps.config.redis.prefix), requestsTimeout: 5000 }),
  });

  coalesceWrites(io);
  const subscriptions = createSubscriptions(io, logger);

  const delivery = new Delivery(io, {
    replay: { after: (channelId, afterSeq, limit) => messagesInRange(channelId, afterSeq, null, limit) },
    holdMs: deps.config.sync.holdMs,
    replayLimit: deps.config.sync.replayLimit,
    logger,
  });
  const sequencer = new ChannelSequencer({
    source: { between: (channelId, afterSeq, beforeSeq) => messagesInRange(channelId, afterSeq, beforeSeq, 10_000) },
    deliver: (messages) => delivery.deliver(messages),
    logger,
  });
  io.on('messages:created', (messages) => sequencer.accept(messages));

  const notifyRead: ReadNotifier = (userId, read) => {
    io.to(userRoom(userId)).emit('channel:read', read);
  };

  io.use((socket, next) => {
    deps.tokens
      .authenticate(socket.handshake.auth?.token)
      .then((user) => {
        socket.data.userId = user.id;
        return subscriptions.subscribe(socket);
      })
      .then(
        () => next(),
        (err: unknown) => {
          if (!(err instanceof AppError)) logger.warn({ err }, 'socket handshake failed unexpectedly');
          // The contract's message for a refused token; anything else is the server's fault, not the token's.
          next(new Error(err instanceof AppError ? err.code : 'SERVICE_UNAVAILABLE'));
        },
      );
  });

  io.on('connection', (socket) => {
    const userId = socket.data.userId;
    delivery.hold(socket);
    // A client that starts with anything but `sync` is not catching up: its live messages flow at once.
    socket.onAny((event) => {
      if (event !== 'sync') delivery.release(socket);
    });
    socket.on('disconnect', () => delivery.forget(socket));

    socket.on('message:send', async (payload, ack) => {
      if (typeof ack !== 'function') return;
      try {
        const { value, error } = sendSchema.validate(payload);
        if (error) return ack(validationAck(error));
        ack(await sendMessage(deps.messaging, userId, value));
      } catch (err) {
        logger.error({ err, userId }, 'message:send failed unexpectedly');
        ack({ ok: false, error: new InternalError().toBody() });
      }
    });

    // One sync at a time per socket: a second one continues from where the first left the gates.
    let syncs: Promise<unknown> = Promise.resolve();
    socket.on('sync', (payload, ack) => {
      if (typeof ack !== 'function') return;
      const { value, error } = syncSchema.validate(payload);
      if (error) {
        delivery.release(socket);
        return ack(validationAck(error));
      }
      syncs = syncs.then(() => runSync(socket, value.channels).then(ack));
    });

    socket.on('channel:read', async (payload, ack) => {
      const reply = typeof ack === 'function' ? ack : () => {};
      try {
        const { value, error } = readSchema.validate(payload);
        if (error) return reply(validationAck(error));
        if (!UUID_PATTERN.test(value.channelId)) throw new NotFoundError('Channel');
        reply({ ok: true, ...(await markRead(notifyRead, userId, value.channelId.toLowerCase(), value.seq)) });
      } catch (err) {
        if (!(err instanceof AppError)) logger.error({ err, userId }, 'channel:read failed unexpectedly');
        reply({ ok: false, error: toAppError(err).toBody() });
      }
    });
  });

  async function runSync(socket: IoSocket, requested: Record<string, number>): Promise<SyncAck> {
    const userId = socket.data.userId;
    const channels: Record<string, SyncChannelAck> = {};
    const lastSeqs = new Map<string, number>();
    for (const [channelId, lastSeq] of Object.entries(requested)) {
      if (UUID_PATTERN.test(channelId)) lastSeqs.set(channelId.toLowerCase(), lastSeq);
      else channels[channelId] = { error: new NotFoundError('Channel').toBody() };
    }
    try {
      const results = await delivery.sync(socket, lastSeqs, async (ids) => {
        const rows = await ChannelMember.query().where('user_id', userId).whereIn('channel_id', ids).select('channel_id');
        return new Set(rows.map((r) => r.channelId));
      });
      for (const channelId of lastSeqs.keys()) {
        channels[channelId] = results.get(channelId) ?? { error: new NotFoundError('Channel').toBody() };
      }
      return { ok: true, channels };
    } catch (err) {
      logger.warn({ err, userId }, 'sync failed');
      return { ok: false, error: (err instanceof AppError ? err : new ServiceUnavailableError()).toBody() };
    }
  }

  return {
    io,
    subscriptions,
    notifyRead,
    close: async () => {
      sequencer.stop();
      await io.close();
    },
  };
}
