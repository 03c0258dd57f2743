import { InternalError, NotFoundError, type AppError, type ErrorBody } from '../../shared/errors.js';
import { Channel, WORKSPACE_ROLES, type WorkspaceRole } from '../../shared/models/index.js';
import { can, type Action } from '../../shared/policy.js';
import type { ChangeKind } from '../../shared/queues.js';

/**
 * How a batch's changes are authorized: by shared/policy.ts, as everything else, but decided inside the
 * statement that applies them (persist_channel_changes with rules: migrations/*_authorize_changes_in_persist.ts).
 *
 * The facts a `message.*` rule is decided on are few and each takes few values, so the worker asks
 * policy about every combination once, at start-up, and passes the answers with each batch as a table;
 * PostgreSQL reads the facts of each change under the channel's lock and looks its answer up. No rule is
 * written twice, and a batch holding changes costs one statement, as a batch of sends does. Before, the
 * worker read the facts first: one more statement and round trip per batch, and sends got slower when
 * changes were mixed in (docs/PERFORMANCE.md).
 */

export type ChangeAction = Action & `message.${string}`;

export const CHANGE_ACTIONS: Record<Exclude<ChangeKind, 'send'>, ChangeAction> = {
  edit: 'message.edit',
  delete: 'message.delete',
  'reaction:add': 'message.react',
  'reaction:remove': 'message.react',
};

/** Who someone is to the caller: nobody, another user, or the caller. */
export type Who = 'none' | 'other' | 'caller';

/** What a change is decided on, as persist_channel_changes reads it under the channel's lock; null: no such channel. */
export interface ChangeFacts {
  role: WorkspaceRole | null;
  isMember: boolean;
  isPrivate: boolean;
  archived: boolean;
  creator: Who;
  /** The message's author; 'none' when the channel has no such message. */
  author: Who;
  deleted: boolean;
  /** The caller's `clientChangeId` is already kept: a retry of a change applied before. */
  retried: boolean;
}

const ROLES = [null, ...WORKSPACE_ROLES] as const;
const WHO: readonly Who[] = ['none', 'other', 'caller'];
/** The message's state: none, or its author (another user, the caller), live or deleted. */
const MESSAGES = [
  { author: 'none', deleted: false },
  { author: 'other', deleted: false },
  { author: 'caller', deleted: false },
  { author: 'other', deleted: true },
  { author: 'caller', deleted: true },
] as const;
const RADICES = [ROLES.length, 2, 2, 2, WHO.length, MESSAGES.length, 2];
/** Every key of a rule table: 0 for no channel, then each combination of facts. */
export const CHANGE_RULE_KEYS = 1 + RADICES.reduce((a, b) => a * b, 1);

/**
 * The index of `facts` in a rule table: a number in mixed radix, the fields in RADICES' order. PostgreSQL's
 * `change_rule_key()` computes the same (test/db/change-rules.test.ts holds them to each other).
 */
export function changeRuleKey(facts: ChangeFacts | null): number {
  if (!facts) return 0;
  const message = MESSAGES.findIndex((m) => m.author === facts.author && (m.author === 'none' || m.deleted === facts.deleted));
  const digits = [
    ROLES.indexOf(facts.role),
    Number(facts.isMember),
    Number(facts.isPrivate),
    Number(facts.archived),
    WHO.indexOf(facts.creator),
    message,
    Number(facts.retried),
  ];
  return 1 + digits.reduceRight((acc, digit, i) => acc * RADICES[i] + digit, 0);
}

/** The facts at `key`: changeRuleKey's inverse. */
export function changeFactsOf(key: number): ChangeFacts | null {
  if (key === 0) return null;
  let rest = key - 1;
  const digits = RADICES.map((radix) => {
    const digit = rest % radix;
    rest = Math.floor(rest / radix);
    return digit;
  });
  const [role, isMember, isPrivate, archived, creator, message, retried] = digits;
  return {
    role: ROLES[role],
    isMember: isMember === 1,
    isPrivate: isPrivate === 1,
    archived: archived === 1,
    creator: WHO[creator],
    author: MESSAGES[message].author,
    deleted: MESSAGES[message].deleted,
    retried: retried === 1,
  };
}

const CALLER = '00000000-0000-4000-8000-000000000001';
const OTHER = '00000000-0000-4000-8000-000000000002';
const userOf = (who: Who) => (who === 'none' ? null : who === 'caller' ? CALLER : OTHER);

/** Policy's answer to a change of `action` on `facts`: null when allowed. */
export function decideChange(action: ChangeAction, facts: ChangeFacts | null): AppError | null {
  if (!facts) return new NotFoundError('Channel');
  const channel = Channel.fromJson({ id: OTHER, isPrivate: facts.isPrivate, archived: facts.archived, createdBy: userOf(facts.creator) });
  const actor = { userId: CALLER, role: facts.role };
  // The retry of a change already applied was authorized then; the message may be deleted since. The
  // function answers it with the stored message, to a member of the channel.
  const decision = facts.retried
    ? can(actor, 'channel.follow', { channel, isMember: facts.isMember })
    : can(actor, action, {
        channel,
        isMember: facts.isMember,
        message: facts.author === 'none' ? null : { authorId: userOf(facts.author)!, deleted: facts.deleted },
      });
  return decision.allow ? null : decision.error;
}

export interface ChangeRules {
  /** Per action, one character per key: 'a' allowed, or the refusal's code in `refusals`. */
  table: Record<ChangeAction, string>;
  /** The refusals by code. */
  refusals: Map<string, ErrorBody>;
}

/** Every decision of every `message.*` action, for the function to look up. */
export function compileChangeRules(): ChangeRules {
  const refusals = new Map<string, ErrorBody>();
  const codes = new Map<string, string>();
  const codeOf = (error: AppError | null): string => {
    if (!error) return 'a';
    const body = error.toBody();
    const key = JSON.stringify(body);
    let code = codes.get(key);
    if (code === undefined) {
      // 'a' is taken, '?' is the function's own (no decision found).
      code = String.fromCharCode('b'.charCodeAt(0) + codes.size);
      if (code > '~') throw new Error('Policy refuses changes in more ways than a rule table has codes for');
      codes.set(key, code);
      refusals.set(code, body);
    }
    return code;
  };
  const table = {} as Record<ChangeAction, string>;
  for (const action of new Set(Object.values(CHANGE_ACTIONS))) {
    table[action] = Array.from({ length: CHANGE_RULE_KEYS }, (_, key) => codeOf(decideChange(action, changeFactsOf(key)))).join('');
  }
  return { table, refusals };
}

let compiled: (ChangeRules & { json: string }) | undefined;

/** The rules of this process, compiled once; `json` is what persist_channel_changes takes. */
export function changeRules(): ChangeRules & { json: string } {
  compiled ??= (() => {
    const rules = compileChangeRules();
    return { ...rules, json: JSON.stringify(rules.table) };
  })();
  return compiled;
}

/** The error of a refusal code the function answered. */
export function refusalOf(code: string): ErrorBody {
  return changeRules().refusals.get(code) ?? new InternalError().toBody();
}
