import { randomUUID } from 'node:crypto';
import { NotFoundError, ValidationError } from '../../shared/errors.js';
import type { ChangeRequest, EditRequest, ReactionRequest, SendOutcome } from '../../shared/queues.js';
import { UUID_PATTERN } from '../../shared/validation.js';
import { normaliseBody, submitToQueue, type MessagingDeps } from './messages.js';

const SHORT_NAME = /^[a-z0-9_+-]{1,64}$/;
// One RGI emoji, skin tones, flags and ZWJ sequences included (the `v` flag's emoji property of strings).
const ONE_EMOJI = new RegExp('^\\p{RGI_Emoji}$', 'v');

/**
 * Unicode emoji already accepted. ONE_EMOJI is an alternation of every RGI sequence: about 10 µs a test,
 * and far more when V8 has flushed its compiled code; the few emoji people react with are remembered.
 */
const knownEmoji = new Set<string>();
const KNOWN_EMOJI_MAX = 4096;

/** A reaction's emoji: a short name (`thumbsup`, `+1`) or exactly one Unicode emoji. */
export function parseEmoji(raw: string): string {
  if (SHORT_NAME.test(raw) || knownEmoji.has(raw)) return raw;
  if (raw.length <= 64 && ONE_EMOJI.test(raw)) {
    if (knownEmoji.size >= KNOWN_EMOJI_MAX) knownEmoji.clear();
    knownEmoji.add(raw);
    return raw;
  }
  throw new ValidationError('"emoji" must be a short name of a-z, 0-9, _, + and - (at most 64) or one Unicode emoji', [
    { field: 'emoji' },
  ]);
}

interface TargetInput {
  channelId: string;
  messageId: string;
  clientChangeId: string | null;
}

export type EditInput = TargetInput & { body: string };
export type ReactionInput = TargetInput & { emoji: string };

type Change = DistributiveOmit<Exclude<ChangeRequest, { kind?: 'send' }>, 'id' | 'userId'>;
type DistributiveOmit<T, K extends PropertyKey> = T extends unknown ? Omit<T, K> : never;

/**
 * One change of a stored message, from a socket or from REST: checked here, authorized in the worker's
 * statement that applies it (worker/actions/authorizeChanges.ts: policy compiled to a table), and applied through the same
 * ordered admission, rate limit and partition queue as sends, so a user's send and later edit are
 * applied in that order. Resolves with the definitive outcome, like sendMessage.
 */
function changeMessage(deps: MessagingDeps, userId: string, build: () => Change) {
  // Built inside the admission, as a send is: a refused body or emoji is counted like a send's.
  return submitToQueue(deps, userId, () => {
    const change = build();
    // Opaque ids that cannot exist never reach the database, and look like any other unknown one.
    if (!UUID_PATTERN.test(change.channelId)) throw new NotFoundError('Channel');
    if (!UUID_PATTERN.test(change.messageId)) throw new NotFoundError('Message');
    const channelId = change.channelId.toLowerCase();
    const messageId = change.messageId.toLowerCase();
    return { ...change, id: randomUUID(), userId, channelId, messageId } as ChangeRequest;
  });
}

export function editMessage(deps: MessagingDeps, userId: string, input: EditInput): Promise<SendOutcome> {
  return changeMessage(deps, userId, () => ({
    kind: 'edit',
    channelId: input.channelId,
    messageId: input.messageId,
    clientChangeId: input.clientChangeId,
    body: normaliseBody(input.body, deps.maxBodyLength),
  }) satisfies Omit<EditRequest, 'id' | 'userId'>);
}

export function deleteMessage(deps: MessagingDeps, userId: string, input: TargetInput): Promise<SendOutcome> {
  return changeMessage(deps, userId, () => ({ kind: 'delete', ...input }));
}

export function reactToMessage(
  deps: MessagingDeps,
  userId: string,
  kind: ReactionRequest['kind'],
  input: ReactionInput,
): Promise<SendOutcome> {
  return changeMessage(deps, userId, () => ({
    kind,
    channelId: input.channelId,
    messageId: input.messageId,
    clientChangeId: input.clientChangeId,
    emoji: parseEmoji(input.emoji),
  }));
}
