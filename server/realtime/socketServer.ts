import type { Server as HttpServer } from 'node:http';
import { createAdapter } from '@socket.io/redis-adapter';
import type { Redis } from 'ioredis';
import Joi from 'joi';
import { Server, type Socket } from 'socket.io';
import type { Config } from '../../shared/config.js';
import { AppError, InternalError, ValidationError } from '../../shared/errors.js';
import {
  channelRoom,
  userRoom,
  type ClientToServerEvents,
  type InterServerEvents,
  type MembershipChange,
  type ServerToClientEvents,
  type SocketData,
} from '../../shared/events.js';
import type { Logger } from '../../shared/logger.js';
import { ChannelMember } from '../../shared/models/index.js';
import type { TokenService } from '../auth.js';
import { CLIENT_MSG_ID, sendMessage, type MessagingDeps } from '../domain/messages.js';
import type { Subscriptions } from '../domain/subscriptions.js';

export type IoServer = Server<ClientToServerEvents, ServerToClientEvents, InterServerEvents, SocketData>;
type IoSocket = Socket<ClientToServerEvents, ServerToClientEvents, InterServerEvents, SocketData>;

/** Socket.IO frames larger than this close the offending socket; a message body is at most a few KB. */
export const MAX_SOCKET_FRAME_BYTES = 64 * 1024;

const sendSchema = Joi.object({
  channelId: Joi.string().max(64).required(),
  body: Joi.string().required(),
  clientMsgId: CLIENT_MSG_ID.required(),
});

export function socketAdapterKey(config: Config): string {
  return `${config.redis.prefix}:socket.io`;
}

/**
 * Per-socket subscription state. Membership changes that arrive while a new socket is still reading its
 * channels are held and applied after, so a removal racing a connect is never lost.
 */
interface SubscriptionState {
  ready: boolean;
  held: MembershipChange[];
}
const states = new WeakMap<IoSocket, SubscriptionState>();

function applyToSocket(socket: IoSocket, change: MembershipChange): void {
  const state = states.get(socket);
  if (state && !state.ready) {
    state.held.push(change);
    return;
  }
  if (change.join.length > 0) socket.join(change.join.map(channelRoom));
  for (const channelId of change.leave) socket.leave(channelRoom(channelId));
}

export function createSocketServer(deps: {
  httpServer: HttpServer;
  config: Config;
  tokens: TokenService;
  pubClient: Redis;
  subClient: Redis;
  messaging: MessagingDeps;
  logger: Logger;
}): { io: IoServer; subscriptions: Subscriptions } {
  const { logger } = deps;
  const io: IoServer = new Server(deps.httpServer, {
    maxHttpBufferSize: MAX_SOCKET_FRAME_BYTES,
    // Compressing each frame costs more CPU than small chat messages save on the wire.
    perMessageDeflate: false,
    adapter: createAdapter(deps.pubClient, deps.subClient, { key: socketAdapterKey(deps.config), requestsTimeout: 5000 }),
  });

  function applyLocally(change: MembershipChange): void {
    const ids = io.of('/').adapter.rooms.get(userRoom(change.userId));
    for (const id of ids ?? []) {
      const socket = io.of('/').sockets.get(id);
      if (socket) applyToSocket(socket, change);
    }
  }

  io.on('membership:change', (change, ack) => {
    applyLocally(change);
    ack(true);
  });

  const subscriptions: Subscriptions = {
    async apply(change) {
      applyLocally(change);
      try {
        await io.serverSideEmitWithAck('membership:change', change);
      } catch (err) {
        // A node that does not answer in time is gone or cut off from Redis; its sockets are too.
        logger.warn({ err, userId: change.userId }, 'not every front node confirmed a membership change');
      }
    },
  };

  io.use((socket, next) => {
    deps.tokens.authenticate(socket.handshake.auth?.token).then(
      (user) => {
        socket.data.userId = user.id;
        next();
      },
      (err: unknown) => {
        if (!(err instanceof AppError)) logger.warn({ err }, 'socket authentication failed unexpectedly');
        next(new Error(err instanceof AppError && err.code !== 'UNAUTHORIZED' ? err.code : 'UNAUTHORIZED'));
      },
    );
  });

  io.on('connection', (socket) => {
    const userId = socket.data.userId;
    const state: SubscriptionState = { ready: false, held: [] };
    states.set(socket, state);
    // Join the user room first: every membership change from here on reaches this socket.
    socket.join(userRoom(userId));
    ChannelMember.query()
      .where('user_id', userId)
      .select('channel_id')
      .then(
        (rows) => {
          socket.join(rows.map((r) => channelRoom(r.channelId)));
          state.ready = true;
          for (const change of state.held.splice(0)) applyToSocket(socket, change);
        },
        (err: unknown) => {
          logger.warn({ err, userId }, 'could not load subscriptions; disconnecting socket');
          socket.disconnect(true);
        },
      );

    socket.on('message:send', async (payload, ack) => {
      if (typeof ack !== 'function') return;
      try {
        const { value, error } = sendSchema.validate(payload, { abortEarly: true });
        if (error) {
          ack({ ok: false, error: new ValidationError(error.message, [{ field: error.details[0].path.join('.') }]).toBody() });
          return;
        }
        ack(await sendMessage(deps.messaging, userId, value));
      } catch (err) {
        logger.error({ err, userId }, 'message:send failed unexpectedly');
        ack({ ok: false, error: new InternalError().toBody() });
      }
    });
  });

  return { io, subscriptions };
}
