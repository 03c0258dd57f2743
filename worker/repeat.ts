import type { Logger } from '../shared/logger.js';

/** A job a worker runs again and again in the background (housekeeping, off the send path). */
export interface Repeating {
  /** Stops scheduling runs and resolves once a run in progress has finished. */
  stop(): Promise<void>;
}

/**
 * Runs `run` every `intervalMs` after the previous run ended, never two at once; `intervalMs` 0 runs
 * none. A failure is logged when a run of failures starts and when runs work again, not at every
 * interval of an outage. When `fatal` names a failure (one that no later run can get past), it is
 * logged with that reason and no run is made again.
 */
export function startRepeating(deps: {
  /** What the job does, for the log: "search index merge". */
  what: string;
  run: () => Promise<void>;
  intervalMs: number;
  logger: Logger;
  fatal?: (err: { code?: string; message?: string }) => string | undefined;
}): Repeating {
  const { what, run, intervalMs, logger } = deps;
  let stopped = intervalMs === 0;
  let failing = false;
  let timer: NodeJS.Timeout | undefined;
  let running: Promise<void> = Promise.resolve();

  const runOnce = async () => {
    try {
      await run();
      if (failing) logger.info(`${what} works again`);
      failing = false;
    } catch (err) {
      const e = err as { code?: string; message?: string };
      // Stopping: the pool was closed under it.
      if (stopped) return;
      const reason = deps.fatal?.(e);
      if (reason !== undefined) {
        stopped = true;
        logger.warn({ err: e.message }, reason);
      } else if (!failing) {
        failing = true;
        logger.warn({ err: e.message }, `${what} failed; retrying every interval`);
      }
    }
  };
  const schedule = () => {
    if (stopped) return;
    timer = setTimeout(() => {
      running = runOnce().finally(schedule);
    }, intervalMs);
    timer.unref();
  };
  schedule();

  return {
    async stop() {
      stopped = true;
      clearTimeout(timer);
      await running;
    },
  };
}
