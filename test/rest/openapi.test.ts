/**
 * The API reference: the OpenAPI 3.1 document of the REST routes and the AsyncAPI 3 document of the
 * socket events, as a running front node serves them. Each is checked against the product itself: the
 * routes its router has, the events its socket server listens to, the Joi schemas its handlers validate
 * with, and the answers and events it really sends.
 */
import { expect } from 'chai';
import { Validator } from '@seriousme/openapi-schema-validator';
import specs from '@asyncapi/specs';
import { Ajv, type ValidateFunction } from 'ajv';
import { Ajv2020 } from 'ajv/dist/2020.js';
import ajvFormats from 'ajv-formats';
import { io } from 'socket.io-client';
import { loadConfig } from '../../shared/config.js';
import { routeGroups } from '../../server/http/docs.js';
import { EXAMPLE_USER_ID } from '../../server/http/openapi.js';
import { parse } from '../../server/http/validation.js';
import { createWorkerNode, type WorkerNode } from '../../worker/app.js';
import {
  API,
  addChannelMember,
  addWorkspaceMember,
  createChannel,
  createWorkspace,
  registerUser,
  request,
  startApi,
  type StartedApi,
} from '../support/api.js';
import { listRoutes } from '../support/routes.js';
import { connect, disconnectAll, sendOk, waitFor, type ClientSocket } from '../support/sockets.js';

type Json = Record<string, any>;

// ajv-formats is CommonJS: its function is both `module.exports` and `default`.
const addFormats = ((ajvFormats as unknown as { default?: typeof ajvFormats }).default ?? ajvFormats) as unknown as (ajv: Ajv | Ajv2020) => void;

/** Socket.IO's own events, which no client emits. */
const RESERVED = new Set(['disconnect', 'disconnecting', 'error', 'connect', 'connect_error', 'newListener', 'removeListener']);

const key = (method: string, path: string) => `${method.toUpperCase()} ${path}`;

/** The document's operations: `GET /api/v1/channels/{channelId}` → its operation object. */
function operations(doc: Json): Map<string, Json> {
  const out = new Map<string, Json>();
  for (const [path, item] of Object.entries(doc.paths as Json)) {
    for (const [method, op] of Object.entries(item as Json)) out.set(key(method, path), op as Json);
  }
  return out;
}

/** A validator of schemas that point into `doc`'s components (`#/components/schemas/…`). */
function schemaValidator(ajv: Ajv | Ajv2020, doc: Json, id: string): (schema: Json) => ValidateFunction {
  ajv.addSchema({ $id: id, components: doc.components }, id);
  const cache = new Map<string, ValidateFunction>();
  return (schema) => {
    const text = JSON.stringify(schema).replaceAll('"#/components/', `"${id}#/components/`);
    let validate = cache.get(text);
    if (!validate) {
      validate = ajv.compile(JSON.parse(text));
      cache.set(text, validate);
    }
    return validate;
  };
}

describe('API reference documents', function () {
  let worker: WorkerNode;
  let api: StartedApi;
  let base: string;
  let openApi: Json;
  let asyncApi: Json;

  before(async function () {
    // A Redis prefix of its own (queues, and the registrations' per-address budget).
    const env = { REDIS_PREFIX: `${process.env.REDIS_PREFIX}.openapi` };
    // The worker first: Objection's models are bound to the knex created last, the front node's.
    worker = createWorkerNode(loadConfig({ ...process.env, ...env }));
    await worker.start();
    api = await startApi(env);
    base = api.baseUrl;
    const [o, a] = await Promise.all([request(base, 'GET', `${API}/openapi.json`), request(base, 'GET', `${API}/asyncapi.json`)]);
    expect(o.status, o.text).to.equal(200);
    expect(o.headers.get('content-type')).to.match(/^application\/json/);
    expect(a.status, a.text).to.equal(200);
    openApi = o.body;
    asyncApi = a.body;
  });

  after(async function () {
    disconnectAll();
    await api?.stop();
    await worker?.stop();
  });

  describe('OpenAPI', function () {
    it('When GET /api/v1/openapi.json is fetched, then it is a valid OpenAPI 3.1 document', async function () {
      expect(openApi.openapi).to.equal('3.1.0');
      const result = await new Validator().validate(openApi as never);
      expect(result.errors ?? [], JSON.stringify(result.errors)).to.deep.equal([]);
      expect(result.valid).to.equal(true);
    });

    it('When the router lists its REST routes, then the document has each with its method and path, and no other', function () {
      const routed = listRoutes().map((r) => key(r.method, r.path.replace(/:([A-Za-z0-9_]+)/g, '{$1}')));
      const documented = [...operations(openApi).keys()];
      expect(routed.length).to.be.greaterThan(20);
      expect(documented.filter((k) => !routed.includes(k)), 'documented, but the router has no such route').to.deep.equal([]);
      expect(routed.filter((k) => !documented.includes(k)), 'routes missing from the document').to.deep.equal([]);
    });

    it('When each example of the document is validated with the Joi schema its route validates with, then it is valid', function () {
      const ops = operations(openApi);
      let examples = 0;
      for (const { prefix, routes } of routeGroups(API)) {
        for (const route of routes) {
          const op = ops.get(key(route.method, prefix + route.path.replace(/:([A-Za-z0-9_]+)/g, '{$1}')))!;
          if (route.body) {
            // The user the examples name: here the workspace member outside the channel.
        const example = op.requestBody?.content?.['application/json']?.example;
            expect(example, `${route.method} ${route.path}: the document's body example`).to.be.an('object');
            expect(() => parse(route.body!, example), `${route.method} ${route.path} body example`).to.not.throw();
            examples++;
          }
          if (route.query) {
            // As Express hands the query string over: every value a string.
            const query = Object.fromEntries(
              (op.parameters as Json[]).filter((p) => p.in === 'query' && p.example !== undefined).map((p) => [p.name, String(p.example)]),
            );
            expect(Object.keys(query), `${route.method} ${route.path}: the document's query examples`).to.not.be.empty;
            expect(() => parse(route.query!, query), `${route.method} ${route.path} query example`).to.not.throw();
            examples++;
          }
        }
      }
      expect(examples).to.be.greaterThan(10);
    });

    it('When every route is called with its example on a running node, then each answers a documented success, with a body of the documented schema', async function () {
      this.timeout(120_000);
      const ajv = new Ajv2020({ strict: false, allErrors: true });
      addFormats(ajv);
      const validator = schemaValidator(ajv, openApi, 'openapi.json');
      // The add-member example names this user, so that it is added.
      await registerUser(base, { email: 'grace@example.com' });
      // Callers other than the workspace owner: the last owner cannot leave.
      const BY_MEMBER = new Set([`POST ${API}/workspaces/{workspaceId}/leave`]);

      for (const [name, op] of operations(openApi)) {
        // Fresh people and things for each route, so no route's effect (a logout, a removal) changes another's answer.
        const owner = await registerUser(base, { password: 'correct horse' });
        const member = await registerUser(base);
        const outside = await registerUser(base);
        const workspace = await createWorkspace(base, owner.token);
        await addWorkspaceMember(base, owner.token, workspace.id, member.email);
        await addWorkspaceMember(base, owner.token, workspace.id, outside.email);
        const channel = await createChannel(base, owner.token, workspace.id);
        await addChannelMember(base, owner.token, channel.id, member.user.id);
        const sent = await request(base, 'POST', `/channels/${channel.id}/messages`, { token: owner.token, body: { body: 'Hi' } });
        expect(sent.status, sent.text).to.equal(201);
        const values: Record<string, string> = {
          workspaceId: workspace.id,
          channelId: channel.id,
          messageId: sent.body.message.id,
          userId: member.user.id,
          emoji: 'thumbsup',
        };

        const [method, template] = name.split(' ');
        const path = template.replace(/\{([A-Za-z0-9_]+)\}/g, (_m, param: string) => encodeURIComponent(values[param]));
        const query = (op.parameters as Json[] | undefined)?.filter((p) => p.in === 'query' && p.example !== undefined) ?? [];
        const url = path + (query.length > 0 ? `?${new URLSearchParams(query.map((p) => [p.name, String(p.example)]))}` : '');
        const token = op.security?.length === 0 ? undefined : BY_MEMBER.has(name) ? member.token : owner.token;
        // The user the examples name: here the workspace member outside the channel.
        const example = op.requestBody?.content?.['application/json']?.example;
        const body = example && JSON.parse(JSON.stringify(example).replaceAll(EXAMPLE_USER_ID, outside.user.id));
        const res = await request(base, method, url, { token, body });

        expect(res.status, `${name}: ${res.text}`).to.not.equal(400);
        expect(Object.keys(op.responses), `${name}: ${res.status} is a documented answer`).to.include(String(res.status));
        expect(res.status, `${name}: ${res.text}`).to.be.within(200, 299);
        const schema = op.responses[String(res.status)].content?.['application/json']?.schema;
        if (!schema) {
          expect(res.text, `${name}: no body documented`).to.equal('');
          continue;
        }
        const validate = validator(schema);
        expect(validate(res.body), `${name} ${res.status}: ${ajv.errorsText(validate.errors)}\n${res.text}`).to.equal(true);
      }
    });

    it('When each route is called without a token, with a malformed id or with an unknown field, then the refusal is one the document lists for it, with its code and shape', async function () {
      this.timeout(60_000);
      const ajv = new Ajv2020({ strict: false, allErrors: true });
      addFormats(ajv);
      const validator = schemaValidator(ajv, openApi, 'openapi.json');
      const user = await registerUser(base);
      let refusals = 0;
      for (const [name, op] of operations(openApi)) {
        const [method, template] = name.split(' ');
        const hasParams = template.includes('{');
        const cases: Array<{ what: string; path: string; token?: string; body?: object }> = [];
        if (op.security?.length !== 0) cases.push({ what: 'no token', path: template });
        if (hasParams) cases.push({ what: 'a malformed id', path: template.replace(/\{[A-Za-z0-9_]+\}/g, 'not-an-id'), token: user.token });
        if (op.requestBody) cases.push({ what: 'an unknown field', path: template.replace(/\{[A-Za-z0-9_]+\}/g, 'not-an-id'), token: user.token, body: { unknownField: 1 } });
        for (const c of cases) {
          const res = await request(base, method, c.path, { token: c.token, body: c.body });
          const what = `${name} with ${c.what}: ${res.status} ${res.text}`;
          expect(res.status, what).to.be.within(400, 499);
          const schema = op.responses[String(res.status)]?.content?.['application/json']?.schema;
          expect(schema, `${what}: documented`).to.not.equal(undefined);
          const validate = validator(schema);
          expect(validate(res.body), `${what}: ${ajv.errorsText(validate.errors)}`).to.equal(true);
          refusals++;
        }
      }
      expect(refusals).to.be.greaterThan(50);
    });
  });

  describe('AsyncAPI', function () {
    it('When GET /api/v1/asyncapi.json is fetched, then it is a valid AsyncAPI 3.0 document', function () {
      expect(asyncApi.asyncapi).to.equal('3.0.0');
      const ajv = new Ajv({ strict: false, allErrors: true });
      addFormats(ajv);
      const validate = ajv.compile(specs.schemasWithoutId['3.0.0'] as object);
      expect(validate(asyncApi), ajv.errorsText(validate.errors)).to.equal(true);
    });

    it('When a socket connects, then each event its server-side socket listens to is a documented receive operation, and no other is', async function () {
      const user = await registerUser(base);
      const socket = await connect(base, user.token);
      const serverSide = api.node.io.of('/').sockets.get(socket.id!);
      expect(serverSide, 'the in-process node has the connected socket').to.not.equal(undefined);
      const handled = serverSide!.eventNames().map(String).filter((e) => !RESERVED.has(e)).sort();
      socket.close();
      const received = Object.values(asyncApi.operations as Json)
        .filter((op) => op.action === 'receive')
        .map((op) => op.title as string)
        .sort();
      expect(handled).to.include.members(['message:send', 'sync', 'channel:read']);
      expect(received).to.deep.equal(handled);
    });

    it('When a client emits each event with a payload of its documented schema, then the ack and every event the server sends are documented, with payloads of their schemas', async function () {
      this.timeout(60_000);
      const ajv = new Ajv({ strict: false, allErrors: true });
      addFormats(ajv);
      const validator = schemaValidator(ajv, asyncApi, 'asyncapi.json');
      const messages = asyncApi.components.messages as Json;
      const byName = new Map(Object.values(messages).map((m: Json) => [m.name as string, m]));
      const check = (name: string, payload: unknown) => {
        const message = byName.get(name);
        expect(message, `${name} is documented`).to.not.equal(undefined);
        const validate = validator(message!.payload);
        expect(validate(payload), `${name}: ${ajv.errorsText(validate.errors)}\n${JSON.stringify(payload)}`).to.equal(true);
      };

      const owner = await registerUser(base);
      const member = await registerUser(base);
      const workspace = await createWorkspace(base, owner.token);
      await addWorkspaceMember(base, owner.token, workspace.id, member.email);
      const channel = await createChannel(base, owner.token, workspace.id);
      await addChannelMember(base, owner.token, channel.id, member.user.id);

      const seen: Array<[string, unknown]> = [];
      const sockets: ClientSocket[] = [];
      /** A socket whose every incoming event is recorded, from the handshake's `sync:done` on. */
      const open = async (token: string, resume?: object) => {
        const s = io(base, { auth: { token, ...(resume && { resume }) }, transports: ['websocket'], forceNew: true, reconnection: false });
        sockets.push(s);
        s.onAny((event: string, payload: unknown) => seen.push([event, payload]));
        await new Promise<void>((resolve, reject) => {
          s.once('connect', resolve);
          s.once('connect_error', reject);
        });
        return s;
      };
      const emit = async (socket: ClientSocket, event: string, payload: object) => {
        check(event, payload);
        const ack = await socket.timeout(15_000).emitWithAck(event, payload);
        check(`${event} ack`, ack);
        return ack;
      };

      const b = await open(member.token);
      // Before the owner connects, so that their going online is a change.
      await emit(b, 'presence:subscribe', { userIds: [owner.user.id] });
      const a = await open(owner.token);
      const message = await sendOk(a, { channelId: channel.id, body: `Hello <@${member.user.id}>`, clientMsgId: 'asyncapi-1' });
      await emit(a, 'message:send', { channelId: channel.id, body: 'A reply', clientMsgId: 'asyncapi-2', parentId: message.id });
      await emit(a, 'message:edit', { channelId: channel.id, messageId: message.id, body: 'Hello again', clientChangeId: 'asyncapi-3' });
      await emit(b, 'reaction:add', { channelId: channel.id, messageId: message.id, emoji: 'thumbsup' });
      await emit(b, 'reaction:remove', { channelId: channel.id, messageId: message.id, emoji: 'thumbsup' });
      await emit(b, 'channel:read', { channelId: channel.id, seq: 1 });
      await emit(b, 'sync', { channels: { [channel.id]: { rev: 0 } } });
      await emit(a, 'typing:start', { channelId: channel.id });
      await emit(a, 'typing:stop', { channelId: channel.id });
      await emit(a, 'message:delete', { channelId: channel.id, messageId: message.id });
      const renamed = await request(base, 'PATCH', `/channels/${channel.id}`, { token: owner.token, body: { topic: 'Docs' } });
      expect(renamed.status, renamed.text).to.equal(200);
      await open(owner.token, { [channel.id]: 0 });
      await emit(b, 'presence:unsubscribe', { userIds: [owner.user.id] });
      const logout = await request(base, 'POST', '/auth/logout', { token: member.token });
      expect(logout.status, logout.text).to.equal(204);

      const expected = ['message:new', 'message:updated', 'message:deleted', 'reaction:added', 'reaction:removed', 'channel:read', 'sync:done', 'typing', 'typing:stopped', 'channel:updated', 'session:revoked', 'presence'];
      await waitFor(() => expected.every((name) => seen.some(([event]) => event === name)), 15_000).catch(() => {});
      expect([...new Set(seen.map(([event]) => event))]).to.include.members(expected);
      const sent = new Set(Object.values(asyncApi.operations as Json).filter((op) => op.action === 'send').map((op) => op.title as string));
      for (const [event, payload] of seen) {
        expect(sent.has(event), `${event} is a documented send operation`).to.equal(true);
        check(event, payload);
      }
      for (const s of sockets) s.close();
    });
  });
});
