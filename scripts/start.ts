/**
 * `npm start`: the whole product on one machine, for a first try. Uses the configured PostgreSQL and Redis,
 * or local fallbacks when they do not answer, migrates, then runs one front node and one worker until
 * Ctrl+C. Deployments run `npm run start:server` / `npm run start:worker` instead (see docker-compose.yml).
 */
import 'dotenv/config';
import { spawn, type ChildProcess } from 'node:child_process';
import readline from 'node:readline';
import { loadConfig } from '../shared/config.js';
import { killOnExit, terminate } from './child-process.js';
import { migrateLatest } from './db-admin.js';
import { errorText } from './net.js';
import { REPO_ROOT, ensureServices, type Services } from './services.js';

const say = (line: string) => console.log(`[start] ${line}`);

/** What each child logs (pino JSON, msg field) once it is ready. */
const READY_MESSAGES = { server: 'front node listening', worker: 'worker ready' } as const;
type Role = keyof typeof READY_MESSAGES;

let services: Services | undefined;
const children = new Map<Role, ChildProcess>();
let stopping = false;

async function shutdown(exitCode: number, reason: string): Promise<never> {
  if (stopping) {
    say('stopping immediately');
    for (const child of children.values()) child.kill('SIGKILL');
    process.exit(1);
  }
  stopping = true;
  say(reason);
  // Children first: they drain their work into PostgreSQL and Redis, so those must outlive them.
  await Promise.all(
    [...children.values()].map((child) => terminate(child.pid!, [['SIGTERM', 20_000], ['SIGKILL', 5_000]])),
  );
  await services?.stop().catch((err: unknown) => say(`stopping PostgreSQL/Redis failed: ${errorText(err)}`));
  process.exit(exitCode);
}

function spawnChild(role: Role, env: NodeJS.ProcessEnv, onReady: (entry: Record<string, unknown>) => void): void {
  const child = spawn(process.execPath, ['--import', 'tsx', `${role}/main.ts`], {
    cwd: REPO_ROOT,
    env,
    stdio: ['ignore', 'pipe', 'inherit'],
    // Out of the terminal's process group: on Ctrl+C we stop the children ourselves, in order, exactly once.
    detached: true,
  });
  children.set(role, child);
  const disarm = killOnExit(child.pid!, 'SIGTERM');

  readline.createInterface({ input: child.stdout! }).on('line', (line) => {
    process.stdout.write(`${line}\n`);
    if (!line.includes(READY_MESSAGES[role])) return;
    try {
      const entry = JSON.parse(line) as Record<string, unknown>;
      if (entry.msg === READY_MESSAGES[role]) onReady(entry);
    } catch {
      // Not a log entry after all.
    }
  });
  child.on('error', (err) => void shutdown(1, `could not run the ${role}: ${errorText(err)}`));
  child.on('exit', (code, signal) => {
    disarm();
    children.delete(role);
    if (!stopping) void shutdown(1, `the ${role} exited unexpectedly (${signal ?? `exit code ${code}`}); stopping`);
  });
}

async function main(): Promise<void> {
  const config = loadConfig(process.env);
  services = await ensureServices(config, say);
  say(`database: ${services.describe.database}`);
  say(`redis:    ${services.describe.redis}`);

  const { files } = await migrateLatest(services.config);
  say(files.length > 0 ? `applied migrations: ${files.join(', ')}` : 'database schema is up to date');
  if (stopping) return;

  const pending = new Set<Role>(['server', 'worker']);
  let url = `http://localhost:${config.port}`;
  const ready = (role: Role) => (entry: Record<string, unknown>) => {
    if (role === 'server' && typeof entry.port === 'number') url = `http://localhost:${entry.port}`;
    pending.delete(role);
    if (pending.size === 0) say(`ready: ${url} (Ctrl+C to stop)`);
  };
  const env = { ...process.env, ...services.env };
  spawnChild('server', env, ready('server'));
  spawnChild('worker', env, ready('worker'));
  if (['warn', 'error', 'fatal', 'silent'].includes(config.logLevel)) {
    say(`starting on ${url}; LOG_LEVEL=${config.logLevel} hides the readiness messages`);
  }
}

process.on('SIGINT', () => void shutdown(0, 'SIGINT received, stopping'));
process.on('SIGTERM', () => void shutdown(0, 'SIGTERM received, stopping'));

main().catch((err: unknown) => shutdown(1, `failed: ${errorText(err)}`));
