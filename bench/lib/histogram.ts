/**
 * A latency histogram in microseconds, small enough to ship between processes: 10 µs buckets below 1 ms,
 * then buckets 1 % wide (so any percentile is within ±0.5 %). Min, max, count and sum are exact.
 */
const LINEAR_LIMIT_US = 1000;
const LINEAR_STEP_US = 10;
const LINEAR_BUCKETS = LINEAR_LIMIT_US / LINEAR_STEP_US;
const LOG_BASE = Math.log(1.01);

function bucketOf(us: number): number {
  if (us < LINEAR_LIMIT_US) return Math.max(0, Math.floor(us / LINEAR_STEP_US));
  return LINEAR_BUCKETS + Math.floor(Math.log(us / LINEAR_LIMIT_US) / LOG_BASE);
}

function bucketValue(index: number): number {
  if (index < LINEAR_BUCKETS) return (index + 0.5) * LINEAR_STEP_US;
  return LINEAR_LIMIT_US * Math.exp((index - LINEAR_BUCKETS + 0.5) * LOG_BASE);
}

export interface HistogramData {
  /** [bucket, count] pairs. */
  buckets: Array<[number, number]>;
  count: number;
  sum: number;
  min: number;
  max: number;
}

/** Percentiles in milliseconds. */
export interface LatencySummary {
  count: number;
  mean: number;
  p50: number;
  p95: number;
  p99: number;
  max: number;
}

export class Histogram {
  private readonly counts = new Map<number, number>();
  count = 0;
  sum = 0;
  min = Infinity;
  max = 0;

  record(us: number): void {
    const v = us < 0 ? 0 : us;
    const b = bucketOf(v);
    this.counts.set(b, (this.counts.get(b) ?? 0) + 1);
    this.count++;
    this.sum += v;
    if (v < this.min) this.min = v;
    if (v > this.max) this.max = v;
  }

  merge(other: Histogram | HistogramData): this {
    const data = other instanceof Histogram ? other.toJSON() : other;
    for (const [b, c] of data.buckets) this.counts.set(b, (this.counts.get(b) ?? 0) + c);
    this.count += data.count;
    this.sum += data.sum;
    if (data.count > 0) {
      this.min = Math.min(this.min, data.min);
      this.max = Math.max(this.max, data.max);
    }
    return this;
  }

  /** The value (µs) at or below which `p` percent of the samples fall; the exact max for p = 100. */
  percentile(p: number): number {
    if (this.count === 0) return NaN;
    if (p >= 100) return this.max;
    const rank = Math.ceil((p / 100) * this.count);
    let seen = 0;
    for (const b of [...this.counts.keys()].sort((x, y) => x - y)) {
      seen += this.counts.get(b)!;
      if (seen >= rank) return Math.min(Math.max(bucketValue(b), this.min), this.max);
    }
    return this.max;
  }

  summary(): LatencySummary {
    const ms = (us: number) => round(us / 1000, 3);
    return {
      count: this.count,
      mean: this.count ? ms(this.sum / this.count) : NaN,
      p50: ms(this.percentile(50)),
      p95: ms(this.percentile(95)),
      p99: ms(this.percentile(99)),
      max: ms(this.max),
    };
  }

  toJSON(): HistogramData {
    return { buckets: [...this.counts.entries()], count: this.count, sum: this.sum, min: this.min, max: this.max };
  }

  static from(data: HistogramData | HistogramData[]): Histogram {
    const h = new Histogram();
    for (const d of Array.isArray(data) ? data : [data]) h.merge(d);
    return h;
  }
}

export function round(value: number, digits = 1): number {
  if (!Number.isFinite(value)) return value;
  const f = 10 ** digits;
  return Math.round(value * f) / f;
}
