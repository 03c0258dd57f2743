import 'dotenv/config';
import { runMain } from '../shared/main.js';
import { createFrontNode } from './app.js';

runMain('server', (config, logger) => createFrontNode(config, { logger }));
