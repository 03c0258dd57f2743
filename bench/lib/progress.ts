/**
 * The live progress line, on stderr: rewritten in place on a terminal, one line every few seconds otherwise
 * (CI logs), and always a final one.
 */
export interface ProgressCounts {
  sent: number;
  acked: number;
  delivered: number;
}

const fmt = (n: number) => Math.round(n).toLocaleString('en-US');

export class Progress {
  private readonly startedMs = performance.now();
  private lastMs = this.startedMs;
  private last: ProgressCounts = { sent: 0, acked: 0, delivered: 0 };
  private lastPrintedMs = 0;
  private readonly tty = Boolean(process.stderr.isTTY);

  constructor(private readonly label: string) {}

  update(counts: ProgressCounts, final = false): void {
    const now = performance.now();
    const dt = (now - this.lastMs) / 1000;
    const rate = dt > 0 ? (counts.acked - this.last.acked) / dt : 0;
    const drate = dt > 0 ? (counts.delivered - this.last.delivered) / dt : 0;
    this.last = counts;
    this.lastMs = now;
    const line =
      `[${this.label}] ${((now - this.startedMs) / 1000).toFixed(1)} s  sent ${fmt(counts.sent)}  acked ${fmt(counts.acked)}` +
      `  delivered ${fmt(counts.delivered)}  now ${fmt(rate)} msg/s, ${fmt(drate)} deliveries/s`;
    if (this.tty) {
      process.stderr.write(`\r\x1b[2K${line}${final ? '\n' : ''}`);
    } else if (final || now - this.lastPrintedMs >= 5000) {
      this.lastPrintedMs = now;
      process.stderr.write(`${line}\n`);
    }
  }
}

export function note(line: string): void {
  process.stderr.write(`${line}\n`);
}
