import { maxHeaderSize } from 'node:http';
import { isForeignKeyViolation, isTransientDbError } from '../shared/db.js';
import {
  AppError,
  InternalError,
  NotFoundError,
  PayloadTooLargeError,
  RateLimitedError,
  ServiceUnavailableError,
  ValidationError,
  type ErrorBody,
} from '../shared/errors.js';
import type { Logger } from '../shared/logger.js';
import { isRedisUnavailable } from '../shared/redis.js';

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
  // Node's HTTP parser ('clientError'): the request never reached Express.
  const parserCode = (err as { code?: unknown } | null | undefined)?.code;
  if (parserCode === 'HPE_HEADER_OVERFLOW') {
    return new PayloadTooLargeError(`Request line and headers are larger than ${Math.round(maxHeaderSize / 1024)} KB`);
  }
  if (parserCode === 'HPE_CHUNK_EXTENSIONS_OVERFLOW') return new PayloadTooLargeError('Request chunk extensions are too large');
  if (parserCode === 'ERR_HTTP_REQUEST_TIMEOUT') return new ValidationError('The request was not received in time');
  if (typeof parserCode === 'string' && parserCode.startsWith('HPE_')) return new ValidationError('Malformed HTTP request');
  // Express's router: a path param that is not valid percent-encoding (`/channels/%zz`) cannot name
  // anything, so it is a malformed id, NOT_FOUND as the contract says (not the router's unexposed 400).
  // Authentication runs before routes match, so this answer leaks nothing to a caller without a token.
  if (err instanceof URIError && e?.status === 400) return new NotFoundError('Resource');
  // Any other client error the body parser met (a body that is not the gzip or deflate stream its
  // Content-Encoding says, a truncated or aborted body …): http-errors marks those as safe to expose.
  if (e?.expose === true && typeof e.status === 'number' && e.status >= 400 && e.status < 500) {
    return new ValidationError('Request body could not be read');
  }
  // Checks found what the request names, and it was deleted before the write (a user an operator removed,
  // a channel or workspace whose last row went): as if it had never been found.
  if (isForeignKeyViolation(err)) {
    logger.warn({ err, ...context }, 'a row the request refers to was deleted meanwhile');
    return new NotFoundError('Resource');
  }
  if (isTransientDbError(err) || isRedisUnavailable(err)) {
    logger.warn({ err, ...context }, 'dependency unavailable');
    return new ServiceUnavailableError();
  }
  logger.error({ err, ...context }, 'unexpected error');
  return new InternalError();
}

/** A refused socket event's ack: the error, and for RATE_LIMITED how long to wait, in milliseconds. */
export interface ErrorAck {
  ok: false;
  error: ErrorBody;
  retryAfterMs?: number;
}

/** Anything thrown while handling a socket event, as its ack (mapped by toClientError). */
export function toErrorAck(err: unknown, logger: Logger, context: Record<string, unknown>): ErrorAck {
  const error = toClientError(err, logger, context);
  return error instanceof RateLimitedError
    ? { ok: false, error: error.toBody(), retryAfterMs: error.retryAfterMs }
    : { ok: false, error: error.toBody() };
}

/**
 * The headers of a RATE_LIMITED HTTP answer: `Retry-After` (seconds), and the IETF RateLimit fields in the
 * syntax of draft-ietf-httpapi-ratelimit-headers-08 to -11 (structured fields): `RateLimit-Policy:
 * "<name>";q=<quota>;w=<window seconds>` and `RateLimit: "<name>";r=<remaining>;t=<seconds to reset>`.
 */
export function rateLimitHeaders(error: AppError): Record<string, string> {
  if (error.code !== 'RATE_LIMITED') return {};
  const seconds = (error.details as { retryAfterSeconds?: number } | undefined)?.retryAfterSeconds ?? 1;
  const headers: Record<string, string> = { 'Retry-After': String(seconds) };
  const policy = error instanceof RateLimitedError ? error.policy : undefined;
  if (policy) {
    headers['RateLimit-Policy'] = `"${policy.name}";q=${policy.quota};w=${policy.windowSeconds}`;
    headers.RateLimit = `"${policy.name}";r=0;t=${seconds}`;
  }
  return headers;
}
