import type { QueryBuilder, Model } from 'objection';

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

export interface MemberPage {
  limit: number;
  /** Members after this one; none: from the first. */
  after?: MemberPageKey;
}

/**
 * Reads one page of a member list ordered by (join time, user id) from `query` (which joins `users`),
 * and where the next page starts, or null when this one is the last.
 */
export async function readMemberPage<T>(
  query: QueryBuilder<Model, unknown>,
  joinedAtColumn: string,
  page: MemberPage,
): Promise<{ members: T[]; next: MemberPageKey | null }> {
  if (page.after) {
    query.whereRaw(`(${joinedAtColumn}, users.id) > (?::timestamptz, ?::uuid)`, [page.after.joinedAt, page.after.userId]);
  }
  const rows = await query
    .orderBy(joinedAtColumn)
    .orderBy('users.id')
    .limit(page.limit + 1)
    .select(query.modelClass().raw(`to_char(${joinedAtColumn} AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"') AS "pageJoinedAt"`))
    .castTo<Array<T & { userId: string; pageJoinedAt?: string }>>();
  const more = rows.length > page.limit;
  const members = rows.slice(0, page.limit);
  const last = members[members.length - 1];
  const next = more && last ? { joinedAt: last.pageJoinedAt!, userId: last.userId } : null;
  for (const member of members) delete member.pageJoinedAt;
  return { members, next };
}
