import { spawn, type ChildProcess } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { isReadyMessage } from '../shared/health.js';
import { OutputTail, killOnExit } from './child-process.js';

/**
 * A local cluster of real front-node and worker processes, for tests and benchmarks. Each process runs
 * `node --import tsx <entry>` from the repo root with the caller's environment (LOG_LEVEL included,
 * whatever it is) and an IPC channel; the cluster resolves once every process reported over it that it
 * serves, with its port (shared/health.ts, reportReady).
 */

const REPO_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const ENTRIES = { server: 'server/main.ts', worker: 'worker/main.ts' } as const;

export type ProcKind = keyof typeof ENTRIES;

export interface Proc {
  readonly kind: ProcKind;
  readonly pid: number;
  /**
   * The port it serves HTTP on, and its base URL (http://127.0.0.1:port): a front node's API and sockets,
   * a worker's health and metrics (WORKER_HTTP_PORT).
   */
  readonly port: number;
  readonly url: string;
  /** Resolves with the exit code once the process is gone (null when a signal ended it). */
  readonly exited: Promise<number | null>;
  /** The last lines the process printed (stdout and stderr). */
  readonly output: OutputTail;
  readonly alive: boolean;
  /** Sends a signal; does nothing once the process is gone. */
  kill(signal?: NodeJS.Signals): void;
  /** SIGTERM, then SIGKILL after `graceMs`; resolves once the process is gone. */
  stop(graceMs?: number): Promise<void>;
}

export interface ClusterOptions {
  servers: number;
  workers: number;
  /** Added to (and overriding) process.env for every process of the cluster. */
  env?: Record<string, string>;
  /** How long one process may take to become ready. */
  startTimeoutMs?: number;
  /** How long stop() waits after SIGTERM before SIGKILL. */
  stopGraceMs?: number;
}

export interface Cluster {
  /** Base URLs of the front nodes started so far, in start order (addServer() appends). */
  readonly urls: string[];
  readonly servers: Proc[];
  readonly workers: Proc[];
  addServer(env?: Record<string, string>): Promise<Proc>;
  addWorker(env?: Record<string, string>): Promise<Proc>;
  /** Stops every process of the cluster (SIGTERM, SIGKILL after the grace period); safe to call twice. */
  stop(): Promise<void>;
}

function childEnv(base: Record<string, string>, extra: Record<string, string> | undefined, kind: ProcKind): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { ...process.env, ...base, ...extra };
  if (kind === 'server') env.PORT = '0';
  // Several workers on one host: each its own free port for health and metrics.
  if (kind === 'worker') env.WORKER_HTTP_PORT = '0';
  return env;
}

/** Every process started here that has not exited yet. */
const running = new Set<Proc>();

/** The processes started by startProc() that are still running: whose output explains a failed test. */
export function runningProcs(): Proc[] {
  return [...running];
}

/** Spawns one process and resolves once it reported that it is ready; rejects (and kills it) otherwise. */
export function startProc(kind: ProcKind, env: NodeJS.ProcessEnv, startTimeoutMs = 30_000, stopGraceMs = 10_000): Promise<Proc> {
  const output = new OutputTail(60);
  const child: ChildProcess = spawn(process.execPath, ['--import', 'tsx', ENTRIES[kind]], {
    cwd: REPO_ROOT,
    env,
    stdio: ['ignore', 'pipe', 'pipe', 'ipc'],
  });
  let alive = true;
  let disarm = () => {};
  const exited = new Promise<number | null>((resolve) => {
    child.once('exit', (code) => {
      alive = false;
      disarm();
      resolve(code);
    });
    child.once('error', (err) => {
      output.push(`spawn error: ${err.message}`);
      if (child.pid === undefined) {
        alive = false;
        resolve(null);
      }
    });
  });
  if (child.pid !== undefined) disarm = killOnExit(child.pid, 'SIGKILL');

  const kill = (signal: NodeJS.Signals = 'SIGTERM') => {
    if (alive) child.kill(signal);
  };
  const stop = async (graceMs = stopGraceMs) => {
    if (!alive) return void (await exited);
    kill('SIGTERM');
    let timer: NodeJS.Timeout | undefined;
    const timedOut = await Promise.race([
      exited.then(() => false),
      new Promise<boolean>((resolve) => (timer = setTimeout(() => resolve(true), graceMs))),
    ]);
    clearTimeout(timer);
    if (timedOut) {
      output.push(`[cluster] no exit ${graceMs} ms after SIGTERM; sending SIGKILL`);
      kill('SIGKILL');
    }
    await exited;
  };

  return new Promise<Proc>((resolve, reject) => {
    let settled = false;
    const describe = () => `${kind} (pid ${child.pid ?? '-'})`;
    const fail = (reason: string) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      void stop(2_000);
      reject(new Error(`${describe()} ${reason}; its last output:\n${output.toString() || '(none)'}`));
    };
    const timer = setTimeout(() => fail(`was not ready after ${startTimeoutMs} ms`), startTimeoutMs);

    child.on('message', (message) => {
      if (settled || !isReadyMessage(message, kind)) return;
      settled = true;
      clearTimeout(timer);
      // The channel's one job is done; closed, it keeps neither process waiting.
      if (child.connected) child.disconnect();
      const proc = makeProc(message.port);
      running.add(proc);
      void exited.then(() => running.delete(proc));
      resolve(proc);
    });
    // The output is kept for failure messages, whatever LOG_LEVEL lets through.
    child.stdout!.on('data', (chunk: Buffer) => output.push(chunk));
    child.stderr!.on('data', (chunk: Buffer) => output.push(chunk));
    void exited.then((code) => fail(`exited (code ${code}) before it was ready`));

    function makeProc(port: number): Proc {
      return {
        kind,
        pid: child.pid!,
        port,
        url: `http://127.0.0.1:${port}`,
        exited,
        output,
        get alive() {
          return alive;
        },
        kill,
        stop,
      };
    }
  });
}

export async function startCluster(options: ClusterOptions): Promise<Cluster> {
  const base = options.env ?? {};
  const servers: Proc[] = [];
  const workers: Proc[] = [];
  const urls: string[] = [];
  /** Every process started, including ones still starting, so stop() misses none. */
  const starting = new Set<Promise<Proc>>();
  let stopped = false;

  const add = async (kind: ProcKind, env?: Record<string, string>): Promise<Proc> => {
    if (stopped) throw new Error('cluster is stopped');
    const started = startProc(kind, childEnv(base, env, kind), options.startTimeoutMs, options.stopGraceMs);
    starting.add(started);
    try {
      const proc = await started;
      if (kind === 'server') {
        servers.push(proc);
        urls.push(proc.url);
      } else {
        workers.push(proc);
      }
      if (stopped) await proc.stop();
      return proc;
    } finally {
      starting.delete(started);
    }
  };

  const stop = async () => {
    stopped = true;
    // Processes still starting are stopped by add() once ready, or by startProc() when they fail.
    await Promise.allSettled([...starting]);
    await Promise.all([...servers, ...workers].map((p) => p.stop()));
  };

  const all = [
    ...Array.from({ length: options.servers }, () => add('server')),
    ...Array.from({ length: options.workers }, () => add('worker')),
  ];
  const results = await Promise.allSettled(all);
  const failure = results.find((r): r is PromiseRejectedResult => r.status === 'rejected');
  if (failure) {
    await stop();
    throw failure.reason;
  }
  // Start order is the order processes became ready; urls[i] always belongs to servers[i].
  return {
    urls,
    servers,
    workers,
    addServer: (env) => add('server', env),
    addWorker: (env) => add('worker', env),
    stop,
  };
}
