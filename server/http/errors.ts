import type { ErrorRequestHandler, RequestHandler } from 'express';
import { NotFoundError } from '../../shared/errors.js';
import type { Logger } from '../../shared/logger.js';
import { toClientError } from '../errors.js';

export const notFoundRoute: RequestHandler = (req, _res, next) => next(new NotFoundError(`Route ${req.method} ${req.path}`));

/** The one place an error becomes an HTTP response. */
export function errorHandler(logger: Logger): ErrorRequestHandler {
  return (err, req, res, _next) => {
    const appError = toClientError(err, logger, { method: req.method, path: req.path });
    if (appError.code === 'RATE_LIMITED') {
      const seconds = (appError.details as { retryAfterSeconds?: number } | undefined)?.retryAfterSeconds ?? 1;
      res.setHeader('Retry-After', String(seconds));
    }
    if (res.headersSent) return;
    res.status(appError.status).json({ error: appError.toBody() });
  };
}
