import { spawn } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { OutputTail, killOnExit, terminate } from '../../scripts/child-process.js';

export const REPO_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');

export interface HelperProc {
  readonly pid: number;
  /** The fields of its readiness line (e.g. port). */
  readonly ready: Record<string, unknown>;
  stop(): Promise<void>;
}

/**
 * Runs a bench helper (`node --import tsx <entry>`) and resolves once it prints a JSON line whose msg is
 * `readyMsg`. The helper dies with the bench.
 */
export function spawnHelper(entry: string, env: NodeJS.ProcessEnv, readyMsg: string, timeoutMs = 30_000): Promise<HelperProc> {
  const output = new OutputTail(40);
  const child = spawn(process.execPath, ['--import', 'tsx', entry], { cwd: REPO_ROOT, env, stdio: ['ignore', 'pipe', 'pipe'] });
  const pid = child.pid!;
  const disarm = killOnExit(pid, 'SIGKILL');
  const stop = async () => {
    await terminate(pid, [['SIGTERM', 5_000], ['SIGKILL', 2_000]]);
    disarm();
  };
  return new Promise((resolve, reject) => {
    let settled = false;
    let partial = '';
    const fail = (why: string) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      void stop();
      reject(new Error(`${entry} ${why}:\n${output}`));
    };
    const timer = setTimeout(() => fail(`not ready after ${timeoutMs} ms`), timeoutMs);
    child.stdout.on('data', (chunk: Buffer) => {
      output.push(chunk);
      const lines = (partial + chunk.toString()).split('\n');
      partial = lines.pop() ?? '';
      for (const line of lines) {
        if (settled || !line.startsWith('{')) continue;
        try {
          const entry = JSON.parse(line) as Record<string, unknown>;
          if (entry.msg !== readyMsg) continue;
          settled = true;
          clearTimeout(timer);
          resolve({ pid, ready: entry, stop });
        } catch {
          // not a readiness line
        }
      }
    });
    child.stderr.on('data', (chunk: Buffer) => output.push(chunk));
    child.once('exit', (code) => fail(`exited (code ${code})`));
  });
}
