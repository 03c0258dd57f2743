/**
 * The REST API's OpenAPI 3.1 document, generated from what the routes themselves use: each router file
 * exports a description of its routes (`RouteDoc[]`) beside the Joi schemas it validates requests with,
 * and the request schemas here are those very objects, converted by joi-to-json. Response bodies are the
 * DTOs of shared/models and the domain, described once below as JSON Schema components (each checked
 * against its TypeScript type's fields at compile time), and the errors are the contract's.
 */
import joiToJsonModule from 'joi-to-json';
import { ERROR_STATUS, type ErrorBody, type ErrorCode } from '../../shared/errors.js';
import type { ChannelDto, ChannelKind, MessageDto, ReactionDto, UserDto, WorkspaceDto, WorkspaceRole } from '../../shared/models/index.js';
import Joi from '../../shared/validation.js';
import type { ChannelListItem, ChannelMemberDto } from '../domain/channels.js';
import type { DmDto, DmListItem } from '../domain/dms.js';
import type { ReadState, UnreadChannel } from '../domain/readState.js';
import type { SearchHit, SearchPage } from '../domain/search.js';
import type { MemberDto } from '../domain/workspaces.js';

export type JsonSchema = { [keyword: string]: unknown };

/** One REST route as the reference shows it; `path` in Express form, under /api/v1. */
export interface RouteDoc {
  method: 'get' | 'post' | 'put' | 'patch' | 'delete';
  path: string;
  summary: string;
  description?: string;
  /** Whether a bearer token is needed (default true). */
  auth?: boolean;
  /** The Joi schema the handler validates its query string with. */
  query?: Joi.ObjectSchema;
  /** The Joi schema the handler validates its JSON body with. */
  body?: Joi.ObjectSchema;
  /** The body may be left out (it then validates as `{}`). */
  bodyOptional?: boolean;
  /** Success answers by status; no schema: no body (204). */
  responses: { [status: number]: { description: string; schema?: JsonSchema; headers?: Record<string, string> } };
  /**
   * The refusals particular to this route. Those of every route of its kind are added: UNAUTHORIZED and
   * RATE_LIMITED behind a token, NOT_FOUND with a path parameter, VALIDATION_FAILED with a body or query,
   * PAYLOAD_TOO_LARGE with a body, SERVICE_UNAVAILABLE everywhere.
   */
  errors: ErrorCode[];
  /** A valid request (the tests check it against `body`/`query` and send it). Required with a body or query. */
  example?: { body?: object; query?: Record<string, string | number> };
}

// --- JSON Schema helpers -------------------------------------------------------------------------

export const ref = (name: string): JsonSchema => ({ $ref: `#/components/schemas/${name}` });
export const arrayOf = (items: JsonSchema, description?: string): JsonSchema => ({ type: 'array', items, ...(description && { description }) });
export const nullable = (schema: JsonSchema): JsonSchema => ({ anyOf: [schema, { type: 'null' }] });

/** An object whose properties are all present unless named in `optional`. */
export function object(properties: Record<string, JsonSchema>, optional: readonly string[] = [], description?: string): JsonSchema {
  const required = Object.keys(properties).filter((key) => !optional.includes(key));
  return { type: 'object', properties, ...(required.length > 0 && { required }), ...(description && { description }) };
}

/**
 * A DTO's schema: the compiler checks that `properties` names every field of `T` and no other, so a field
 * added to a DTO fails the type check until it is described here.
 */
export function dto<T>(properties: { [K in keyof Required<T>]: JsonSchema }, optional: ReadonlyArray<keyof T> = [], description?: string): JsonSchema {
  return object(properties as Record<string, JsonSchema>, optional as readonly string[], description);
}

const UUID: JsonSchema = { type: 'string', format: 'uuid' };
const TIME: JsonSchema = { type: 'string', format: 'date-time' };
const COUNT: JsonSchema = { type: 'integer', minimum: 0 };
const ROLE: JsonSchema = { type: 'string', enum: ['owner', 'admin', 'member', 'guest'] satisfies WorkspaceRole[] };
const CHANNEL_KIND: JsonSchema = { type: 'string', enum: ['channel', 'dm'] satisfies ChannelKind[] };
export const TOKEN: JsonSchema = { type: 'string', description: 'A JWT (HS256): send it as `Authorization: Bearer <token>`' };

/**
 * The response bodies' shapes (docs/API.md), shared with the AsyncAPI document (server/realtime/asyncapi.ts).
 * Open objects: a client must ignore fields it does not know.
 */
export const COMPONENT_SCHEMAS: Record<string, JsonSchema> = {
  User: dto<UserDto>({ id: UUID, email: { type: 'string', format: 'email' }, displayName: { type: 'string' }, createdAt: TIME }),
  Workspace: dto<WorkspaceDto>({ id: UUID, name: { type: 'string' }, createdAt: TIME }),
  WorkspaceListItem: dto<{ id: string; name: string; role: WorkspaceRole }>({ id: UUID, name: { type: 'string' }, role: ROLE }),
  WorkspaceMember: dto<MemberDto>({ userId: UUID, displayName: { type: 'string' }, role: ROLE }),
  Channel: dto<ChannelDto>({
    id: UUID,
    workspaceId: UUID,
    kind: CHANNEL_KIND,
    name: { type: ['string', 'null'], description: 'null for a DM' },
    isPrivate: { type: 'boolean' },
    topic: { type: 'string' },
    archived: { type: 'boolean', description: 'sends, edits, deletes, reactions and joins refused (FORBIDDEN); history and members kept' },
    createdAt: TIME,
  }),
  ChannelListItem: {
    allOf: [
      ref('Channel'),
      dto<Omit<ChannelListItem, keyof ChannelDto>>(
        { isMember: { type: 'boolean' }, lastSeq: COUNT, lastReadSeq: COUNT, unreadCount: COUNT, mentionCount: COUNT },
        ['lastSeq', 'lastReadSeq', 'unreadCount', 'mentionCount'],
        'the read state only on channels the caller is in',
      ),
    ],
  },
  ChannelMember: dto<ChannelMemberDto>({ userId: UUID, displayName: { type: 'string' } }),
  Dm: { allOf: [ref('Channel'), dto<Omit<DmDto, keyof ChannelDto>>({ members: arrayOf(ref('ChannelMember')) })] },
  DmListItem: {
    allOf: [
      ref('Dm'),
      dto<Omit<DmListItem, keyof DmDto>>({ lastActivityAt: TIME, lastSeq: COUNT, lastReadSeq: COUNT, unreadCount: COUNT, mentionCount: COUNT }),
    ],
  },
  Reaction: dto<ReactionDto>({ emoji: { type: 'string' }, count: { type: 'integer', minimum: 1 }, userIds: arrayOf(UUID, 'the first 50 who reacted, in order') }),
  Message: dto<MessageDto>({
    id: UUID,
    channelId: UUID,
    seq: { type: 'integer', minimum: 1, description: "its position in the channel: 1, 2, 3, … without gaps" },
    rev: { type: 'integer', minimum: 1, description: "the channel rev of the message's latest change" },
    userId: UUID,
    body: { type: 'string', description: '"" once deleted' },
    clientMsgId: { type: ['string', 'null'] },
    parentId: { ...nullable(UUID), description: 'for a reply, the top-level message whose thread it is in' },
    createdAt: TIME,
    editedAt: nullable(TIME),
    deleted: { type: 'boolean' },
    replyCount: COUNT,
    lastReplyAt: nullable(TIME),
    reactions: arrayOf(ref('Reaction')),
    mentions: arrayOf(UUID, 'the channel members mentioned as <@userId>, ascending'),
  }),
  MessagePage: object({ messages: arrayOf(ref('Message'), 'ascending by seq'), hasMore: { type: 'boolean' } }),
  UnreadChannel: dto<UnreadChannel>({
    channelId: UUID,
    workspaceId: UUID,
    kind: CHANNEL_KIND,
    name: { type: ['string', 'null'], description: 'null for a DM' },
    lastSeq: COUNT,
    lastReadSeq: COUNT,
    unreadCount: COUNT,
    mentionCount: COUNT,
  }),
  ReadState: dto<ReadState>({ channelId: UUID, seq: COUNT }),
  SearchHit: dto<SearchHit>({
    message: ref('Message'),
    channel: ref('Channel'),
    snippet: { type: 'string', description: 'HTML: the body escaped, each match in <mark>…</mark>' },
  }),
  SearchPage: dto<SearchPage>({
    results: arrayOf(ref('SearchHit'), 'newest first'),
    nextBefore: { type: ['string', 'null'], description: 'the `before` of the next page; null on the last' },
  }),
  ErrorBody: dto<ErrorBody>(
    { code: { type: 'string', enum: Object.keys(ERROR_STATUS) }, message: { type: 'string' }, details: { description: 'what was wrong, for VALIDATION_FAILED and RATE_LIMITED' } },
    ['details'],
  ),
  Error: object({ error: ref('ErrorBody') }),
};

// --- Joi → JSON Schema -----------------------------------------------------------------------------

type Mode = 'open-api-3.1' | 'json';

// A CommonJS module whose `module.exports` is the function; its typings declare it as a named export.
const joiToJson = joiToJsonModule as unknown as typeof joiToJsonModule.parse;

/**
 * A Joi schema as JSON Schema (joi-to-json), with what it leaves out put back: objects keyed by a schema
 * (`Joi.object().pattern(Joi.string(), …)`, the socket `sync` marks) and objects' key counts.
 */
export function joiToJsonSchema(schema: Joi.Schema, mode: Mode = 'open-api-3.1'): JsonSchema {
  const out = joiToJson(schema as never, mode) as JsonSchema;
  repair(schema.describe(), out, mode);
  return out;
}

interface Described {
  type?: string;
  keys?: Record<string, Described>;
  items?: Described[];
  patterns?: Array<{ schema?: Described; regex?: string; rule: Described }>;
  rules?: Array<{ name: string; args?: { limit?: number } }>;
}

function repair(description: Described, out: JsonSchema, mode: Mode): void {
  if (description.type === 'object') {
    const properties = out.properties as Record<string, JsonSchema> | undefined;
    for (const [key, child] of Object.entries(description.keys ?? {})) {
      if (properties?.[key]) repair(child, properties[key], mode);
    }
    for (const pattern of description.patterns ?? []) {
      if (pattern.schema) {
        out.propertyNames = joiToJsonSchema(Joi.build(pattern.schema as never), mode);
        out.additionalProperties = joiToJsonSchema(Joi.build(pattern.rule as never), mode);
      } else if (pattern.regex && properties) {
        // Also listed as a property named after the regex, which no key matches.
        delete properties[pattern.regex];
      }
    }
    for (const rule of description.rules ?? []) {
      const limit = rule.args?.limit;
      if (limit === undefined) continue;
      if (rule.name === 'min' || rule.name === 'length') out.minProperties = limit;
      if (rule.name === 'max' || rule.name === 'length') out.maxProperties = limit;
    }
  } else if (description.type === 'string') {
    // Our own rules (shared/validation.ts), which joi-to-json does not know: characters, as JSON Schema counts them.
    for (const rule of description.rules ?? []) {
      if (rule.name === 'minChars' && rule.args?.limit) out.minLength = rule.args.limit;
      if (rule.name === 'maxChars' && rule.args?.limit !== undefined) out.maxLength = rule.args.limit;
    }
  } else if (description.type === 'array' && description.items?.length === 1 && out.items && typeof out.items === 'object') {
    repair(description.items[0], out.items as JsonSchema, mode);
  }
}

// --- The document ------------------------------------------------------------------------------------

/** The user id the examples name (a path's `userId`, a body's `userId`/`userIds`). */
export const EXAMPLE_USER_ID = 'c2d8f4a6-1b3e-4c5d-9e7f-0a1b2c3d4e42';

/** Path parameters by name: every id is a UUID, and one that cannot exist is a 404 like any unknown one. */
const PATH_PARAMETERS: Record<string, { description: string; schema: JsonSchema; example: string }> = {
  workspaceId: { description: 'a workspace id', schema: UUID, example: '0b7c4f5e-8a1d-4c1e-9a57-3f0d2a6b9c11' },
  channelId: { description: 'a channel id (DMs too)', schema: UUID, example: '5e0c1a7d-2b3f-4d8e-a1c9-7f6b2e4d8a20' },
  messageId: { description: 'a message id', schema: UUID, example: '9a1e6c3b-4d2f-4e7a-8b5c-1d0f3a2e6b31' },
  userId: { description: 'a user id', schema: UUID, example: EXAMPLE_USER_ID },
  emoji: {
    description: 'a short name `^[a-z0-9_+-]{1,64}$` or exactly one Unicode emoji grapheme, URL-encoded',
    schema: { type: 'string', minLength: 1 },
    example: 'thumbsup',
  },
};

/** Express `:param` → OpenAPI `{param}`. */
export const toOpenApiPath = (expressPath: string) => expressPath.replace(/:([A-Za-z0-9_]+)/g, '{$1}');

const ERROR_MEANING: Record<ErrorCode, string> = {
  VALIDATION_FAILED: 'malformed JSON, or a missing, unknown or invalid field (`details` lists them)',
  UNAUTHORIZED: 'missing, bad, expired or revoked token',
  INVALID_CREDENTIALS: 'wrong email or password',
  FORBIDDEN: 'your role or the channel does not allow it',
  NOT_FOUND: 'no such thing, or not visible to you (another workspace, a private channel you are not in, a malformed id)',
  CONFLICT: 'already exists',
  PAYLOAD_TOO_LARGE: 'body over 64 KB',
  RATE_LIMITED: 'a budget is spent: wait `Retry-After` seconds (`details.retryAfterSeconds`)',
  INTERNAL: 'never expected',
  SERVICE_UNAVAILABLE: 'PostgreSQL or Redis unreachable; retry',
};

/** A route's refusals: its own and those of every route of its kind, each code once, by status. */
function errorResponses(route: RouteDoc): Record<string, JsonSchema> {
  const codes = new Set<ErrorCode>(route.errors);
  if (route.auth !== false) (['UNAUTHORIZED', 'RATE_LIMITED'] as const).forEach((c) => codes.add(c));
  // A malformed id is answered like an unknown one.
  if (route.path.includes(':')) codes.add('NOT_FOUND');
  if (route.body || route.query) codes.add('VALIDATION_FAILED');
  if (route.body) codes.add('PAYLOAD_TOO_LARGE');
  codes.add('SERVICE_UNAVAILABLE');
  const byStatus = new Map<number, ErrorCode[]>();
  for (const code of Object.keys(ERROR_STATUS) as ErrorCode[]) {
    if (codes.has(code)) byStatus.set(ERROR_STATUS[code], [...(byStatus.get(ERROR_STATUS[code]) ?? []), code]);
  }
  const responses: Record<string, JsonSchema> = {};
  for (const [status, list] of byStatus) {
    responses[String(status)] = {
      description: list.map((code) => `\`${code}\`: ${ERROR_MEANING[code]}`).join('; '),
      ...(status === 429 && { headers: { 'Retry-After': { description: 'seconds to wait', schema: { type: 'integer' } } } }),
      content: {
        'application/json': {
          schema: {
            allOf: [ref('Error'), object({ error: object({ code: { type: 'string', enum: list } }, [], undefined) })],
          },
        },
      },
    };
  }
  return responses;
}

/** `post /channels/:channelId/messages` → `postChannelsChannelIdMessages`. */
function operationId(route: RouteDoc): string {
  const words = route.path.split(/[^A-Za-z0-9]+/).filter(Boolean);
  return route.method + words.map((word) => word[0].toUpperCase() + word.slice(1)).join('');
}

function operation(route: RouteDoc): JsonSchema {
  const parameters: JsonSchema[] = [];
  for (const [, name] of route.path.matchAll(/:([A-Za-z0-9_]+)/g)) {
    const param = PATH_PARAMETERS[name];
    if (!param) throw new Error(`${route.method.toUpperCase()} ${route.path}: path parameter :${name} is not described in PATH_PARAMETERS`);
    parameters.push({ name, in: 'path', required: true, ...param });
  }
  if (route.query) {
    const query = joiToJsonSchema(route.query);
    const required = (query.required as string[] | undefined) ?? [];
    for (const [name, schema] of Object.entries(query.properties as Record<string, JsonSchema>)) {
      const example = route.example?.query?.[name];
      parameters.push({ name, in: 'query', required: required.includes(name), schema, ...(example !== undefined && { example }) });
    }
  }
  if ((route.body || route.query) && !route.example) {
    throw new Error(`${route.method.toUpperCase()} ${route.path}: a route with a body or a query needs an example`);
  }
  const successes: Record<string, JsonSchema> = {};
  for (const [status, { description, schema, headers }] of Object.entries(route.responses)) {
    successes[status] = {
      description,
      ...(headers && { headers: Object.fromEntries(Object.entries(headers).map(([name, about]) => [name, { description: about, schema: { type: 'string' } }])) }),
      ...(schema && { content: { 'application/json': { schema } } }),
    };
  }
  return {
    operationId: operationId(route),
    summary: route.summary,
    ...(route.description && { description: route.description }),
    tags: [route.path.split('/')[1]],
    ...(route.auth === false && { security: [] }),
    ...(parameters.length > 0 && { parameters }),
    ...(route.body && {
      requestBody: {
        required: !route.bodyOptional,
        content: { 'application/json': { schema: joiToJsonSchema(route.body), ...(route.example?.body && { example: route.example.body }) } },
      },
    }),
    responses: { ...successes, ...errorResponses(route) },
  };
}

export interface DocumentInfo {
  title: string;
  version: string;
  description: string;
}

/** Routes whose paths are under `prefix` (`/api/v1`, or `''`). */
export interface RouteGroup {
  prefix: string;
  routes: readonly RouteDoc[];
}

/** The OpenAPI 3.1 document of the routes of `groups`. */
export function buildOpenApiDocument(groups: readonly RouteGroup[], info: DocumentInfo): JsonSchema {
  const paths: Record<string, Record<string, JsonSchema>> = {};
  for (const { prefix, routes } of groups) {
    for (const route of routes) {
      const path = prefix + toOpenApiPath(route.path);
      paths[path] ??= {};
      if (paths[path][route.method]) throw new Error(`${route.method.toUpperCase()} ${path} is described twice`);
      paths[path][route.method] = operation(route);
    }
  }
  return {
    openapi: '3.1.0',
    info,
    servers: [{ url: '/', description: 'this front node' }],
    security: [{ bearer: [] }],
    paths,
    components: {
      schemas: COMPONENT_SCHEMAS,
      securitySchemes: { bearer: { type: 'http', scheme: 'bearer', bearerFormat: 'JWT', description: 'the `token` of register or login' } },
    },
  };
}
