/**
 * REST test harness: one in-process front node on a free port, a tiny fetch wrapper, and seeding
 * helpers that go through the public HTTP API only (no database shortcuts), so any test file may use them.
 */
import { expect } from 'chai';
import { randomBytes } from 'node:crypto';
import { createFrontNode, type FrontNode } from '../../server/app.js';
import { loadConfig, type Config } from '../../shared/config.js';
import type { Logger } from '../../shared/logger.js';
import type { ChannelDto, WorkspaceDto } from '../../shared/models/index.js';

// The contract's shapes, as the product defines them; re-exported for the test files.
export type { ChannelDto, WorkspaceDto };

export const API = '/api/v1';

export interface StartedApi {
  readonly baseUrl: string;
  readonly config: Config;
  readonly node: FrontNode;
  stop(): Promise<void>;
}

/**
 * Starts one front node in this process, on port 0, configured from process.env plus `env`; `options.logger`
 * replaces the node's own (to read what it logs).
 * Objection's models are bound to the knex of the node created last (shared/db.ts: Model.knex is global),
 * so run one node per process at a time unless they share the same database.
 */
export async function startApi(
  env: Record<string, string | undefined> = {},
  options: { logger?: Logger } = {},
): Promise<StartedApi> {
  const config = loadConfig({ ...process.env, ...env, PORT: '0' });
  const node = createFrontNode(config, options);
  const port = await node.start();
  let stopped = false;
  return {
    baseUrl: `http://127.0.0.1:${port}`,
    config,
    node,
    async stop() {
      if (stopped) return;
      stopped = true;
      await node.stop();
      // io.close() closes the HTTP server too, but keep-alive sockets from fetch may linger.
      node.httpServer.closeAllConnections?.();
    },
  };
}

export interface ApiResponse<T = any> {
  status: number;
  body: T;
  /** The raw response text (empty for 204). */
  text: string;
  headers: Headers;
}

export interface RequestOptions {
  body?: unknown;
  token?: string;
  headers?: Record<string, string>;
  /** Sent as is (with content-type application/json unless headers say otherwise); wins over `body`. */
  rawBody?: string | Uint8Array;
}

/** `path` is taken as is when it starts with /health, else it is under /api/v1. */
export async function request<T = any>(
  baseUrl: string,
  method: string,
  path: string,
  options: RequestOptions = {},
): Promise<ApiResponse<T>> {
  const url = baseUrl + (path.startsWith('/health') || path.startsWith(API) ? path : API + path);
  const headers: Record<string, string> = {};
  let payload: string | Uint8Array | undefined;
  if (options.rawBody !== undefined) {
    payload = options.rawBody;
    headers['content-type'] = 'application/json';
  } else if (options.body !== undefined) {
    payload = JSON.stringify(options.body);
    headers['content-type'] = 'application/json';
  }
  if (options.token !== undefined) headers.authorization = `Bearer ${options.token}`;
  Object.assign(headers, options.headers);
  const res = await fetch(url, { method, headers, body: payload as BodyInit | undefined });
  const text = await res.text();
  let body: any = undefined;
  if (text.length > 0) {
    try {
      body = JSON.parse(text);
    } catch {
      body = text;
    }
  }
  return { status: res.status, body, text, headers: res.headers };
}

/** A short random suffix for unique names and emails. */
export function unique(prefix = ''): string {
  return `${prefix}${Date.now().toString(36)}${randomBytes(4).toString('hex')}`;
}

export interface UserDto {
  id: string;
  email: string;
  displayName: string;
  createdAt: string;
}

export interface RegisteredUser {
  user: UserDto;
  token: string;
  email: string;
  password: string;
}

function expectStatus(res: ApiResponse, status: number, what: string): void {
  if (res.status !== status) {
    throw new Error(`${what}: expected HTTP ${status}, got ${res.status}: ${res.text}`);
  }
}

export async function registerUser(
  baseUrl: string,
  overrides: Partial<{ email: string; password: string; displayName: string }> = {},
): Promise<RegisteredUser> {
  const email = overrides.email ?? `${unique('user-')}@example.test`;
  const password = overrides.password ?? `pw-${randomBytes(6).toString('hex')}`;
  const displayName = overrides.displayName ?? `User ${unique()}`;
  // Each seeded user signs up from an address of its own, as real users do: the suites register hundreds
  // of users a minute, which the product's default per-address registration budget rightly refuses from
  // one address (test/pipeline/abuse-limits.test.ts tests that budget). 198.18.0.0/15 is the range set
  // aside for benchmarks (RFC 2544); nothing is ever sent there, it is only a header behind the loopback
  // proxy the product trusts.
  const res = await request(baseUrl, 'POST', '/auth/register', {
    body: { email, password, displayName },
    headers: { 'x-forwarded-for': `198.${18 + (randomBytes(1)[0] & 1)}.${randomBytes(1)[0]}.${randomBytes(1)[0]}` },
  });
  expectStatus(res, 201, 'registerUser');
  return { user: res.body.user, token: res.body.token, email, password };
}

/** Logs the user in with their password, or with `password` after a change; the token (200 required). */
export async function loginUser(baseUrl: string, user: { email: string; password: string }, password = user.password): Promise<string> {
  const res = await request(baseUrl, 'POST', '/auth/login', { body: { email: user.email, password } });
  expectStatus(res, 200, 'loginUser');
  return res.body.token;
}

export async function createWorkspace(baseUrl: string, token: string, name = unique('Workspace ')): Promise<WorkspaceDto> {
  const res = await request(baseUrl, 'POST', '/workspaces', { token, body: { name } });
  expectStatus(res, 201, 'createWorkspace');
  return res.body.workspace;
}

export async function createChannel(
  baseUrl: string,
  token: string,
  workspaceId: string,
  options: { name?: string; isPrivate?: boolean; topic?: string } = {},
): Promise<ChannelDto> {
  const body: Record<string, unknown> = { name: options.name ?? unique('ch-') };
  if (options.isPrivate !== undefined) body.isPrivate = options.isPrivate;
  if (options.topic !== undefined) body.topic = options.topic;
  const res = await request(baseUrl, 'POST', `/workspaces/${workspaceId}/channels`, { token, body });
  expectStatus(res, 201, 'createChannel');
  return res.body.channel;
}

export interface WorkspaceMemberDto {
  userId: string;
  displayName: string;
  role: 'owner' | 'admin' | 'member' | 'guest';
}

/** Adds the user with `email` to the workspace; `token` is an owner's or admin's. */
export async function addWorkspaceMember(
  baseUrl: string,
  token: string,
  workspaceId: string,
  email: string,
  role?: 'member' | 'admin' | 'guest',
): Promise<WorkspaceMemberDto> {
  const body = role === undefined ? { email } : { email, role };
  const res = await request(baseUrl, 'POST', `/workspaces/${workspaceId}/members`, { token, body });
  expectStatus(res, 201, 'addWorkspaceMember');
  return res.body.member;
}

/** Adds `userId` to the channel; `token` is a channel member's or a workspace admin's. */
export async function addChannelMember(baseUrl: string, token: string, channelId: string, userId: string): Promise<void> {
  const res = await request(baseUrl, 'POST', `/channels/${channelId}/members`, { token, body: { userId } });
  expectStatus(res, 201, 'addChannelMember');
}

export type DmDto = ChannelDto & { members: Array<{ userId: string; displayName: string }> };

/** Opens the DM of the caller and `userIds` in the workspace (201 a new one, 200 the one there is); its channel. */
export async function openDm(baseUrl: string, token: string, workspaceId: string, userIds: string[]): Promise<DmDto> {
  const res = await request(baseUrl, 'POST', `/workspaces/${workspaceId}/dms`, { token, body: { userIds } });
  if (res.status !== 201 && res.status !== 200) throw new Error(`openDm: expected HTTP 201 or 200, got ${res.status}: ${res.text}`);
  return res.body.channel;
}

/** A contract error: `status`, exactly `{error}` with `code` and a message. */
export function expectError(res: ApiResponse, status: number, code: string): void {
  expect(res.status, res.text).to.equal(status);
  expect(res.body).to.have.all.keys('error');
  expect(res.body.error.code).to.equal(code);
  expect(res.body.error.message).to.be.a('string').and.not.empty;
}
