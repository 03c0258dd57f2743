import { eventChannel, eventRev, type ChannelEvent } from '../../shared/events.js';
import type { Logger } from '../../shared/logger.js';

export interface GapSource {
  /** The channel's events with afterRev < rev < beforeRev, ascending. */
  between(channelId: string, afterRev: number, beforeRev: number): Promise<ChannelEvent[]>;
}

interface ChannelState {
  last: number;
  /** Events that arrived while a gap is being filled from PostgreSQL; null when none is. */
  waiting: ChannelEvent[] | null;
  touched: number;
}

/** Channels quiet for this long are forgotten, so a node's memory follows its active channels. */
const IDLE_MS = 10 * 60_000;
const MAX_FILL = 10_000;

/**
 * Hands each channel's events on in rev order, each once, whatever the way they reached this node:
 * a batch published again by a worker that re-ran it after a crash is dropped, and a gap (a publish lost
 * with a worker or by Redis pub/sub) is filled from PostgreSQL's change log, the source of truth, before
 * later events go out. One read fills the gap for every socket of the node. What it cannot see (a gap
 * before the first event it gets for a channel) or cannot fill (the source fails, or the gap is too
 * large) it passes on, and Delivery holds each socket that lacks something until it is filled for it.
 */
export class ChannelSequencer {
  private readonly channels = new Map<string, ChannelState>();
  private sweepTimer: NodeJS.Timeout;

  constructor(
    private readonly deps: { source: GapSource; deliver: (events: ChannelEvent[]) => void; logger: Logger },
  ) {
    this.sweepTimer = setInterval(() => this.forgetIdle(), IDLE_MS);
    this.sweepTimer.unref();
  }

  accept(events: ChannelEvent[]): void {
    const ready: ChannelEvent[] = [];
    for (const event of events) this.admit(event, ready);
    if (ready.length > 0) this.deps.deliver(ready);
  }

  stop(): void {
    clearInterval(this.sweepTimer);
  }

  private admit(event: ChannelEvent, ready: ChannelEvent[]): void {
    const channelId = eventChannel(event);
    const rev = eventRev(event);
    const state = this.channels.get(channelId);
    if (!state) {
      this.channels.set(channelId, { last: rev, waiting: null, touched: Date.now() });
      ready.push(event);
      return;
    }
    state.touched = Date.now();
    if (state.waiting) {
      state.waiting.push(event);
    } else if (rev <= state.last) {
      // Already delivered: a batch published again after its worker died.
    } else if (rev === state.last + 1) {
      state.last = rev;
      ready.push(event);
    } else {
      state.waiting = [event];
      void this.fill(channelId, state);
    }
  }

  private async fill(channelId: string, state: ChannelState): Promise<void> {
    // Never synchronously inside admit(): the caller delivers what it made ready first.
    await Promise.resolve();
    const first = eventRev(state.waiting![0]);
    let missing: ChannelEvent[] = [];
    try {
      if (first - state.last - 1 <= MAX_FILL) {
        missing = await this.deps.source.between(channelId, state.last, first);
        this.deps.logger.warn({ channelId, after: state.last, before: first, filled: missing.length }, 'filled a delivery gap');
      } else {
        this.deps.logger.warn({ channelId, after: state.last, before: first }, 'delivery gap too large to fill live');
      }
    } catch (err) {
      // Delivery holds each socket that lacks it and fills it for that socket, trying again; here it moves on.
      this.deps.logger.warn({ err, channelId }, 'could not fill a delivery gap');
    }
    // A late copy of an older event may have arrived after the one that started the fill.
    const waiting = state.waiting!.sort((a, b) => eventRev(a) - eventRev(b));
    state.waiting = null;
    const ready: ChannelEvent[] = [];
    for (const event of missing) {
      if (eventRev(event) > state.last) {
        state.last = eventRev(event);
        ready.push(event);
      }
    }
    // What waited goes through the same checks; the oldest waiting one now follows on directly.
    if (eventRev(waiting[0]) > state.last + 1) state.last = eventRev(waiting[0]) - 1;
    for (const event of waiting) this.admit(event, ready);
    if (ready.length > 0) this.deps.deliver(ready);
  }

  private forgetIdle(): void {
    const cutoff = Date.now() - IDLE_MS;
    for (const [channelId, state] of this.channels) {
      if (!state.waiting && state.touched < cutoff) this.channels.delete(channelId);
    }
  }
}
