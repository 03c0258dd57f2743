import type { MembershipChange } from '../../shared/events.js';

/**
 * Keeps every socket of a user, on every front node, in the rooms of exactly the channels the user
 * belongs to. Domain actions call it after their transaction commits and before they return.
 */
export interface Subscriptions {
  apply(change: MembershipChange): Promise<void>;
}

/** `userId` joins `channelId`, whose `last_rev` was `rev` when the membership committed. */
export function joinChange(userId: string, channelId: string, rev: number): MembershipChange {
  return { userId, join: [channelId], leave: [], channelRevs: { [channelId]: rev } };
}
