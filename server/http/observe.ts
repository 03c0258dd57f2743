import { randomUUID } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import type { Request, RequestHandler } from 'express';
import { pinoHttp } from 'pino-http';
import type { Logger } from '../../shared/logger.js';
import type { FrontMetrics } from '../metrics.js';

/** An incoming `X-Request-Id` is kept only when it is a short token that is safe to log and echo. */
const SAFE_REQUEST_ID = /^[A-Za-z0-9._:-]{1,64}$/;

/** Requests logged at debug rather than info: probes and scrapes would drown the rest. */
const QUIET_PATHS = /^\/(health\/|metrics(\/|$))/;

/** The path without its query string (which may carry anything): what a log line may show of a URL. */
function pathOf(req: IncomingMessage): string {
  const url = (req as Request).originalUrl ?? req.url ?? '';
  const end = url.indexOf('?');
  return end === -1 ? url : url.slice(0, end);
}

const ROUTE_BASE = Symbol('routeBase');

/**
 * First in a mounted router: remembers its mount path, which Express resets when an error leaves the
 * router, so that the route of a request answered by the error handler still has its prefix.
 */
export const markRouteBase: RequestHandler = (req, _res, next) => {
  (req as unknown as Record<symbol, string>)[ROUTE_BASE] = req.baseUrl;
  next();
};

/** The Express route pattern that answered (`/api/v1/channels/:channelId`), never the raw URL. */
export function routeOf(req: IncomingMessage): string {
  const r = req as Request;
  if (!r.route) return 'unmatched';
  const base = r.baseUrl || (r as unknown as Record<symbol, string | undefined>)[ROUTE_BASE] || '';
  return base + String(r.route.path);
}

/**
 * One log line per request (pino-http): at info, or debug for health and metrics, error for a 5xx, with
 * method, path, route pattern, status and duration (`responseTime`, ms), and the request id on every line
 * logged through `req.log`. Nothing of the headers, query string or body is logged (no tokens, cookies,
 * passwords or message bodies); the id is returned in `X-Request-Id`.
 */
export function requestLogger(logger: Logger): RequestHandler {
  return pinoHttp({
    logger,
    quietReqLogger: true,
    genReqId(req, res) {
      const given = req.headers['x-request-id'];
      const id = typeof given === 'string' && SAFE_REQUEST_ID.test(given) ? given : randomUUID();
      res.setHeader('X-Request-Id', id);
      return id;
    },
    serializers: {
      req: (req: { method: string; raw: IncomingMessage }) => ({ method: req.method, path: pathOf(req.raw) }),
      res: (res: { statusCode: number }) => ({ statusCode: res.statusCode }),
    },
    customLogLevel(req, res, err) {
      if (err || res.statusCode >= 500) return 'error';
      return QUIET_PATHS.test(pathOf(req)) ? 'debug' : 'info';
    },
    customSuccessObject: (req, _res, val: object) => ({ ...val, route: routeOf(req) }),
    customErrorObject: (req, _res, _err, val: object) => ({ ...val, route: routeOf(req) }),
    customSuccessMessage: (req, res) => `${req.method} ${routeOf(req)} ${res.statusCode}`,
    customErrorMessage: (req, res) => `${req.method} ${routeOf(req)} ${res.statusCode}`,
  }) as unknown as RequestHandler;
}

/** The HTTP request duration histogram, by method, route pattern and status. */
export function requestMetrics(metrics: FrontMetrics): RequestHandler {
  return (req, res, next) => {
    const end = metrics.httpDuration.startTimer();
    const done = () => {
      res.removeListener('finish', done);
      res.removeListener('close', done);
      end({ method: req.method, route: routeOf(req), status: String(res.statusCode) });
    };
    res.on('finish', done);
    res.on('close', done);
    next();
  };
}
