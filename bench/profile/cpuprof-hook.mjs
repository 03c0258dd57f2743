// Preloaded into the product's processes by `npm run bench -- --cpu-prof DIR` (NODE_OPTIONS=--import ...).
// SIGUSR2 starts the inspector's CPU profiler; the next SIGUSR2 stops it and writes
// DIR/<role>-<pid>-<n>.cpuprofile, so the bench profiles exactly its load phases. In-process inspector
// calls answer synchronously.
import { renameSync, writeFileSync } from 'node:fs';
import { Session } from 'node:inspector';
import path from 'node:path';

const dir = process.env.BENCH_CPU_PROF_DIR;
if (dir) {
  const script = process.argv[1] ?? '';
  const role = script.includes('worker') ? 'worker' : script.includes('server') ? 'server' : 'node';
  const session = new Session();
  session.connect();
  session.post('Profiler.enable');
  session.post('Profiler.setSamplingInterval', { interval: 500 });
  let running = false;
  let count = 0;
  process.on('SIGUSR2', () => {
    if (!running) {
      session.post('Profiler.start');
      running = true;
      return;
    }
    running = false;
    session.post('Profiler.stop', (err, result) => {
      if (err) return;
      const file = path.join(dir, `${role}-${process.pid}-${count++}.cpuprofile`);
      writeFileSync(`${file}.tmp`, JSON.stringify(result.profile));
      renameSync(`${file}.tmp`, file);
    });
  });
}
