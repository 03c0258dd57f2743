import { readFileSync, readdirSync } from 'node:fs';

/**
 * Process figures from /proc (Linux): resident memory, and CPU time for a breakdown of where the machine's
 * cores went during a phase.
 */
const CLOCK_TICKS_PER_SECOND = 100;

/** VmRSS in bytes, or NaN when the process is gone or /proc is not there. */
export function rssBytes(pid: number): number {
  try {
    const match = /VmRSS:\s+(\d+)\s+kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return match ? Number(match[1]) * 1024 : NaN;
  } catch {
    return NaN;
  }
}

interface ProcStat {
  comm: string;
  /** utime + stime, seconds. */
  cpuS: number;
}

function readStat(pid: number | string): ProcStat | undefined {
  try {
    const text = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const close = text.lastIndexOf(')');
    const comm = text.slice(text.indexOf('(') + 1, close);
    const fields = text.slice(close + 2).split(' ');
    // fields[0] is field 3 (state): utime and stime are fields 14 and 15.
    return { comm, cpuS: (Number(fields[11]) + Number(fields[12])) / CLOCK_TICKS_PER_SECOND };
  } catch {
    return undefined;
  }
}

/** Groups of processes whose CPU time is summed: by pid, or by command name (every postgres backend...). */
export interface CpuGroups {
  byPid: Record<string, number[]>;
  byComm: Record<string, string[]>;
}

export type CpuSample = { atMs: number; seconds: Record<string, number> };

export function sampleCpu(groups: CpuGroups): CpuSample {
  const seconds: Record<string, number> = {};
  for (const [name, pids] of Object.entries(groups.byPid)) {
    seconds[name] = pids.reduce((sum, pid) => sum + (readStat(pid)?.cpuS ?? 0), 0);
  }
  const commToGroup = new Map<string, string>();
  for (const [name, comms] of Object.entries(groups.byComm)) {
    seconds[name] = 0;
    for (const comm of comms) commToGroup.set(comm, name);
  }
  let pids: string[] = [];
  try {
    pids = readdirSync('/proc').filter((d) => /^\d+$/.test(d));
  } catch {
    // not Linux
  }
  for (const pid of pids) {
    const stat = readStat(pid);
    const group = stat && commToGroup.get(stat.comm);
    if (group) seconds[group] += stat.cpuS;
  }
  return { atMs: performance.now(), seconds };
}

/** CPU use between two samples, in percent of one core per group (200 % = both cores of a 2-core machine). */
export function cpuPercent(from: CpuSample, to: CpuSample): Record<string, number> {
  const elapsedS = (to.atMs - from.atMs) / 1000;
  const out: Record<string, number> = {};
  for (const name of Object.keys(to.seconds)) {
    out[name] = elapsedS > 0 ? Math.round(((to.seconds[name] - (from.seconds[name] ?? 0)) / elapsedS) * 100) : 0;
  }
  return out;
}
