/**
 * The contract's error codes, as typed classes. HTTP statuses live here and nowhere else; socket acks
 * carry the same codes.
 */
export const ERROR_STATUS = {
  VALIDATION_FAILED: 400,
  UNAUTHORIZED: 401,
  INVALID_CREDENTIALS: 401,
  FORBIDDEN: 403,
  NOT_FOUND: 404,
  CONFLICT: 409,
  PAYLOAD_TOO_LARGE: 413,
  RATE_LIMITED: 429,
  INTERNAL: 500,
  SERVICE_UNAVAILABLE: 503,
} as const;

export type ErrorCode = keyof typeof ERROR_STATUS;

export interface ErrorBody {
  code: ErrorCode;
  message: string;
  details?: unknown;
}

export class AppError extends Error {
  constructor(
    readonly code: ErrorCode,
    message: string,
    readonly details?: unknown,
  ) {
    super(message);
    this.name = new.target.name;
  }

  get status(): number {
    return ERROR_STATUS[this.code];
  }

  toBody(): ErrorBody {
    return this.details === undefined
      ? { code: this.code, message: this.message }
      : { code: this.code, message: this.message, details: this.details };
  }
}

export class ValidationError extends AppError {
  constructor(message = 'Request is invalid', details?: unknown) {
    super('VALIDATION_FAILED', message, details);
  }
}
/** A reply whose `parentId` is not a top-level, not deleted message of its channel: the front node (an id
 * that cannot exist) and the worker (one that does not qualify) answer alike. */
export const invalidParentError = () =>
  new ValidationError('"parentId" must be a top-level message of this channel that is not deleted', [{ field: 'parentId' }]);

export class UnauthorizedError extends AppError {
  constructor(message = 'Missing, invalid or expired token') {
    super('UNAUTHORIZED', message);
  }
}
export class InvalidCredentialsError extends AppError {
  constructor() {
    super('INVALID_CREDENTIALS', 'Email or password is incorrect');
  }
}
export class ForbiddenError extends AppError {
  constructor(message = 'Not allowed') {
    super('FORBIDDEN', message);
  }
}
export class NotFoundError extends AppError {
  constructor(what = 'Resource') {
    super('NOT_FOUND', `${what} not found`);
  }
}
export class ConflictError extends AppError {
  constructor(message: string) {
    super('CONFLICT', message);
  }
}
export class PayloadTooLargeError extends AppError {
  constructor(message = 'Payload too large') {
    super('PAYLOAD_TOO_LARGE', message);
  }
}
/** A rate limit as the RateLimit-Policy header names it: `quota` points per `windowSeconds`. */
export interface RateLimitPolicy {
  readonly name: string;
  readonly quota: number;
  readonly windowSeconds: number;
}

export class RateLimitedError extends AppError {
  /** How long to wait in milliseconds (`retryAfterSeconds` is it rounded up, at least 1). */
  readonly retryAfterMs: number;

  constructor(
    readonly retryAfterSeconds: number,
    readonly policy?: RateLimitPolicy,
    retryAfterMs?: number,
  ) {
    super('RATE_LIMITED', 'Too many requests', { retryAfterSeconds });
    this.retryAfterMs = retryAfterMs ?? retryAfterSeconds * 1000;
  }
}
export class ServiceUnavailableError extends AppError {
  constructor(message = 'Service temporarily unavailable, retry later') {
    super('SERVICE_UNAVAILABLE', message);
  }
}
export class InternalError extends AppError {
  constructor() {
    super('INTERNAL', 'Internal error');
  }
}

/** Anything thrown, as the error a client may see: unknown errors never leak their message. */
export function toAppError(err: unknown): AppError {
  return err instanceof AppError ? err : new InternalError();
}
