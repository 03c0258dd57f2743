import { createHash, timingSafeEqual } from 'node:crypto';
import type { Queue } from 'bullmq';
import { Router, type RequestHandler, type Response } from 'express';
import helmet from 'helmet';
import { UnauthorizedError } from '../../shared/errors.js';
import Joi from '../../shared/validation.js';
import type { TokenService } from '../auth.js';
import type { User } from '../../shared/models/index.js';
import { lockUser, setPassword } from '../domain/users.js';
import { parse } from './validation.js';

/** Where front nodes serve the queue dashboard; operations, not the API (not under /api/v1). */
export const ADMIN_QUEUES_PATH = '/admin/queues';
/** Where front nodes take operators' actions on users; operations too, with the same credentials. */
export const ADMIN_USERS_PATH = '/admin/users';

export interface AdminDeps {
  /** ADMIN_USER and ADMIN_PASSWORD. */
  user: string;
  password: string;
  /** The message partition queues, in partition order. */
  queues: readonly Queue[];
}

/** Equal-length digests, so the comparison takes the same time whatever was given, its length included. */
function sameSecret(given: string, expected: string): boolean {
  const digest = (text: string) => createHash('sha256').update(text).digest();
  return timingSafeEqual(digest(given), digest(expected));
}

/** `Authorization: Basic base64(user:password)`, or undefined when absent or malformed. */
function basicCredentials(header: string | undefined): { user: string; password: string } | undefined {
  const match = /^Basic +([A-Za-z0-9+/]+={0,2})$/i.exec(header ?? '');
  if (!match) return undefined;
  const decoded = Buffer.from(match[1], 'base64').toString('utf8');
  const colon = decoded.indexOf(':');
  return colon === -1 ? undefined : { user: decoded.slice(0, colon), password: decoded.slice(colon + 1) };
}

/** HTTP basic auth: both halves compared in constant time, each every time; anything else is a 401 challenge. */
function requireBasicAuth(user: string, password: string, realm: string): RequestHandler {
  return (req, res, next) => {
    const given = basicCredentials(req.headers.authorization);
    // Both comparisons always run: which half was wrong must not show in the timing either.
    const userOk = sameSecret(given?.user ?? '', user);
    const passwordOk = sameSecret(given?.password ?? '', password);
    if (given && userOk && passwordOk) return next();
    res.setHeader('WWW-Authenticate', `Basic realm="${realm}", charset="UTF-8"`);
    res.status(401).json({ error: new UnauthorizedError('Valid admin credentials are required').toBody() });
  };
}

/** Message bodies are the users' and stay out of an operations page: only their length shows. */
function redactBodies(value: unknown): unknown {
  if (value === undefined || value === null) return value;
  return JSON.parse(JSON.stringify(value, (key, v: unknown) => (key === 'body' && typeof v === 'string' ? `[${v.length} characters]` : v)));
}

/**
 * bull-board's Express app for the partitions. Read-only: a failed batch's senders were already
 * answered with an error, so retrying it would store messages they were told were not, after later
 * ones; pausing, cleaning or emptying a partition is no dashboard's click either. Loaded only when the
 * dashboard is on: it costs every front node's start otherwise.
 */
async function createBoard(queues: readonly Queue[]): Promise<RequestHandler> {
  const [{ createBullBoard }, { BullMQAdapter }, { ExpressAdapter }] = await Promise.all([
    import('@bull-board/api'),
    import('@bull-board/api/bullMQAdapter'),
    import('@bull-board/express'),
  ]);
  const serverAdapter = new ExpressAdapter();
  serverAdapter.setBasePath(ADMIN_QUEUES_PATH);
  const adapters = queues.map((queue, partition) => {
    const adapter = new BullMQAdapter(queue, { readOnlyMode: true, description: `Message partition ${partition}` });
    adapter.setFormatter('data', redactBodies);
    adapter.setFormatter('returnValue', redactBodies);
    return adapter;
  });
  createBullBoard({ queues: adapters, serverAdapter, options: { uiConfig: { boardTitle: 'Message queues', hideDocsLink: true } } });
  return serverAdapter.getRouter() as RequestHandler;
}

/** The BullMQ dashboard (bull-board) of the message partitions, behind HTTP basic auth. */
export function adminQueuesRoutes(deps: AdminDeps): Router {
  // Loaded at once, not at the first request; a request that comes sooner waits for it.
  const board = createBoard(deps.queues);
  board.catch(() => {});
  const router = Router();
  // The app's CSP (helmet's defaults) with what the dashboard's page needs, for this path only: its inline
  // styles, and no upgrade-insecure-requests, which would break its scripts on an internal plain-HTTP
  // address. Its page asks Google Fonts for typefaces: refused, so that opening the dashboard tells no
  // third party (the browser's fallback fonts are used). Not framable: it is an admin page.
  router.use(
    helmet({
      contentSecurityPolicy: {
        directives: {
          'style-src': ["'self'", "'unsafe-inline'"],
          'font-src': ["'self'"],
          'frame-ancestors': ["'none'"],
          'upgrade-insecure-requests': null,
        },
      },
    }),
  );
  router.use(requireBasicAuth(deps.user, deps.password, 'queues'));
  router.use((req, res, next) => {
    board.then((handle) => handle(req, res, next), next);
  });
  return router;
}

const EMAIL = Joi.string().trim().max(254).required();
const lockSchema = Joi.object({ email: EMAIL });
// As at registration.
const passwordSchema = Joi.object({ email: EMAIL, password: Joi.string().minChars(8).maxChars(128).required() });

/**
 * Operators' actions on users, behind the same basic auth as the dashboard. Each answers 200 `{userId}`
 * (404 for an unknown email) once every token of the user is refused on every front node, and their
 * sockets everywhere are then told `session:revoked` and disconnected, as after a password change.
 *  - `POST /lock {email}`: no password logs them in any more;
 *  - `POST /password {email, password}`: that password does (a user who forgot theirs, or is let back in).
 */
export function adminUserRoutes(deps: { user: string; password: string; tokens: TokenService; bcryptRounds: number }): Router {
  const router = Router();
  router.use(requireBasicAuth(deps.user, deps.password, 'users'));
  const answer = async (res: Response, user: User) => {
    await deps.tokens.revokeIssuedBefore(user.id, user.tokensValidAfter!);
    res.json({ userId: user.id });
  };
  router.post('/lock', async (req, res) => {
    const { email } = parse(lockSchema, req.body);
    await answer(res, await lockUser(email));
  });
  router.post('/password', async (req, res) => {
    const { email, password } = parse(passwordSchema, req.body);
    await answer(res, await setPassword(email, password, deps.bcryptRounds));
  });
  return router;
}
