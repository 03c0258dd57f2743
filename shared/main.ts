import { ConfigError, loadConfig, type Config } from './config.js';
import { createLogger, type Logger } from './logger.js';

/**
 * Entry point of a deployable: validated config, start, and a graceful stop on SIGTERM/SIGINT. A bad
 * configuration stops the process with one line naming the variable.
 */
export function runMain(name: string, create: (config: Config, logger: Logger) => { start(): Promise<unknown>; stop(): Promise<void> }): void {
  let config: Config;
  try {
    config = loadConfig(process.env);
  } catch (err) {
    if (err instanceof ConfigError) {
      process.stderr.write(`${err.message}\n`);
      process.exit(1);
    }
    throw err;
  }
  const logger = createLogger(config, name);
  const node = create(config, logger);
  let stopping = false;
  const stop = (signal: string) => {
    if (stopping) return;
    stopping = true;
    logger.info({ signal }, 'stopping');
    const force = setTimeout(() => {
      logger.error('graceful stop timed out');
      process.exit(1);
      // The process's own grace, then a margin for closing its connections.
    }, config.shutdownGraceMs + 5_000);
    force.unref();
    node.stop().then(
      () => process.exit(0),
      (err: unknown) => {
        logger.error({ err }, 'error while stopping');
        process.exit(1);
      },
    );
  };
  process.on('SIGTERM', () => stop('SIGTERM'));
  process.on('SIGINT', () => stop('SIGINT'));
  node.start().catch((err: unknown) => {
    logger.fatal({ err }, 'failed to start');
    process.exit(1);
  });
}
