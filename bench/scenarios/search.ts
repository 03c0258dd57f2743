/**
 * Search (issue #12): p99 of `GET /workspaces/:id/search` on a 1,000,000-message workspace against p99
 * of a history page of the same workspace, timed in one alternating stream (so whatever else the machine
 * does falls on both alike), and the ratio. Not in the default scenarios: seeding takes minutes.
 *
 * The messages go into a scratch database of its own (created, migrated, dropped), in one SQL statement
 * (generate_series): 20 channels, the caller in 15 of them; bodies of 6-20 words drawn from an 8,000-word
 * vocabulary with Zipf frequencies (the r-th word about 1/r as often as the first), so searches range from
 * a word in most messages to one in a few dozen. A front node of its own serves that database.
 *
 * Beside it, what the search column costs the worker: persistMessages() batches with such bodies on two
 * more scratch databases, one migrated up to the search migration and one past it, alternating.
 */
import { randomUUID } from 'node:crypto';
import knexFactory, { type Knex } from 'knex';
import pg from 'pg';
import { connectionUrl, createDatabaseIfMissing, databaseName, dropDatabase, migrateLatest, withDatabase } from '../../scripts/db-admin.js';
import { loadConfig, type Config } from '../../shared/config.js';
import { knexConfig } from '../../shared/db.js';
import type { SendRequest } from '../../shared/queues.js';
import { persistMessages } from '../../worker/actions/persistMessages.js';
import type { BenchContext } from '../context.js';
import { nowUs } from '../lib/clock.js';
import { Histogram, round, type LatencySummary } from '../lib/histogram.js';
import { note } from '../lib/progress.js';
import { seedSenders } from '../profile/persistBatch.js';
import { seedTeam } from '../seed.js';

const SEARCH_MIGRATION = '20261202060000_message_search.ts';
const CHANNELS = 20;
const CALLER_CHANNELS = 15;
const AUTHORS = 8;
const HISTORY_PAGE = 50;
const WARM_UP_REQUESTS = 20;
const PERSIST_BATCH = 50;
/** The product's default page of search results. */
const SEARCH_LIMIT = 20;

export interface SearchKindResult {
  kind: string;
  q: string;
  /** Messages of the caller's channels that match (counted once, after seeding). */
  hits: number;
  latency: LatencySummary;
}

export interface SearchResult {
  messages: number;
  seedS: number;
  requests: number;
  /** The newest page of one 50,000-message channel of the workspace, `limit=50`. */
  history: LatencySummary;
  /** Every search request, all kinds together (`limit=20`, the default). */
  search: LatencySummary;
  kinds: SearchKindResult[];
  errors: number;
  /** persistMessages() of 50-send batches without and with the search column, ms per batch. */
  persist?: { batchSize: number; without: LatencySummary; with: LatencySummary };
}

/** 8,000 made-up words (three syllables), most frequent first; none is an English stop word. */
function vocabulary(): string[] {
  const syllables = 'ka lo mi ren tor sa vel dun pri ash bo ne qui fa lu zor hen tam gri ol ep sun wa chi dar mo fel in ro ta bex ul vin sko ja per nu hal ost re'.split(' ');
  const words: string[] = [];
  for (const c of syllables.slice(0, 5)) for (const b of syllables) for (const a of syllables) words.push(a + b + c);
  return words;
}

/** `count` bodies of 6-20 words in `db`, drawn as seedMessages does. */
const BODY_SQL = (words: string, n: string) =>
  `(SELECT string_agg((${words})[least(cardinality(${words}), floor(exp(random() * ln(cardinality(${words}) + 1)))::int + 0 * w)], ' ')
      FROM generate_series(1, 6 + (${n} * 7) % 15) w)`;

async function seedMessages(db: pg.Client, workspaceId: string, callerId: string, messages: number, words: string[]): Promise<{ channels: string[]; seedS: number }> {
  const started = nowUs();
  const authors = Array.from({ length: AUTHORS }, () => randomUUID());
  const channels = Array.from({ length: CHANNELS }, () => randomUUID());
  await db.query(
    `INSERT INTO users (id, email, display_name, password_hash) SELECT u, u || '@search.bench', 'Author', 'x' FROM unnest($1::uuid[]) u`,
    [authors],
  );
  await db.query(`INSERT INTO workspace_members (workspace_id, user_id, role) SELECT $1, u, 'member' FROM unnest($2::uuid[]) u`, [workspaceId, authors]);
  await db.query(
    `INSERT INTO channels (id, workspace_id, name, created_by) SELECT c, $1, 'search-' || i, $2 FROM unnest($3::uuid[]) WITH ORDINALITY AS x(c, i)`,
    [workspaceId, authors[0], channels],
  );
  await db.query(
    `INSERT INTO channel_members (channel_id, user_id)
       SELECT c, u FROM unnest($1::uuid[]) c, unnest($2::uuid[]) u
     UNION ALL SELECT c, $3 FROM unnest($4::uuid[]) c`,
    [channels, authors, callerId, channels.slice(0, CALLER_CHANNELS)],
  );
  // One index build after the load is far quicker than a million GIN insertions.
  await db.query('DROP INDEX messages_channel_id_user_id_search_vector');
  await db.query(
    `INSERT INTO messages (id, channel_id, seq, user_id, body, rev, created_rev, created_at)
     SELECT gen_random_uuid(), ($1::uuid[])[1 + g % ${CHANNELS}], g / ${CHANNELS} + 1, ($2::uuid[])[1 + g % ${AUTHORS}],
            ${BODY_SQL('$3::text[]', 'g')}, g / ${CHANNELS} + 1, g / ${CHANNELS} + 1,
            now() - make_interval(secs => ($4 - g) / 100.0)
       FROM generate_series(0, $4::bigint - 1) AS g`,
    [channels, authors, words, messages],
  );
  await db.query("SET maintenance_work_mem = '256MB'");
  await db.query('CREATE INDEX messages_channel_id_user_id_search_vector ON messages USING gin (channel_id, user_id, search_vector)');
  await db.query(
    `UPDATE channels c SET last_seq = x.last, last_rev = x.last
       FROM (SELECT channel_id, max(seq) AS last FROM messages GROUP BY channel_id) x WHERE x.channel_id = c.id`,
  );
  await db.query('VACUUM (ANALYZE) messages, channels, channel_members');
  await db.query('CHECKPOINT').catch(() => note('[search] CHECKPOINT not allowed; a checkpoint may overlap the timed requests'));
  return { channels, seedS: (nowUs() - started) / 1e6 };
}

/** The searches timed, from a word in most messages to one in a few dozen, with the operators. */
function searchKinds(words: string[], channels: string[], author: string): Array<{ kind: string; q: string }> {
  return [
    { kind: 'common word', q: words[0] },
    { kind: 'frequent word', q: words[9] },
    { kind: 'mid word', q: words[99] },
    { kind: 'rare word', q: words[2999] },
    { kind: 'rarest word', q: words[7999] },
    { kind: 'two words', q: `${words[4]} ${words[49]}` },
    { kind: 'phrase', q: `"${words[0]} ${words[1]}"` },
    { kind: 'from: + word', q: `from:${author} ${words[9]}` },
    { kind: 'in: + word', q: `in:${channels[0]} ${words[99]}` },
  ];
}

/** How many messages of the caller's channels match `q`, and the ids of the newest `limit`: by brute force. */
async function expectedHits(db: pg.Client, callerId: string, q: string, limit: number): Promise<{ hits: number; newest: string[] }> {
  const text = q.replace(/(from|in):\S+/g, '').trim();
  const author = /from:(\S+)/.exec(q)?.[1] ?? null;
  const only = /in:(\S+)/.exec(q)?.[1] ?? null;
  const { rows } = await db.query(
    `SELECT m.id, count(*) OVER ()::int AS n
       FROM messages m JOIN channel_members cm ON cm.channel_id = m.channel_id AND cm.user_id = $1
      WHERE m.search_vector @@ websearch_to_tsquery(message_search_language(), $2)
        AND ($3::uuid IS NULL OR m.user_id = $3) AND ($4::uuid IS NULL OR m.channel_id = $4)
      ORDER BY m.created_at DESC, m.channel_id DESC, m.seq DESC`,
    [callerId, text, author, only],
  );
  return { hits: rows[0]?.n ?? 0, newest: rows.slice(0, limit).map((r: { id: string }) => r.id) };
}

/** What the search column adds to persisting a batch of sends with such bodies, alternating between the two schemas. */
async function persistCost(config: Config, words: string[], durationMs: number): Promise<SearchResult['persist']> {
  const base = databaseName(config.db.connection);
  const without = withDatabase(config, `${base}_persist_nosearch`);
  const withSearch = withDatabase(config, `${base}_persist_search`);
  const knexes: Knex[] = [];
  try {
    for (const scratch of [without, withSearch]) await createDatabaseIfMissing(scratch);
    const before = knexFactory(knexConfig(loadConfig({ ...process.env, DATABASE_URL: connectionUrl(without.db.connection), DB_POOL_MAX: '2' })));
    knexes.push(before);
    const [, pending] = (await before.migrate.list()) as [unknown, Array<{ file: string }>];
    for (const { file } of pending) {
      if (file === SEARCH_MIGRATION) break;
      await before.migrate.up({ name: file });
    }
    await migrateLatest(withSearch);
    const after = knexFactory(knexConfig(loadConfig({ ...process.env, DATABASE_URL: connectionUrl(withSearch.db.connection), DB_POOL_MAX: '2' })));
    knexes.push(after);
    const targets = [];
    for (const knex of [before, after]) {
      targets.push({ knex, members: (await seedSenders(knex, 'persist', 4)).members, hist: new Histogram() });
    }
    const bodies = (await before.raw(`SELECT ${BODY_SQL(':words::text[]', 'n')} AS body FROM generate_series(1, 2000) n`, { words })).rows.map(
      (r: { body: string }) => r.body,
    );
    let n = 0;
    const start = nowUs();
    for (let round = 0; nowUs() - start < durationMs * 1000; round++) {
      for (const t of round % 2 ? [...targets].reverse() : targets) {
        const sends: SendRequest[] = Array.from({ length: PERSIST_BATCH }, (_, i) => {
          const m = t.members[i % t.members.length];
          return { id: randomUUID(), channelId: m.channelId, userId: m.userId, body: bodies[n++ % bodies.length], clientMsgId: `persist-${n}` };
        });
        const started = nowUs();
        await persistMessages(t.knex, sends);
        // The first rounds warm both up.
        if (round >= 10) t.hist.record(nowUs() - started);
      }
    }
    return { batchSize: PERSIST_BATCH, without: targets[0].hist.summary(), with: targets[1].hist.summary() };
  } finally {
    await Promise.all(knexes.map((k) => k.destroy()));
    for (const scratch of [without, withSearch]) await dropDatabase(scratch).catch(() => undefined);
  }
}

export async function runSearch(ctx: BenchContext): Promise<SearchResult | null> {
  const { options, cluster } = ctx;
  if (!cluster) {
    note('[search] skipped: it starts a front node of its own on a scratch database (not with --url)');
    return null;
  }
  const messages = options.smoke ? 20_000 : 1_000_000;
  const requests = options.historyRequests;
  const scratch = withDatabase(ctx.env.config, `${databaseName(ctx.env.config.db.connection)}_search`);
  await createDatabaseIfMissing(scratch);
  const db = new pg.Client({ connectionString: connectionUrl(scratch.db.connection) });
  let server: Awaited<ReturnType<typeof cluster.addServer>> | undefined;
  try {
    await migrateLatest(scratch);
    await db.connect();
    server = await cluster.addServer({ DATABASE_URL: connectionUrl(scratch.db.connection) });
    const team = await seedTeam(server.url!);
    const words = vocabulary();
    note(`[search] seeding ${messages.toLocaleString('en-US')} messages in one workspace (scratch database)`);
    const { channels, seedS } = await seedMessages(db, team.workspace.id, team.owner.user.id, messages, words);
    const { rows: [author] } = await db.query('SELECT user_id FROM messages LIMIT 1');
    const kinds = searchKinds(words, channels, author.user_id);
    const hits: number[] = [];
    // Each kind's first page must be the newest hits, as a brute-force query finds them.
    let wrongPages = 0;
    for (const k of kinds) {
      const expected = await expectedHits(db, team.owner.user.id, k.q, SEARCH_LIMIT);
      hits.push(expected.hits);
      const res = await fetch(`${server.url}/api/v1/workspaces/${team.workspace.id}/search?q=${encodeURIComponent(k.q)}`, {
        headers: { authorization: `Bearer ${team.owner.token}` },
      });
      const got = res.status === 200 ? ((await res.json()) as { results: Array<{ message: { id: string } }> }).results.map((r) => r.message.id) : [];
      if (JSON.stringify(got) !== JSON.stringify(expected.newest)) {
        wrongPages++;
        note(`[search] ${k.kind}: the first page is not the ${SEARCH_LIMIT} newest hits (HTTP ${res.status})`);
      }
    }
    note(`[search] seeded in ${seedS.toFixed(1)} s; hits per search: ${kinds.map((k, i) => `${k.kind} ${hits[i]}`).join(', ')}`);

    // One stream: a history page, a search, a history page, the next kind of search, …
    const base = `${server.url}/api/v1`;
    const historyUrl = `${base}/channels/${channels[0]}/messages?limit=${HISTORY_PAGE}`;
    const planned: Array<{ kind: number | 'history'; url: string; timed: boolean }> = [];
    for (let i = 0; i < WARM_UP_REQUESTS + requests; i++) {
      const k = i % kinds.length;
      planned.push({ kind: 'history', url: historyUrl, timed: i >= WARM_UP_REQUESTS });
      planned.push({ kind: k, url: `${base}/workspaces/${team.workspace.id}/search?q=${encodeURIComponent(kinds[k].q)}`, timed: i >= WARM_UP_REQUESTS });
    }
    note(`[search] ${requests} timed history pages and ${requests} timed searches, alternating`);
    const results = await ctx.pool.timedGets(planned.map((p) => p.url), team.owner.token);
    const history = new Histogram();
    const all = new Histogram();
    const byKind = kinds.map(() => new Histogram());
    let errors = wrongPages;
    for (const [j, page] of results.entries()) {
      const p = planned[j];
      if (page.status !== 200) errors++;
      else if (p.timed && p.kind === 'history') history.record(page.us);
      else if (p.timed && p.kind !== 'history') {
        all.record(page.us);
        byKind[p.kind].record(page.us);
      }
    }
    await server.stop();
    server = undefined;
    await db.end();
    await dropDatabase(scratch);

    note('[search] persistMessages() with and without the search column');
    const persist = await persistCost(ctx.env.config, words, options.smoke ? 1000 : 20_000);
    return {
      messages,
      seedS: round(seedS, 1),
      requests,
      history: history.summary(),
      search: all.summary(),
      kinds: kinds.map((k, i) => ({ ...k, hits: hits[i], latency: byKind[i].summary() })),
      errors,
      persist,
    };
  } finally {
    await server?.stop();
    await db.end().catch(() => undefined);
    await dropDatabase(scratch).catch(() => undefined);
  }
}

const ms = (v: number) => (Number.isFinite(v) ? (v < 10 ? v.toFixed(2) : v < 100 ? v.toFixed(1) : v.toFixed(0)) : '–');
const lat = (s: LatencySummary) => `p50 ${ms(s.p50)} / p95 ${ms(s.p95)} / p99 ${ms(s.p99)} / max ${ms(s.max)} ms`;

/** "A small multiple" of a history page's p99 (issue #12): the target of the ratio below. */
export const SEARCH_P99_LIMIT = 5;

/** The ratio the issue asks for: search p99 over history page p99, same run, same stream. */
export const searchRatio = (s: SearchResult) => s.search.p99 / s.history.p99;

/** The report's section (bench/report.ts). */
export function searchSection(s: SearchResult): { title: string; rows: Array<{ figure: string; value: string; ratio?: string }> } {
  const rows = [
    { figure: `history page (newest ${HISTORY_PAGE} of a ${(s.messages / CHANNELS).toLocaleString('en-US')}-message channel)`, value: lat(s.history) },
    { figure: 'search, every kind', value: lat(s.search), ratio: `p99 ${searchRatio(s).toFixed(2)}× history` },
    ...s.kinds.map((k) => ({
      figure: `↳ ${k.kind} (${k.hits.toLocaleString('en-US')} hits)`,
      value: lat(k.latency),
      ratio: `p99 ${(k.latency.p99 / s.history.p99).toFixed(2)}× history`,
    })),
    { figure: 'errors (non-200, or a first page that is not the newest hits)', value: String(s.errors) },
    { figure: 'seeding (generate_series + GIN build)', value: `${s.seedS.toFixed(1)} s` },
  ];
  if (s.persist) {
    rows.push({
      figure: `persistMessages(), ${s.persist.batchSize} sends of 6-20 words, with vs without search_vector`,
      value: `${ms(s.persist.with.p50)} vs ${ms(s.persist.without.p50)} ms p50, ${ms(s.persist.with.p99)} vs ${ms(s.persist.without.p99)} ms p99 per batch`,
      ratio: `p50 ${(s.persist.with.p50 / s.persist.without.p50).toFixed(2)}×`,
    });
  }
  return {
    title: `Search: ${s.messages.toLocaleString('en-US')} messages in one workspace (caller in ${CALLER_CHANNELS} of ${CHANNELS} channels), limit 20, ${s.requests} timed searches and history pages, alternating, through REST`,
    rows,
  };
}
