import { Router, type Request, type RequestHandler } from 'express';
import Joi from '../../shared/validation.js';
import { UnauthorizedError } from '../../shared/errors.js';
import type { User } from '../../shared/models/index.js';
import type { TokenService } from '../auth.js';
import { listUnread } from '../domain/readState.js';
import { registerUser, verifyCredentials } from '../domain/users.js';
import type { RateLimit } from '../domain/rateLimit.js';
import { parse } from './validation.js';

const registerSchema = Joi.object({
  email: Joi.string().trim().email({ tlds: false }).max(254).required(),
  password: Joi.string().min(8).max(128).required(),
  displayName: Joi.string().trim().min(1).max(80).required(),
});

const loginSchema = Joi.object({
  email: Joi.string().trim().max(254).required(),
  password: Joi.string().max(128).required(),
});

export function requireAuth(tokens: TokenService): RequestHandler {
  return (req, _res, next) => {
    tokens.authenticateRequest(req).then((user) => {
      req.user = user;
      next();
    }, next);
  };
}

export function currentUser(req: Request): User {
  return req.user as User;
}

export function authRoutes(deps: { tokens: TokenService; bcryptRounds: number; loginFailures: RateLimit }): Router {
  const router = Router();

  router.post('/auth/register', async (req, res) => {
    const input = parse(registerSchema, req.body);
    const user = await registerUser(input, deps.bcryptRounds);
    res.status(201).json({ user: user.toDto(), token: deps.tokens.sign(user.id) });
  });

  router.post('/auth/login', async (req, res) => {
    const { email, password } = parse(loginSchema, req.body);
    // Only failures count, per email and address; once they are used up, no password is tried at all.
    const key = `${email.toLowerCase()}|${req.ip}`;
    await deps.loginFailures.check(key);
    try {
      const user = await verifyCredentials(email, password);
      res.json({ user: user.toDto(), token: deps.tokens.sign(user.id) });
    } catch (err) {
      await deps.loginFailures.consume(key);
      throw err;
    }
  });

  router.get('/me', requireAuth(deps.tokens), (req, res) => {
    res.json({ user: currentUser(req).toDto() });
  });

  router.get('/me/unread', requireAuth(deps.tokens), async (req, res) => {
    res.json({ channels: await listUnread(currentUser(req).id) });
  });

  return router;
}
