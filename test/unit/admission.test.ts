/**
 * Unit tests of SendAdmission (server/messaging/admission.ts): what keeps one user's sends in the order they
 * were made between the rate limiter (which may answer at once from a lease or after a Redis round trip) and
 * the queue (whose order of submit() calls is the order of persistence).
 *
 * The limiter is a fake whose every consume() call the test answers when and how it chooses; the sink records
 * the order of submit() calls and returns outcomes the test settles separately.
 */
import { expect } from 'chai';
import { RateLimitedError, ServiceUnavailableError } from '../../shared/errors.js';
import type { SendOutcome, SendRequest } from '../../shared/queues.js';
import type { RateLimit } from '../../server/domain/rateLimit.js';
import { SendAdmission, type SendSink } from '../../server/messaging/admission.js';

interface ConsumeCall {
  readonly key: string;
  settled: boolean;
  resolve(): void;
  reject(err: unknown): void;
}

/** A limiter whose answers the test gives: each consume() stays pending until resolved or rejected. */
class FakeRateLimit implements RateLimit {
  readonly calls: ConsumeCall[] = [];
  /** Scripted answers for the next calls, in order: applied at once, or after `ms`. */
  readonly script: Array<{ ms?: number; error?: unknown }> = [];

  consume(key: string): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      const call: ConsumeCall = {
        key,
        settled: false,
        resolve: () => {
          call.settled = true;
          resolve();
        },
        reject: (err) => {
          call.settled = true;
          reject(err);
        },
      };
      this.calls.push(call);
      const answer = this.script.shift();
      if (!answer) return;
      const apply = () => (answer.error === undefined ? call.resolve() : call.reject(answer.error));
      if (answer.ms === undefined) apply();
      else setTimeout(apply, answer.ms);
    });
  }

  async check(): Promise<void> {}

  pending(key?: string): ConsumeCall[] {
    return this.calls.filter((c) => !c.settled && (key === undefined || c.key === key));
  }
}

/** Records submit() order; each outcome settles when the test says. */
class FakeSink implements SendSink {
  readonly submitted: string[] = [];
  readonly outcomes = new Map<string, (outcome: SendOutcome) => void>();
  /** When set, submit() throws it synchronously for that send id. */
  throwFor?: string;

  submit(send: SendRequest): Promise<SendOutcome> {
    if (send.id === this.throwFor) throw new Error('sink broke');
    this.submitted.push(send.id);
    return new Promise((resolve) => this.outcomes.set(send.id, resolve));
  }

  answer(id: string): SendOutcome {
    const outcome: SendOutcome = {
      ok: true,
      message: { id, channelId: 'c1', seq: 1, rev: 1, parentId: null, editedAt: null, deleted: false, replyCount: 0, lastReplyAt: null, reactions: [], mentions: [], userId: 'u', body: id, clientMsgId: null, createdAt: new Date(0).toISOString() },
    };
    this.outcomes.get(id)!(outcome);
    return outcome;
  }
}

interface Admitted {
  readonly id: string;
  state: 'pending' | 'resolved' | 'rejected';
  value?: SendOutcome;
  error?: unknown;
}

function setup() {
  const rateLimit = new FakeRateLimit();
  const sink = new FakeSink();
  const admission = new SendAdmission({ rateLimit, sink });
  /** A send, or with `prepare`, a send or change that has a check of its own to make first. */
  const admit = (id: string, userId = 'u1', prepare?: () => Promise<SendRequest>): Admitted => {
    const a: Admitted = { id, state: 'pending' };
    admission.admit(userId, prepare ?? (() => ({ id, channelId: 'c1', userId, body: id, clientMsgId: null }))).then(
      (value) => Object.assign(a, { state: 'resolved', value }),
      (error) => Object.assign(a, { state: 'rejected', error }),
    );
    return a;
  };
  const tails = () => (admission as unknown as { tails: Map<string, unknown> }).tails;
  return { rateLimit, sink, admission, admit, tails };
}

const tick = () => new Promise<void>((r) => setImmediate(r));
const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

describe('unit: SendAdmission', () => {
  it("When a user's change must first read its message (20 ms) and their next send needs nothing, then the sink gets the change first, and a check that fails refuses only its own change", async () => {
    const { rateLimit, sink, admit } = setup();
    // Points at once for the two that pass their checks.
    rateLimit.script.push({}, {});
    const change = admit('edit', 'u1', async () => {
      await sleep(20);
      return { id: 'edit', channelId: 'c1', userId: 'u1', body: 'edited', clientMsgId: null };
    });
    const refused = admit('bad-edit', 'u1', async () => {
      throw new Error('not the author');
    });
    admit('s1');
    await tick();
    expect(sink.submitted, 'nothing overtakes the check of the first change').to.deep.equal([]);
    await sleep(40);
    expect(sink.submitted).to.deep.equal(['edit', 's1']);
    expect(change.state).to.equal('pending');
    expect(refused.state).to.equal('rejected');
    expect((refused.error as Error).message).to.equal('not the author');
  });

  it('When the limiter answers a user\'s 1st send after 20 ms and the 2nd at once, then the sink still gets the 1st before the 2nd', async () => {
    const { rateLimit, sink, admit } = setup();
    rateLimit.script.push({ ms: 20 }, {}, {});
    admit('s1');
    admit('s2');
    admit('s3');
    await tick();
    expect(sink.submitted, 'nothing overtakes the 1st send\'s decision').to.deep.equal([]);
    await sleep(40);
    expect(sink.submitted).to.deep.equal(['s1', 's2', 's3']);
  });

  it('When sends of one user are admitted, then the limiter is asked for the next only after the previous one\'s decision', async () => {
    const { rateLimit, sink, admit } = setup();
    admit('s1');
    admit('s2');
    await tick();
    expect(rateLimit.calls, 'the 2nd waits for the 1st decision before asking').to.have.length(1);
    rateLimit.calls[0].resolve();
    await tick();
    expect(sink.submitted).to.deep.equal(['s1']);
    expect(rateLimit.calls).to.have.length(2);
    rateLimit.calls[1].resolve();
    await tick();
    expect(sink.submitted).to.deep.equal(['s1', 's2']);
  });

  it('When a send is refused (RATE_LIMITED), then it alone rejects, it is not submitted, and the sends after it are neither blocked nor reordered', async () => {
    const { rateLimit, sink, admit } = setup();
    rateLimit.script.push({}, { ms: 15, error: new RateLimitedError(3) }, {}, { ms: 5 });
    const [s1, s2, s3, s4] = ['s1', 's2', 's3', 's4'].map((id) => admit(id));
    await sleep(40);
    expect(sink.submitted).to.deep.equal(['s1', 's3', 's4']);
    expect(s2.state).to.equal('rejected');
    expect(s2.error).to.be.instanceOf(RateLimitedError);
    expect((s2.error as RateLimitedError).code).to.equal('RATE_LIMITED');
    expect((s2.error as RateLimitedError).retryAfterSeconds).to.equal(3);
    for (const a of [s1, s3, s4]) expect(a.state, `${a.id} waits for its outcome`).to.equal('pending');
  });

  it('When the limiter fails (SERVICE_UNAVAILABLE) or the sink throws, then that send rejects with it and the next send still goes', async () => {
    const { rateLimit, sink, admit } = setup();
    rateLimit.script.push({ error: new ServiceUnavailableError() }, {}, {});
    sink.throwFor = 's2';
    const [s1, s2] = [admit('s1'), admit('s2'), admit('s3')];
    await sleep(5);
    expect(s1.error).to.be.instanceOf(ServiceUnavailableError);
    expect(s2.state).to.equal('rejected');
    expect((s2.error as Error).message).to.equal('sink broke');
    expect(sink.submitted).to.deep.equal(['s3']);
  });

  it('When one user\'s send waits on the limiter, then another user\'s sends are admitted without waiting for it', async () => {
    const { rateLimit, sink, admit } = setup();
    admit('a1', 'alice');
    admit('a2', 'alice');
    admit('b1', 'bob');
    await tick();
    expect(rateLimit.pending('bob')).to.have.length(1);
    rateLimit.pending('bob')[0].resolve();
    admit('b2', 'bob');
    await tick();
    rateLimit.pending('bob')[0].resolve();
    await tick();
    expect(sink.submitted).to.deep.equal(['b1', 'b2']);
    rateLimit.pending('alice')[0].resolve();
    await tick();
    rateLimit.pending('alice')[0].resolve();
    await tick();
    expect(sink.submitted).to.deep.equal(['b1', 'b2', 'a1', 'a2']);
  });

  it('When a send is submitted, then the next one is admitted without waiting for the first one\'s outcome, and each admit() resolves with its own outcome', async () => {
    const { rateLimit, sink, admit } = setup();
    rateLimit.script.push({}, {}, {});
    const [s1, s2, s3] = ['s1', 's2', 's3'].map((id) => admit(id));
    await tick();
    expect(sink.submitted, 'no outcome has settled, yet all three are in the queue').to.deep.equal(['s1', 's2', 's3']);
    expect([s1, s2, s3].map((a) => a.state)).to.deep.equal(['pending', 'pending', 'pending']);
    const o2 = sink.answer('s2');
    await tick();
    expect(s2).to.deep.include({ state: 'resolved', value: o2 });
    expect(s1.state).to.equal('pending');
    const o1 = sink.answer('s1');
    await tick();
    expect(s1.value).to.equal(o1);
  });

  it('When every send of a user has been decided, then the user\'s tail is removed (the map does not grow), and new sends of that and other users are admitted at once', async () => {
    const { rateLimit, sink, admit, tails } = setup();
    rateLimit.script.push({}, { error: new RateLimitedError(1) }, { ms: 5 });
    admit('a1', 'alice');
    admit('a2', 'alice');
    admit('b1', 'bob');
    expect(tails().size).to.equal(2);
    await sleep(20);
    expect(tails().size, 'outcomes still pending, but admission is done').to.equal(0);

    for (let i = 0; i < 50; i++) rateLimit.script.push({});
    for (let i = 0; i < 50; i++) admit(`x${i}`, `user-${i}`);
    await tick();
    expect(sink.submitted).to.have.length(2 + 50);
    expect(tails().size).to.equal(0);
  });

  it('When a new send of a user arrives just as the previous one\'s decision is made, then the tail is kept for it and order still holds', async () => {
    const { rateLimit, sink, admit, tails } = setup();
    admit('s1');
    await tick();
    rateLimit.calls[0].resolve();
    // Same tick as the resolution: the old tail's clean-up must not drop the new one.
    admit('s2');
    admit('s3');
    await tick();
    expect(sink.submitted).to.deep.equal(['s1']);
    expect(tails().size).to.equal(1);
    rateLimit.pending()[0].resolve();
    await tick();
    admit('s4');
    rateLimit.pending()[0].resolve();
    await tick();
    rateLimit.pending()[0].resolve();
    await tick();
    expect(sink.submitted).to.deep.equal(['s1', 's2', 's3', 's4']);
    expect(tails().size).to.equal(0);
  });
});
