/**
 * The run's table: every figure with its ratio to the part limits measured in the same run, and the
 * targets, as terminal text or Markdown (docs/PERFORMANCE.md).
 */
import { CHANGE_EVENTS, CHANGE_KINDS, RECEIVER_KINDS, type ChangeKind, type ReceiverKind, type RevOrderCounts } from './agents/protocol.js';
import type { LatencySummary } from './lib/histogram.js';
import { median } from './lib/stats.js';
import type { BenchResults, TargetCheck } from './results.js';
import type { PhaseResult } from './scenarios/phase.js';
import { PAGE_KINDS } from './scenarios/history.js';
import { SEARCH_P99_LIMIT, searchRatio, searchSection } from './scenarios/search.js';
import { mixText, type MixedPoint } from './scenarios/mixed.js';

interface Row {
  figure: string;
  value: string;
  ratio?: string;
  target?: string;
  ok?: boolean | null;
}
type Section = { title: string; rows: Row[] };

const n = (v: number | undefined | null, digits = 0) =>
  v === undefined || v === null || !Number.isFinite(v) ? '–' : v.toLocaleString('en-US', { maximumFractionDigits: digits, minimumFractionDigits: digits });
const ms = (v: number) => (Number.isFinite(v) ? (v < 10 ? v.toFixed(2) : v < 100 ? v.toFixed(1) : v.toFixed(0)) : '–');
const lat = (s: LatencySummary) => `p50 ${ms(s.p50)} / p95 ${ms(s.p95)} / p99 ${ms(s.p99)} / max ${ms(s.max)} ms`;
const x = (a: number, b: number | undefined) => (b && Number.isFinite(a) && Number.isFinite(b) ? `${(a / b).toFixed(2)}×` : '–');
const pct = (ratio: number) => `${ratio >= 1 ? '+' : ''}${Math.round((ratio - 1) * 100)} %`;

function orderText(o: { violations: number; gaps: number; duplicates: number; ackOrder?: number }): string {
  return `${o.violations} / ${o.gaps} / ${o.duplicates}${o.ackOrder === undefined ? '' : ` (ack order ${o.ackOrder})`}`;
}

function orderErrors(o: { violations: number; gaps: number; duplicates: number; ackOrder?: number }): number {
  return o.violations + o.gaps + o.duplicates + (o.ackOrder ?? 0);
}

function cpuText(cpu: Record<string, number> | undefined): string | undefined {
  if (!cpu) return undefined;
  return Object.entries(cpu)
    .filter(([, v]) => v > 0)
    .map(([k, v]) => `${k} ${v} %`)
    .join(', ');
}

const KIND_LABEL: Record<ReceiverKind, string> = {
  silent: 'silent receivers (token only)',
  resuming: 'resuming receivers (auth.resume)',
  sender: "senders' own sockets",
};

/**
 * send→deliver by kind of receiving socket, under the all-sockets row: silent receivers against the raw
 * emitter's p99 (when given), the other kinds against the silent receivers'.
 */
function kindRows(p: Pick<PhaseResult, 'deliverBy'>, indent: string, raw?: LatencySummary): Row[] {
  const silent = p.deliverBy?.silent;
  return RECEIVER_KINDS.flatMap((k) => {
    const s = p.deliverBy?.[k];
    if (!s) return [];
    const ratio = k === 'silent' ? (raw ? `p99 ${x(s.p99, raw.p99)} raw` : undefined) : silent ? `p99 ${x(s.p99, silent.p99)} silent` : undefined;
    return [{ figure: `${indent}↳ ${KIND_LABEL[k]}`, value: lat(s), ratio }];
  });
}

const refused = (p: Pick<PhaseResult, 'failed' | 'errors'>) =>
  p.failed > 0 ? `, ${n(p.failed)} refused (${Object.entries(p.errors).map(([code, count]) => `${code} ${count}`).join(', ')})` : '';

/** The send rate limit each phase ran with. */
export function rateLimitLine(r: BenchResults): string {
  const l = r.product.sendRateLimit;
  if (!l) return "Send rate limit: the targets' own (--url)";
  const fmt = (v: number) => (v === 0 ? 'off' : `${n(v)}/s per user (${n(v * 10)} sends per 10 s)`);
  if (l.overBudget === l.default) return `Send rate limit (MESSAGE_RATE_PER_SECOND): ${fmt(l.default)} in every phase (--env)`;
  return (
    `Send rate limit (MESSAGE_RATE_PER_SECOND): the product's default, ${fmt(l.default)}, for the order check; ` +
    `raised to ${fmt(l.overBudget)} for throughput, latency and fan-out, whose senders exceed one user's default budget (the limiter runs, never refuses). ` +
    `Per-address budgets (registrations, connections) off: the load agents are one address for all their users; ` +
    `the per-user REST budget runs but never refuses (history is timed from one user's token)`
  );
}

/** Rev order errors of a mixed phase: out of order, missing, twice, unmatched or of the wrong kind. */
function revErrors(o: RevOrderCounts | undefined): number {
  return o ? o.violations + o.gaps + o.duplicates + o.unmatched + o.mismatched : 0;
}

function revText(p: Pick<PhaseResult, 'revOrder' | 'revEvents'>): string {
  const o = p.revOrder;
  if (!o) return 'not checked (no sender acked a rev?)';
  const events = p.revEvents ? `; ${n(p.revEvents.received)} of ${n(p.revEvents.expected)} events` : '';
  return `${o.violations} / ${o.gaps} / ${o.duplicates}; unmatched ${o.unmatched}, wrong kind or no rev ${o.mismatched}${events}`;
}

/** Every phase's order counts, summed. */
export function totalOrderErrors(r: BenchResults): number {
  const phases: Array<{ order: PhaseResult['order'] }> = [
    ...(r.throughput ? [r.throughput] : []),
    ...(r.latency ?? []),
    ...(r.mixed ?? []),
    ...(r.order ? [r.order.phase] : []),
    ...(r.fanout ? [r.fanout.phase] : []),
    ...(r.baselines.rawFanout ? [r.baselines.rawFanout] : []),
    ...(r.baselines.rawLatency ?? []),
  ];
  return (
    phases.reduce((s, p) => s + orderErrors(p.order), 0) +
    (r.history ? orderErrors(r.history.order) : 0) +
    (r.mixed ?? []).reduce((s, p) => s + (p.revOrder ? revErrors(p.revOrder) : 1), 0)
  );
}

/** The send-only phase a mixed one is compared with: throughput for the closed loop, latency at the same rate. */
export function sendOnlyOf(r: BenchResults, m: MixedPoint): PhaseResult | undefined {
  if (m.mode === 'closed') return r.throughput;
  return r.latency?.find((p) => m.offeredRate !== undefined && Math.abs(p.offeredRate - m.offeredRate) < 1e-6 && (p.pair ?? 0) === (m.pair ?? 0));
}

/** ` (pair k)` for a point of a run with --pairs. */
const pairText = (p: { pair?: number }, r: BenchResults) =>
  (r.latency ?? []).some((q) => (q.pair ?? 0) > 0) || (r.mixed ?? []).some((q) => (q.pair ?? 0) > 0) ? ` (pair ${(p.pair ?? 0) + 1})` : '';

/**
 * The sends' send→deliver p50 ratio, mixed ÷ send-only, of every pair at the rate of `m`, in pair order,
 * and their median (the middle one, or the mean of the two middle ones).
 */
export function mixedPairRatios(r: BenchResults, m: MixedPoint): { ratios: number[]; median: number } {
  const twins = (r.mixed ?? []).filter((q) => q.mode === 'open' && q.offeredRate === m.offeredRate);
  const ratios = twins.flatMap((q) => {
    const base = sendOnlyOf(r, q);
    return base ? [q.deliver.p50 / base.deliver.p50] : [];
  });
  return { ratios, median: median(ratios) };
}

/** The open-loop mixed point nearest 50 % of the throughput (the one the mixed target is judged at). */
export function mixedMidPoint(r: BenchResults) {
  const points = (r.mixed ?? []).filter((p) => p.mode === 'open');
  return [...points].sort((a, b) => Math.abs((a.pctOfThroughput ?? 50) - 50) - Math.abs((b.pctOfThroughput ?? 50) - 50))[0];
}

/** Mixed sends may be this much slower (p50 send→deliver) than send-only ones in the same run: noise. */
export const MIXED_SEND_P50_LIMIT = 1.1;

/** The latency point the 50 % targets are judged at (the one nearest 50 % of the throughput). */
export function midPoint(r: BenchResults) {
  const points = r.latency ?? [];
  return [...points].sort((a, b) => Math.abs((a.pctOfThroughput ?? 50) - 50) - Math.abs((b.pctOfThroughput ?? 50) - 50))[0];
}

/**
 * A target set at 50 % of the throughput, judged only there: at the point nearest it in a run without one
 * (`--rates 10,25`, `--rate 1500`) it is shown with where it was measured, not marked met or missed.
 */
function atHalf(c: TargetCheck, p: { pctOfThroughput?: number; offeredRate?: number }): TargetCheck {
  if (p.pctOfThroughput === 50) return c;
  const where = p.pctOfThroughput !== undefined ? `${p.pctOfThroughput} %` : `${n(p.offeredRate ?? 0)} msg/s`;
  return { ...c, measured: `${c.measured}, at ${where} (no 50 % point: not judged)`, ok: null, miss: undefined };
}

/** Two targets shown on one row: missed if either is, met if each judged one is, else not judged. */
function both(a: boolean | null | undefined, b: boolean | null | undefined): boolean | null {
  const judged = [a, b].filter((v) => v !== undefined);
  return judged.includes(false) ? false : judged.includes(null) ? null : true;
}

function rawAt(r: BenchResults, rate: number) {
  return r.baselines.rawLatency?.find((p) => Math.abs(p.offeredRate - rate) < 1e-6);
}

function check(name: string, value: number, limit: number, direction: '≥' | '≤', measured: string, target: string): TargetCheck {
  if (!Number.isFinite(value)) return { name, measured, target, ok: null };
  const ok = direction === '≥' ? value >= limit : value <= limit;
  return { name, measured, target, ok, miss: ok ? undefined : pct(value / limit) };
}

export function evaluateTargets(r: BenchResults): TargetCheck[] {
  const checks: TargetCheck[] = [];
  const tp = r.throughput;
  const bull = r.baselines.bullmq;
  if (tp) {
    checks.push(check('throughput', tp.completedPerS, 4000, '≥', `${n(tp.completedPerS)} msg/s`, '≥ 4,000 msg/s'));
    if (bull) {
      checks.push(
        check('throughput vs no-op BullMQ', tp.completedPerS / bull.jobsPerS, 0.5, '≥', `${x(tp.completedPerS, bull.jobsPerS)} (${n(bull.jobsPerS)} jobs/s)`, '≥ 0.50×'),
      );
    }
  }
  const mid = midPoint(r);
  if (mid) {
    checks.push(atHalf(check('send→deliver p50 @50 %', mid.deliver.p50, 10, '≤', `${ms(mid.deliver.p50)} ms`, '≤ 10 ms'), mid));
    const raw = rawAt(r, mid.offeredRate);
    if (raw) {
      checks.push(
        atHalf(
          check('send→deliver p99 @50 % vs raw', mid.deliver.p99 / raw.deliver.p99, 2, '≤', `${ms(mid.deliver.p99)} ms vs raw ${ms(raw.deliver.p99)} ms = ${x(mid.deliver.p99, raw.deliver.p99)}`, '≤ 2.00× raw emitter p99'),
          mid,
        ),
      );
    }
  }
  const mm = mixedMidPoint(r);
  const mmBase = mm && sendOnlyOf(r, mm);
  if (mm && mmBase) {
    const { ratios, median: pairMedian } = mixedPairRatios(r, mm);
    checks.push(atHalf(
      check(
        'mixed: sends send→deliver p50 @50 % vs send-only',
        pairMedian,
        MIXED_SEND_P50_LIMIT,
        '≤',
        ratios.length > 1
          ? `median ${pairMedian.toFixed(2)}× of ${ratios.length} pairs: ${ratios.map((v) => `${v.toFixed(2)}×`).join(', ')}`
          : `${ms(mm.deliver.p50)} vs ${ms(mmBase.deliver.p50)} ms = ${x(mm.deliver.p50, mmBase.deliver.p50)} (p99 ${x(mm.deliver.p99, mmBase.deliver.p99)})`,
        `≤ ${MIXED_SEND_P50_LIMIT.toFixed(2)}× (sends must not get slower; run noise)`,
      ),
      mm,
    ));
  }
  const fan = r.fanout;
  const rawFan = r.baselines.rawFanout;
  if (fan && rawFan) {
    checks.push(
      check('fan-out vs raw broadcast', fan.phase.deliveriesPerS / rawFan.deliveriesPerS, 0.8, '≥', `${n(fan.phase.deliveriesPerS)} vs ${n(rawFan.deliveriesPerS)} deliveries/s = ${x(fan.phase.deliveriesPerS, rawFan.deliveriesPerS)}`, '≥ 0.80×'),
    );
  }
  const h = r.history;
  if (h) {
    const ratios = PAGE_KINDS.map((k) => ({ k, ratio: h.deep.pages[k].p99 / h.shallow.pages[k].p99, p99: h.deep.pages[k].p99 }));
    const worstRatio = ratios.reduce((a, b) => (b.ratio > a.ratio ? b : a));
    const worstP99 = ratios.reduce((a, b) => (b.p99 > a.p99 ? b : a));
    checks.push(
      check('history p99 deep vs shallow', worstRatio.ratio, 1.5, '≤', `${worstRatio.ratio.toFixed(2)}× (${worstRatio.k})`, `≤ 1.50× (${n(h.deep.depth)} vs ${n(h.shallow.depth)} deep)`),
    );
    checks.push(check('history p99 deep', worstP99.p99, 10, '≤', `${ms(worstP99.p99)} ms (${worstP99.k})`, '≤ 10 ms'));
  }
  if (r.search) {
    const ratio = searchRatio(r.search);
    checks.push(check('search p99 vs history page p99', ratio, SEARCH_P99_LIMIT, '≤', `${ms(r.search.search.p99)} vs ${ms(r.search.history.p99)} ms = ${x(r.search.search.p99, r.search.history.p99)}`, `≤ ${SEARCH_P99_LIMIT.toFixed(2)}× (${n(r.search.messages)} messages)`));
  }
  checks.push({ name: 'order violations / gaps / duplicates', measured: String(r.orderErrors), target: '= 0', ok: r.orderErrors === 0 });
  if (fan && fan.kbPerIdleSocket !== null) {
    const memory = check('front node memory per idle socket', fan.kbPerIdleSocket, 50, '≤', `${n(fan.kbPerIdleSocket, 1)} KB`, '≤ 50 KB');
    // A few sockets' worth of RSS is lost in GC noise.
    checks.push(fan.sockets < 200 ? { ...memory, ok: null, miss: undefined, measured: `${memory.measured} (too few sockets to judge)` } : memory);
  }
  return checks;
}

function sections(r: BenchResults): Section[] {
  const out: Section[] = [];
  const b = r.baselines;
  const pgb = b.postgres;
  const bull = b.bullmq;
  const rawFan = b.rawFanout;
  const target = (name: string) => r.targets.find((t) => t.name === name);
  const targetRow = (figure: string, value: string, ratio: string | undefined, name: string): Row => {
    const t = target(name);
    return { figure, value, ratio, target: t?.target, ok: t?.ok };
  };

  const base: Row[] = [];
  if (pgb) {
    base.push({ figure: `PostgreSQL single-row inserts (${pgb.connections} connections)`, value: `${n(pgb.singleRowRowsPerS)} rows/s` });
    base.push({ figure: `PostgreSQL 100-row batch inserts (${pgb.connections} connections)`, value: `${n(pgb.batch100RowsPerS)} rows/s` });
  }
  if (bull) base.push({ figure: `No-op BullMQ add+process (${bull.partitions} queues, concurrency 1)`, value: `${n(bull.jobsPerS)} jobs/s` });
  if (rawFan) {
    base.push({ figure: `Raw Socket.IO broadcast via Redis adapter (${rawFan.expectedDeliveries && rawFan.persisted ? Math.round(rawFan.expectedDeliveries / rawFan.persisted) : '?'} sockets)`, value: `${n(rawFan.deliveriesPerS)} deliveries/s` });
    base.push({ figure: '  emit→deliver', value: lat(rawFan.deliver) });
  }
  if (base.length) out.push({ title: 'Part limits (same machine, same run)', rows: base });

  const tp = r.throughput;
  if (tp) {
    const l = r.layout!;
    const rows: Row[] = [
      targetRow('acked + persisted + delivered', `${n(tp.completedPerS)} msg/s`, bull ? `${x(tp.completedPerS, bull.jobsPerS)} no-op BullMQ` : undefined, 'throughput'),
      { figure: 'acked', value: `${n(tp.ackedPerS)} msg/s${refused(tp)}` },
      {
        figure: 'persisted',
        value: `${n(tp.persistedPerS)} rows/s`,
        ratio: pgb ? `${x(tp.persistedPerS, pgb.singleRowRowsPerS)} PG single-row, ${x(tp.persistedPerS, pgb.batch100RowsPerS)} PG 100-row` : undefined,
      },
      { figure: 'deliveries', value: `${n(tp.deliveriesPerS)} /s`, ratio: rawFan ? `${x(tp.deliveriesPerS, rawFan.deliveriesPerS)} raw broadcast` : undefined },
      { figure: 'send→ack', value: lat(tp.ack) },
      { figure: '↳ send→persist start', value: lat(tp.persistStart) },
      { figure: 'send→deliver', value: lat(tp.deliver) },
      ...kindRows(tp, ''),
    ];
    if (tp.batches) rows.push(batchRow(tp.batches));
    rows.push({ figure: 'CPU (100 % = one core)', value: cpuText(tp.cpu) ?? '–' });
    out.push({
      title: `Throughput: closed loop, ${l.channels} channels × (${l.sendersPerChannel} sender + ${l.receiversPerChannel} receivers: ${receiversText(l)}), window ${l.window}`,
      rows,
    });
  }

  if (r.latency?.length) {
    const rows: Row[] = [];
    const mid = midPoint(r);
    for (const p of r.latency) {
      const raw = rawAt(r, p.offeredRate);
      const label = `${p.pctOfThroughput !== undefined ? `${p.pctOfThroughput} % = ` : ''}${n(p.offeredRate)} msg/s offered${pairText(p, r)}`;
      rows.push({ figure: label, value: `${n(p.ackedPerS)} acked/s, ${n(p.deliveriesPerS)} deliveries/s${p.lateSends ? `, ${p.lateSends} late sends` : ''}${refused(p)}` });
      rows.push({ figure: '  scheduled→sent (load agent lag)', value: lat(p.sendLag) });
      rows.push({ figure: '  send→ack', value: lat(p.ack) });
      rows.push({ figure: '    ↳ send→persist start', value: lat(p.persistStart) });
      const isMid = p === mid;
      rows.push({
        figure: '  send→deliver',
        value: lat(p.deliver),
        ratio: raw ? `p99 ${x(p.deliver.p99, raw.deliver.p99)} raw` : undefined,
        target: isMid ? 'p50 ≤ 10 ms, p99 ≤ 2× raw' : undefined,
        ok: isMid ? both(target('send→deliver p50 @50 %')?.ok, target('send→deliver p99 @50 % vs raw')?.ok) : undefined,
      });
      rows.push(...kindRows(p, '    ', raw?.deliver));
      if (raw) rows.push({ figure: '  raw emitter broadcast, same rate', value: lat(raw.deliver) });
      if (p.batches) rows.push({ ...batchRow(p.batches), figure: '  batches' });
      rows.push({ figure: '  CPU', value: cpuText(p.cpu) ?? '–' });
    }
    out.push({ title: 'Latency under load: open loop, times from the scheduled send, taken in the clients', rows });
  }

  if (r.mixed?.length) out.push(mixedSection(r, target));

  const o = r.order;
  if (o) {
    const p = o.phase;
    const limit = o.ratePerSecond === null ? "the targets' own (--url)" : o.ratePerSecond === 0 ? 'off (--env)' : `${n(o.ratePerSecond)}/s per user (${n(o.ratePerSecond * 10)} sends per 10 s)`;
    const rows: Row[] = [
      { figure: 'send rate limit (MESSAGE_RATE_PER_SECOND)', value: limit },
      { figure: 'sent / acked', value: `${n(p.sent)} / ${n(p.acked)}${refused(p)}`, target: 'none refused', ok: p.failed === 0 },
      { figure: 'acked + persisted + delivered', value: `${n(p.completedPerS)} msg/s` },
      { figure: 'send→ack', value: lat(p.ack) },
      { figure: 'send→deliver', value: lat(p.deliver) },
      ...kindRows(p, ''),
    ];
    out.push({
      title:
        `Order check at the default send rate limit: ${o.channels} channels × (${o.sendersPerChannel} senders + ${o.receiversPerChannel} receivers, ${o.resumingPerChannel} resuming), ` +
        `${o.nodes} front node${o.nodes === 1 ? '' : 's'} of its own, closed loop, window ${o.window}, ≤ ${n(o.sendsPerSender)} sends per sender`,
      rows,
    });
  }

  const fan = r.fanout;
  if (fan) {
    const rows: Row[] = [
      targetRow('deliveries', `${n(fan.phase.deliveriesPerS)} /s (${n(fan.phase.completedPerS)} msg/s)`, rawFan ? `${x(fan.phase.deliveriesPerS, rawFan.deliveriesPerS)} raw broadcast` : undefined, 'fan-out vs raw broadcast'),
      { figure: 'send→deliver', value: lat(fan.phase.deliver), ratio: rawFan ? `p99 ${x(fan.phase.deliver.p99, rawFan.deliver.p99)} raw` : undefined },
      { figure: 'send→ack', value: lat(fan.phase.ack) },
    ];
    if (fan.phase.failed > 0) rows.push({ figure: 'refused sends', value: refused(fan.phase).slice(2), ok: false });
    if (fan.kbPerIdleSocket !== null) {
      rows.push(
        targetRow(
          'front node memory per idle socket',
          `${n(fan.kbPerIdleSocket, 1)} KB`,
          fan.memory.map((m) => `${n(m.kbPerSocket, 1)} KB (${m.sockets} on pid ${m.pid})`).join(', '),
          'front node memory per idle socket',
        ),
      );
    }
    rows.push({ figure: 'CPU', value: cpuText(fan.phase.cpu) ?? '–' });
    if (rawFan) rows.push({ figure: 'CPU of the raw broadcast', value: cpuText(rawFan.cpu) ?? '–' });
    out.push({ title: `Fan-out: one channel, ${n(fan.sockets)} sockets (${n(fan.users)} users) over ${fan.nodes} front node${fan.nodes === 1 ? '' : 's'}, 1 sender`, rows });
  }

  const h = r.history;
  if (h) {
    const rows: Row[] = [
      { figure: 'floor: GET /health/live (no auth, no DB)', value: lat(h.floor.health) },
      { figure: 'floor: GET /api/v1/me (JWT + user row)', value: lat(h.floor.me) },
    ];
    for (const kind of PAGE_KINDS) {
      const s = h.shallow.pages[kind];
      const d = h.deep.pages[kind];
      rows.push({ figure: `${kind} @ ${n(h.shallow.depth)}`, value: lat(s) });
      rows.push({ figure: `${kind} @ ${n(h.deep.depth)}`, value: lat(d), ratio: `p99 ${x(d.p99, s.p99)} shallow` });
    }
    const t1 = target('history p99 deep vs shallow');
    const t2 = target('history p99 deep');
    rows.push({ figure: 'worst kind', value: `${t1?.measured}; p99 ${t2?.measured}`, target: 'p99 ≤ 1.5× shallow and ≤ 10 ms', ok: t1?.ok !== false && t2?.ok !== false });
    rows.push({ figure: 'seeding (generate_series)', value: `${n(h.shallow.seedS + h.deep.seedS, 1)} s` });
    out.push({ title: `History: ${h.pageSize}-message pages, ${h.requests} timed requests each, through REST`, rows });
  }
  if (r.search) out.push(searchSection(r.search));

  if (r.persistProfile?.length) {
    out.push({
      title: "Profile: the worker's persistMessages() alone, one connection, 4 channels per batch",
      rows: r.persistProfile.flatMap((profile) =>
        profile.sizes.map((p) => ({
          figure: `batch of ${p.batchSize}, ${n(profile.tableRows)} rows in messages`,
          value: `${ms(p.ms.p50)} ms p50, ${ms(p.ms.p99)} ms p99 per batch`,
          ratio: `${n(p.rowsPerS)} rows/s${pgb ? ` = ${x(p.rowsPerS, pgb.batch100RowsPerS)} PG 100-row` : ''}`,
        })),
      ),
    });
  }

  const order: Row[] = [];
  const add = (label: string, o: { violations: number; gaps: number; duplicates: number; ackOrder?: number } | undefined) => {
    if (o) order.push({ figure: label, value: orderText(o), ok: orderErrors(o) === 0 });
  };
  add('throughput', r.throughput?.order);
  for (const p of r.latency ?? []) add(p.label, p.order);
  for (const p of r.mixed ?? []) {
    add(`${p.label}: message:new seqs`, p.order);
    order.push({ figure: `${p.label}: revs of every event kind`, value: revText(p), ok: p.revOrder ? revErrors(p.revOrder) === 0 : false });
  }
  add('order @ default send rate limit', r.order?.phase.order);
  add('fan-out', r.fanout?.phase.order);
  add('history pages', r.history?.order);
  add('raw broadcast (baseline)', b.rawFanout?.order);
  for (const p of b.rawLatency ?? []) add(p.label, p.order);
  if (order.length) out.push({ title: 'Order at the receivers: violations / gaps / duplicates (target 0)', rows: order });
  return out;
}

const CHANGE_LABEL: Record<ChangeKind, string> = {
  edit: 'edits',
  delete: 'deletes',
  'reaction:add': 'reactions added',
  'reaction:remove': 'reactions removed',
};

const changeRefused = (c: { failed: number; errors: Record<string, number> }) =>
  c.failed > 0 ? `, ${n(c.failed)} refused (${Object.entries(c.errors).map(([code, count]) => `${code} ${count}`).join(', ')})` : '';

/** `p50 a× / p99 b×` of `m` against `base`, with base's own figures. */
function latRatio(m: LatencySummary, base: LatencySummary | undefined, what: string): string | undefined {
  if (!base) return undefined;
  return `p50 ${x(m.p50, base.p50)} / p99 ${x(m.p99, base.p99)} ${what} (p50 ${ms(base.p50)} / p99 ${ms(base.p99)} ms)`;
}

/**
 * The mixed phases, each beside its send-only counterpart of the same run: ops and sends per second, the
 * sends' latencies and their ratios, each change kind's change→ack and change→event, the rev check.
 */
function mixedSection(r: BenchResults, target: (name: string) => TargetCheck | undefined): Section {
  const rows: Row[] = [];
  const mid = mixedMidPoint(r);
  const t = target('mixed: sends send→deliver p50 @50 % vs send-only');
  for (const m of r.mixed ?? []) {
    const base = sendOnlyOf(r, m);
    const what = m.mode === 'closed' ? 'throughput' : 'send-only';
    const changesPerS = (m.opsAckedPerS ?? 0) - m.ackedPerS;
    const label =
      m.mode === 'closed'
        ? `closed loop, window ${r.layout?.window ?? '?'} (beside throughput)`
        : `${m.pctOfThroughput !== undefined ? `${m.pctOfThroughput} % = ` : ''}${n(m.offeredRate)} ops/s offered${pairText(m, r)} (beside latency at the same rate)`;
    rows.push({
      figure: label,
      value: `${n(m.opsAckedPerS)} ops/s acked = ${n(m.ackedPerS)} sends/s + ${n(changesPerS)} changes/s${m.lateSends ? `, ${m.lateSends} late ops` : ''}${refused(m)}`,
      ratio: base ? `ops ${x(m.opsAckedPerS ?? NaN, base.ackedPerS)}, sends ${x(m.ackedPerS, base.ackedPerS)} ${what} (${n(base.ackedPerS)} msg/s acked)` : undefined,
    });
    rows.push({
      figure: '  sends: acked + persisted + delivered',
      value: `${n(m.completedPerS)} msg/s`,
      ratio: base ? `${x(m.completedPerS, base.completedPerS)} ${what} (${n(base.completedPerS)} msg/s; mix share ${(m.mix.send / (m.mix.send + m.mix.reaction + m.mix.edit + m.mix.delete)).toFixed(2)})` : undefined,
    });
    if (m.mode === 'open') rows.push({ figure: '  scheduled→sent (load agent lag)', value: lat(m.sendLag), ratio: base ? latRatio(m.sendLag, base.sendLag, what) : undefined });
    rows.push({ figure: '  sends: send→ack', value: lat(m.ack), ratio: latRatio(m.ack, base?.ack, what) });
    const isMid = m === mid;
    rows.push({
      figure: '  sends: send→deliver (message:new)',
      value: lat(m.deliver),
      ratio: latRatio(m.deliver, base?.deliver, what),
      target: isMid && t ? t.target : undefined,
      ok: isMid && t ? t.ok : undefined,
    });
    for (const k of CHANGE_KINDS) {
      const c = m.changes?.[k];
      if (!c || c.sent === 0) continue;
      rows.push({ figure: `  ${CHANGE_LABEL[k]}: ${CHANGE_EVENTS[k].emit}→ack`, value: lat(c.ack), ratio: `${n(c.acked)} acked, ${n(c.ackedPerS)}/s${changeRefused(c)}` });
      rows.push({
        figure: `  ${CHANGE_LABEL[k]}: ${CHANGE_EVENTS[k].emit}→${CHANGE_EVENTS[k].event}`,
        value: c.event.count > 0 ? lat(c.event) : 'no event matched',
        ratio: c.event.count > 0 ? `p50 ${x(c.event.p50, m.deliver.p50)} / p99 ${x(c.event.p99, m.deliver.p99)} send→deliver of the same phase` : undefined,
      });
    }
    rows.push({ figure: '  revs of every event kind: violations / gaps / duplicates', value: revText(m), ok: m.revOrder ? revErrors(m.revOrder) === 0 : false });
    if (m.revOrder?.badAcks) rows.push({ figure: "  change acks that do not show the change", value: n(m.revOrder.badAcks), ok: false });
    if (m.batches) rows.push({ ...batchRow(m.batches), figure: '  batches' });
    rows.push({ figure: '  CPU', value: cpuText(m.cpu) ?? '–', ratio: base?.cpu ? `send-only: ${cpuText(base.cpu)}` : undefined });
  }
  if (mid) {
    const { ratios, median: pairMedian } = mixedPairRatios(r, mid);
    if (ratios.length > 1) {
      rows.push({
        figure: `sends' send→deliver p50, mixed ÷ send-only, each pair at ${n(mid.offeredRate)} ops/s`,
        value: ratios.map((v) => `${v.toFixed(2)}×`).join(', '),
        ratio: `median ${pairMedian.toFixed(2)}×`,
        target: t?.target,
        ok: t?.ok,
      });
    }
  }
  const mix = r.mixed?.[0]?.mix;
  return {
    title: `Mixed load: ${mix ? mixText(mix) : '?'} of the op slots, same layout and sockets, each beside its send-only phase of this run (ratios: mixed ÷ send-only)`,
    rows,
  };
}

function receiversText(l: NonNullable<BenchResults['layout']>): string {
  const resuming = l.resumingPerChannel ?? 0;
  return `${l.receiversPerChannel - resuming} silent, ${resuming} resuming in the handshake; none emits`;
}

function batchRow(bp: NonNullable<BenchResults['throughput']>['batches'] & object): Row {
  return {
    figure: 'batches (BullMQ jobs)',
    value: `${n(bp.jobs)} jobs, size mean ${n(bp.size.mean, 1)} / p95 ${n(bp.size.p95)} / max ${n(bp.size.max)}; processing p50 ${n(bp.processMs.p50)} / p99 ${n(bp.processMs.p99)} ms; queue wait p50 ${n(bp.queueWaitMs.p50)} / p99 ${n(bp.queueWaitMs.p99)} ms; partitions busy ${n(bp.busyPartitions, 2)}${bp.complete ? '' : ' (partial)'}`,
  };
}

const mark = (ok: boolean | null | undefined) => (ok === undefined ? '' : ok === null ? '?' : ok ? 'yes' : 'NO');

export function machineLine(r: BenchResults): string {
  const m = r.machine;
  return (
    `${m.nproc} cores (${m.cpuModel}), ${m.memTotalGb} GB RAM, Node ${m.node}, PostgreSQL ${m.postgres ?? '?'}, Redis ${m.redis ?? '?'}; ` +
    `load average ${m.loadAvgAtStart} at start; ${r.product.servers} front node(s), ${r.product.workers} worker(s), ` +
    `${r.product.partitions} partitions, QUEUE_MAX_BATCH ${r.product.maxBatch}, DB_POOL_MAX ${r.product.dbPoolMax}` +
    Object.entries({ ...r.product.env, ...r.product.pgSettings })
      .map(([k, v]) => `, ${k}=${v}`)
      .join('')
  );
}

export function renderText(r: BenchResults): string {
  const lines: string[] = [machineLine(r), rateLimitLine(r)];
  for (const s of sections(r)) {
    lines.push('', s.title);
    const w = Math.max(...s.rows.map((row) => row.figure.length));
    for (const row of s.rows) {
      const extra = [row.ratio, row.target ? `target ${row.target}` : undefined, row.ok !== undefined ? `[${mark(row.ok)}]` : undefined].filter(Boolean).join('  ');
      lines.push(`  ${row.figure.padEnd(w)}  ${row.value}${extra ? `   ${extra}` : ''}`);
    }
  }
  lines.push('', 'Targets');
  const w = Math.max(...r.targets.map((t) => t.name.length));
  for (const t of r.targets) {
    lines.push(`  [${mark(t.ok).padEnd(3)}] ${t.name.padEnd(w)}  ${t.measured}   target ${t.target}${t.miss ? `   (${t.miss})` : ''}`);
  }
  return lines.join('\n');
}

export function renderMarkdown(r: BenchResults): string {
  const esc = (s: string | undefined) => (s ?? '').replace(/\|/g, '\\|');
  const lines: string[] = [`${rateLimitLine(r)}.`, ''];
  for (const s of sections(r)) {
    lines.push(`**${s.title}**`, '', '| Figure | Value | Ratio | Target | Met |', '| --- | --- | --- | --- | --- |');
    for (const row of s.rows) {
      const indent = row.figure.startsWith('  ') ? '↳ ' : '';
      lines.push(`| ${indent}${esc(row.figure.trim())} | ${esc(row.value)} | ${esc(row.ratio)} | ${esc(row.target)} | ${mark(row.ok)} |`);
    }
    lines.push('');
  }
  lines.push('**Targets**', '', '| Target | Measured | Goal | Met | Off by |', '| --- | --- | --- | --- | --- |');
  for (const t of r.targets) lines.push(`| ${esc(t.name)} | ${esc(t.measured)} | ${esc(t.target)} | ${mark(t.ok)} | ${t.miss ?? ''} |`);
  return lines.join('\n');
}
