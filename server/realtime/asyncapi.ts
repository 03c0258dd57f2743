/**
 * The Socket.IO events as an AsyncAPI 3 document: what clients emit, each with the Joi schema the socket
 * server validates it with (converted by joi-to-json) and its ack; what the server emits, with the DTOs
 * the OpenAPI document describes (server/http/openapi.ts). Described from the server's side: it
 * `receive`s the client's events and `send`s its own.
 */
import type {
  ChannelUpdated,
  ClientToServerEvents,
  MessageDeleted,
  MessageUpdated,
  PresenceEvent,
  ReactionChanged,
  ServerToClientEvents,
  SessionRevoked,
  TypingEvent,
} from '../../shared/events.js';
import type Joi from '../../shared/validation.js';
import { COMPONENT_SCHEMAS, dto, joiToJsonSchema, object, ref, type DocumentInfo, type JsonSchema } from '../http/openapi.js';
import { presenceSchema } from './presence.js';
import { deleteSchema, editSchema, handshakeSchema, reactionSchema, readSchema, sendSchema, syncSchema } from './socketServer.js';
import { typingSchema } from './typing.js';

interface ClientEvent {
  summary: string;
  description?: string;
  schema: Joi.Schema;
  /** The ack's payload. */
  ack: JsonSchema;
}

interface ServerEvent {
  summary: string;
  description?: string;
  payload: JsonSchema;
}

const UUID: JsonSchema = { type: 'string', format: 'uuid' };
const REV: JsonSchema = { type: 'integer', minimum: 1 };

/** `{ok:false, error}`: a refused event; RATE_LIMITED also says when to retry. */
const refused = object({ ok: { const: false }, error: ref('ErrorBody'), retryAfterMs: { type: 'integer', minimum: 0 } }, ['retryAfterMs']);
const ackOf = (ok: Record<string, JsonSchema> = {}): JsonSchema => ({
  oneOf: [object({ ok: { const: true }, ...ok }), refused],
});
const outcome = ackOf({ message: ref('Message') });
const CHANGE_NOTE =
  'Shares the per-user send budget (MESSAGE_RATE_PER_SECOND) and ordered admission with sends; answered once the change is stored. Refusals: NOT_FOUND (a channel you are not in, no such message in it, a deleted message), FORBIDDEN (archived channel; see the roles), VALIDATION_FAILED, RATE_LIMITED, SERVICE_UNAVAILABLE.';

/** What clients emit; each is acked once (`channel:read`, typing and presence may be emitted without an ack). */
const CLIENT_EVENTS: Record<keyof ClientToServerEvents | 'typing:start' | 'typing:stop' | 'presence:subscribe' | 'presence:unsubscribe', ClientEvent> = {
  'message:send': {
    summary: 'Send a message',
    description:
      'Acked once stored. A resend with the same `clientMsgId` acks the first message and emits nothing; `parentId` makes it a reply. Refusals: NOT_FOUND (a channel you are not in), FORBIDDEN (archived), VALIDATION_FAILED, RATE_LIMITED, SERVICE_UNAVAILABLE.',
    schema: sendSchema,
    ack: outcome,
  },
  'message:edit': { summary: 'Edit a message (its author)', description: CHANGE_NOTE, schema: editSchema, ack: outcome },
  'message:delete': { summary: 'Delete a message (its author, a workspace owner or admin)', description: CHANGE_NOTE, schema: deleteSchema, ack: outcome },
  'reaction:add': { summary: 'React to a message', description: CHANGE_NOTE, schema: reactionSchema, ack: outcome },
  'reaction:remove': { summary: "Remove one's reaction", description: CHANGE_NOTE, schema: reactionSchema, ack: outcome },
  sync: {
    summary: 'Replay what was missed since a mark per channel',
    description:
      'A number replays the messages with seq > lastSeq; `{rev}` the events with rev > lastRev; at most SYNC_REPLAY_LIMIT per channel (`hasMore`). SERVICE_UNAVAILABLE when a replay failed: the channels it had not replayed get no live events until a sync of them succeeds.',
    schema: syncSchema,
    ack: ackOf({ channels: { type: 'object', additionalProperties: ref('SyncChannelAck') } }),
  },
  'channel:read': { summary: 'Move the read mark', description: 'As `POST /channels/:channelId/read`.', schema: readSchema, ack: ackOf({ channelId: UUID, seq: { type: 'integer', minimum: 0 } }) },
  'typing:start': {
    summary: 'Tell the channel you are typing',
    description: 'At most one `typing` per user and channel every 2 s is passed on; the others are acked and dropped. NOT_FOUND for a channel you are not a member of.',
    schema: typingSchema,
    ack: ackOf(),
  },
  'typing:stop': { summary: 'Tell the channel you stopped typing', schema: typingSchema, ack: ackOf() },
  'presence:subscribe': {
    summary: "Follow users' presence",
    description: 'The ack has the status of the users who share a workspace with you; other ids are left out. Then a `presence` event per change.',
    schema: presenceSchema,
    ack: ackOf({ presence: { type: 'object', additionalProperties: ref('PresenceStatus') } }),
  },
  'presence:unsubscribe': { summary: "Stop following users' presence", schema: presenceSchema, ack: ackOf() },
};

const CHANNEL_EVENT =
  "One of the channel's events: it reaches every socket of the channel, on every node, in rev order, each once; a resume by rev replays them as they were emitted.";

/** What the server emits; the compiler checks that every event of the server's event types is here. */
const SERVER_EVENTS: Record<keyof ServerToClientEvents, ServerEvent> = {
  'message:new': { summary: 'A new message (its `rev`: its creation)', description: CHANNEL_EVENT, payload: ref('Message') },
  'message:updated': { summary: 'A message after an edit, or a thread parent whose replies changed', description: CHANNEL_EVENT, payload: ref('MessageUpdated') },
  'message:deleted': { summary: 'A message is deleted', description: CHANNEL_EVENT, payload: ref('MessageDeleted') },
  'reaction:added': { summary: 'A user reacted', description: CHANNEL_EVENT, payload: ref('ReactionChanged') },
  'reaction:removed': { summary: "A user's reaction is gone", description: CHANNEL_EVENT, payload: ref('ReactionChanged') },
  'channel:read': { summary: "The user's read mark moved (to every socket of the user)", payload: ref('ReadState') },
  'sync:done': {
    summary: 'After a handshake with `resume`: every resumed channel was replayed',
    description: 'Per channel as the `sync` ack; `{error}` NOT_FOUND for a channel the user may not follow, SERVICE_UNAVAILABLE for one whose replay failed (no live events of it until a `sync` of it succeeds).',
    payload: object({ channels: { type: 'object', additionalProperties: ref('SyncChannelAck') } }),
  },
  'channel:updated': { summary: 'A channel was renamed, re-topicked, archived or unarchived', payload: dto<ChannelUpdated>({ channel: ref('Channel') }) },
  'session:revoked': {
    summary: 'The token expired or was revoked; the server disconnects the socket right after',
    payload: dto<SessionRevoked>({ code: { const: 'UNAUTHORIZED' }, message: { type: 'string' } }),
  },
  typing: { summary: 'A member is typing (to the other members)', payload: ref('TypingEvent') },
  'typing:stopped': { summary: 'A member stopped typing', payload: ref('TypingEvent') },
  presence: { summary: "A followed user's status changed", payload: dto<PresenceEvent>({ userId: UUID, status: ref('PresenceStatus') }) },
};

/** The socket-only shapes, beside the DTOs shared with the OpenAPI document. */
const SOCKET_SCHEMAS: Record<string, JsonSchema> = {
  MessageUpdated: dto<MessageUpdated>({ channelId: UUID, rev: REV, message: ref('Message') }),
  MessageDeleted: dto<MessageDeleted>({ channelId: UUID, rev: REV, messageId: UUID, seq: { type: 'integer', minimum: 1 } }),
  ReactionChanged: dto<ReactionChanged>({ channelId: UUID, rev: REV, messageId: UUID, emoji: { type: 'string' }, userId: UUID }),
  SyncChannelAck: {
    anyOf: [
      object({ replayed: { type: 'integer', minimum: 0 }, latestSeq: { type: 'integer', minimum: 0 }, latestRev: { type: 'integer', minimum: 0 }, hasMore: { type: 'boolean' } }, [], 'resumed by seq'),
      object({ replayed: { type: 'integer', minimum: 0 }, latestRev: { type: 'integer', minimum: 0 }, hasMore: { type: 'boolean' } }, [], 'resumed by rev'),
      object({ error: ref('ErrorBody') }, [], 'an unknown or foreign channel'),
    ],
  },
  TypingEvent: dto<TypingEvent>({ channelId: UUID, userId: UUID }),
  PresenceStatus: { type: 'string', enum: ['online', 'offline'] },
  HandshakeAuth: {
    ...joiToJsonSchema(handshakeSchema, 'json'),
    description: 'The handshake `auth`: `token`, and `resume` (channelId → lastSeq, or `{rev: lastRev}`) to replay what was missed.',
  },
};

/** `message:send` → `message.send`: AsyncAPI component keys allow no colon. */
const key = (event: string) => event.replace(/:/g, '.');

/** The AsyncAPI 3.0 document of the default namespace. */
export function buildAsyncApiDocument(info: DocumentInfo): JsonSchema {
  const channelRef = { $ref: '#/channels/socket' };
  const messages: Record<string, JsonSchema> = {};
  const operations: Record<string, JsonSchema> = {};
  for (const [event, doc] of Object.entries(CLIENT_EVENTS)) {
    messages[key(event)] = { name: event, title: event, summary: doc.summary, ...(doc.description && { description: doc.description }), payload: joiToJsonSchema(doc.schema, 'json') };
    messages[`${key(event)}.ack`] = { name: `${event} ack`, title: `${event} ack`, summary: `The ack of ${event}`, payload: doc.ack };
    operations[`receive.${key(event)}`] = {
      action: 'receive',
      title: event,
      summary: doc.summary,
      channel: channelRef,
      messages: [{ $ref: `#/channels/socket/messages/${key(event)}` }],
      reply: { channel: channelRef, messages: [{ $ref: `#/channels/socket/messages/${key(event)}.ack` }] },
    };
  }
  for (const [event, doc] of Object.entries(SERVER_EVENTS)) {
    messages[key(event)] = { name: event, title: event, summary: doc.summary, ...(doc.description && { description: doc.description }), payload: doc.payload };
    operations[`send.${key(event)}`] = {
      action: 'send',
      title: event,
      summary: doc.summary,
      channel: channelRef,
      messages: [{ $ref: `#/channels/socket/messages/${key(event)}` }],
    };
  }
  return {
    asyncapi: '3.0.0',
    info,
    defaultContentType: 'application/json',
    servers: {
      frontNode: {
        host: 'localhost:3000',
        protocol: 'ws',
        pathname: '/socket.io/',
        description:
          'A front node, through Socket.IO 4 (any transport: HTTP long-polling, then WebSocket, or WebSocket only). The handshake `auth` is `HandshakeAuth`; a refused handshake is a `connect_error` whose message is the error code.',
        security: [{ $ref: '#/components/securitySchemes/token' }],
      },
    },
    channels: {
      socket: {
        address: '/',
        title: 'The default namespace',
        description: 'Every event of a socket, both ways; each client event is acked through Socket.IO acknowledgements.',
        messages: Object.fromEntries(Object.keys(messages).map((name) => [name, { $ref: `#/components/messages/${name}` }])),
      },
    },
    operations,
    components: {
      schemas: { ...COMPONENT_SCHEMAS, ...SOCKET_SCHEMAS },
      messages,
      securitySchemes: {
        token: { type: 'http', scheme: 'bearer', bearerFormat: 'JWT', description: 'The REST token, sent as the handshake `auth.token` (not a header).' },
      },
    },
  };
}
