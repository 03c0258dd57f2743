import type { ErrorRequestHandler, RequestHandler } from 'express';
import { NotFoundError } from '../../shared/errors.js';
import type { Logger } from '../../shared/logger.js';
import { rateLimitHeaders, toClientError } from '../errors.js';

export const notFoundRoute: RequestHandler = (req, _res, next) => next(new NotFoundError(`Route ${req.method} ${req.path}`));

/** The one place an error becomes an HTTP response. */
export function errorHandler(logger: Logger): ErrorRequestHandler {
  return (err, req, res, _next) => {
    // The request's own logger (pino-http's, with its request id) when there is one.
    const appError = toClientError(err, (req as { log?: Logger }).log ?? logger, { method: req.method, path: req.path });
    if (res.headersSent) return;
    for (const [name, value] of Object.entries(rateLimitHeaders(appError))) res.setHeader(name, value);
    res.status(appError.status).json({ error: appError.toBody() });
  };
}
