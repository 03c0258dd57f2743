/**
 * For the knex CLI, which cannot load TypeScript on its own here: run it under tsx, e.g.
 *   NODE_OPTIONS='--import tsx' npx knex migrate:status
 * The app itself migrates with `npm run migrate`.
 */
import 'dotenv/config';
import { loadConfig } from './shared/config.js';
import { knexConfig } from './shared/db.js';

export default knexConfig(loadConfig(process.env));
