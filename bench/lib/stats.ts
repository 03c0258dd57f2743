import { round, type LatencySummary } from './histogram.js';

/** Same shape as a histogram's summary, so reports print both alike. */
export type Distribution = LatencySummary;

/** Percentiles of plain values (nearest rank). */
export function distribution(values: number[], digits = 2): Distribution {
  if (values.length === 0) return { count: 0, mean: NaN, p50: NaN, p95: NaN, p99: NaN, max: NaN };
  const sorted = [...values].sort((a, b) => a - b);
  const at = (p: number) => sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))];
  return {
    count: sorted.length,
    mean: round(sorted.reduce((s, v) => s + v, 0) / sorted.length, digits),
    p50: round(at(50), digits),
    p95: round(at(95), digits),
    p99: round(at(99), digits),
    max: round(sorted[sorted.length - 1], digits),
  };
}

/** The middle value; of an even count, the mean of the two middle ones; NaN of none. */
export function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = Math.floor(sorted.length / 2);
  if (sorted.length === 0) return NaN;
  return sorted.length % 2 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2;
}
