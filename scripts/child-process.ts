import { setTimeout as sleep } from 'node:timers/promises';

/** The last lines a process printed: enough to explain its failure without echoing its chatter while it runs. */
export class OutputTail {
  private readonly lines: string[] = [];

  constructor(private readonly maxLines = 40) {}

  push(chunk: string | Buffer): void {
    for (const line of String(chunk).split('\n')) {
      if (line.trim()) this.lines.push(line.trimEnd());
    }
    this.lines.splice(0, Math.max(0, this.lines.length - this.maxLines));
  }

  toString(): string {
    return this.lines.join('\n');
  }
}

/**
 * A service started for this process must not outlive it when it ends without its shutdown path running
 * (uncaught error, process.exit() from a signal handler). Returns the function that disarms this once the
 * service has been stopped properly.
 */
export function killOnExit(pid: number, signal: NodeJS.Signals): () => void {
  const kill = () => sendSignal(pid, signal);
  process.on('exit', kill);
  return () => {
    process.off('exit', kill);
  };
}

export function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

function sendSignal(pid: number, signal: NodeJS.Signals): boolean {
  try {
    process.kill(pid, signal);
    return true;
  } catch {
    return false;
  }
}

/**
 * Sends each signal in turn, waiting up to its grace period for the process to disappear, e.g.
 * [['SIGTERM', 10_000], ['SIGKILL', 5_000]]. Resolves to whether the process is gone.
 */
export async function terminate(pid: number, steps: ReadonlyArray<readonly [NodeJS.Signals, number]>): Promise<boolean> {
  for (const [signal, graceMs] of steps) {
    if (!sendSignal(pid, signal)) return !isAlive(pid);
    const deadline = Date.now() + graceMs;
    while (Date.now() < deadline) {
      if (!isAlive(pid)) return true;
      await sleep(50);
    }
  }
  return !isAlive(pid);
}
