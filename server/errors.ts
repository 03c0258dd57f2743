import { isTransientDbError } from '../shared/db.js';
import { AppError, InternalError, PayloadTooLargeError, ServiceUnavailableError, ValidationError } from '../shared/errors.js';
import type { Logger } from '../shared/logger.js';

/**
 * The one place a front node turns anything thrown into the error a client sees, for REST responses and
 * socket acks alike: contract errors pass through, a dependency that is down is SERVICE_UNAVAILABLE
 * (retry later), and anything else is a bug, logged and answered INTERNAL without leaking its message.
 */
export function toClientError(err: unknown, logger: Logger, context: Record<string, unknown>): AppError {
  if (err instanceof AppError) return err;
  const e = err as { type?: string; name?: string; status?: number; expose?: boolean } | null | undefined;
  // Express's body parsers.
  if (e?.type === 'entity.too.large') return new PayloadTooLargeError('Request body is larger than 64 KB');
  if (e?.type === 'entity.parse.failed') return new ValidationError('Request body is not valid JSON');
  if (e?.type === 'encoding.unsupported' || e?.type === 'charset.unsupported') return new ValidationError('Unsupported request encoding');
  // Any other client error the body parser met (a body that is not the gzip or deflate stream its
  // Content-Encoding says, a truncated or aborted body …): http-errors marks those as safe to expose.
  if (e?.expose === true && typeof e.status === 'number' && e.status >= 400 && e.status < 500) {
    return new ValidationError('Request body could not be read');
  }
  if (isTransientDbError(err) || e?.name === 'MaxRetriesPerRequestError') {
    logger.warn({ err, ...context }, 'dependency unavailable');
    return new ServiceUnavailableError();
  }
  logger.error({ err, ...context }, 'unexpected error');
  return new InternalError();
}
