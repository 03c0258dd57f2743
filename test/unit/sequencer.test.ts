/**
 * Unit tests of ChannelSequencer (server/realtime/sequencer.ts): what decides that a front node hands each
 * channel's events (message:new, message:updated, message:deleted, reaction:added, reaction:removed) on in
 * rev order, each once, whatever way they reached it.
 *
 * Most scenarios use `message:new` events whose rev equals the message's seq (the straightforward mapping
 * of the former seq-ordered stream); the "event kinds" block mixes every kind in one channel.
 *
 * No fake-timer library is a dependency of this repo, so time is controlled by hand: the sweep callback the
 * sequencer registers with setInterval is captured when it is constructed, and Date.now is replaced while an
 * idle-forgetting test runs. The gap source is a fake whose promises the tests settle themselves, so arrivals
 * can be interleaved with a pending fill.
 */
import { expect } from 'chai';
import fc from 'fast-check';
import { eventChannel, eventRev, type ChannelEvent } from '../../shared/events.js';
import type { Logger } from '../../shared/logger.js';
import { ChannelSequencer, type GapSource } from '../../server/realtime/sequencer.js';
import { ev, msg, msgs } from './events.js';
import { propertyRuns, propertySeed } from '../support/properties.js';

/** sequencer.ts does not export them; kept in step with it by the boundary tests below. */
const MAX_FILL = 10_000;

interface FillCall {
  readonly channelId: string;
  readonly afterRev: number;
  readonly beforeRev: number;
  settled: boolean;
  resolve(events: ChannelEvent[]): void;
  reject(err: unknown): void;
}

/** A GapSource whose answers the test gives, when it chooses. */
class FakeSource implements GapSource {
  readonly calls: FillCall[] = [];

  between(channelId: string, afterRev: number, beforeRev: number): Promise<ChannelEvent[]> {
    return new Promise((resolve, reject) => {
      const call: FillCall = {
        channelId,
        afterRev,
        beforeRev,
        settled: false,
        resolve: (events) => {
          call.settled = true;
          resolve(events);
        },
        reject: (err) => {
          call.settled = true;
          reject(err);
        },
      };
      this.calls.push(call);
    });
  }

  get pending(): FillCall[] {
    return this.calls.filter((c) => !c.settled);
  }

  /** Lets the sequencer ask (it need not ask synchronously), then returns the one pending call. */
  async next(): Promise<FillCall> {
    await flush();
    return this.only();
  }

  /** The one pending call; fails the test if there is not exactly one. */
  only(): FillCall {
    const pending = this.pending;
    expect(pending, 'pending gap fills').to.have.length(1);
    return pending[0];
  }

  /** Answers `call` as PostgreSQL would, with every rev strictly between its bounds (as message:new). */
  fill(call: FillCall): void {
    call.resolve(range(call.afterRev + 1, call.beforeRev - 1).map((rev) => msg(rev, call.channelId)));
  }
}

function range(from: number, to: number): number[] {
  const out: number[] = [];
  for (let i = from; i <= to; i++) out.push(i);
  return out;
}


/** Lets the sequencer's pending fill continue after its promise settled. */
const flush = () => new Promise<void>((resolve) => setImmediate(resolve));

interface Harness {
  readonly sequencer: ChannelSequencer;
  readonly source: FakeSource;
  /** Every deliver() call, in order. */
  readonly batches: ChannelEvent[][];
  readonly warnings: unknown[];
  /** The sweep the sequencer registered with setInterval, and its period. */
  readonly sweep: { run(): void; everyMs: number };
  /** Revs delivered for `channelId`, in delivery order. */
  delivered(channelId?: string): number[];
  /** `name@rev` of each event delivered for `channelId`, in delivery order. */
  named(channelId?: string): string[];
}

const harnesses: Harness[] = [];

function createHarness(): Harness {
  const source = new FakeSource();
  const batches: ChannelEvent[][] = [];
  const warnings: unknown[] = [];
  const logger = { warn: (obj: unknown) => warnings.push(obj) } as unknown as Logger;

  let captured: { fn: () => void; ms: number } | undefined;
  const realSetInterval = globalThis.setInterval;
  globalThis.setInterval = ((fn: () => void, ms: number) => {
    captured = { fn, ms };
    // A real (never firing) timer, so that unref() and clearInterval() behave.
    return realSetInterval(() => {}, 2 ** 31 - 1);
  }) as unknown as typeof setInterval;
  let sequencer: ChannelSequencer;
  try {
    sequencer = new ChannelSequencer({ source, deliver: (events) => batches.push(events), logger });
  } finally {
    globalThis.setInterval = realSetInterval;
  }
  expect(captured, 'the sequencer registers an idle sweep').to.not.equal(undefined);
  const sweep = { run: captured!.fn, everyMs: captured!.ms };

  const harness: Harness = {
    sequencer,
    source,
    batches,
    warnings,
    sweep,
    delivered: (channelId = 'c1') => batches.flat().filter((e) => eventChannel(e) === channelId).map(eventRev),
    named: (channelId = 'c1') => batches.flat().filter((e) => eventChannel(e) === channelId).map((e) => `${e.name}@${eventRev(e)}`),
  };
  harnesses.push(harness);
  return harness;
}

describe('unit: ChannelSequencer', () => {
  afterEach(() => {
    for (const h of harnesses.splice(0)) h.sequencer.stop();
  });

  describe('in-order and repeated messages', () => {
    it('When a channel\'s messages arrive in rev order, then each batch is delivered at once, unchanged, without asking the source', async () => {
      const h = createHarness();
      h.sequencer.accept(msgs([1, 2, 3]));
      expect(h.batches.map((b) => b.map(eventRev))).to.deep.equal([[1, 2, 3]]);
      const four = msgs([4]);
      h.sequencer.accept(four);
      h.sequencer.accept(msgs([5, 6]));
      expect(h.batches.map((b) => b.map(eventRev))).to.deep.equal([[1, 2, 3], [4], [5, 6]]);
      // The very objects given, not copies.
      expect(h.batches[1][0]).to.equal(four[0]);
      await flush();
      expect(h.source.calls).to.have.length(0);
    });

    it('When the first message a node sees for a channel has any rev, then it is delivered and becomes the baseline, with no fill for what came before', async () => {
      const h = createHarness();
      h.sequencer.accept(msgs([41]));
      h.sequencer.accept(msgs([42]));
      expect(h.delivered()).to.deep.equal([41, 42]);
      await flush();
      expect(h.source.calls).to.have.length(0);
    });

    it('When a delivered batch is published again, wholly or overlapping new messages, then only the new messages go out and a wholly old batch causes no delivery at all', async () => {
      const h = createHarness();
      h.sequencer.accept(msgs([1, 2, 3]));
      h.sequencer.accept(msgs([1, 2, 3]));
      h.sequencer.accept(msgs([2]));
      expect(h.batches, 'a batch of nothing but repeats is not delivered, not even empty').to.have.length(1);
      h.sequencer.accept(msgs([3, 4, 5]));
      expect(h.batches.map((b) => b.map(eventRev))).to.deep.equal([[1, 2, 3], [4, 5]]);
      await flush();
      expect(h.source.calls).to.have.length(0);
    });
  });

  describe('gaps', () => {
    it('When a gap appears, then nothing after it goes out until the source has filled it, and then the missing and the held messages go out in rev order, once', async () => {
      const h = createHarness();
      h.sequencer.accept(msgs([1]));
      h.sequencer.accept(msgs([4, 5]));
      const call = await h.source.next();
      expect(call).to.include({ channelId: 'c1', afterRev: 1, beforeRev: 4 });
      expect(h.delivered(), 'held while the fill is pending').to.deep.equal([1]);

      h.source.fill(call);
      await flush();
      expect(h.delivered()).to.deep.equal([1, 2, 3, 4, 5]);
      expect(h.batches.map((b) => b.map(eventRev))).to.deep.equal([[1], [2, 3, 4, 5]]);
      expect(h.source.calls).to.have.length(1);

      h.sequencer.accept(msgs([6]));
      expect(h.delivered()).to.deep.equal([1, 2, 3, 4, 5, 6]);
    });

    it('When messages arrive while a fill is pending (later ones, repeats of delivered ones, the missing ones themselves and repeats of held ones), then after the fill each rev goes out exactly once, in order', async () => {
      const h = createHarness();
      h.sequencer.accept(msgs([1, 2]));
      h.sequencer.accept(msgs([5]));
      const call = await h.source.next();
      expect(call).to.include({ afterRev: 2, beforeRev: 5 });

      h.sequencer.accept(msgs([6]));
      h.sequencer.accept(msgs([1, 2])); // re-published, already delivered
      h.sequencer.accept(msgs([3, 4])); // the lost batch, re-published late
      h.sequencer.accept(msgs([5, 6, 7])); // held ones again, and a new one
      expect(h.delivered(), 'nothing passes a pending fill').to.deep.equal([1, 2]);
      expect(h.source.calls, 'one fill at a time per channel').to.have.length(1);

      h.source.fill(call);
      await flush();
      expect(h.delivered()).to.deep.equal([1, 2, 3, 4, 5, 6, 7]);
      expect(h.source.calls).to.have.length(1);
    });

    it('When a further gap shows among messages that arrived during a pending fill, then a second fill of the right range is asked for only after the first settles, and everything goes out in order, once', async () => {
      const h = createHarness();
      h.sequencer.accept(msgs([1]));
      h.sequencer.accept(msgs([4]));
      const first = await h.source.next();
      h.sequencer.accept(msgs([5]));
      h.sequencer.accept(msgs([8, 9]));
      expect(h.source.calls, 'the second gap waits for the first fill').to.have.length(1);

      h.source.fill(first);
      await flush();
      expect(h.delivered()).to.deep.equal([1, 2, 3, 4, 5]);
      const second = await h.source.next();
      expect(second).to.include({ afterRev: 5, beforeRev: 8 });

      h.sequencer.accept(msgs([10]));
      h.sequencer.accept(msgs([6])); // one of the missing ones, arriving itself
      h.sequencer.accept(msgs([4, 9])); // repeats
      expect(h.delivered()).to.deep.equal([1, 2, 3, 4, 5]);

      h.source.fill(second);
      await flush();
      expect(h.delivered()).to.deep.equal(range(1, 10));
      expect(h.source.calls).to.have.length(2);
    });

    it('When the source fails, then delivery continues past the gap with the held and later messages, without stalling or asking again', async () => {
      const h = createHarness();
      h.sequencer.accept(msgs([1]));
      h.sequencer.accept(msgs([4]));
      const call = await h.source.next();
      h.sequencer.accept(msgs([5]));
      h.sequencer.accept(msgs([4])); // a repeat of a held one

      call.reject(new Error('PostgreSQL unavailable'));
      await flush();
      expect(h.delivered()).to.deep.equal([1, 4, 5]);
      expect(h.warnings, 'the failure is logged').to.have.length.greaterThan(0);

      h.sequencer.accept(msgs([6, 7]));
      expect(h.delivered()).to.deep.equal([1, 4, 5, 6, 7]);
      expect(h.source.calls, 'the lost range is left to clients\' sync').to.have.length(1);
      expect(h.source.pending).to.have.length(0);
    });

    it('When the source answers with part of the gap only, then that part and the held messages go out in order and delivery does not stall', async () => {
      const h = createHarness();
      h.sequencer.accept(msgs([1]));
      h.sequencer.accept(msgs([5, 6]));
      (await h.source.next()).resolve(msgs([2, 3]));
      await flush();
      expect(h.delivered()).to.deep.equal([1, 2, 3, 5, 6]);
      h.sequencer.accept(msgs([7]));
      expect(h.delivered()).to.deep.equal([1, 2, 3, 5, 6, 7]);
      expect(h.source.calls).to.have.length(1);
    });

    it('When the source answers with rows outside the range asked (already delivered ones, or ones it holds as well), then none goes out twice', async () => {
      const h = createHarness();
      h.sequencer.accept(msgs([1, 2]));
      h.sequencer.accept(msgs([5, 6]));
      (await h.source.next()).resolve(msgs([1, 2, 3, 4]));
      await flush();
      expect(h.delivered()).to.deep.equal([1, 2, 3, 4, 5, 6]);
    });

    it(`When a gap is exactly MAX_FILL (${MAX_FILL}) messages, then it is filled from the source`, async () => {
      const h = createHarness();
      h.sequencer.accept(msgs([1]));
      h.sequencer.accept(msgs([MAX_FILL + 2]));
      const call = await h.source.next();
      expect(call).to.include({ afterRev: 1, beforeRev: MAX_FILL + 2 });
      expect(h.delivered()).to.deep.equal([1]);
      h.source.fill(call);
      await flush();
      expect(h.delivered()).to.deep.equal(range(1, MAX_FILL + 2));
    });

    it(`When a gap is larger than MAX_FILL (${MAX_FILL}) messages, then the source is not asked and delivery continues past it at once`, async () => {
      const h = createHarness();
      h.sequencer.accept(msgs([1]));
      h.sequencer.accept(msgs([MAX_FILL + 3]));
      await flush();
      expect(h.source.calls).to.have.length(0);
      expect(h.delivered()).to.deep.equal([1, MAX_FILL + 3]);
      expect(h.warnings, 'the skipped gap is logged').to.have.length(1);
      h.sequencer.accept(msgs([MAX_FILL + 3, MAX_FILL + 4]));
      expect(h.delivered()).to.deep.equal([1, MAX_FILL + 3, MAX_FILL + 4]);
    });
  });

  describe('event kinds', () => {
    it('When events of every kind for one channel arrive in rev order, then they are delivered in rev order, once each, unchanged, without asking the source', async () => {
      const h = createHarness();
      const first = [ev('message:new', 1, 'c1', 1), ev('message:new', 2, 'c1', 2), ev('reaction:added', 3, 'c1', 1)];
      const second = [ev('message:updated', 4, 'c1', 2), ev('reaction:removed', 5, 'c1', 1)];
      // A reply: its message:new (r) then the parent's message:updated (r + 1); then a delete.
      const third = [ev('message:new', 6, 'c1', 3), ev('message:updated', 7, 'c1', 1), ev('message:deleted', 8, 'c1', 2)];
      h.sequencer.accept(first);
      h.sequencer.accept(second);
      h.sequencer.accept(third);
      expect(h.named()).to.deep.equal([
        'message:new@1',
        'message:new@2',
        'reaction:added@3',
        'message:updated@4',
        'reaction:removed@5',
        'message:new@6',
        'message:updated@7',
        'message:deleted@8',
      ]);
      expect(h.batches.map((b) => b.map(eventRev))).to.deep.equal([[1, 2, 3], [4, 5], [6, 7, 8]]);
      // The very objects given, not copies.
      expect(h.batches).to.deep.equal([first, second, third]);
      h.batches.flat().forEach((e, i) => expect(e, `event ${i}`).to.equal([...first, ...second, ...third][i]));
      await flush();
      expect(h.source.calls).to.have.length(0);
    });

    it('When the first event a node sees for a channel is not a message:new, then it is the baseline all the same', async () => {
      const h = createHarness();
      h.sequencer.accept([ev('reaction:removed', 17)]);
      h.sequencer.accept([ev('message:deleted', 18)]);
      await flush();
      expect(h.named()).to.deep.equal(['reaction:removed@17', 'message:deleted@18']);
      expect(h.source.calls).to.have.length(0);
    });

    it('When a gap in revs is made of non-message events (an edit, reactions, a delete), then it is filled from the source and everything goes out in rev order, once', async () => {
      const h = createHarness();
      h.sequencer.accept([ev('message:new', 1, 'c1', 1), ev('message:new', 2, 'c1', 2)]);
      h.sequencer.accept([ev('reaction:removed', 7, 'c1', 2)]);
      const call = await h.source.next();
      expect(call).to.include({ channelId: 'c1', afterRev: 2, beforeRev: 7 });
      expect(h.delivered(), 'held while the fill is pending').to.deep.equal([1, 2]);
      h.sequencer.accept([ev('message:updated', 8, 'c1', 1)]);
      expect(h.delivered()).to.deep.equal([1, 2]);

      call.resolve([
        ev('message:updated', 3, 'c1', 1),
        ev('reaction:added', 4, 'c1', 2),
        ev('reaction:added', 5, 'c1', 1),
        ev('message:deleted', 6, 'c1', 1),
      ]);
      await flush();
      expect(h.named()).to.deep.equal([
        'message:new@1',
        'message:new@2',
        'message:updated@3',
        'reaction:added@4',
        'reaction:added@5',
        'message:deleted@6',
        'reaction:removed@7',
        'message:updated@8',
      ]);
      expect(h.batches.map((b) => b.map(eventRev))).to.deep.equal([[1, 2], [3, 4, 5, 6, 7, 8]]);
      expect(h.source.calls).to.have.length(1);

      h.sequencer.accept([ev('reaction:added', 9, 'c1', 2)]);
      expect(h.delivered()).to.deep.equal(range(1, 9));
    });

    it('When events of any kind are published again (delivered ones, held ones, the missing ones themselves, or a fill overlapping them), then each rev goes out once and a batch of nothing but repeats causes no delivery', async () => {
      const h = createHarness();
      const delivered = [
        ev('message:new', 1, 'c1', 1),
        ev('message:updated', 2, 'c1', 1),
        ev('reaction:added', 3, 'c1', 1),
        ev('reaction:removed', 4, 'c1', 1),
        ev('message:deleted', 5, 'c1', 1),
      ];
      h.sequencer.accept(delivered);
      // Each kind again, alone and together, as fresh objects equal to the first copies.
      for (const e of delivered) h.sequencer.accept([structuredClone(e)]);
      h.sequencer.accept(structuredClone(delivered).reverse());
      expect(h.batches, 'wholly old batches are not delivered, not even empty').to.have.length(1);

      // Overlapping: old ones of several kinds and one new event.
      h.sequencer.accept([ev('reaction:added', 3, 'c1', 1), ev('message:deleted', 5, 'c1', 1), ev('message:new', 6, 'c1', 2)]);
      expect(h.batches.map((b) => b.map(eventRev))).to.deep.equal([[1, 2, 3, 4, 5], [6]]);

      // A gap: 7 and 8 missing; repeats of every sort arrive while the fill is pending.
      h.sequencer.accept([ev('reaction:removed', 9, 'c1', 2)]);
      const call = await h.source.next();
      expect(call).to.include({ afterRev: 6, beforeRev: 9 });
      h.sequencer.accept([ev('reaction:removed', 9, 'c1', 2)]); // a held one again
      h.sequencer.accept([ev('message:updated', 2, 'c1', 1), ev('message:new', 6, 'c1', 2)]); // delivered ones
      h.sequencer.accept([ev('reaction:added', 8, 'c1', 2)]); // a missing one, arriving itself
      h.sequencer.accept([ev('message:deleted', 10, 'c1', 2), ev('message:deleted', 10, 'c1', 2)]); // new, twice in a batch
      expect(h.delivered()).to.deep.equal([1, 2, 3, 4, 5, 6]);

      // The source answers with what it has in range and more (already delivered, and held).
      call.resolve([ev('message:deleted', 5, 'c1', 1), ev('message:updated', 7, 'c1', 2), ev('reaction:added', 8, 'c1', 2), ev('reaction:removed', 9, 'c1', 2)]);
      await flush();
      expect(h.named()).to.deep.equal([
        'message:new@1',
        'message:updated@2',
        'reaction:added@3',
        'reaction:removed@4',
        'message:deleted@5',
        'message:new@6',
        'message:updated@7',
        'reaction:added@8',
        'reaction:removed@9',
        'message:deleted@10',
      ]);
      h.sequencer.accept([ev('message:deleted', 10, 'c1', 2), ev('reaction:added', 8, 'c1', 2)]);
      expect(h.delivered()).to.deep.equal(range(1, 10));
      expect(h.source.calls).to.have.length(1);
      for (const batch of h.batches) expect(batch).to.not.have.length(0);

      // A repeat is a rev of the same channel: rev 3 of another channel is new there.
      h.sequencer.accept([ev('reaction:added', 3, 'c2', 1)]);
      expect(h.named('c2')).to.deep.equal(['reaction:added@3']);
    });
  });

  describe('channels', () => {
    it('When one channel waits for a fill, then other channels\' messages keep flowing, equal revs in different channels are not repeats, and the fill releases only its own channel', async () => {
      const h = createHarness();
      h.sequencer.accept([msg(1, 'a'), msg(1, 'b'), msg(2, 'a'), msg(2, 'b')]);
      expect(h.batches, 'a mixed batch goes out as one').to.have.length(1);
      expect(h.delivered('a')).to.deep.equal([1, 2]);
      expect(h.delivered('b')).to.deep.equal([1, 2]);

      h.sequencer.accept([msg(5, 'a'), msg(3, 'b')]);
      const fillA = await h.source.next();
      expect(fillA).to.include({ channelId: 'a', afterRev: 2, beforeRev: 5 });
      expect(h.delivered('b')).to.deep.equal([1, 2, 3]);

      h.sequencer.accept([msg(6, 'a'), msg(4, 'b'), msg(5, 'b'), msg(3, 'b')]);
      h.sequencer.accept([msg(9, 'b')]);
      expect(h.delivered('a')).to.deep.equal([1, 2]);
      expect(h.delivered('b')).to.deep.equal([1, 2, 3, 4, 5]);
      await flush();
      const fillB = h.source.pending.find((c) => c.channelId === 'b')!;
      expect(fillB).to.include({ afterRev: 5, beforeRev: 9 });

      // B's fill settles first; A still waits.
      h.source.fill(fillB);
      await flush();
      expect(h.delivered('b')).to.deep.equal(range(1, 9));
      expect(h.delivered('a')).to.deep.equal([1, 2]);

      h.source.fill(fillA);
      await flush();
      expect(h.delivered('a')).to.deep.equal([1, 2, 3, 4, 5, 6]);
      expect(h.delivered('b')).to.deep.equal(range(1, 9));
    });
  });

  describe('forgetting idle channels', () => {
    const realNow = Date.now;
    let now = 1_000_000_000;
    beforeEach(() => {
      now = 1_000_000_000;
      Date.now = () => now;
    });
    afterEach(() => {
      Date.now = realNow;
    });

    it('When a channel has been quiet for longer than the sweep period, then the sweep forgets it and its next message is a new baseline, delivered without a fill', async () => {
      const h = createHarness();
      expect(h.sweep.everyMs, 'IDLE_MS: ten minutes').to.equal(10 * 60_000);
      h.sequencer.accept(msgs([1, 2]));
      now += h.sweep.everyMs + 1;
      h.sweep.run();
      // Were rev 2 remembered, 9 would be a gap to fill.
      h.sequencer.accept(msgs([9]));
      await flush();
      expect(h.source.calls).to.have.length(0);
      expect(h.delivered()).to.deep.equal([1, 2, 9]);
    });

    it('When a channel received a message within the idle time, then the sweep keeps it and a gap after it is still filled', async () => {
      const h = createHarness();
      h.sequencer.accept(msgs([1]));
      now += h.sweep.everyMs - 1;
      h.sequencer.accept(msgs([2])); // touched again
      now += 2;
      h.sweep.run();
      h.sequencer.accept(msgs([5]));
      expect(await h.source.next()).to.include({ afterRev: 2, beforeRev: 5 });
      expect(h.delivered()).to.deep.equal([1, 2]);
    });

    it('When a channel waiting for a fill is quiet past the idle time, then the sweep keeps it and the fill still delivers in order', async () => {
      const h = createHarness();
      h.sequencer.accept(msgs([1]));
      h.sequencer.accept(msgs([4]));
      now += 3 * h.sweep.everyMs;
      h.sweep.run();
      // Had the channel been forgotten, 5 would be a new baseline and go out before the fill.
      h.sequencer.accept(msgs([5]));
      expect(h.delivered()).to.deep.equal([1]);
      h.source.fill(await h.source.next());
      await flush();
      h.sequencer.accept(msgs([4, 6]));
      expect(h.delivered()).to.deep.equal([1, 2, 3, 4, 5, 6]);
    });
  });

  describe('any interleaving', () => {
    const N = 24;
    type Action =
      | { kind: 'arrive'; channel: number; from: number; size: number }
      | { kind: 'settle'; pick: number; fail: boolean };

    const action: fc.Arbitrary<Action> = fc.oneof(
      { weight: 3, arbitrary: fc.record({ kind: fc.constant('arrive' as const), channel: fc.integer({ min: 0, max: 1 }), from: fc.integer({ min: 1, max: N }), size: fc.integer({ min: 1, max: 4 }) }) },
      { weight: 1, arbitrary: fc.record({ kind: fc.constant('settle' as const), pick: fc.nat(), fail: fc.boolean() }) },
    );

    it('When batches of two channels arrive lost, repeated and reordered while fills settle in any order, then each channel gets strictly ascending revs, once each, including its highest; and all of 1..highest when no fill failed', async () => {
      await fc.assert(
        fc.asyncProperty(fc.array(action, { maxLength: 40 }), fc.boolean(), async (actions, failSome) => {
          const h = createHarness();
          const channels = ['x', 'y'];
          const highest = [1, 1];
          const failed = [false, false];
          // The first message of each channel is its baseline.
          h.sequencer.accept([msg(1, 'x'), msg(1, 'y')]);
          const settle = async (pick: number, fail: boolean) => {
            const pending = h.source.pending;
            if (pending.length === 0) return;
            const call = pending[pick % pending.length];
            if (fail && failSome) {
              failed[channels.indexOf(call.channelId)] = true;
              call.reject(new Error('fill failed'));
            } else {
              h.source.fill(call);
            }
            await flush();
          };
          for (const a of actions) {
            if (a.kind === 'arrive') {
              const seqs = range(a.from, Math.min(N, a.from + a.size - 1));
              highest[a.channel] = Math.max(highest[a.channel], ...seqs);
              h.sequencer.accept(msgs(seqs, channels[a.channel]));
            } else {
              await settle(a.pick, a.fail);
            }
          }
          for (;;) {
            await flush();
            if (h.source.pending.length === 0) break;
            await settle(0, false);
          }

          for (const [i, channelId] of channels.entries()) {
            const got = h.delivered(channelId);
            for (let k = 1; k < got.length; k++) expect(got[k], `${channelId}: ${got.join(',')}`).to.be.greaterThan(got[k - 1]);
            expect(got[got.length - 1], `${channelId}: highest arrived`).to.equal(highest[i]);
            if (!failed[i]) expect(got, channelId).to.deep.equal(range(1, highest[i]));
          }
          for (const batch of h.batches) expect(batch).to.not.have.length(0);
          h.sequencer.stop();
        }),
        { seed: propertySeed(20_250_301), numRuns: propertyRuns(300) },
      );
    });
  });

  /**
   * Interleavings that once broke the promise (in rev order, each once): a fill that ran synchronously inside
   * admit() delivered ahead of its caller, and held messages were re-admitted in arrival order.
   */
  describe('fills that settle at once or find late copies', () => {
    it('When a gap larger than MAX_FILL follows messages of the same channel that are not yet delivered (same incoming batch), then those still go out before it, in rev order', async () => {
      const h = createHarness();
      h.sequencer.accept(msgs([1]));
      h.sequencer.accept(msgs([2, 3, MAX_FILL + 10]));
      await flush();
      // fill() reaches no `await` for a too-large gap, so it runs to completion inside accept() and
      // delivers MAX_FILL + 10 before accept() delivers 2 and 3.
      expect(h.delivered()).to.deep.equal([1, 2, 3, MAX_FILL + 10]);
    });

    it('When a gap larger than MAX_FILL arrives while a small gap is being filled, then after the fill the filled and held messages still go out before it, in rev order', async () => {
      const h = createHarness();
      h.sequencer.accept(msgs([1]));
      h.sequencer.accept(msgs([4]));
      const call = await h.source.next();
      h.sequencer.accept(msgs([MAX_FILL + 10])); // e.g. this node's pub/sub subscription dropped for a while
      h.source.fill(call);
      await flush();
      // The nested fill() for the big gap runs synchronously inside the first fill's re-admission loop and
      // delivers MAX_FILL + 10 before the first fill delivers 2, 3, 4.
      expect(h.delivered()).to.deep.equal([1, 2, 3, 4, MAX_FILL + 10]);
    });

    it('When the fill fails but the missing message itself arrived while the fill was pending, then it is delivered (in order, before the held one) rather than dropped', async () => {
      const h = createHarness();
      h.sequencer.accept(msgs([1]));
      h.sequencer.accept(msgs([4])); // 2 and 3 lost on the way, or late
      const call = await h.source.next();
      h.sequencer.accept(msgs([3])); // a re-published batch brings 3 after all
      call.reject(new Error('PostgreSQL unavailable'));
      await flush();
      // After a failed fill, `last` jumps to rev(waiting[0]) - 1 = 3 before the held messages are re-admitted in
      // arrival order, so 3 (held, in hand, deliverable in order) is taken for a repeat and dropped.
      expect(h.delivered()).to.deep.equal([1, 3, 4]);
    });
  });
});
