/**
 * `npm start`: the whole product on one machine, for a first try. Uses the configured PostgreSQL and Redis,
 * or local fallbacks when they do not answer, migrates, then runs one front node and one worker until
 * Ctrl+C. Deployments run `npm run start:server` / `npm run start:worker` instead (see docker-compose.yml).
 */
import 'dotenv/config';
import { spawn, type ChildProcess } from 'node:child_process';
import readline from 'node:readline';
import { loadConfig } from '../shared/config.js';
import { isReadyMessage, type ReadyMessage } from '../shared/health.js';
import { killOnExit, terminate } from './child-process.js';
import { migrateLatest } from './db-admin.js';
import { errorText } from './net.js';
import { REPO_ROOT, ensureServices, type Services } from './services.js';

const say = (line: string) => console.log(`[start] ${line}`);

type Role = ReadyMessage['ready'];
/** Turns one JSON log line into a human one. */
type Prettifier = (line: string) => string;

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

/**
 * Logs for a person at a terminal: pino-pretty, a development dependency, so a production install (and
 * NODE_ENV=production, or output to a pipe or file) keeps the JSON lines log collectors read.
 */
async function prettifier(nodeEnv: string): Promise<Prettifier | undefined> {
  if (!process.stdout.isTTY || nodeEnv === 'production') return undefined;
  try {
    const { prettyFactory } = await import('pino-pretty');
    return prettyFactory({ translateTime: 'SYS:HH:MM:ss.l', ignore: 'pid' });
  } catch {
    return undefined;
  }
}

function spawnChild(role: Role, env: NodeJS.ProcessEnv, pretty: Prettifier | undefined, onReady: (message: ReadyMessage) => void): void {
  const child = spawn(process.execPath, ['--import', 'tsx', `${role}/main.ts`], {
    cwd: REPO_ROOT,
    env,
    // Readiness comes over IPC, so it needs no log line, whatever LOG_LEVEL is.
    stdio: ['ignore', pretty ? 'pipe' : 'inherit', 'inherit', 'ipc'],
    // Out of the terminal's process group: on Ctrl+C we stop the children ourselves, in order, exactly once.
    detached: true,
  });
  children.set(role, child);
  const disarm = killOnExit(child.pid!, 'SIGTERM');

  child.on('message', (message) => {
    if (!isReadyMessage(message, role)) return;
    if (child.connected) child.disconnect();
    onReady(message);
  });
  if (pretty) readline.createInterface({ input: child.stdout! }).on('line', (line) => process.stdout.write(pretty(line)));
  child.on('error', (err) => void shutdown(1, `could not run the ${role}: ${errorText(err)}`));
  child.on('exit', (code, signal) => {
    disarm();
    children.delete(role);
    if (!stopping) void shutdown(1, `the ${role} exited unexpectedly (${signal ?? `exit code ${code}`}); stopping`);
  });
}

async function main(): Promise<void> {
  const config = loadConfig(process.env);
  const pretty = await prettifier(config.nodeEnv);
  services = await ensureServices(config, say);
  say(`database: ${services.describe.database}`);
  say(`redis:    ${services.describe.redis}`);

  const { files } = await migrateLatest(services.config);
  say(files.length > 0 ? `applied migrations: ${files.join(', ')}` : 'database schema is up to date');
  if (stopping) return;

  const pending = new Set<Role>(['server', 'worker']);
  let url = `http://localhost:${config.port}`;
  const ready = ({ ready: role, port }: ReadyMessage) => {
    if (role === 'server') url = `http://localhost:${port}`;
    pending.delete(role);
    if (pending.size === 0) say(`ready: ${url} (Ctrl+C to stop)`);
  };
  const env = { ...process.env, ...services.env };
  spawnChild('server', env, pretty, ready);
  spawnChild('worker', env, pretty, ready);
}

process.on('SIGINT', () => void shutdown(0, 'SIGINT received, stopping'));
process.on('SIGTERM', () => void shutdown(0, 'SIGTERM received, stopping'));

main().catch((err: unknown) => shutdown(1, `failed: ${errorText(err)}`));
