import 'dotenv/config';
import { runMain } from '../shared/main.js';
import { createWorkerNode } from './app.js';

runMain('worker', (config, logger) => createWorkerNode(config, { logger }));
