import type { Server as HttpServer } from 'node:http';
import { createAdapter } from '@socket.io/redis-adapter';
import type { Redis } from 'ioredis';
import { Server } from 'socket.io';
import { NotFoundError, ValidationError } from '../../shared/errors.js';
import { socketAdapterKey, type SyncAck, type SyncChannelAck, type SyncDone } from '../../shared/events.js';
import type { Logger } from '../../shared/logger.js';
import { ChannelMember } from '../../shared/models/index.js';
import Joi from '../../shared/validation.js';
import type { TokenService } from '../auth.js';
import { toClientError } from '../errors.js';
import { CLIENT_MSG_ID, UUID_PATTERN, sendMessage, type MessagingDeps } from '../domain/messages.js';
import { markRead, type ReadNotifier } from '../domain/readState.js';
import { coalesceWrites } from './coalesceWrites.js';
import type { Delivery } from './delivery.js';
import type { IoServer, IoSocket } from './types.js';

export type { IoServer, IoSocket };

/** Socket.IO frames larger than this close the offending socket; a message body is at most a few KB. */
export const MAX_SOCKET_FRAME_BYTES = 64 * 1024;

/**
 * The Socket.IO server of a front node, not yet attached: the composition root attaches it to the HTTP
 * server after Express, so Socket.IO answers its own path and hands every other request to Express.
 */
export function createIoServer(deps: { redisPrefix: string; pubClient: Redis; subClient: Redis }): IoServer {
  return new Server({
    maxHttpBufferSize: MAX_SOCKET_FRAME_BYTES,
    // Compressing each frame costs more CPU than small chat messages save on the wire.
    perMessageDeflate: false,
    adapter: createAdapter(deps.pubClient, deps.subClient, { key: socketAdapterKey(deps.redisPrefix), requestsTimeout: 5000 }),
  });
}

export function attachIoServer(io: IoServer, httpServer: HttpServer): void {
  io.attach(httpServer);
  coalesceWrites(io);
}

const MAX_RESUME_CHANNELS = 1000;
/** channelId → the last seq the client has; the handshake's `auth.resume` and `sync`'s `channels`. */
const lastSeqs = Joi.object()
  .pattern(Joi.string().max(64), Joi.number().integer().min(0).required())
  .max(MAX_RESUME_CHANNELS);

const sendSchema = Joi.object({
  channelId: Joi.string().max(64).required(),
  body: Joi.string().required(),
  clientMsgId: CLIENT_MSG_ID.required(),
});
const syncSchema = Joi.object({ channels: lastSeqs.required() });
const readSchema = Joi.object({
  channelId: Joi.string().max(64).required(),
  seq: Joi.number().integer().min(0).required(),
});
const handshakeSchema = Joi.object({ token: Joi.any(), resume: lastSeqs }).unknown(false);

function validate<T>(schema: Joi.Schema<T>, payload: unknown): T {
  const { value, error } = schema.validate(payload);
  if (error) throw new ValidationError(error.message, [{ field: error.details[0].path.join('.') }]);
  return value;
}

export interface SocketHandlerDeps {
  tokens: TokenService;
  /** Joins a socket, still in its handshake, to its user's rooms; resolves once it is in all of them. */
  subscribe(socket: IoSocket): Promise<void>;
  delivery: Delivery;
  messaging: MessagingDeps;
  notifyRead: ReadNotifier;
  logger: Logger;
}

/** The socket layer: authenticates handshakes and handles the client's events, nothing else. */
export function registerSocketHandlers(io: IoServer, deps: SocketHandlerDeps): void {
  const { logger, delivery } = deps;

  /**
   * Every client event goes through here: payload validated, errors mapped as for REST, the ack answered
   * once. Without an ack callback the event still runs when `ackOptional`, else it is ignored (nobody
   * would learn its outcome).
   */
  function handle<T>(
    socket: IoSocket,
    event: string,
    schema: Joi.Schema<T>,
    run: (value: T) => Promise<object>,
    { ackOptional = false } = {},
  ): void {
    socket.on(event as 'message:send', async (payload: unknown, ack: unknown) => {
      const reply = typeof ack === 'function' ? (ack as (response: object) => void) : undefined;
      if (!reply && !ackOptional) return;
      let response: object;
      try {
        response = await run(validate(schema, payload));
      } catch (err) {
        // Mapped (and so logged) whether or not anyone hears of it.
        response = { ok: false, error: toClientError(err, logger, { event, userId: socket.data.userId }).toBody() };
      }
      reply?.(response);
    });
  }

  io.use((socket, next) => {
    const auth: unknown = socket.handshake.auth;
    deps.tokens
      .authenticate((auth as { token?: unknown } | undefined)?.token)
      .then((user) => {
        const { resume } = validate(handshakeSchema, auth);
        socket.data.userId = user.id;
        socket.data.resume = resume;
        return deps.subscribe(socket);
      })
      .then(
        () => next(),
        (err: unknown) => {
          // connect_error's message is the contract's code.
          next(new Error(toClientError(err, logger, { event: 'handshake' }).code));
        },
      );
  });

  io.on('connection', (socket) => {
    const userId = socket.data.userId;
    // Synchronously with the connect: the socket's live messages are counted from its first one, and a
    // resume's gates close before any live message of those channels can reach it.
    delivery.register(socket);
    socket.on('disconnect', () => delivery.forget(socket));

    // One replay at a time per socket: a later one continues from where the earlier left the gates.
    let syncs: Promise<unknown> = Promise.resolve();
    const replay = (requested: Record<string, number>) => {
      const done = syncs.then(() => runSync(socket, requested));
      syncs = done.catch(() => {});
      return done;
    };

    const resume = socket.data.resume;
    if (resume) {
      void replay(resume).then(
        (channels) => socket.emit('sync:done', { channels } satisfies SyncDone),
        (err: unknown) => {
          const error = toClientError(err, logger, { event: 'handshake resume', userId }).toBody();
          socket.emit('sync:done', { channels: Object.fromEntries(Object.keys(resume).map((id) => [id, { error }])) });
        },
      );
    }

    handle(socket, 'message:send', sendSchema, (value) => sendMessage(deps.messaging, userId, value));

    handle(socket, 'sync', syncSchema, async (value): Promise<SyncAck> => ({ ok: true, channels: await replay(value.channels) }));

    handle(
      socket,
      'channel:read',
      readSchema,
      async (value) => {
        if (!UUID_PATTERN.test(value.channelId)) throw new NotFoundError('Channel');
        return { ok: true, ...(await markRead(deps.notifyRead, userId, value.channelId.toLowerCase(), value.seq)) };
      },
      { ackOptional: true },
    );
  });

  /** Replays what follows each mark; unknown, foreign and malformed channel ids are NOT_FOUND in place. */
  async function runSync(socket: IoSocket, requested: Record<string, number>): Promise<Record<string, SyncChannelAck>> {
    const userId = socket.data.userId;
    const channels: Record<string, SyncChannelAck> = {};
    const marks = new Map<string, number>();
    for (const [channelId, lastSeq] of Object.entries(requested)) {
      if (UUID_PATTERN.test(channelId)) marks.set(channelId.toLowerCase(), lastSeq);
      else channels[channelId] = { error: new NotFoundError('Channel').toBody() };
    }
    const results = await delivery.sync(socket, marks, async (ids) => {
      const rows = await ChannelMember.query().where('user_id', userId).whereIn('channel_id', ids).select('channel_id');
      return new Set(rows.map((r) => r.channelId));
    });
    for (const channelId of marks.keys()) {
      channels[channelId] = results.get(channelId) ?? { error: new NotFoundError('Channel').toBody() };
    }
    return channels;
  }
}

