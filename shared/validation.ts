/**
 * The one Joi of the code base: joi itself, except that every string schema refuses text PostgreSQL
 * cannot store. A `text` column holds UTF-8 without NUL, so U+0000 is refused by the server (22021 /
 * 22P05), and a lone UTF-16 surrogate has no UTF-8 form at all (Node would silently store U+FFFD
 * instead). Refusing both at validation answers the sender VALIDATION_FAILED, instead of failing a write
 * later, and, for a message, the batch it shares with other users' sends.
 *
 * Strings also have `minChars(n)` and `maxChars(n)`, which count characters as the contract does:
 * Unicode code points, as PostgreSQL's `char_length` and JSON Schema's `maxLength` do, where joi's own
 * `min`/`max` count UTF-16 code units (an emoji is one character, and two units).
 *
 * A drop-in for `import Joi from 'joi'`, types included: `import Joi from '../shared/validation.js'`.
 */
import BaseJoi from 'joi';
import { ValidationError } from './errors.js';

/** U+0000, or a surrogate that is not half of a pair (with the `u` flag a pair is one code point). */
const UNSTORABLE = /[\u0000\uD800-\uDFFF]/u;

/** Whether PostgreSQL can store `value` in a text column, as is. */
export function isStorableText(value: string): boolean {
  return !UNSTORABLE.test(value);
}

/** The message of a refused text field, by its name as the client spells it (`"body" contains …`). */
export function unstorableTextMessage(field: string): string {
  return `"${field}" contains characters that cannot be stored`;
}

/** The error of a refused text field, as thrown by assertStorableText(). */
export function unstorableTextError(field: string): ValidationError {
  const message = unstorableTextMessage(field);
  return new ValidationError(message, [{ field, message }]);
}

/** Throws VALIDATION_FAILED when `value` cannot be stored; for text checked outside a Joi schema. */
export function assertStorableText(value: string, field: string): void {
  if (!isStorableText(value)) throw unstorableTextError(field);
}

/**
 * Keys refused anywhere in client JSON (REST bodies, socket payloads, the handshake's `auth`): JSON.parse
 * keeps `"__proto__"` as an own property, which later copies (`{...x}`, Object.assign, merges) turn into
 * a prototype change, and Joi silently drops it. `constructor` and `prototype` go with it.
 */
export const FORBIDDEN_KEYS: ReadonlySet<string> = new Set(['__proto__', 'constructor', 'prototype']);

/**
 * The path (`a.b.0.__proto__`) of the first forbidden key in `value`, at any depth, or undefined.
 * Iterative, so a deeply nested payload cannot overflow the stack.
 */
export function findForbiddenKey(value: unknown): string | undefined {
  // Each entry links to its parent's, so a path is only built for the key refused (linear in the size).
  interface Entry {
    node: unknown;
    key: string;
    parent: Entry | undefined;
  }
  const pathOf = (entry: Entry | undefined, key: string): string => {
    const path = [key];
    for (let e = entry; e && e.parent !== undefined; e = e.parent) path.unshift(e.key);
    return path.join('.');
  };
  const stack: Entry[] = [{ node: value, key: '', parent: undefined }];
  while (stack.length > 0) {
    const entry = stack.pop()!;
    const { node } = entry;
    if (node === null || typeof node !== 'object') continue;
    // Own keys only, `__proto__` included when JSON.parse made it one.
    for (const key of Object.keys(node)) {
      if (FORBIDDEN_KEYS.has(key)) return pathOf(entry, key);
      stack.push({ node: (node as Record<string, unknown>)[key], key, parent: entry });
    }
  }
  return undefined;
}

/** Throws VALIDATION_FAILED when `value` has a forbidden key at any depth; for every client payload. */
export function assertNoForbiddenKeys(value: unknown): void {
  const field = findForbiddenKey(value);
  if (field === undefined) return;
  const message = `"${field}" is not allowed`;
  throw new ValidationError(message, [{ field, message }]);
}

/**
 * An id as the API takes it: any UUID spelling PostgreSQL's `uuid` type stores (any version, either letter
 * case). Front nodes answer anything else NOT_FOUND (an id that cannot exist); workers check the batches
 * they take against the same pattern, so an id a front node let through can never fail a worker's batch
 * (and with it the other users' sends that share it).
 */
export const UUID_PATTERN = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

/** The characters of `value`, as the contract counts them: Unicode code points. */
export function charCount(value: string): number {
  let count = 0;
  for (const _ of value) count++;
  return count;
}

const CHAR_LIMIT = [{ name: 'limit', assert: (v: unknown) => Number.isInteger(v) && (v as number) >= 0, message: 'must be a non-negative integer' }];

/** A string rule on its character count, failing with joi's own `string.min`/`string.max` error and message. */
function charRule(name: string, within: (count: number, limit: number) => boolean, error: 'string.min' | 'string.max') {
  return {
    method(this: BaseJoi.Schema, limit: number) {
      return this.$_addRule({ name, args: { limit } });
    },
    args: CHAR_LIMIT,
    validate: (value: string, helpers: BaseJoi.CustomHelpers, { limit }: { limit: number }) =>
      within(charCount(value), limit) ? value : helpers.error(error, { limit, value }),
  };
}

/** The error type of a string that cannot be stored, in Joi's error details. */
export const UNSTORABLE_TEXT = 'string.unstorable';

const Joi: BaseJoi.Root = BaseJoi.extend((joi: BaseJoi.Root) => ({
  type: 'string',
  base: joi.string(),
  messages: { [UNSTORABLE_TEXT]: '{{#label}} contains characters that cannot be stored' },
  // Runs after joi's own string check (so `value` is a string, trimmed if asked) and before any rule.
  validate(value: string, helpers: BaseJoi.CustomHelpers) {
    if (!isStorableText(value)) return { value, errors: helpers.error(UNSTORABLE_TEXT) };
    return undefined;
  },
  // joi's `string.min`/`string.max` errors and messages, with the limit counted in characters.
  rules: {
    minChars: charRule('minChars', (count, limit) => count >= limit, 'string.min'),
    maxChars: charRule('maxChars', (count, limit) => count <= limit, 'string.max'),
  },
}));

declare module 'joi' {
  interface StringSchema {
    /** At least `limit` characters (Unicode code points). */
    minChars(limit: number): this;
    /** At most `limit` characters (Unicode code points). */
    maxChars(limit: number): this;
  }
}

export default Joi;

/**
 * Joi's types under the same name, so `Joi.Schema<T>`, `Joi.ValidationError` … work as with joi itself.
 * Generated from joi's index.d.ts (every declaration of its namespace); types only, nothing at run time.
 */
declare namespace Joi {
  export type Types = BaseJoi.Types;
  export type BasicType = BaseJoi.BasicType;
  export type LanguageMessages = BaseJoi.LanguageMessages;
  export type PresenceMode = BaseJoi.PresenceMode;
  export type ErrorFormattingOptions = BaseJoi.ErrorFormattingOptions;
  export type BaseValidationOptions = BaseJoi.BaseValidationOptions;
  export type ValidationOptions = BaseJoi.ValidationOptions;
  export type AsyncValidationOptions = BaseJoi.AsyncValidationOptions;
  export type LanguageMessageTemplate = BaseJoi.LanguageMessageTemplate;
  export type ErrorValidationOptions = BaseJoi.ErrorValidationOptions;
  export type RenameOptions = BaseJoi.RenameOptions;
  export type TopLevelDomainOptions = BaseJoi.TopLevelDomainOptions;
  export type HierarchySeparatorOptions = BaseJoi.HierarchySeparatorOptions;
  export type DependencyOptions = BaseJoi.DependencyOptions;
  export type EmailOptions = BaseJoi.EmailOptions;
  export type DomainOptions = BaseJoi.DomainOptions;
  export type HexOptions = BaseJoi.HexOptions;
  export type IpOptions = BaseJoi.IpOptions;
  export type GuidVersions = BaseJoi.GuidVersions;
  export type GuidOptions = BaseJoi.GuidOptions;
  export type UriOptions = BaseJoi.UriOptions;
  export type DataUriOptions = BaseJoi.DataUriOptions;
  export type Base64Options = BaseJoi.Base64Options;
  export type SwitchCases = BaseJoi.SwitchCases;
  export type SwitchDefault = BaseJoi.SwitchDefault;
  export type WhenOptions<ThenSchema = any, OtherwiseSchema = any> = BaseJoi.WhenOptions<ThenSchema, OtherwiseSchema>;
  export type WhenSchemaOptions<ThenSchema = any, OtherwiseSchema = any> = BaseJoi.WhenSchemaOptions<ThenSchema, OtherwiseSchema>;
  export type Cache = BaseJoi.Cache;
  export type CacheProvisionOptions = BaseJoi.CacheProvisionOptions;
  export type CacheConfiguration = BaseJoi.CacheConfiguration;
  export type CompileOptions = BaseJoi.CompileOptions;
  export type IsSchemaOptions = BaseJoi.IsSchemaOptions;
  export type ReferenceOptions = BaseJoi.ReferenceOptions;
  export type StringRegexOptions = BaseJoi.StringRegexOptions;
  export type RuleOptions = BaseJoi.RuleOptions;
  export type ErrorReport = BaseJoi.ErrorReport;
  export type ValidationError = BaseJoi.ValidationError;
  export type ValidationErrorItem = BaseJoi.ValidationErrorItem;
  export type ValidationErrorFunction = BaseJoi.ValidationErrorFunction;
  export type ValidationWarning = BaseJoi.ValidationWarning;
  export type ValidationResult<TSchema = any> = BaseJoi.ValidationResult<TSchema>;
  export type CreateErrorOptions = BaseJoi.CreateErrorOptions;
  export type ModifyOptions = BaseJoi.ModifyOptions;
  export type MutateRegisterOptions = BaseJoi.MutateRegisterOptions;
  export type SetFlagOptions = BaseJoi.SetFlagOptions;
  export type CustomHelpers<V = any> = BaseJoi.CustomHelpers<V>;
  export type CustomValidator<V = any, R = V> = BaseJoi.CustomValidator<V, R>;
  export type ExternalHelpers<V = any> = BaseJoi.ExternalHelpers<V>;
  export type ExternalValidationFunction<V = any, R = V> = BaseJoi.ExternalValidationFunction<V, R>;
  export type Primitives = BaseJoi.Primitives;
  export type SchemaLikeWithoutArray<TSchema = any> = BaseJoi.SchemaLikeWithoutArray<TSchema>;
  export type SchemaLike<TSchema = any> = BaseJoi.SchemaLike<TSchema>;
  export type NullableType<T> = BaseJoi.NullableType<T>;
  export type IsPrimitiveSubset<T> = BaseJoi.IsPrimitiveSubset<T>;
  export type IsUnion<T, U extends T = T> = BaseJoi.IsUnion<T, U>;
  export type IsNonPrimitiveSubsetUnion<T> = BaseJoi.IsNonPrimitiveSubsetUnion<T>;
  export type ObjectPropertiesSchema<T = any> = BaseJoi.ObjectPropertiesSchema<T>;
  export type PartialSchemaMap<TSchema = any> = BaseJoi.PartialSchemaMap<TSchema>;
  export type StrictSchemaMap<TSchema = any> = BaseJoi.StrictSchemaMap<TSchema>;
  export type SchemaMap<TSchema = any, isStrict = false> = BaseJoi.SchemaMap<TSchema, isStrict>;
  export type Schema<P = any> = BaseJoi.Schema<P>;
  export type SchemaFunction = BaseJoi.SchemaFunction;
  export type AddRuleOptions = BaseJoi.AddRuleOptions;
  export type GetRuleOptions = BaseJoi.GetRuleOptions;
  export type SchemaInternals = BaseJoi.SchemaInternals;
  export type AnySchema<TSchema = any> = BaseJoi.AnySchema<TSchema>;
  export type Description = BaseJoi.Description;
  export type Context = BaseJoi.Context;
  export type State = BaseJoi.State;
  export type BooleanSchema<TSchema = boolean> = BaseJoi.BooleanSchema<TSchema>;
  export type NumberSchema<TSchema = number> = BaseJoi.NumberSchema<TSchema>;
  export type StringSchema<TSchema = string> = BaseJoi.StringSchema<TSchema>;
  export type SymbolSchema<TSchema = Symbol> = BaseJoi.SymbolSchema<TSchema>;
  export type ArraySortOptions = BaseJoi.ArraySortOptions;
  export type ArrayUniqueOptions = BaseJoi.ArrayUniqueOptions;
  export type ComparatorFunction = BaseJoi.ComparatorFunction;
  export type UnwrapSchemaLikeWithoutArray<T> = BaseJoi.UnwrapSchemaLikeWithoutArray<T>;
  export type NoNestedArrays<T extends readonly unknown[]> = BaseJoi.NoNestedArrays<T>;
  export type ArraySchema<TSchema = any[]> = BaseJoi.ArraySchema<TSchema>;
  export type ObjectPatternOptions = BaseJoi.ObjectPatternOptions;
  export type ObjectSchema<TSchema = any> = BaseJoi.ObjectSchema<TSchema>;
  export type BinarySchema<TSchema = Buffer> = BaseJoi.BinarySchema<TSchema>;
  export type DateSchema<TSchema = Date> = BaseJoi.DateSchema<TSchema>;
  export type FunctionSchema<TSchema = Function> = BaseJoi.FunctionSchema<TSchema>;
  export type AlternativesSchema<TSchema = any> = BaseJoi.AlternativesSchema<TSchema>;
  export type LinkSchema<TSchema = any> = BaseJoi.LinkSchema<TSchema>;
  export type Reference = BaseJoi.Reference;
  export type ExtensionBoundSchema = BaseJoi.ExtensionBoundSchema;
  export type RuleArgs = BaseJoi.RuleArgs;
  export type RuleMethod = BaseJoi.RuleMethod;
  export type ExtensionRule = BaseJoi.ExtensionRule;
  export type CoerceResult = BaseJoi.CoerceResult;
  export type CoerceFunction = BaseJoi.CoerceFunction;
  export type CoerceObject = BaseJoi.CoerceObject;
  export type PrepareFunction = BaseJoi.PrepareFunction;
  export type PrepareObject = BaseJoi.PrepareObject;
  export type ExtensionFlag = BaseJoi.ExtensionFlag;
  export type ExtensionTermManifest = BaseJoi.ExtensionTermManifest;
  export type ExtensionTerm = BaseJoi.ExtensionTerm;
  export type Extension = BaseJoi.Extension;
  export type ExtensionFactory = BaseJoi.ExtensionFactory;
  export type Err = BaseJoi.Err;
  export type Root = BaseJoi.Root;
}
