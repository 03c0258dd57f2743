/**
 * A set of sequence numbers as sorted, disjoint, non-adjacent ranges: the revs of one channel that one
 * socket has been sent. Live delivery and replays each send runs of consecutive revs, so this is one
 * range almost always.
 */
export class SeqSet {
  /** [from, to] pairs, inclusive, ascending. */
  private readonly ranges: Array<[number, number]> = [];

  has(seq: number): boolean {
    // The newest range first: live delivery and late copies land there.
    for (let i = this.ranges.length - 1; i >= 0; i--) {
      const [from, to] = this.ranges[i];
      if (seq > to) return false;
      if (seq >= from) return true;
    }
    return false;
  }

  add(seq: number): void {
    const ranges = this.ranges;
    let i = ranges.length - 1;
    // Fast path: the next seq after the newest range.
    if (i >= 0 && ranges[i][1] + 1 === seq) {
      ranges[i][1] = seq;
      return;
    }
    while (i >= 0 && ranges[i][0] > seq) i--;
    // ranges[i] starts at or before seq (or i is -1).
    if (i >= 0 && seq <= ranges[i][1]) return;
    const joinsLeft = i >= 0 && ranges[i][1] + 1 === seq;
    const joinsRight = i + 1 < ranges.length && ranges[i + 1][0] - 1 === seq;
    if (joinsLeft && joinsRight) {
      ranges[i][1] = ranges[i + 1][1];
      ranges.splice(i + 1, 1);
    } else if (joinsLeft) ranges[i][1] = seq;
    else if (joinsRight) ranges[i + 1][0] = seq;
    else ranges.splice(i + 1, 0, [seq, seq]);
  }

  /** For tests and logs. */
  toRanges(): Array<[number, number]> {
    return this.ranges.map(([from, to]) => [from, to]);
  }
}
