import type { ChangeRequest, SendOutcome } from '../../shared/queues.js';
import type { RateLimit } from '../domain/rateLimit.js';

/** What admission hands a send to: the batching producer (SendQueue), or a fake in unit tests. */
export interface SendSink {
  /** Must take the send into its queue synchronously: the order of calls is the order of persistence. */
  submit(send: ChangeRequest): Promise<SendOutcome>;
}

/**
 * Admits each user's sends into the queue in the order they were made, whatever the rate limit does in
 * between. Taking a point may wait on Redis (a new lease) or not at all (a point left in the lease), so
 * two sends racing through the limiter could overtake each other; here each send of a user waits for the
 * previous one's decision (admitted or refused) before it asks, and is handed to the queue in the same
 * step as its point is taken. Only admission is serialised: persistence is not waited for.
 */
export class SendAdmission {
  private readonly tails = new Map<string, Promise<unknown>>();

  constructor(private readonly deps: { rateLimit: RateLimit; sink: SendSink }) {}

  /**
   * Resolves with the send's outcome, or rejects with the limiter's error (RATE_LIMITED,
   * SERVICE_UNAVAILABLE) or what `prepare` throws. `prepare` makes the send or change, with the checks
   * that need no database (a body's length, an emoji, an id's shape); it runs in the user's turn, so a
   * user's sends and changes reach the queue in the order they were made, even when it is asynchronous.
   */
  admit(userId: string, prepare: () => ChangeRequest | Promise<ChangeRequest>): Promise<SendOutcome> {
    const key = userId;
    const take = async () => {
      const send = await prepare();
      await this.deps.rateLimit.consume(key);
      // Wrapped: the outcome is a promise of its own, and the next send must not wait for it.
      return { outcome: this.deps.sink.submit(send) };
    };
    const previous = this.tails.get(key);
    const step = previous ? previous.then(take) : take();
    const tail = step.then(
      () => {},
      () => {},
    );
    this.tails.set(key, tail);
    void tail.then(() => {
      if (this.tails.get(key) === tail) this.tails.delete(key);
    });
    return step.then(({ outcome }) => outcome);
  }
}
