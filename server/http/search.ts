import { Router } from 'express';
import Joi from '../../shared/validation.js';
import { SEARCH_LIMIT_DEFAULT, SEARCH_LIMIT_MAX, SEARCH_QUERY_MAX_LENGTH, searchMessages } from '../domain/search.js';
import { currentUser } from './auth.js';
import { ref, type RouteDoc } from './openapi.js';
import { idParam, parse } from './validation.js';

const searchSchema = Joi.object({
  q: Joi.string().trim().minChars(1).maxChars(SEARCH_QUERY_MAX_LENGTH).required(),
  limit: Joi.number().integer().min(1).max(SEARCH_LIMIT_MAX).default(SEARCH_LIMIT_DEFAULT),
  before: Joi.string().max(100),
});

/** The route below in the API reference (server/http/openapi.ts). */
export const searchApi: RouteDoc[] = [
  {
    method: 'get',
    path: '/workspaces/:workspaceId/search',
    summary: 'Search messages',
    description:
      "The messages of the caller's channels and DMs in the workspace that match `q` (websearch syntax; `from:<userId>`, `in:<channelId>`), newest first. The next page: `before` = the previous page's `nextBefore`.",
    query: searchSchema,
    responses: { 200: { description: 'a page of results', schema: ref('SearchPage') } },
    errors: ['NOT_FOUND'],
    example: { query: { q: 'deploy', limit: 20 } },
  },
];

/** Message search, under /workspaces (authenticated there). */
export function searchRoutes(): Router {
  const router = Router();

  router.get('/workspaces/:workspaceId/search', async (req, res) => {
    const workspaceId = idParam(req.params.workspaceId, 'Workspace');
    const query = parse(searchSchema, { ...req.query });
    res.json(await searchMessages(currentUser(req).id, workspaceId, query));
  });

  return router;
}
