import type { Server as HttpServer } from 'node:http';
import { createAdapter } from '@socket.io/redis-adapter';
import type { Redis } from 'ioredis';
import helmet from 'helmet';
import proxyaddr from 'proxy-addr';
import { Server } from 'socket.io';
import { NotFoundError, ServiceUnavailableError, UnauthorizedError, ValidationError } from '../../shared/errors.js';
import { socketAdapterKey, type ResumePoint, type SyncAck, type SyncChannelAck, type SyncDone } from '../../shared/events.js';
import type { Logger } from '../../shared/logger.js';
import Joi, { assertNoForbiddenKeys } from '../../shared/validation.js';
import type { TokenService } from '../auth.js';
import { allowedChannels } from '../domain/access.js';
import type { RateLimit } from '../domain/rateLimit.js';
import { toClientError, toErrorAck } from '../errors.js';
import { TRUST_PROXY } from '../http/app.js';
import { CLIENT_ID, UUID_PATTERN, sendMessage, type MessagingDeps } from '../domain/messages.js';
import { markRead, type ReadNotifier } from '../domain/readState.js';
import { deleteMessage, editMessage, reactToMessage } from '../domain/messageChanges.js';
import { coalesceWrites } from './coalesceWrites.js';
import type { Delivery } from './delivery.js';
import { presenceSchema, type Presence } from './presence.js';
import { typingSchema, type Typing } from './typing.js';
import type { IoServer, IoSocket } from './types.js';

export type { IoServer, IoSocket };

/** Socket.IO frames larger than this close the offending socket; a message body is at most a few KB. */
export const MAX_SOCKET_FRAME_BYTES = 64 * 1024;

/**
 * The Socket.IO server of a front node, not yet attached: the composition root attaches it to the HTTP
 * server after Express, so Socket.IO answers its own path and hands every other request to Express.
 */
export function createIoServer(deps: {
  redisPrefix: string;
  pubClient: Redis;
  subClient: Redis;
  /** Browser origins allowed by CORS; empty: same-origin only (no Access-Control-* headers). */
  corsOrigins?: readonly string[];
}): IoServer {
  const origins = deps.corsOrigins ?? [];
  return new Server({
    ...(origins.length > 0 && { cors: { origin: [...origins] } }),
    maxHttpBufferSize: MAX_SOCKET_FRAME_BYTES,
    // Compressing each frame costs more CPU than small chat messages save on the wire.
    perMessageDeflate: false,
    adapter: createAdapter(deps.pubClient, deps.subClient, { key: socketAdapterKey(deps.redisPrefix), requestsTimeout: 5000 }),
  });
}

export function attachIoServer(io: IoServer, httpServer: HttpServer): void {
  io.attach(httpServer);
  // The same security headers on Socket.IO's own HTTP answers (polling, handshake) as on Express's.
  io.engine.use(helmet());
  coalesceWrites(io);
}

const MAX_RESUME_CHANNELS = 1000;
const position = Joi.number().integer().min(0);
/**
 * channelId → where the client resumes it: the last seq it has, or `{rev}`, the last rev; the
 * handshake's `auth.resume` and `sync`'s `channels`.
 */
const resumePoints = Joi.object()
  .pattern(Joi.string().max(64), Joi.alternatives(position, Joi.object({ rev: position.required() })).required())
  .max(MAX_RESUME_CHANNELS);

const id = Joi.string().max(64);
// The event schemas are exported for the AsyncAPI document (server/realtime/asyncapi.ts), which shows these very ones.
export const sendSchema = Joi.object({
  channelId: id.required(),
  body: Joi.string().required(),
  clientMsgId: CLIENT_ID.required(),
  parentId: id.allow(null),
});
const target = { channelId: id.required(), messageId: id.required(), clientChangeId: CLIENT_ID.allow(null).default(null) };
export const editSchema = Joi.object<{ channelId: string; messageId: string; body: string; clientChangeId: string | null }>({
  ...target,
  body: Joi.string().required(),
});
export const deleteSchema = Joi.object<{ channelId: string; messageId: string; clientChangeId: string | null }>(target);
export const reactionSchema = Joi.object<{ channelId: string; messageId: string; emoji: string; clientChangeId: string | null }>({
  ...target,
  emoji: Joi.string().max(200).required(),
});
export const syncSchema = Joi.object({ channels: resumePoints.required() });
export const readSchema = Joi.object({
  channelId: Joi.string().max(64).required(),
  seq: Joi.number().integer().min(0).required(),
});
export const handshakeSchema = Joi.object({ token: Joi.any(), resume: resumePoints }).unknown(false);

/** Every socket payload and handshake `auth`: no `__proto__`/`constructor`/`prototype` key, no unknown field. */
function validate<T>(schema: Joi.Schema<T>, payload: unknown): T {
  assertNoForbiddenKeys(payload);
  // An event emitted without a payload is VALIDATION_FAILED, not an undefined value for the handler.
  if (payload === undefined) throw new ValidationError('"value" is required', [{ field: '' }]);
  const { value, error } = schema.validate(payload, { allowUnknown: false });
  if (error) throw new ValidationError(error.message, [{ field: error.details[0].path.join('.') }]);
  return value;
}

export interface SocketHandlerDeps {
  /** True once the node is stopping: new handshakes are refused so clients connect elsewhere. */
  isClosing(): boolean;
  tokens: TokenService;
  /** Joins a socket, still in its handshake, to its user's and token's rooms; resolves once it is in all of them. */
  subscribe(socket: IoSocket): Promise<void>;
  /** Disconnects the socket when its token expires. */
  watchExpiry(socket: IoSocket): void;
  delivery: Delivery;
  typing: Typing;
  presence: Presence;
  messaging: MessagingDeps;
  notifyRead: ReadNotifier;
  logger: Logger;
  limits: SocketLimits;
  /** Told each handled event's outcome: `ok`, or the error code of its ack (the socket events metric). */
  onEvent?: (event: string, outcome: string) => void;
}

/** The socket abuse budgets (server/app.ts builds them from config.rateLimits). */
export interface SocketLimits {
  /** Events other than `message:send` (which has the send budget), per user. */
  events: RateLimit;
  /** Connections per user. */
  connectionsPerUser: RateLimit;
  /** Connections per client address. */
  connectionsPerIp: RateLimit;
}

const trusted = proxyaddr.compile(TRUST_PROXY);

/** The client's address as Express finds `req.ip` (same library, same trusted proxies): per-IP budgets agree. */
function clientAddress(socket: IoSocket): string {
  return proxyaddr(socket.request, trusted);
}

/** A refused handshake: connect_error's message is the contract's code, `data.retryAfterMs` when RATE_LIMITED. */
function connectError(err: unknown, logger: Logger): Error {
  const ack = toErrorAck(err, logger, { event: 'handshake' });
  const error: Error & { data?: object } = new Error(ack.error.code);
  if (ack.retryAfterMs !== undefined) error.data = { retryAfterMs: ack.retryAfterMs };
  return error;
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
    { ackOptional = false, limited = true } = {},
  ): void {
    socket.on(event as 'message:send', async (...args: unknown[]) => {
      // Socket.IO passes the ack as the last argument: an event emitted with an ack but without its one
      // payload, or with more than one, is acked VALIDATION_FAILED (several arguments are validated as
      // one array), instead of taking an argument for the ack and leaving the client waiting forever.
      const ack = typeof args[args.length - 1] === 'function' ? args.pop() : undefined;
      const payload = args.length > 1 ? args : args[0];
      const reply = typeof ack === 'function' ? (ack as (response: object) => void) : undefined;
      if (!reply && !ackOptional) return;
      let response: object;
      try {
        if (limited) await deps.limits.events.consume(socket.data.userId);
        response = await run(validate(schema, payload));
      } catch (err) {
        // Mapped (and so logged) whether or not anyone hears of it.
        response = toErrorAck(err, logger, { event, userId: socket.data.userId });
      }
      const failed = (response as { ok?: unknown; error?: { code?: unknown } }).ok === false;
      deps.onEvent?.(event, failed ? String((response as { error?: { code?: unknown } }).error?.code) : 'ok');
      reply?.(response);
    });
  }

  io.use((socket, next) => {
    if (deps.isClosing()) return next(new Error(new ServiceUnavailableError().code));
    const auth: unknown = socket.handshake.auth;
    // Connections count per address before anything else, then per user (once the handshake is valid).
    deps.limits.connectionsPerIp
      .consume(clientAddress(socket))
      .then(() => deps.tokens.authenticate((auth as { token?: unknown } | undefined)?.token))
      .then(async (session) => {
        const { resume } = validate(handshakeSchema, auth);
        await deps.limits.connectionsPerUser.consume(session.user.id);
        socket.data.userId = session.user.id;
        socket.data.jti = session.jti;
        socket.data.exp = session.exp;
        socket.data.resume = resume;
        await deps.subscribe(socket);
        // A logout or password change between the check above and joining the rooms missed this socket.
        if (await deps.tokens.isRevoked(session)) {
          await io.of('/').adapter.delAll(socket.id);
          throw new UnauthorizedError();
        }
        // Last: a handshake refused above never counted its user online.
        await deps.presence.track(socket);
      })
      .then(
        () => next(),
        (err: unknown) => {
          next(connectError(err, logger));
        },
      );
  });

  io.on('connection', (socket) => {
    const userId = socket.data.userId;
    // Synchronously with the connect: the socket's live messages are counted from its first one, and a
    // resume's gates close before any live message of those channels can reach it.
    delivery.register(socket);
    socket.on('disconnect', () => delivery.forget(socket));
    deps.watchExpiry(socket);

    const resume = socket.data.resume;
    if (resume) {
      void runSync(socket, resume).then(
        (channels) => socket.emit('sync:done', { channels } satisfies SyncDone),
        (err: unknown) => {
          const error = toClientError(err, logger, { event: 'handshake resume', userId }).toBody();
          socket.emit('sync:done', { channels: Object.fromEntries(Object.keys(resume).map((id) => [id, { error }])) });
        },
      );
    }

    // Sends have their own budget (MESSAGE_RATE_PER_SECOND), taken in the order they were made.
    handle(socket, 'message:send', sendSchema, (value) => sendMessage(deps.messaging, userId, value), { limited: false });
    // Changes count against the same budget as sends, and are admitted in order with them.
    handle(socket, 'message:edit', editSchema, (value) => editMessage(deps.messaging, userId, value), { limited: false });
    handle(socket, 'message:delete', deleteSchema, (value) => deleteMessage(deps.messaging, userId, value), { limited: false });
    handle(socket, 'reaction:add', reactionSchema, (value) => reactToMessage(deps.messaging, userId, 'reaction:add', value), {
      limited: false,
    });
    handle(socket, 'reaction:remove', reactionSchema, (value) => reactToMessage(deps.messaging, userId, 'reaction:remove', value), {
      limited: false,
    });

    handle(socket, 'sync', syncSchema, async (value): Promise<SyncAck> => ({ ok: true, channels: await runSync(socket, value.channels) }));

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

    // Ephemeral: passed on (or not) at once, so a client may emit them without waiting for an ack.
    handle(socket, 'typing:start', typingSchema, (value) => deps.typing.start(socket, value), { ackOptional: true });
    handle(socket, 'typing:stop', typingSchema, (value) => deps.typing.stop(socket, value), { ackOptional: true });
    handle(socket, 'presence:subscribe', presenceSchema, (value) => deps.presence.subscribe(socket, value), { ackOptional: true });
    handle(socket, 'presence:unsubscribe', presenceSchema, (value) => deps.presence.unsubscribe(socket, value), { ackOptional: true });
  });

  /** Replays what follows each mark; unknown, foreign and malformed channel ids are NOT_FOUND in place. */
  async function runSync(socket: IoSocket, requested: Record<string, ResumePoint>): Promise<Record<string, SyncChannelAck>> {
    const userId = socket.data.userId;
    const channels: Record<string, SyncChannelAck> = {};
    const marks = new Map<string, ResumePoint>();
    for (const [channelId, lastSeq] of Object.entries(requested)) {
      if (UUID_PATTERN.test(channelId)) marks.set(channelId.toLowerCase(), lastSeq);
      else channels[channelId] = { error: new NotFoundError('Channel').toBody() };
    }
    const results = await delivery.sync(socket, marks, (ids) => allowedChannels(ids, userId, 'channel.follow'));
    for (const channelId of marks.keys()) {
      channels[channelId] = results.get(channelId) ?? { error: new NotFoundError('Channel').toBody() };
    }
    return channels;
  }
}

