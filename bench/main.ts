/**
 * `npm run bench`: load generator and benchmark of the whole pipeline, with the limits of its parts measured
 * in the same run. See `npm run bench -- --help` and docs/PERFORMANCE.md.
 *
 * Exit code: 0, also when targets are missed; 1 when the bench itself fails or any receiver saw an order
 * violation, a gap or a duplicate; 130 when interrupted.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import type { Cluster } from '../scripts/cluster.js';
import { AgentPool } from './agents/pool.js';
import { latencyChart } from './chart.js';
import { parseOptions } from './cli.js';
import { setUpEnv } from './env.js';
import { closeHttpAgent } from './lib/http.js';
import { note } from './lib/progress.js';
import { renderMarkdown, renderText } from './report.js';
import { run } from './run.js';

let shutdown: (() => Promise<void>) | undefined;

function writeOutput(file: string, text: string): void {
  mkdirSync(path.dirname(path.resolve(file)), { recursive: true });
  writeFileSync(file, text);
  note(`wrote ${file}`);
}

async function main(): Promise<number> {
  const options = parseOptions(process.argv.slice(2));
  if (!options) return 0;
  const env = await setUpEnv(options);
  let pool: AgentPool | undefined;
  let cluster: Cluster | undefined;
  let stopped: Promise<void> | undefined;
  shutdown = () =>
    (stopped ??= (async () => {
      closeHttpAgent();
      await pool?.stop().catch(() => {});
      await cluster?.stop().catch(() => {});
      await env.cleanUp();
    })());
  try {
    pool = await AgentPool.start(options.clientProcs);
    const results = await run(options, env, pool, (c) => (cluster = c));
    process.stdout.write(`${renderText(results)}\n\n`);
    if (options.json) writeOutput(options.json, `${JSON.stringify(results, null, 2)}\n`);
    if (options.markdown) writeOutput(options.markdown, `${renderMarkdown(results)}\n`);
    const svg = latencyChart(results);
    if (svg) writeOutput(options.chart, `${svg}\n`);
    note(`finished in ${results.finishedS} s`);
    if (results.orderErrors > 0) {
      note(`FAILED: ${results.orderErrors} order violations, gaps or duplicates at the receivers`);
      return 1;
    }
    return 0;
  } finally {
    await shutdown();
  }
}

for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.once(signal, () => {
    note(`\n${signal}: stopping and cleaning up`);
    void (shutdown?.() ?? Promise.resolve()).finally(() => process.exit(130));
  });
}

main().then(
  (code) => process.exit(code),
  (err: unknown) => {
    console.error(err instanceof Error ? (err.stack ?? err.message) : err);
    process.exit(1);
  },
);
