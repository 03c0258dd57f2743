import { Router } from 'express';
import Joi from '../../shared/validation.js';
import { DM_MAX_PEOPLE, listDms, openDm } from '../domain/dms.js';
import type { Subscriptions } from '../domain/subscriptions.js';
import { currentUser } from './auth.js';
import { idParam, parse } from './validation.js';

// The caller may or may not be among them; a longer list cannot make a valid set (duplicates aside).
const openSchema = Joi.object({
  userIds: Joi.array().items(Joi.string().max(64)).min(1).max(DM_MAX_PEOPLE).required(),
});

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
    res.json({ channels: await listDms(currentUser(req).id, idParam(req.params.workspaceId, 'Workspace')) });
  });

  return router;
}
