import express, { type Express } from 'express';
import type { Knex } from 'knex';
import type { Redis } from 'ioredis';
import type { Logger } from '../../shared/logger.js';
import type { TokenService } from '../auth.js';
import type { MessagingDeps } from '../domain/messages.js';
import type { RateLimit } from '../domain/rateLimit.js';
import type { ReadNotifier } from '../domain/readState.js';
import type { Subscriptions } from '../domain/subscriptions.js';
import { authRoutes, requireAuth } from './auth.js';
import { channelRoutes } from './channels.js';
import { errorHandler, notFoundRoute } from './errors.js';
import { healthRoutes } from './health.js';
import { workspaceRoutes } from './workspaces.js';

export const API_PREFIX = '/api/v1';
export const MAX_BODY_BYTES = 64 * 1024;

export interface HttpDeps {
  knex: Knex;
  redis: Redis;
  logger: Logger;
  tokens: TokenService;
  bcryptRounds: number;
  loginFailures: RateLimit;
  subscriptions: Subscriptions;
  messaging: MessagingDeps;
  notifyRead: ReadNotifier;
}

export function createHttpApp(deps: HttpDeps): Express {
  const app = express();
  app.disable('x-powered-by');
  app.set('trust proxy', 'loopback');
  app.set('query parser', 'simple');
  app.use(express.json({ limit: MAX_BODY_BYTES }));
  app.use(healthRoutes(deps));

  const api = express.Router();
  api.use(authRoutes(deps));
  // Only under known prefixes: an unknown route is a 404 whether or not a token came with it.
  api.use(['/workspaces', '/channels'], requireAuth(deps.tokens));
  api.use(workspaceRoutes(deps));
  api.use(channelRoutes(deps));
  app.use(API_PREFIX, api);

  app.use(notFoundRoute);
  app.use(errorHandler(deps.logger));
  return app;
}
