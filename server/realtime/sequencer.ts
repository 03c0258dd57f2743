import type { Logger } from '../../shared/logger.js';
import type { MessageDto } from '../../shared/models/index.js';

export interface GapSource {
  /** The channel's messages with afterSeq < seq < beforeSeq, ascending. */
  between(channelId: string, afterSeq: number, beforeSeq: number): Promise<MessageDto[]>;
}

interface ChannelState {
  last: number;
  /** Messages that arrived while a gap is being filled from PostgreSQL; null when none is. */
  waiting: MessageDto[] | null;
  touched: number;
}

/** Channels quiet for this long are forgotten, so a node's memory follows its active channels. */
const IDLE_MS = 10 * 60_000;
const MAX_FILL = 10_000;

/**
 * Hands each channel's messages on in seq order, each once, whatever the way they reached this node:
 * a batch published again by a worker that re-ran it after a crash is dropped, and a gap (a publish lost
 * with a worker or by Redis pub/sub) is filled from PostgreSQL, the source of truth, before later
 * messages go out.
 */
export class ChannelSequencer {
  private readonly channels = new Map<string, ChannelState>();
  private sweepTimer: NodeJS.Timeout;

  constructor(
    private readonly deps: { source: GapSource; deliver: (messages: MessageDto[]) => void; logger: Logger },
  ) {
    this.sweepTimer = setInterval(() => this.forgetIdle(), IDLE_MS);
    this.sweepTimer.unref();
  }

  accept(messages: MessageDto[]): void {
    const ready: MessageDto[] = [];
    for (const message of messages) this.admit(message, ready);
    if (ready.length > 0) this.deps.deliver(ready);
  }

  stop(): void {
    clearInterval(this.sweepTimer);
  }

  private admit(message: MessageDto, ready: MessageDto[]): void {
    const state = this.channels.get(message.channelId);
    if (!state) {
      this.channels.set(message.channelId, { last: message.seq, waiting: null, touched: Date.now() });
      ready.push(message);
      return;
    }
    state.touched = Date.now();
    if (state.waiting) {
      state.waiting.push(message);
    } else if (message.seq <= state.last) {
      // Already delivered: a batch published again after its worker died.
    } else if (message.seq === state.last + 1) {
      state.last = message.seq;
      ready.push(message);
    } else {
      state.waiting = [message];
      void this.fill(message.channelId, state);
    }
  }

  private async fill(channelId: string, state: ChannelState): Promise<void> {
    // Never synchronously inside admit(): the caller delivers what it made ready first.
    await Promise.resolve();
    const first = state.waiting![0];
    let missing: MessageDto[] = [];
    try {
      if (first.seq - state.last - 1 <= MAX_FILL) {
        missing = await this.deps.source.between(channelId, state.last, first.seq);
        this.deps.logger.warn({ channelId, after: state.last, before: first.seq, filled: missing.length }, 'filled a delivery gap');
      } else {
        this.deps.logger.warn({ channelId, after: state.last, before: first.seq }, 'delivery gap too large to fill live');
      }
    } catch (err) {
      // Clients recover what they missed with `sync`; live delivery must not stall on it.
      this.deps.logger.warn({ err, channelId }, 'could not fill a delivery gap');
    }
    // A late copy of an older message may have arrived after the one that started the fill.
    const waiting = state.waiting!.sort((a, b) => a.seq - b.seq);
    state.waiting = null;
    const ready: MessageDto[] = [];
    for (const message of missing) {
      if (message.seq > state.last) {
        state.last = message.seq;
        ready.push(message);
      }
    }
    // What waited goes through the same checks; the oldest waiting one now follows on directly.
    if (waiting[0].seq > state.last + 1) state.last = waiting[0].seq - 1;
    for (const message of waiting) this.admit(message, ready);
    if (ready.length > 0) this.deps.deliver(ready);
  }

  private forgetIdle(): void {
    const cutoff = Date.now() - IDLE_MS;
    for (const [channelId, state] of this.channels) {
      if (!state.waiting && state.touched < cutoff) this.channels.delete(channelId);
    }
  }
}
