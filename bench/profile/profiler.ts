import { existsSync, renameSync } from 'node:fs';
import path from 'node:path';
import { sleep } from '../lib/clock.js';

/**
 * Drives the CPU profiler preloaded into the product's processes (cpuprof-hook.mjs): SIGUSR2 starts it at
 * a phase's load and stops it at the end; the profiles are then named after the phase.
 */
export class PhaseProfiler {
  private readonly counts = new Map<number, number>();

  constructor(
    private readonly dir: string,
    private readonly processes: () => Array<{ pid: number; kind: string }>,
  ) {}

  start(): void {
    for (const { pid } of this.processes()) process.kill(pid, 'SIGUSR2');
  }

  /** Stops every profile and renames it `<phase>-<role>-<pid>.cpuprofile`. */
  async stop(label: string): Promise<void> {
    const slug = label.replace(/[^A-Za-z0-9]+/g, '-').replace(/^-|-$/g, '');
    await Promise.all(
      this.processes().map(async ({ pid, kind }) => {
        process.kill(pid, 'SIGUSR2');
        const n = this.counts.get(pid) ?? 0;
        this.counts.set(pid, n + 1);
        const file = path.join(this.dir, `${kind}-${pid}-${n}.cpuprofile`);
        for (let i = 0; i < 100 && !existsSync(file); i++) await sleep(100);
        if (existsSync(file)) renameSync(file, path.join(this.dir, `${slug}-${kind}-${pid}.cpuprofile`));
      }),
    );
  }
}
