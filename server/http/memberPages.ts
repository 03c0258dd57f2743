import type { Request, Response } from 'express';
import { ValidationError } from '../../shared/errors.js';
import Joi from '../../shared/validation.js';
import type { MemberPage, MemberPageKey } from '../domain/memberPages.js';
import { UUID_PATTERN } from '../domain/messages.js';
import { parse } from './validation.js';

/** The most members one answer lists, and how many it lists when not asked for fewer. */
export const MEMBER_PAGE_MAX = 1000;

/**
 * The query string of a member list. The body keeps the contract's shape (`{members}`, nothing beside it):
 * where more members follow, the answer says so in a `Link: <…>; rel="next"` header (RFC 8288), whose URL
 * carries `cursor`, as GitHub's API pages its lists.
 */
export const memberPageSchema = Joi.object({
  limit: Joi.number().integer().min(1).max(MEMBER_PAGE_MAX).default(MEMBER_PAGE_MAX),
  cursor: Joi.string().max(200),
});

/** What the API reference says of paging, on each member list. */
export const MEMBER_PAGE_DOC =
  `At most \`limit\` members (1-${MEMBER_PAGE_MAX}, default ${MEMBER_PAGE_MAX}); when more follow, a \`Link: <...>; rel="next"\` header ` +
  'gives the URL of the next page (with its `cursor`). The body is `{members}` either way.';

/** The success answer's headers, in the API reference. */
export const MEMBER_PAGE_HEADERS = { Link: 'when more members follow: `<url of the next page>; rel="next"`' };

const JOINED_AT = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{6}Z$/;

const encode = (key: MemberPageKey) => Buffer.from(`${key.joinedAt}_${key.userId}`).toString('base64url');

function decode(cursor: string): MemberPageKey {
  const [joinedAt, userId, ...rest] = Buffer.from(cursor, 'base64url').toString().split('_');
  if (rest.length > 0 || !JOINED_AT.test(joinedAt ?? '') || !UUID_PATTERN.test(userId ?? '') || Number.isNaN(Date.parse(joinedAt))) {
    throw new ValidationError('"cursor" is not one this server gave', [{ field: 'cursor', message: '"cursor" is not one this server gave' }]);
  }
  return { joinedAt, userId: userId.toLowerCase() };
}

/** The page a member list request asks for. */
export function memberPageOf(req: Request): MemberPage {
  const { limit, cursor } = parse(memberPageSchema, { ...req.query });
  return { limit, ...(cursor !== undefined && { after: decode(cursor) }) };
}

/** Sends a page of members, with the next page's link when there is one. */
export function sendMemberPage(req: Request, res: Response, page: MemberPage, found: { members: unknown[]; next: MemberPageKey | null }): void {
  if (found.next) {
    const next = new URLSearchParams({ limit: String(page.limit), cursor: encode(found.next) });
    res.set('Link', `<${req.baseUrl}${req.path}?${next}>; rel="next"`);
  }
  res.json({ members: found.members });
}
