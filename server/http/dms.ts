import { Router } from 'express';
import Joi from '../../shared/validation.js';
import { DM_MAX_PEOPLE, listDms, openDm } from '../domain/dms.js';
import type { Subscriptions } from '../domain/subscriptions.js';
import { currentUser } from './auth.js';
import { EXAMPLE_USER_ID, arrayOf, object, ref, type RouteDoc } from './openapi.js';
import { pageDoc, pageHeaders, pageSchema, sendPage, timeIdCursor } from './pages.js';
import { idParam, parse } from './validation.js';

// The caller may or may not be among them; a longer list cannot make a valid set (duplicates aside).
const openSchema = Joi.object({
  userIds: Joi.array().items(Joi.string().max(64)).min(1).max(DM_MAX_PEOPLE).required(),
});

/** The routes below in the API reference (server/http/openapi.ts). */
export const dmApi: RouteDoc[] = [
  {
    method: 'post',
    path: '/workspaces/:workspaceId/dms',
    summary: 'Open a DM',
    description:
      'Of the caller and `userIds` (the caller may be among them): 2 to 9 people of the workspace, else 400. One DM per set of people: 201 with a new one, 200 with the one they have. Someone not in the workspace: 404.',
    body: openSchema,
    responses: {
      200: { description: 'the DM these people already have', schema: object({ channel: ref('Dm') }) },
      201: { description: 'a new DM', schema: object({ channel: ref('Dm') }) },
    },
    errors: ['NOT_FOUND'],
    example: { body: { userIds: [EXAMPLE_USER_ID] } },
  },
  {
    method: 'get',
    path: '/workspaces/:workspaceId/dms',
    summary: "The caller's DMs",
    description: `In the workspace, the most recently active first, with the caller's read state. ${pageDoc('channels')} A DM active between two requests moves to the top of the list: read it again from the first page to see it there.`,
    query: pageSchema,
    example: { query: { limit: 100 } },
    responses: { 200: { description: 'the DMs', schema: object({ channels: arrayOf(ref('DmListItem')) }), headers: pageHeaders('channels') } },
    errors: ['NOT_FOUND'],
  },
];

/** Routes under /workspaces/:workspaceId/dms; every one needs an authenticated caller. */
export function dmRoutes(deps: { subscriptions: Subscriptions }): Router {
  const router = Router();

  router.post('/workspaces/:workspaceId/dms', async (req, res) => {
    const workspaceId = idParam(req.params.workspaceId, 'Workspace');
    const { userIds } = parse(openSchema, req.body);
    const ids = (userIds as string[]).map((id) => idParam(id, 'User'));
    const { channel, created } = await openDm(deps, currentUser(req).id, workspaceId, ids);
    res.status(created ? 201 : 200).json({ channel });
  });

  router.get('/workspaces/:workspaceId/dms', async (req, res) => {
    const workspaceId = idParam(req.params.workspaceId, 'Workspace');
    await sendPage(req, res, 'channels', timeIdCursor, (page) => listDms(currentUser(req).id, workspaceId, page));
  });

  return router;
}
