import type { ChannelEventName, ClientToServerEvents } from '../../shared/events.js';
import type { ChangeKind as QueuedKind } from '../../shared/queues.js';

/**
 * The change stream's names as a client sees them (docs/API.md, "Edits, deletes, reactions and threads"):
 * the tests and the bench's load agents both speak it, from this one list.
 */

/** Every event a channel's sockets receive, each with the channel's rev of the change. */
export const REV_EVENTS = ['message:new', 'message:updated', 'message:deleted', 'reaction:added', 'reaction:removed'] as const;
export type RevEvent = (typeof REV_EVENTS)[number] & ChannelEventName;
// A name added to the product's ChannelEvent fails to compile here until it is listed above.
const everyNameListed: [Exclude<ChannelEventName, RevEvent>] extends [never] ? true : never = true;
void everyNameListed;

/** The changes of the contract, by the client event that makes them. */
export const CHANGE_KINDS = ['edit', 'delete', 'reaction:add', 'reaction:remove'] as const;
export type ChangeKind = (typeof CHANGE_KINDS)[number] & Exclude<QueuedKind, 'send'>;
// A kind of change added to the product's queue fails to compile here until it is listed above.
const everyKindListed: [Exclude<Exclude<QueuedKind, 'send'>, ChangeKind>] extends [never] ? true : never = true;
void everyKindListed;

/** The client → server event of each change, and the event it makes at the channel's sockets. */
export const CHANGE_EVENTS: Record<ChangeKind, { emit: keyof ClientToServerEvents; event: RevEvent }> = {
  edit: { emit: 'message:edit', event: 'message:updated' },
  delete: { emit: 'message:delete', event: 'message:deleted' },
  'reaction:add': { emit: 'reaction:add', event: 'reaction:added' },
  'reaction:remove': { emit: 'reaction:remove', event: 'reaction:removed' },
};
