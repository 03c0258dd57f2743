import type { ErrorRequestHandler, RequestHandler } from 'express';
import {
  AppError,
  InternalError,
  NotFoundError,
  PayloadTooLargeError,
  ServiceUnavailableError,
  ValidationError,
} from '../../shared/errors.js';
import { isTransientDbError } from '../../shared/db.js';
import type { Logger } from '../../shared/logger.js';

export const notFoundRoute: RequestHandler = (req, _res, next) => next(new NotFoundError(`Route ${req.method} ${req.path}`));

/** The one place an error becomes an HTTP response. */
export function errorHandler(logger: Logger): ErrorRequestHandler {
  return (err, req, res, _next) => {
    let appError: AppError;
    if (err instanceof AppError) appError = err;
    else if (err?.type === 'entity.too.large') appError = new PayloadTooLargeError('Request body is larger than 64 KB');
    else if (err?.type === 'entity.parse.failed') appError = new ValidationError('Request body is not valid JSON');
    else if (err?.type === 'encoding.unsupported' || err?.type === 'charset.unsupported') {
      appError = new ValidationError('Unsupported request encoding');
    } else if (isTransientDbError(err) || err?.name === 'MaxRetriesPerRequestError') {
      logger.warn({ err, path: req.path }, 'dependency unavailable');
      appError = new ServiceUnavailableError();
    } else {
      logger.error({ err, method: req.method, path: req.path }, 'unexpected error');
      appError = new InternalError();
    }
    if (appError.code === 'RATE_LIMITED') {
      const seconds = (appError.details as { retryAfterSeconds?: number } | undefined)?.retryAfterSeconds ?? 1;
      res.setHeader('Retry-After', String(seconds));
    }
    if (res.headersSent) return;
    res.status(appError.status).json({ error: appError.toBody() });
  };
}
