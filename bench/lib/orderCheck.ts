/**
 * What a receiver saw of one channel, against the contiguous seqs the channel hands out. Seqs at or below
 * `base` (the warm-up) are not part of the run.
 *  - a seq beyond the next one expected leaves the skipped ones missing (a gap, unless they come later);
 *  - a missing seq that comes later is an order violation;
 *  - a seq seen before is a duplicate.
 */
const MAX_TRACKED_MISSING = 100_000;

export interface OrderCounts {
  /** Messages that arrived after a later one of the same channel. */
  violations: number;
  /** Messages never received (counted at the end, against the channel's final seq). */
  gaps: number;
  duplicates: number;
}

export const noOrderErrors = (): OrderCounts => ({ violations: 0, gaps: 0, duplicates: 0 });

export function addOrderCounts(a: OrderCounts, b: OrderCounts): OrderCounts {
  return { violations: a.violations + b.violations, gaps: a.gaps + b.gaps, duplicates: a.duplicates + b.duplicates };
}

export const orderErrorTotal = (c: OrderCounts) => c.violations + c.gaps + c.duplicates;

export class StreamCheck {
  private last: number;
  private readonly missing = new Set<number>();
  private overflow = 0;
  violations = 0;
  duplicates = 0;
  received = 0;

  constructor(readonly base: number) {
    this.last = base;
  }

  see(seq: number): void {
    if (seq === this.last + 1) {
      this.last = seq;
      this.received++;
    } else if (seq > this.last + 1) {
      for (let s = this.last + 1; s < seq; s++) {
        if (this.missing.size < MAX_TRACKED_MISSING) this.missing.add(s);
        else this.overflow++;
      }
      this.last = seq;
      this.received++;
    } else if (this.missing.delete(seq)) {
      this.violations++;
      this.received++;
    } else {
      this.duplicates++;
    }
  }

  /** The counts once the channel's last seq is `finalSeq`. */
  counts(finalSeq: number): OrderCounts {
    return {
      violations: this.violations,
      duplicates: this.duplicates,
      gaps: this.missing.size + this.overflow + Math.max(0, finalSeq - this.last),
    };
  }
}

/**
 * A sender's acks must give its sends increasing seqs in send order: `record` them by send index, `check` at
 * the end counts each ack whose seq is not above the previous send's.
 */
export class AckOrder {
  private readonly seqs = new Map<number, number>();

  record(sendIndex: number, seq: number): void {
    this.seqs.set(sendIndex, seq);
  }

  violations(): number {
    let count = 0;
    let previous = -Infinity;
    for (const index of [...this.seqs.keys()].sort((a, b) => a - b)) {
      const seq = this.seqs.get(index)!;
      if (seq <= previous) count++;
      previous = seq;
    }
    return count;
  }
}

/**
 * Rev order of one channel at one socket (mixed phase). Every change of a channel (a send, an edit, a delete,
 * a reaction added or removed) takes the next value of the channel's one gap-free rev counter, and every
 * socket gets the channel's events in rev order, once each (docs/API.md, "Edits, deletes, reactions and threads"): whatever their kind,
 * the events must arrive as base+1, base+2, ... The StreamCheck above counts violations, gaps and
 * duplicates; this also keeps each change event's kind and arrival time (not message:new's, whose latency
 * is in its body), to be matched at the end against the acked changes' revs.
 */
export class RevCheck {
  readonly stream: StreamCheck;
  /** rev → [event kind (an index the caller defines), arrival µs]: change events past the base, first arrival. */
  readonly arrivals = new Map<number, [number, number]>();
  /** Events without an integer rev. */
  noRev = 0;

  constructor(readonly base: number) {
    this.stream = new StreamCheck(base);
  }

  /** Whether the event is part of the run (past the base). `kind` 0 is message:new, which keeps no arrival. */
  see(rev: unknown, kind: number, atUs: number): boolean {
    if (typeof rev !== 'number' || !Number.isInteger(rev)) {
      this.noRev++;
      return true;
    }
    if (rev <= this.base) return false;
    this.stream.see(rev);
    if (kind !== 0 && !this.arrivals.has(rev)) this.arrivals.set(rev, [kind, atUs]);
    return true;
  }
}
