import type { QueryBuilder, Model } from 'objection';

/** One page of a list asked for: at most `limit` items, those after the item whose key is `after`. */
export interface Page<K> {
  limit: number;
  /** Items after this one, in the list's order; none: from the first. */
  after?: K;
}

/** A page read: its items, and the key of its last item when more follow (null when it is the last). */
export interface PageRead<T, K> {
  items: T[];
  next: K | null;
}

/** Of `rows` read with a limit one above the page's, the page, and where the next one starts. */
export function pageFrom<T, K>(rows: T[], limit: number, keyOf: (last: T) => K): PageRead<T, K> {
  const items = rows.slice(0, limit);
  const last = items[items.length - 1];
  return { items, next: rows.length > limit && last ? keyOf(last) : null };
}

/**
 * Where a page of a member list ends: the last member's join time and user id, the list's order. The time
 * is PostgreSQL's own, to the microsecond (a JavaScript Date would round it to the millisecond and could
 * skip or repeat members who joined within the same millisecond).
 */
export interface MemberPageKey {
  /** ISO 8601 in UTC with microseconds: 2026-12-03T11:20:00.123456Z. */
  joinedAt: string;
  userId: string;
}

/** Where a page of the DM list ends: the last DM's latest activity (as PostgreSQL has it, to the microsecond) and id. */
export interface DmPageKey {
  activeAt: string;
  channelId: string;
}

/** Where a page of the caller's workspaces ends: the last one's creation time (to the microsecond) and id. */
export interface WorkspacePageKey {
  createdAt: string;
  workspaceId: string;
}

/** Where a page of the unread list ends: the last channel's workspace, name (null for a DM) and id. */
export interface UnreadPageKey {
  workspaceId: string;
  name: string | null;
  channelId: string;
}

/** A timestamptz SQL expression as a page key's time: ISO 8601 in UTC with microseconds. */
export const microsIso = (expression: string) => `to_char(${expression} AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')`;

/**
 * Reads one page of a member list ordered by (join time, user id) from `query` (which joins `users`).
 */
export async function readMemberPage<T>(
  query: QueryBuilder<Model, unknown>,
  joinedAtColumn: string,
  page: Page<MemberPageKey>,
): Promise<PageRead<T, MemberPageKey>> {
  if (page.after) {
    query.whereRaw(`(${joinedAtColumn}, users.id) > (?::timestamptz, ?::uuid)`, [page.after.joinedAt, page.after.userId]);
  }
  const rows = await query
    .orderBy(joinedAtColumn)
    .orderBy('users.id')
    .limit(page.limit + 1)
    .select(query.modelClass().raw(`${microsIso(joinedAtColumn)} AS "pageJoinedAt"`))
    .castTo<Array<T & { userId: string; pageJoinedAt?: string }>>();
  const read = pageFrom(rows, page.limit, (last) => ({ joinedAt: last.pageJoinedAt!, userId: last.userId }));
  for (const member of read.items) delete member.pageJoinedAt;
  return read;
}
