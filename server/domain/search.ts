import { ValidationError } from '../../shared/errors.js';
import { Channel, Message, toMessageDto, type ChannelDto, type MessageDto } from '../../shared/models/index.js';
import { authorizeInWorkspace } from './access.js';
import { UUID_PATTERN } from './messages.js';

/**
 * Message search: the messages of the channels (DMs included) the caller is a member of, full-text
 * matched on `messages.search_vector` (migrations/20261202060000_message_search.ts), newest first.
 */

export const SEARCH_QUERY_MAX_LENGTH = 256;
export const SEARCH_LIMIT_DEFAULT = 20;
export const SEARCH_LIMIT_MAX = 100;

export interface SearchQuery {
  q: string;
  limit: number;
  /** A page's `nextBefore`: the hits older than the last one of that page. */
  before?: string;
}

export interface SearchHit {
  message: MessageDto;
  channel: ChannelDto;
  /** HTML: the body's text escaped, every match in <mark>…</mark>. */
  snippet: string;
}

export interface SearchPage {
  results: SearchHit[];
  nextBefore: string | null;
}

/** What `q` asks for: its words (websearch syntax: "a phrase", or, -not) and its operators. */
export interface ParsedQuery {
  text: string;
  from: string[];
  in: string[];
}

const OPERATOR = /(?<=^|\s)(from|in):(\S*)/gi;

const invalidQuery = (message: string) => new ValidationError(message, [{ field: 'q', message }]);

export function parseSearchQuery(q: string): ParsedQuery {
  const parsed: ParsedQuery = { text: '', from: [], in: [] };
  parsed.text = q
    .replace(OPERATOR, (_, name: string, value: string) => {
      const operator = name.toLowerCase() as 'from' | 'in';
      if (!UUID_PATTERN.test(value)) {
        throw invalidQuery(`"q" has ${operator}:${value}, but ${operator}: needs a ${operator === 'from' ? 'user' : 'channel'} id`);
      }
      parsed[operator].push(value.toLowerCase());
      return ' ';
    })
    .replace(/\s+/g, ' ')
    .trim();
  if (parsed.text === '') throw invalidQuery('"q" must have words to search for, not only from: and in:');
  return parsed;
}

/** The cursor of the hits older than `hit`: its creation time in microseconds and its id. */
function encodeCursor(createdUs: number, id: string): string {
  return Buffer.from(`${createdUs}:${id}`).toString('base64url');
}

function decodeCursor(before: string): { createdUs: number; id: string } {
  const match = /^(\d{1,16}):([0-9a-f-]{36})$/.exec(Buffer.from(before, 'base64url').toString('latin1'));
  if (!match || !UUID_PATTERN.test(match[2])) {
    const message = '"before" must be a nextBefore of an earlier page';
    throw new ValidationError(message, [{ field: 'before', message }]);
  }
  return { createdUs: Number(match[1]), id: match[2] };
}

// Private-use characters the bodies are stripped of, so that only ts_headline places them.
const START = '\uE000';
const STOP = '\uE001';
/** Up to this many characters the snippet is the whole body; longer, the best-matching stretch of about 30 words. */
export const SNIPPET_WHOLE_BODY_MAX = 280;
const WHOLE_BODY = `StartSel=${START}, StopSel=${STOP}, HighlightAll=true`;
const FRAGMENT = `StartSel=${START}, StopSel=${STOP}, MaxFragments=1, MaxWords=30, MinWords=15`;

/**
 * ts_headline reads the body HTML-escaped: its parser would drop anything that looks like a tag from a
 * raw body, and the snippet comes out escaped, so that the markers alone become markup.
 */
const ESCAPED_BODY = `replace(replace(replace(replace(replace(translate(h.body, '${START}${STOP}', ''),
  '&', '&amp;'), '<', '&lt;'), '>', '&gt;'), '"', '&quot;'), '''', '&#39;')`;

function toSnippet(headline: string): string {
  // Nothing else can be markup; escaping again what should never be there keeps it so.
  return headline.replace(/[<>]/g, (c) => (c === '<' ? '&lt;' : '&gt;')).replaceAll(START, '<mark>').replaceAll(STOP, '</mark>');
}

/**
 * With from:, the hits older than a channel's newest messages are taken through the GIN index, never by
 * reading the channel backwards: an author writes in few of the caller's channels, which the planner
 * cannot know, and a backward scan of a channel they never wrote in would read all of it. `+ 0` keeps the
 * history index out of the ordering.
 */
const AUTHOR_ORDER = 'm.seq + 0';

/**
 * How many of a channel's newest messages are searched first, on their own: reading them in seq order
 * (a range of the history index, pages shared by every channel's newest) is cheaper than reading all of a
 * channel's hits through the GIN index when a word is in more than about 1 message in 1,000.
 */
const NEWEST_WINDOW = 2000;

type HitRow = Parameters<typeof toMessageDto>[0] & { created_us: number; snippet: string };

/**
 * One page of hits. The caller's workspace decides NOT_FOUND (policy 'workspace.view'); inside it, the
 * scope is channel membership, as for history ('channel.history'): a channel the caller is not in, named
 * by `in:` or not, only ever yields no hits.
 *
 * The statement takes the newest hits of each member channel (by seq, backwards on the history index
 * when the words are common, through the (channel_id, user_id, search_vector) GIN index when they are
 * rare: the planner picks per channel, in its newest NEWEST_WINDOW messages first) and merges them. The
 * costliest are words of middling frequency (docs/PERFORMANCE.md, "Search").
 */
export async function searchMessages(userId: string, workspaceId: string, query: SearchQuery): Promise<SearchPage> {
  await authorizeInWorkspace(userId, 'workspace.view', { workspaceId });
  const parsed = parseSearchQuery(query.q);
  const cursor = query.before === undefined ? null : decodeCursor(query.before);
  const tsquery = 'websearch_to_tsquery(message_search_language(), :text)';
  const olderOrder = parsed.from.length > 0 ? AUTHOR_ORDER : 'm.seq';
  const channelHits = `SELECT m.id, m.channel_id, m.seq, m.rev, m.user_id, m.body, m.client_msg_id, m.parent_id, m.created_at,
           m.edited_at, m.deleted_at, m.reply_count, m.last_reply_at, m.reactions, m.mentions,
           (extract(epoch FROM m.created_at) * 1000000)::bigint AS created_us
      FROM messages m
     WHERE m.channel_id = cm.channel_id AND m.search_vector @@ ${tsquery} AND m.deleted_at IS NULL
       AND (cardinality(:from::uuid[]) = 0 OR m.user_id = ANY(:from::uuid[]))
       AND (:beforeUs::bigint IS NULL
            OR (m.created_at, m.id) < (timestamptz 'epoch' + :beforeUs::bigint * interval '1 microsecond', :beforeId::uuid))`;
  const { rows } = await Message.knex().raw<{ rows: HitRow[] }>(
    `SELECT h.*, ts_headline(message_search_language(), ${ESCAPED_BODY}, ${tsquery},
                             CASE WHEN length(h.body) <= :wholeBodyMax THEN :wholeBody ELSE :fragment END) AS snippet
       FROM (
         SELECT hit.* FROM channel_members cm
           JOIN channels c ON c.id = cm.channel_id
           CROSS JOIN LATERAL (
             -- The channel's newest messages first, then, only if they hold too few hits, the older ones.
             SELECT * FROM (
               (${channelHits} AND m.seq > c.last_seq - :window ORDER BY m.seq DESC LIMIT :limit)
               UNION ALL
               (${channelHits} AND m.seq <= c.last_seq - :window ORDER BY ${olderOrder} DESC LIMIT :limit)
             ) newest_first
             LIMIT :limit
           ) hit
          WHERE cm.user_id = :userId AND c.workspace_id = :workspaceId
            AND (cardinality(:in::uuid[]) = 0 OR cm.channel_id = ANY(:in::uuid[]))
            -- Only stop words: nothing can match, and nothing is scanned.
            AND numnode(${tsquery}) > 0
          ORDER BY hit.created_at DESC, hit.id DESC
          LIMIT :limit
       ) h
      ORDER BY h.created_at DESC, h.id DESC`,
    {
      text: parsed.text,
      wholeBodyMax: SNIPPET_WHOLE_BODY_MAX,
      wholeBody: WHOLE_BODY,
      fragment: FRAGMENT,
      from: parsed.from,
      in: parsed.in,
      beforeUs: cursor?.createdUs ?? null,
      beforeId: cursor?.id ?? null,
      userId,
      workspaceId,
      window: NEWEST_WINDOW,
      // One more than the page tells whether there is a next one.
      limit: query.limit + 1,
    },
  );
  const page = rows.slice(0, query.limit);
  const channelIds = [...new Set(page.map((r) => r.channel_id!))];
  const channels = new Map(
    channelIds.length === 0 ? [] : (await Channel.query().findByIds(channelIds)).map((c) => [c.id, c.toDto()] as const),
  );
  const last = page.at(-1);
  return {
    results: page.map((row) => ({ message: toMessageDto(row), channel: channels.get(row.channel_id!)!, snippet: toSnippet(row.snippet) })),
    nextBefore: rows.length > query.limit && last ? encodeCursor(Number(last.created_us), last.id) : null,
  };
}
