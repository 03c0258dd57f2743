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
 * Where a page of a list ordered by a time and an id ends (members by join time, DMs by latest activity,
 * workspaces by creation): the last item's time and id. The time is PostgreSQL's own, to the microsecond
 * (a JavaScript Date would round it to the millisecond and could skip or repeat items of the same
 * millisecond).
 */
export interface TimeIdKey {
  /** ISO 8601 in UTC with microseconds: 2026-12-03T11:20:00.123456Z (microsIso). */
  time: string;
  id: string;
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
 * Reads one page from `query`, ordered by (`timeColumn`, `idColumn`) ascending: a member list by join
 * time and user id, the caller's workspaces by creation time and id.
 */
export async function readTimeIdPage<T>(
  query: QueryBuilder<Model, unknown>,
  timeColumn: string,
  idColumn: string,
  page: Page<TimeIdKey>,
): Promise<PageRead<T, TimeIdKey>> {
  if (page.after) query.whereRaw(`(${timeColumn}, ${idColumn}) > (?::timestamptz, ?::uuid)`, [page.after.time, page.after.id]);
  const rows = await query
    .orderBy(timeColumn)
    .orderBy(idColumn)
    .limit(page.limit + 1)
    .select(query.modelClass().raw(`${microsIso(timeColumn)} AS "pageTime", ${idColumn} AS "pageId"`))
    .castTo<Array<T & { pageTime?: string; pageId?: string }>>();
  const read = pageFrom(rows, page.limit, (last) => ({ time: last.pageTime!, id: last.pageId! }));
  for (const item of read.items) {
    delete item.pageTime;
    delete item.pageId;
  }
  return read;
}
