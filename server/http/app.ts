import cors from 'cors';
import express, { type Express } from 'express';
import helmet from 'helmet';
import type { Knex } from 'knex';
import type { Redis } from 'ioredis';
import type { Logger } from '../../shared/logger.js';
import { assertNoForbiddenKeys } from '../../shared/validation.js';
import type { TokenService } from '../auth.js';
import type { MessagingDeps } from '../domain/messages.js';
import type { RateLimit } from '../domain/rateLimit.js';
import type { ChannelNotifier } from '../domain/channels.js';
import type { ReadNotifier } from '../domain/readState.js';
import type { Subscriptions } from '../domain/subscriptions.js';
import { authRoutes, requireAuth } from './auth.js';
import { channelRoutes } from './channels.js';
import { dmRoutes } from './dms.js';
import { apiDocs } from './docs.js';
import { errorHandler, notFoundRoute } from './errors.js';
import { healthRoutes } from '../../shared/health.js';
import { metricsHandler } from '../../shared/metrics.js';
import type { FrontMetrics } from '../metrics.js';
import { markRouteBase, requestLogger, requestMetrics } from './observe.js';
import { searchRoutes } from './search.js';
import { ADMIN_QUEUES_PATH, ADMIN_USERS_PATH, adminQueuesRoutes, adminUserRoutes, type AdminDeps } from './admin.js';
import { workspaceRoutes } from './workspaces.js';

/** Proxies whose X-Forwarded-For is believed: the client address of REST requests and socket handshakes. */
export const TRUST_PROXY = 'loopback';
export const API_PREFIX = '/api/v1';
export const MAX_BODY_BYTES = 64 * 1024;

export interface HttpDeps {
  knex: Knex;
  redis: Redis;
  logger: Logger;
  tokens: TokenService;
  bcryptRounds: number;
  limits: HttpLimits;
  /** Browser origins allowed by CORS; empty: same-origin only. */
  corsOrigins: readonly string[];
  subscriptions: Subscriptions;
  messaging: MessagingDeps;
  notifyRead: ReadNotifier;
  notifyChannel: ChannelNotifier;
  /** The node's metrics: measured on every request, and served at `GET /metrics` (none: neither). */
  metrics?: FrontMetrics;
  /** When set, `GET /metrics` needs `Authorization: Bearer <metricsToken>`. */
  metricsToken?: string;
  /** The operators' pages (ADMIN_USER, ADMIN_PASSWORD): the queue dashboard at /admin/queues, user locks at /admin/users; none: both 404. */
  admin?: AdminDeps;
}

/** The REST abuse budgets (server/app.ts builds them from config.rateLimits). */
export interface HttpLimits {
  /** Requests per token (issue #10: "REST per token"): each session of a user, each device, has its own. */
  perToken: RateLimit;
  /** Registrations per client address. */
  register: RateLimit;
  /** Login attempts per client address. */
  login: RateLimit;
  /** Failed logins per client address, whatever the email. */
  loginFailuresPerIp: RateLimit;
  /** Failed logins per account (email), from any address. */
  loginFailuresPerAccount: RateLimit;
  /** Failed logins per account (email) and client address. */
  loginFailuresPerAccountAndIp: RateLimit;
}

/** Headers a browser on an allowed origin may read: how long to wait after a 429, and a list's next page. */
const EXPOSED_HEADERS = ['Retry-After', 'RateLimit', 'RateLimit-Policy', 'Link'];

export function createHttpApp(deps: HttpDeps): Express {
  const app = express();
  app.disable('x-powered-by');
  app.set('trust proxy', TRUST_PROXY);
  app.set('query parser', 'simple');
  // First, so every request is logged and measured, whatever answers it.
  app.use(requestLogger(deps.logger));
  if (deps.metrics) app.use(requestMetrics(deps.metrics));
  app.use(helmet());
  // Same-origin only unless CORS_ORIGINS lists origins: then those, and no other, get Access-Control-*.
  app.use(cors({ origin: deps.corsOrigins.length > 0 ? [...deps.corsOrigins] : false, exposedHeaders: EXPOSED_HEADERS }));
  app.use(express.json({ limit: MAX_BODY_BYTES }));
  // `"__proto__"`, `constructor`, `prototype` anywhere in a body: refused before any route sees it.
  app.use((req, _res, next) => {
    assertNoForbiddenKeys(req.body);
    next();
  });
  app.use(healthRoutes(deps));
  if (deps.metrics) {
    // Operations, not the API: Prometheus text, not JSON (test/support/routes.ts lists the app without it).
    const metrics = metricsHandler(deps.metrics.registry, deps.metricsToken);
    app.get('/metrics', (req, res, next) => {
      metrics(req, res).catch(next);
    });
  }
  if (deps.admin) {
    app.use(ADMIN_QUEUES_PATH, adminQueuesRoutes(deps.admin));
    app.use(ADMIN_USERS_PATH, adminUserRoutes({ ...deps.admin, tokens: deps.tokens, bcryptRounds: deps.bcryptRounds }));
  }
  // The API reference: /api/v1/openapi.json, /api/v1/asyncapi.json and the page at /docs.
  app.use(apiDocs(API_PREFIX));

  const api = express.Router();
  api.use(markRouteBase);
  api.use(authRoutes(deps));
  // Only under known prefixes: an unknown route is a 404 whether or not a token came with it.
  api.use(['/workspaces', '/channels'], requireAuth(deps.tokens, deps.limits.perToken));
  api.use(workspaceRoutes(deps));
  api.use(channelRoutes(deps));
  api.use(dmRoutes(deps));
  api.use(searchRoutes());
  app.use(API_PREFIX, api);

  app.use(notFoundRoute);
  app.use(errorHandler(deps.logger));
  return app;
}
