import { ValidationError } from '../../shared/errors.js';
import { authorize } from '../../shared/policy.js';
import { Channel, ChannelMember, Message, toMessageDto, type ChannelDto, type MessageDto } from '../../shared/models/index.js';
import { authorizeInWorkspace } from './access.js';
import { messageColumns, UUID_PATTERN } from './messages.js';

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

/**
 * Hits come newest first: by creation time, then channel, then seq. A batch's messages share their
 * creation time (its transaction's), and within a channel seq is their order; ids are random, so an order
 * by id would shuffle them, and a channel's hits read by seq would not be the ones an order by id wants
 * (a page could skip some). The cursor of the hits after `hit` is that triple.
 */
function encodeCursor(createdUs: number, channelId: string, seq: number): string {
  return Buffer.from(`${createdUs}:${channelId}:${seq}`).toString('base64url');
}

function decodeCursor(before: string): { createdUs: number; channelId: string; seq: number } {
  const match = /^(\d{1,16}):([0-9a-f-]{36}):(\d{1,15})$/.exec(Buffer.from(before, 'base64url').toString('latin1'));
  if (!match || !UUID_PATTERN.test(match[2])) {
    const message = '"before" must be a nextBefore of an earlier page';
    throw new ValidationError(message, [{ field: 'before', message }]);
  }
  return { createdUs: Number(match[1]), channelId: match[2], seq: Number(match[3]) };
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
 * How many of the caller's newest messages, all channels together, the first statement reads (backwards on
 * the history index, each channel stopping at a page of hits): enough to hold a page of hits of a word in
 * about 1 message in 200 (docs/PERFORMANCE.md, "Search"). Spread evenly over the channels, at least
 * NEWEST_PER_CHANNEL_MIN each: the planner prices each channel's window at its LIMIT, and the statement must
 * stay far below `jit_above_cost` (100,000) however many channels the caller is in (JIT compiling it takes
 * hundreds of milliseconds).
 */
const NEWEST_BUDGET = 6000;
const NEWEST_PER_CHANNEL_MIN = 20;

type HitRow = Parameters<typeof toMessageDto>[0] & { created_us: number; snippet: string };

type SearchParams = {
  text: string;
  from: string[];
  in: string[];
  beforeUs: number | null;
  beforeChannelId: string | null;
  beforeSeq: number | null;
  userId: string;
  workspaceId: string;
  /** A page and one more, which tells whether there is a next one. */
  limit: number;
};

const TSQUERY = 'websearch_to_tsquery(message_search_language(), :text)';
const SNIPPET = `ts_headline(message_search_language(), ${ESCAPED_BODY}, ${TSQUERY},
                             CASE WHEN length(h.body) <= :wholeBodyMax THEN :wholeBody ELSE :fragment END)`;
const SNIPPET_OPTIONS = { wholeBodyMax: SNIPPET_WHOLE_BODY_MAX, wholeBody: WHOLE_BODY, fragment: FRAGMENT };
/** The caller's channels in the workspace (and in `in:`, if given); none when the words are only stop words. */
const SCOPE = `cm.user_id = :userId AND c.workspace_id = :workspaceId
            AND (cardinality(:in::uuid[]) = 0 OR cm.channel_id = ANY(:in::uuid[]))
            -- Only stop words: nothing can match, and nothing is scanned.
            AND numnode(${TSQUERY}) > 0`;
const MATCHES = (m: string) => `${m}.search_vector @@ ${TSQUERY} AND ${m}.deleted_at IS NULL
       AND (cardinality(:from::uuid[]) = 0 OR ${m}.user_id = ANY(:from::uuid[]))
       AND (:beforeUs::bigint IS NULL
            OR (${m}.created_at, ${m}.channel_id, ${m}.seq)
               < (timestamptz 'epoch' + :beforeUs::bigint * interval '1 microsecond', :beforeChannelId::uuid, :beforeSeq::bigint))`;

type NewestRow = HitRow & {
  scope_id: string;
  scope_lo: number;
  bound_us: number | null;
  scope_hits: number;
  scope_row: number;
  hit_rank: number;
};

// As the statements order them: (created_at, channel_id, seq) descending; lower-case uuids compare as PostgreSQL compares uuids.
const newestFirst = (a: HitRow, b: HitRow) =>
  Number(b.created_us) - Number(a.created_us) || (a.channel_id! < b.channel_id! ? 1 : a.channel_id! > b.channel_id! ? -1 : 0) || Number(b.seq) - Number(a.seq);

/**
 * The newest messages of the caller's channels first: each channel's newest `window` messages, read
 * backwards on the history index, each channel stopping at a page of hits. Of each channel, the creation
 * time beyond which it was not read is known: its oldest hit if it filled a page, else its newest message
 * older than the window (created_at never decreases with seq in a channel). The hits read are the page but
 * for the channels that neither filled a page nor were read back past the page's last hit: only those are
 * searched further (searchOlder()), below their window. A word in about 1 message in 200 or more usually
 * needs only the first statement; a rarer one, both.
 *
 * The window's range and its LIMIT say the same (last_seq is the channel's highest seq); the LIMIT keeps
 * the planner's estimate at the rows read (a range from a lateral reference is priced at a third of the
 * channel, which prices the statement into JIT compilation) and, inside the subquery, keeps the words'
 * condition out of it, so that the GIN index is not chosen for a window.
 */
async function searchNewest(params: SearchParams): Promise<HitRow[]> {
  const knex = Message.knex();
  const { rows: scope } = await knex.raw<{ rows: Array<{ channels: number }> }>(
    `SELECT count(*)::int AS channels FROM channel_members cm JOIN channels c ON c.id = cm.channel_id WHERE ${SCOPE}`,
    params,
  );
  if (scope[0].channels === 0) return [];
  const window = Math.max(NEWEST_PER_CHANNEL_MIN, Math.ceil(NEWEST_BUDGET / scope[0].channels));
  // The page's hits, and one row per channel with what is known of the rest of it.
  const { rows } = await knex.raw<{ rows: NewestRow[] }>(
    `SELECT h.*, CASE WHEN h.hit_rank <= :limit THEN ${SNIPPET} END AS snippet
       FROM (
         SELECT c.id AS scope_id, c.last_seq - :window AS scope_lo,
                (extract(epoch FROM bound.created_at) * 1000000)::bigint AS bound_us,
                count(hit.id) OVER scope AS scope_hits, row_number() OVER scope AS scope_row, hit.*,
                row_number() OVER (ORDER BY hit.created_at DESC NULLS LAST, hit.channel_id DESC NULLS LAST, hit.seq DESC NULLS LAST) AS hit_rank
           FROM channel_members cm
           JOIN channels c ON c.id = cm.channel_id
           LEFT JOIN LATERAL (
             SELECT m.created_at FROM messages m
              WHERE m.channel_id = c.id AND m.seq <= c.last_seq - :window
              ORDER BY m.seq DESC LIMIT 1
           ) bound ON true
           LEFT JOIN LATERAL (
             SELECT ${messageColumns('w')}, (extract(epoch FROM w.created_at) * 1000000)::bigint AS created_us
               FROM (
                 SELECT ${messageColumns('m')}, m.search_vector FROM messages m
                  WHERE m.channel_id = c.id AND m.seq > c.last_seq - :window
                  ORDER BY m.seq DESC LIMIT :window
               ) w
              WHERE ${MATCHES('w')}
              ORDER BY w.seq DESC
              LIMIT :limit
           ) hit ON true
          WHERE ${SCOPE}
         WINDOW scope AS (PARTITION BY c.id)
       ) h
      WHERE h.hit_rank <= :limit OR h.scope_row = 1
      ORDER BY h.hit_rank`,
    { ...params, ...SNIPPET_OPTIONS, window },
  );
  const hits = rows.filter((r) => r.id !== null && Number(r.hit_rank) <= params.limit);
  const last = hits.length >= params.limit ? Number(hits[params.limit - 1].created_us) : null;
  const unsettled = rows.filter(
    (r) => Number(r.scope_row) === 1 && Number(r.scope_hits) < params.limit && r.bound_us !== null && (last === null || last <= Number(r.bound_us)),
  );
  if (unsettled.length === 0) return hits;
  const older = await searchOlder(params, unsettled.map((r) => r.scope_id), unsettled.map((r) => Number(r.scope_lo)));
  return [...hits, ...older].sort(newestFirst).slice(0, params.limit);
}

/**
 * The newest hits with seq <= `below[i]` of each channel `channels[i]` the caller is still a member of (by
 * seq, backwards on the history index when the words are common, through the (channel_id, user_id,
 * search_vector) GIN index when they are rare: the planner picks per channel), merged.
 */
async function searchOlder(params: SearchParams, channels: string[], below: number[]): Promise<HitRow[]> {
  const order = params.from.length > 0 ? AUTHOR_ORDER : 'm.seq';
  const { rows } = await Message.knex().raw<{ rows: HitRow[] }>(
    `SELECT h.*, ${SNIPPET} AS snippet
       FROM (
         SELECT hit.* FROM unnest(:channels::uuid[], :below::bigint[]) AS older(channel_id, below)
           JOIN channel_members cm ON cm.channel_id = older.channel_id AND cm.user_id = :userId
           CROSS JOIN LATERAL (
             SELECT ${messageColumns('m')}, (extract(epoch FROM m.created_at) * 1000000)::bigint AS created_us
               FROM messages m
              WHERE m.channel_id = cm.channel_id AND m.seq <= older.below AND ${MATCHES('m')}
              ORDER BY ${order} DESC
              LIMIT :limit
           ) hit
          ORDER BY hit.created_at DESC, hit.channel_id DESC, hit.seq DESC
          LIMIT :limit
       ) h
      ORDER BY h.created_at DESC, h.channel_id DESC, h.seq DESC`,
    { ...params, ...SNIPPET_OPTIONS, channels, below },
  );
  return rows;
}

/** Whether the user is a member of each of `channelIds` in the workspace (policy 'workspace.search.in' decides). */
async function readsAll(userId: string, workspaceId: string, channelIds: string[]): Promise<boolean> {
  if (channelIds.length === 0) return true;
  const readable = await ChannelMember.query()
    .join('channels as c', 'c.id', 'channel_members.channel_id')
    .where('channel_members.user_id', userId)
    .where('c.workspace_id', workspaceId)
    .whereIn('channel_members.channel_id', channelIds)
    .select('channel_members.channel_id');
  return new Set(readable.map((r) => r.channelId)).size === new Set(channelIds).size;
}

/**
 * One page of hits. The caller's workspace decides NOT_FOUND (policy 'workspace.view'); inside it, the
 * scope is channel membership, as for history ('channel.history'): a channel the caller is not in yields
 * no hits, and naming one with `in:` is NOT_FOUND.
 *
 * The newest messages of the caller's channels first, which hold the page unless the words are rare, then
 * the older ones of the channels that may still hold some of it (searchNewest). The costliest are rare words,
 * which take both statements (docs/PERFORMANCE.md, "Search").
 */
export async function searchMessages(userId: string, workspaceId: string, query: SearchQuery): Promise<SearchPage> {
  const actor = await authorizeInWorkspace(userId, 'workspace.view', { workspaceId });
  const parsed = parseSearchQuery(query.q);
  authorize(actor, 'workspace.search.in', { workspaceId, readable: await readsAll(userId, workspaceId, parsed.in) });
  const cursor = query.before === undefined ? null : decodeCursor(query.before);
  const params: SearchParams = {
    text: parsed.text,
    from: parsed.from,
    in: parsed.in,
    beforeUs: cursor?.createdUs ?? null,
    beforeChannelId: cursor?.channelId ?? null,
    beforeSeq: cursor?.seq ?? null,
    userId,
    workspaceId,
    limit: query.limit + 1,
  };
  const rows = await searchNewest(params);
  const page = rows.slice(0, query.limit);
  const channelIds = [...new Set(page.map((r) => r.channel_id!))];
  const channels = new Map(
    channelIds.length === 0 ? [] : (await Channel.query().findByIds(channelIds)).map((c) => [c.id, c.toDto()] as const),
  );
  const last = page.at(-1);
  return {
    results: page.map((row) => ({ message: toMessageDto(row), channel: channels.get(row.channel_id!)!, snippet: toSnippet(row.snippet) })),
    nextBefore: rows.length > query.limit && last ? encodeCursor(Number(last.created_us), last.channel_id!, Number(last.seq)) : null,
  };
}
