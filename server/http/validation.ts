import Joi from '../../shared/validation.js';
import { NotFoundError, ValidationError } from '../../shared/errors.js';
import { UUID_PATTERN } from '../domain/messages.js';

/** Validates and converts `value`; unknown fields are an error, as the contract says. */
export function parse<T>(schema: Joi.Schema<T>, value: unknown): T {
  const { value: out, error } = schema.validate(value ?? {}, { abortEarly: false, stripUnknown: false, convert: true });
  if (error) {
    throw new ValidationError(
      error.details.map((d) => d.message).join('; '),
      error.details.map((d) => ({ field: d.path.join('.'), message: d.message })),
    );
  }
  return out as T;
}

const NO_BODY = Joi.object({});

/** For a route that takes no body: any field sent is unknown, 400 VALIDATION_FAILED as on every other route. */
export function noBody(req: { body?: unknown }): void {
  parse(NO_BODY, req.body);
}

/** Ids are opaque: one that cannot exist is just another id that is not found. */
export function idParam(value: unknown, what: string): string {
  if (typeof value !== 'string' || !UUID_PATTERN.test(value)) throw new NotFoundError(what);
  return value.toLowerCase();
}

/** A channel's name and topic, as created and as changed (PATCH /channels/:channelId). */
export const CHANNEL_NAME_PATTERN = /^[a-z0-9][a-z0-9_-]{0,79}$/;
export const CHANNEL_NAME = Joi.string()
  .pattern(CHANNEL_NAME_PATTERN)
  .messages({ 'string.pattern.base': '"name" must be 1-80 characters of a-z, 0-9, _ and -, starting with a letter or digit' });
export const CHANNEL_TOPIC = Joi.string().allow('').maxChars(250);
