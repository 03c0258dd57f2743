/**
 * Scenario 4, history depth: two channels, a shallow and a deep one, bulk-seeded in SQL (generate_series
 * into messages, then channels.last_seq), and timed REST pages: the newest page, a page in the middle
 * (`before=`), and catch-up from the start (`after=`, paging forward). Each page is checked: the seqs it
 * must hold, in order, none twice.
 */
import pg from 'pg';
import type { AgentPool } from '../agents/pool.js';
import type { BenchContext } from '../context.js';
import { nowUs } from '../lib/clock.js';
import { Histogram, round, type LatencySummary } from '../lib/histogram.js';
import { noOrderErrors, type OrderCounts } from '../lib/orderCheck.js';
import { note } from '../lib/progress.js';
import { seedChannel, seedTeam, type Team } from '../seed.js';

const PAGE = 50;
const WARM_UP_REQUESTS = 20;
export const PAGE_KINDS = ['newest', 'middle', 'catch-up'] as const;
export type PageKind = (typeof PAGE_KINDS)[number];

export interface DepthResult {
  depth: number;
  seedS: number;
  pages: Record<PageKind, LatencySummary>;
}

export interface HistoryResult {
  pageSize: number;
  requests: number;
  /** What every page pays before its query: GET /health/live (HTTP only), GET /api/v1/me (plus auth: JWT + user row). */
  floor: { health: LatencySummary; me: LatencySummary };
  shallow: DepthResult;
  deep: DepthResult;
  order: OrderCounts;
  errors: number;
}

async function seedMessages(db: pg.Client, channelId: string, userId: string, depth: number): Promise<number> {
  const started = nowUs();
  await db.query(
    `INSERT INTO messages (id, channel_id, seq, user_id, body, client_msg_id, created_at)
     SELECT gen_random_uuid(), $1, g, $2, 'history message ' || g || ' ' || repeat('x', 80), NULL,
            now() - make_interval(secs => ($3 - g) / 1000.0)
       FROM generate_series(1, $3::bigint) AS g`,
    [channelId, userId, depth],
  );
  await db.query('UPDATE channels SET last_seq = $2 WHERE id = $1', [channelId, depth]);
  return (nowUs() - started) / 1e6;
}

/** The page to ask for, and the seqs it must hold. */
function request(kind: PageKind, depth: number, i: number, cursor: { after: number }): { query: string; expected: [number, number] } {
  switch (kind) {
    case 'newest':
      return { query: `limit=${PAGE}`, expected: [Math.max(1, depth - PAGE + 1), depth] };
    case 'middle': {
      // Somewhere in the middle half, a different place each time.
      const before = Math.floor(depth / 4) + Math.floor(((i * 7919) % 1000) / 1000 * (depth / 2)) + PAGE + 1;
      return { query: `limit=${PAGE}&before=${before}`, expected: [Math.max(1, before - PAGE), before - 1] };
    }
    case 'catch-up': {
      if (cursor.after >= depth) cursor.after = 0;
      const after = cursor.after;
      cursor.after = Math.min(depth, after + PAGE);
      return { query: `limit=${PAGE}&after=${after}`, expected: [after + 1, Math.min(depth, after + PAGE)] };
    }
  }
}

function checkPage(seqs: number[], [from, to]: [number, number], order: OrderCounts): boolean {
  let ok = true;
  const seen = new Set<number>();
  for (let i = 0; i < seqs.length; i++) {
    if (seen.has(seqs[i])) {
      order.duplicates++;
      ok = false;
    }
    seen.add(seqs[i]);
    if (i > 0 && seqs[i] <= seqs[i - 1]) {
      order.violations++;
      ok = false;
    }
  }
  for (let s = from; s <= to; s++) {
    if (!seen.has(s)) {
      order.gaps++;
      ok = false;
    }
  }
  return ok;
}

async function measureFloor(pool: AgentPool, team: Team, requests: number): Promise<HistoryResult['floor']> {
  const time = async (url: string) => {
    const pages = await pool.timedGets(Array.from({ length: WARM_UP_REQUESTS + requests }, () => url), team.owner.token);
    const hist = new Histogram();
    for (const [i, page] of pages.entries()) {
      if (page.status !== 200) throw new Error(`GET ${url}: HTTP ${page.status}`);
      if (i >= WARM_UP_REQUESTS) hist.record(page.us);
    }
    return hist.summary();
  };
  return { health: await time(`${team.baseUrl}/health/live`), me: await time(`${team.baseUrl}/api/v1/me`) };
}

interface Target {
  channelId: string;
  depth: number;
  seedS: number;
}

/**
 * Times every page kind at every depth, from a load agent (not the bench's own event loop). The depths'
 * requests alternate, one each in turn, so whatever else the machine does meanwhile (a checkpoint, a
 * timer, another process) falls on both alike: the deep/shallow ratio compares depth, not moments.
 */
async function measureDepths(pool: AgentPool, team: Team, targets: Target[], requests: number, order: OrderCounts) {
  const pages = targets.map(() => ({}) as Record<PageKind, LatencySummary>);
  let errors = 0;
  for (const kind of PAGE_KINDS) {
    const cursors = targets.map(() => ({ after: 0 }));
    const planned: Array<{ target: number; expected: [number, number]; timed: boolean; url: string }> = [];
    for (let i = 0; i < WARM_UP_REQUESTS + requests; i++) {
      for (const [t, { channelId, depth }] of targets.entries()) {
        const { query, expected } = request(kind, depth, i, cursors[t]);
        planned.push({ target: t, expected, timed: i >= WARM_UP_REQUESTS, url: `${team.baseUrl}/api/v1/channels/${channelId}/messages?${query}` });
      }
    }
    const results = await pool.timedGets(planned.map((p) => p.url), team.owner.token);
    const hists = targets.map(() => new Histogram());
    for (const [j, page] of results.entries()) {
      const { target, expected, timed } = planned[j];
      if (page.status !== 200 || !checkPage(page.seqs, expected, order)) errors++;
      else if (timed) hists[target].record(page.us);
    }
    hists.forEach((hist, t) => (pages[t][kind] = hist.summary()));
  }
  const results: DepthResult[] = targets.map(({ depth, seedS }, t) => ({ depth, seedS: round(seedS, 1), pages: pages[t] }));
  return { results, errors };
}

export async function runHistory(ctx: BenchContext): Promise<HistoryResult | null> {
  const { options } = ctx;
  if (!ctx.productDatabaseUrl) {
    note('[history] skipped: with --url it needs --database-url to seed messages');
    return null;
  }
  const team = await seedTeam(ctx.urls()[0]);
  const shallow = await seedChannel(team, []);
  const deep = await seedChannel(team, []);
  const db = new pg.Client({ connectionString: ctx.productDatabaseUrl });
  await db.connect();
  try {
    note(`[history] seeding ${options.historyShallow.toLocaleString('en-US')} and ${options.historyDepth.toLocaleString('en-US')} messages`);
    const shallowS = await seedMessages(db, shallow.id, team.owner.user.id, options.historyShallow);
    const deepS = await seedMessages(db, deep.id, team.owner.user.id, options.historyDepth);
    // A table that grew over months has been vacuumed; a freshly bulk-loaded one would get an
    // insert-triggered autovacuum in the middle of the timed requests.
    await db.query('VACUUM (ANALYZE) messages');
    // Flush the seeding's dirty pages now rather than under the timed requests (needs pg_checkpoint or superuser).
    await db.query('CHECKPOINT').catch(() => note('[history] CHECKPOINT not allowed; a checkpoint may overlap the timed requests'));
    note(`[history] seeded in ${(shallowS + deepS).toFixed(1)} s; ${options.historyRequests} timed requests per page kind and depth`);
    const order = noOrderErrors();
    const floor = await measureFloor(ctx.pool, team, options.historyRequests);
    const { results: [shallowResult, deepResult], errors } = await measureDepths(
      ctx.pool,
      team,
      [
        { channelId: shallow.id, depth: options.historyShallow, seedS: shallowS },
        { channelId: deep.id, depth: options.historyDepth, seedS: deepS },
      ],
      options.historyRequests,
      order,
    );
    if (options.urls.length > 0) await db.query('DELETE FROM channels WHERE id = ANY($1::uuid[])', [[shallow.id, deep.id]]);
    return { pageSize: PAGE, requests: options.historyRequests, floor, shallow: shallowResult, deep: deepResult, order, errors };
  } finally {
    await db.end();
  }
}
