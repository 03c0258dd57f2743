import type { Request, Response } from 'express';
import { ValidationError } from '../../shared/errors.js';
import Joi from '../../shared/validation.js';
import type { Page, PageRead, TimeIdKey, UnreadPageKey } from '../domain/pages.js';
import { UUID_PATTERN } from '../domain/messages.js';
import { CHANNEL_NAME_PATTERN, parse } from './validation.js';

/** The most items one answer of a paged list holds, and how many it holds when not asked for fewer. */
export const PAGE_MAX = 1000;

/**
 * The query string of a paged list. The body keeps the contract's shape (`{members}`, `{channels}`, nothing
 * beside it): where more items follow, the answer says so in a `Link: <…>; rel="next"` header (RFC 8288),
 * whose URL carries `cursor`, as GitHub's API pages its lists.
 */
export const pageSchema = Joi.object({
  limit: Joi.number().integer().min(1).max(PAGE_MAX).default(PAGE_MAX),
  cursor: Joi.string().max(200),
});

/** What the API reference says of paging, on each paged list of `items` ("members", "channels"). */
export const pageDoc = (items: string) =>
  `At most \`limit\` ${items} (1-${PAGE_MAX}, default ${PAGE_MAX}); when more follow, a \`Link: <...>; rel="next"\` header ` +
  `gives the URL of the next page (with its \`cursor\`). The body is \`{${items}}\` either way.`;

/** The success answer's headers, in the API reference. */
export const pageHeaders = (items: string) => ({ Link: `when more ${items} follow: \`<url of the next page>; rel="next"\`` });

/** How a list's page key travels as the opaque `cursor`; `decode` answers undefined to a cursor it did not make. */
export interface PageCursor<K> {
  encode(key: K): string;
  decode(cursor: string): K | undefined;
}

const MICROS_ISO = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{6}Z$/;

/**
 * Lists ordered by a time and an id (members, DMs, workspaces): the key as `<time>_<id>`, the time to the
 * microsecond (microsIso).
 */
export const timeIdCursor: PageCursor<TimeIdKey> = {
  encode: (key) => Buffer.from(`${key.time}_${key.id}`).toString('base64url'),
  decode(cursor) {
    const [time, id, ...rest] = Buffer.from(cursor, 'base64url').toString().split('_');
    if (rest.length > 0 || !MICROS_ISO.test(time ?? '') || !UUID_PATTERN.test(id ?? '') || Number.isNaN(Date.parse(time))) return undefined;
    return { time, id: id.toLowerCase() };
  },
};

/** Channel lists: after a name. */
export const channelCursor: PageCursor<string> = {
  encode: (name) => Buffer.from(name).toString('base64url'),
  decode(cursor) {
    const name = Buffer.from(cursor, 'base64url').toString();
    return CHANNEL_NAME_PATTERN.test(name) ? name : undefined;
  },
};

/** The unread list: after (workspace id, channel name or null for a DM, channel id). */
export const unreadCursor: PageCursor<UnreadPageKey> = {
  encode: (key) => Buffer.from(JSON.stringify([key.workspaceId, key.name, key.channelId])).toString('base64url'),
  decode(cursor) {
    let parts: unknown;
    try {
      parts = JSON.parse(Buffer.from(cursor, 'base64url').toString());
    } catch {
      return undefined;
    }
    if (!Array.isArray(parts) || parts.length !== 3) return undefined;
    const [workspaceId, name, channelId] = parts as unknown[];
    const isId = (v: unknown): v is string => typeof v === 'string' && UUID_PATTERN.test(v);
    if (!isId(workspaceId) || !isId(channelId) || !(name === null || (typeof name === 'string' && CHANNEL_NAME_PATTERN.test(name)))) return undefined;
    return { workspaceId: workspaceId.toLowerCase(), name, channelId: channelId.toLowerCase() };
  },
};

/** The page a list request asks for. */
function pageOf<K>(req: Request, keys: PageCursor<K>): Page<K> {
  const { limit, cursor } = parse(pageSchema, { ...req.query });
  if (cursor === undefined) return { limit };
  const after = keys.decode(cursor);
  if (after === undefined) {
    throw new ValidationError('"cursor" is not one this server gave', [{ field: 'cursor', message: '"cursor" is not one this server gave' }]);
  }
  return { limit, after };
}

/**
 * Answers a list request with the page it asks for (`limit`, `cursor`), read by `read`, as
 * `{[items]: [...]}`, with the next page's link when there is one.
 */
export async function sendPage<K>(
  req: Request,
  res: Response,
  items: string,
  keys: PageCursor<K>,
  read: (page: Page<K>) => Promise<PageRead<unknown, K>>,
): Promise<void> {
  const page = pageOf(req, keys);
  const found = await read(page);
  if (found.next !== null) {
    const next = new URLSearchParams({ limit: String(page.limit), cursor: keys.encode(found.next) });
    res.set('Link', `<${req.baseUrl}${req.path}?${next}>; rel="next"`);
  }
  res.json({ [items]: found.items });
}
