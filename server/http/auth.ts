import { Router, type Request, type RequestHandler, type Response } from 'express';
import Joi from '../../shared/validation.js';
import { UnauthorizedError } from '../../shared/errors.js';
import type { User } from '../../shared/models/index.js';
import type { Session, TokenService } from '../auth.js';
import { listUnread } from '../domain/readState.js';
import { changePassword, registerUser, verifyCredentials } from '../domain/users.js';
import type { RateLimit } from '../domain/rateLimit.js';
import type { HttpLimits } from './app.js';
import { TOKEN, arrayOf, object, ref, type RouteDoc } from './openapi.js';
import { noBody, parse } from './validation.js';
import { pageDoc, pageHeaders, pageSchema, sendPage, unreadCursor } from './pages.js';

const registerSchema = Joi.object({
  email: Joi.string().trim().email({ tlds: false }).max(254).required(),
  password: Joi.string().minChars(8).maxChars(128).required(),
  displayName: Joi.string().trim().minChars(1).maxChars(80).required(),
});

const loginSchema = Joi.object({
  email: Joi.string().trim().max(254).required(),
  password: Joi.string().maxChars(128).required(),
});

const passwordSchema = Joi.object({
  currentPassword: Joi.string().maxChars(128).required(),
  newPassword: Joi.string().minChars(8).maxChars(128).required(),
});

const session = object({ user: ref('User'), token: TOKEN });

/** The routes below in the API reference (server/http/openapi.ts). */
export const authApi: RouteDoc[] = [
  {
    method: 'post',
    path: '/auth/register',
    summary: 'Register',
    description: 'The email is unique, case-insensitively. 300 registrations per address per minute (`register-per-ip`).',
    auth: false,
    body: registerSchema,
    responses: { 201: { description: 'the new user, and a token for them', schema: session } },
    errors: ['CONFLICT', 'RATE_LIMITED'],
    example: { body: { email: 'ada@example.com', password: 'correct horse', displayName: 'Ada' } },
  },
  {
    method: 'post',
    path: '/auth/login',
    summary: 'Log in',
    description: 'Refused (429) after 10 failures per email and address in 15 minutes, 200 per address, or 600 attempts per address per minute.',
    auth: false,
    body: loginSchema,
    responses: { 200: { description: 'the user, and a new token', schema: session } },
    errors: ['INVALID_CREDENTIALS', 'RATE_LIMITED'],
    example: { body: { email: 'ada@example.com', password: 'correct horse' } },
  },
  {
    method: 'post',
    path: '/auth/logout',
    summary: 'Log out',
    description: 'The presented token is refused from now on, on every node; its sockets get `session:revoked` and are disconnected.',
    responses: { 204: { description: 'the token is revoked' } },
    errors: [],
  },
  {
    method: 'post',
    path: '/auth/password',
    summary: 'Change the password',
    description: "Every token of the user issued before is refused from now on, and all the user's sockets are disconnected.",
    body: passwordSchema,
    responses: { 200: { description: 'a fresh token, so the session continues', schema: object({ token: TOKEN }) } },
    errors: ['INVALID_CREDENTIALS'],
    example: { body: { currentPassword: 'correct horse', newPassword: 'battery staple' } },
  },
  { method: 'get', path: '/me', summary: 'The caller', responses: { 200: { description: 'the user', schema: object({ user: ref('User') }) } }, errors: [] },
  {
    method: 'get',
    path: '/me/unread',
    summary: 'Channels with unread messages',
    description: `Across workspaces, DMs included: by workspace, then channels by name, then DMs. ${pageDoc('channels')}`,
    query: pageSchema,
    responses: {
      200: { description: 'the channels with unread messages', schema: object({ channels: arrayOf(ref('UnreadChannel')) }), headers: pageHeaders('channels') },
    },
    example: { query: { limit: 100 } },
    errors: [],
  },
];

/** Authenticates the request; with `perToken`, also takes one point of the token's REST budget. */
export function requireAuth(tokens: TokenService, perToken?: RateLimit): RequestHandler {
  return (req, res, next) => {
    tokens
      .authenticateRequest(req)
      .then(async (session) => {
        req.user = session.user;
        res.locals.session = session;
        await perToken?.consume(session.jti);
      })
      .then(() => next(), next);
  };
}

/** The client's address (behind a proxy on the loopback, the one it forwarded): the key of per-IP limits. */
const clientAddress = (req: Request) => req.ip ?? req.socket.remoteAddress ?? 'unknown';

export function currentUser(req: Request): User {
  return req.user as User;
}

/** The token a request behind requireAuth was authenticated with. */
export function currentSession(res: Response): Session {
  return res.locals.session as Session;
}

export function authRoutes(deps: {
  tokens: TokenService;
  bcryptRounds: number;
  limits: Pick<HttpLimits, 'perToken' | 'register' | 'login' | 'loginFailuresPerIp' | 'loginFailuresPerAccount' | 'loginFailuresPerAccountAndIp'>;
}): Router {
  const router = Router();

  router.post('/auth/register', async (req, res) => {
    await deps.limits.register.consume(clientAddress(req));
    const input = parse(registerSchema, req.body);
    const user = await registerUser(input, deps.bcryptRounds);
    res.status(201).json({ user: user.toDto(), token: deps.tokens.sign(user) });
  });

  router.post('/auth/login', async (req, res) => {
    const ip = clientAddress(req);
    await deps.limits.login.consume(ip);
    const { email, password } = parse(loginSchema, req.body);
    // Failures count per address whatever the email (one password tried on many accounts), per account
    // from any address (one account guessed from many), and per account and address (a person's typos,
    // a smaller budget); once any is used up, no password is tried at all. Unknown emails count alike.
    const account = email.toLowerCase();
    const accountAtIp = `${account}|${ip}`;
    const { loginFailuresPerIp, loginFailuresPerAccount, loginFailuresPerAccountAndIp } = deps.limits;
    await loginFailuresPerIp.check(ip);
    await loginFailuresPerAccountAndIp.check(accountAtIp);
    await loginFailuresPerAccount.check(account);
    try {
      const user = await verifyCredentials(email, password, deps.bcryptRounds);
      res.json({ user: user.toDto(), token: deps.tokens.sign(user) });
    } catch (err) {
      await Promise.all([
        loginFailuresPerIp.consume(ip),
        loginFailuresPerAccount.consume(account),
        loginFailuresPerAccountAndIp.consume(accountAtIp),
      ]);
      throw err;
    }
  });

  // The presented token is refused from now on, on every front node, and its sockets are disconnected.
  router.post('/auth/logout', requireAuth(deps.tokens, deps.limits.perToken), async (req, res) => {
    noBody(req);
    await deps.tokens.revoke(currentSession(res));
    res.status(204).end();
  });

  // Every token of the user issued so far is refused from now on and all the user's sockets are
  // disconnected; the caller's session continues with the token answered.
  router.post('/auth/password', requireAuth(deps.tokens, deps.limits.perToken), async (req, res) => {
    const input = parse(passwordSchema, req.body);
    const user = await changePassword(currentUser(req).id, input, deps.bcryptRounds);
    await deps.tokens.revokeIssuedBefore(user.id, user.tokensValidAfter!);
    res.json({ token: deps.tokens.sign(user) });
  });

  router.get('/me', requireAuth(deps.tokens, deps.limits.perToken), (req, res) => {
    res.json({ user: currentUser(req).toDto() });
  });

  router.get('/me/unread', requireAuth(deps.tokens, deps.limits.perToken), async (req, res) => {
    await sendPage(req, res, 'channels', unreadCursor, (page) => listUnread(currentUser(req).id, page));
  });

  return router;
}
