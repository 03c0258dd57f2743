/**
 * Latency percentiles against offered rate, as a hand-written SVG: the product's send→deliver and
 * send→ack p50/p95/p99, and the raw emitter broadcast's p50/p99 at the same rates. Log-scale latency axis.
 */
import type { BenchResults } from './results.js';

interface Series {
  name: string;
  color: string;
  dash?: string;
  points: Array<[number, number]>;
}

const W = 860;
const H = 500;
const M = { left: 70, right: 230, top: 50, bottom: 60 };

const escape = (s: string) => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');

function niceStep(range: number, ticks: number): number {
  const raw = range / ticks;
  const mag = 10 ** Math.floor(Math.log10(raw));
  const f = raw / mag;
  return (f < 1.5 ? 1 : f < 3.5 ? 2 : f < 7.5 ? 5 : 10) * mag;
}

export function latencyChart(r: BenchResults): string | null {
  // One curve: the first run of each rate (--pairs runs each several times).
  const points = (r.latency ?? []).filter((p) => (p.pair ?? 0) === 0);
  if (points.length === 0) return null;
  const raw = r.baselines.rawLatency ?? [];
  const pick = (list: typeof points | typeof raw, f: (p: (typeof points)[number] | (typeof raw)[number]) => number) =>
    list.map((p) => [p.offeredRate, f(p)] as [number, number]).filter(([, v]) => Number.isFinite(v) && v > 0);
  const series: Series[] = [
    { name: 'send→deliver p50', color: '#1f77b4', points: pick(points, (p) => p.deliver.p50) },
    { name: 'send→deliver p95', color: '#ff7f0e', points: pick(points, (p) => p.deliver.p95) },
    { name: 'send→deliver p99', color: '#d62728', points: pick(points, (p) => p.deliver.p99) },
    { name: 'send→deliver max', color: '#7f7f7f', dash: '2 3', points: pick(points, (p) => p.deliver.max) },
    { name: 'send→ack p50', color: '#1f77b4', dash: '6 4', points: pick(points, (p) => p.ack.p50) },
    { name: 'send→ack p99', color: '#d62728', dash: '6 4', points: pick(points, (p) => p.ack.p99) },
    { name: 'raw emitter p50', color: '#2ca02c', dash: '1 3', points: pick(raw, (p) => p.deliver.p50) },
    { name: 'raw emitter p99', color: '#9467bd', dash: '1 3', points: pick(raw, (p) => p.deliver.p99) },
  ].filter((s) => s.points.length > 0);

  const all = series.flatMap((s) => s.points);
  const xMax = Math.max(...all.map(([xv]) => xv)) * 1.08;
  const yMinRaw = Math.min(...all.map(([, y]) => y));
  const yMaxRaw = Math.max(...all.map(([, y]) => y));
  const yLo = 10 ** Math.floor(Math.log10(yMinRaw));
  const yHi = 10 ** Math.ceil(Math.log10(yMaxRaw));
  const pw = W - M.left - M.right;
  const ph = H - M.top - M.bottom;
  const sx = (v: number) => M.left + (v / xMax) * pw;
  const sy = (v: number) => M.top + ph - ((Math.log10(v) - Math.log10(yLo)) / (Math.log10(yHi) - Math.log10(yLo))) * ph;

  const out: string[] = [];
  out.push(`<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" font-family="sans-serif" font-size="12">`);
  out.push(`<rect width="${W}" height="${H}" fill="white"/>`);
  out.push(`<text x="${M.left}" y="24" font-size="15" font-weight="bold">Latency percentiles against offered rate</text>`);
  out.push(
    `<text x="${M.left}" y="40" fill="#555">${escape(`${r.machine.nproc} cores, ${r.product.servers} front node(s), ${r.product.workers} worker(s); ${r.startedAt.slice(0, 16).replace('T', ' ')} UTC`)}</text>`,
  );
  // Grid and axes.
  for (let d = yLo; d <= yHi * 1.0001; d *= 10) {
    for (const m of [1, 2, 5]) {
      const v = d * m;
      if (v > yHi * 1.0001) break;
      const y = sy(v);
      out.push(`<line x1="${M.left}" x2="${M.left + pw}" y1="${y}" y2="${y}" stroke="${m === 1 ? '#ccc' : '#eee'}"/>`);
      out.push(`<text x="${M.left - 8}" y="${y + 4}" text-anchor="end" fill="#333">${v >= 1 ? v : v.toPrecision(1)}</text>`);
    }
  }
  const step = niceStep(xMax, 6);
  for (let v = 0; v <= xMax; v += step) {
    const xx = sx(v);
    out.push(`<line x1="${xx}" x2="${xx}" y1="${M.top}" y2="${M.top + ph}" stroke="#eee"/>`);
    out.push(`<text x="${xx}" y="${M.top + ph + 18}" text-anchor="middle" fill="#333">${v.toLocaleString('en-US')}</text>`);
  }
  out.push(`<rect x="${M.left}" y="${M.top}" width="${pw}" height="${ph}" fill="none" stroke="#333"/>`);
  out.push(`<text x="${M.left + pw / 2}" y="${H - 18}" text-anchor="middle">offered rate (messages/s)</text>`);
  out.push(`<text transform="translate(20 ${M.top + ph / 2}) rotate(-90)" text-anchor="middle">latency (ms, log scale)</text>`);
  // Series.
  for (const s of series) {
    const pts = [...s.points].sort((a, b) => a[0] - b[0]);
    const path = pts.map(([xv, yv], i) => `${i === 0 ? 'M' : 'L'}${sx(xv).toFixed(1)},${sy(yv).toFixed(1)}`).join(' ');
    out.push(`<path d="${path}" fill="none" stroke="${s.color}" stroke-width="2"${s.dash ? ` stroke-dasharray="${s.dash}"` : ''}/>`);
    for (const [xv, yv] of pts) {
      out.push(`<circle cx="${sx(xv).toFixed(1)}" cy="${sy(yv).toFixed(1)}" r="3.5" fill="${s.color}"><title>${escape(`${s.name} @ ${Math.round(xv)} msg/s: ${yv} ms`)}</title></circle>`);
    }
  }
  // Legend.
  series.forEach((s, i) => {
    const y = M.top + 10 + i * 22;
    const lx = M.left + pw + 16;
    out.push(`<line x1="${lx}" x2="${lx + 30}" y1="${y}" y2="${y}" stroke="${s.color}" stroke-width="2"${s.dash ? ` stroke-dasharray="${s.dash}"` : ''}/>`);
    out.push(`<text x="${lx + 38}" y="${y + 4}">${escape(s.name)}</text>`);
  });
  out.push('</svg>');
  return out.join('\n');
}
