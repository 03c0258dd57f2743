/**
 * Summarises V8 CPU profiles (`npm run bench -- --cpu-prof DIR` writes one per front node and worker and
 * load phase): self time by package / app directory, and the top functions.
 *
 *   npx tsx bench/profile/cpuprofile.ts DIR [--top N]
 */
import { readFileSync, readdirSync } from 'node:fs';
import path from 'node:path';

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
  children?: number[];
}

interface CpuProfile {
  nodes: ProfileNode[];
  samples: number[];
  timeDeltas: number[];
  startTime: number;
  endTime: number;
}

export interface ProfileSummary {
  file: string;
  totalMs: number;
  /** Share of samples not idle or GC: the process was running JavaScript or native code. */
  busyMs: number;
  byArea: Array<{ area: string; ms: number; pct: number }>;
  topFunctions: Array<{ fn: string; ms: number; pct: number }>;
}

/** Which package or app directory a frame belongs to. */
function areaOf(url: string, fn: string): string {
  if (fn === '(idle)' || fn === '(program)' || fn === '(garbage collector)') return fn;
  if (!url) return '(native)';
  const nm = url.lastIndexOf('node_modules/');
  if (nm >= 0) {
    const rest = url.slice(nm + 'node_modules/'.length).split('/');
    return rest[0].startsWith('@') ? `${rest[0]}/${rest[1]}` : rest[0];
  }
  if (url.startsWith('node:')) return 'node internals';
  const m = /\/(server|worker|shared)\//.exec(url);
  return m ? `app: ${m[1]}/` : url;
}

export function summarise(file: string, top = 20): ProfileSummary {
  const profile = JSON.parse(readFileSync(file, 'utf8')) as CpuProfile;
  const byId = new Map(profile.nodes.map((n) => [n.id, n]));
  const self = new Map<number, number>();
  profile.samples.forEach((id, i) => self.set(id, (self.get(id) ?? 0) + (profile.timeDeltas[i] ?? 0)));
  const areas = new Map<string, number>();
  const fns = new Map<string, number>();
  let total = 0;
  let idle = 0;
  for (const [id, us] of self) {
    const { functionName, url, lineNumber } = byId.get(id)!.callFrame;
    total += us;
    if (functionName === '(idle)') idle += us;
    const area = areaOf(url, functionName);
    areas.set(area, (areas.get(area) ?? 0) + us);
    const where = url ? `${url.replace(/^file:\/\/.*?\/(node_modules|server|worker|shared)\//, '$1/')}:${lineNumber + 1}` : '';
    const key = `${functionName || '(anonymous)'} ${where}`.trim();
    fns.set(key, (fns.get(key) ?? 0) + us);
  }
  const busy = total - idle;
  const rank = (m: Map<string, number>) =>
    [...m.entries()]
      .filter(([k]) => k !== '(idle)')
      .sort((a, b) => b[1] - a[1])
      .map(([k, us]) => ({ k, ms: Math.round(us / 1000), pct: Math.round((us / Math.max(1, busy)) * 1000) / 10 }));
  return {
    file: path.basename(file),
    totalMs: Math.round(total / 1000),
    busyMs: Math.round(busy / 1000),
    byArea: rank(areas).map(({ k, ms, pct }) => ({ area: k, ms, pct })),
    topFunctions: rank(fns)
      .slice(0, top)
      .map(({ k, ms, pct }) => ({ fn: k, ms, pct })),
  };
}

function main(): void {
  const dir = process.argv[2];
  if (!dir) {
    process.stderr.write('usage: tsx bench/profile/cpuprofile.ts DIR [--top N]\n');
    process.exit(2);
  }
  const topIndex = process.argv.indexOf('--top');
  const top = topIndex > 0 ? Number(process.argv[topIndex + 1]) : 20;
  for (const name of readdirSync(dir).filter((f) => f.endsWith('.cpuprofile')).sort()) {
    const s = summarise(path.join(dir, name), top);
    process.stdout.write(`\n${s.file}: ${s.totalMs} ms profiled, ${s.busyMs} ms busy (% below: of busy time)\n  by area:\n`);
    for (const a of s.byArea.slice(0, 15)) process.stdout.write(`    ${String(a.pct).padStart(5)} %  ${a.area}\n`);
    process.stdout.write('  top functions (self time):\n');
    for (const f of s.topFunctions) process.stdout.write(`    ${String(f.pct).padStart(5)} %  ${f.fn}\n`);
  }
}

if (process.argv[1] && path.resolve(process.argv[1]) === path.resolve(new URL(import.meta.url).pathname)) main();
