import { Router } from 'express';
import Joi from '../../shared/validation.js';
import type { Subscriptions } from '../domain/subscriptions.js';
import {
  addWorkspaceMember,
  createWorkspace,
  getWorkspace,
  listWorkspaceMembers,
  leaveWorkspace,
  listWorkspaces,
  removeWorkspaceMember,
  setMemberRole,
} from '../domain/workspaces.js';
import { createChannel, listChannels } from '../domain/channels.js';
import { currentUser } from './auth.js';
import { CHANNEL_NAME, CHANNEL_TOPIC, idParam, parse } from './validation.js';

const workspaceSchema = Joi.object({ name: Joi.string().trim().min(1).max(80).required() });
const addMemberSchema = Joi.object({
  email: Joi.string().trim().max(254).required(),
  role: Joi.string().valid('member', 'admin', 'guest').default('member'),
});
const setRoleSchema = Joi.object({ role: Joi.string().valid('owner', 'admin', 'member', 'guest').required() });
const channelSchema = Joi.object({
  name: CHANNEL_NAME.required(),
  isPrivate: Joi.boolean().strict().default(false),
  topic: CHANNEL_TOPIC.default(''),
});

/** Routes under /workspaces; every one needs an authenticated caller. */
export function workspaceRoutes(deps: { subscriptions: Subscriptions }): Router {
  const router = Router();

  router.post('/workspaces', async (req, res) => {
    const { name } = parse(workspaceSchema, req.body);
    const workspace = await createWorkspace(currentUser(req).id, name);
    res.status(201).json({ workspace: workspace.toDto() });
  });

  router.get('/workspaces', async (req, res) => {
    res.json({ workspaces: await listWorkspaces(currentUser(req).id) });
  });

  router.get('/workspaces/:workspaceId', async (req, res) => {
    const workspace = await getWorkspace(currentUser(req).id, idParam(req.params.workspaceId, 'Workspace'));
    res.json({ workspace: workspace.toDto() });
  });

  router.post('/workspaces/:workspaceId/members', async (req, res) => {
    const workspaceId = idParam(req.params.workspaceId, 'Workspace');
    const input = parse(addMemberSchema, req.body);
    const member = await addWorkspaceMember(currentUser(req).id, workspaceId, input);
    res.status(201).json({ member });
  });

  router.get('/workspaces/:workspaceId/members', async (req, res) => {
    const members = await listWorkspaceMembers(currentUser(req).id, idParam(req.params.workspaceId, 'Workspace'));
    res.json({ members });
  });

  router.delete('/workspaces/:workspaceId/members/:userId', async (req, res) => {
    await removeWorkspaceMember(
      deps,
      currentUser(req).id,
      idParam(req.params.workspaceId, 'Workspace'),
      idParam(req.params.userId, 'Member'),
    );
    res.status(204).end();
  });

  router.patch('/workspaces/:workspaceId/members/:userId', async (req, res) => {
    const workspaceId = idParam(req.params.workspaceId, 'Workspace');
    const userId = idParam(req.params.userId, 'Member');
    const { role } = parse(setRoleSchema, req.body);
    res.json({ member: await setMemberRole(currentUser(req).id, workspaceId, userId, role) });
  });

  router.post('/workspaces/:workspaceId/leave', async (req, res) => {
    await leaveWorkspace(deps, currentUser(req).id, idParam(req.params.workspaceId, 'Workspace'));
    res.status(204).end();
  });

  router.post('/workspaces/:workspaceId/channels', async (req, res) => {
    const workspaceId = idParam(req.params.workspaceId, 'Workspace');
    const input = parse(channelSchema, req.body);
    const channel = await createChannel(deps, currentUser(req).id, workspaceId, input);
    res.status(201).json({ channel: channel.toDto() });
  });

  router.get('/workspaces/:workspaceId/channels', async (req, res) => {
    const channels = await listChannels(currentUser(req).id, idParam(req.params.workspaceId, 'Workspace'));
    res.json({ channels });
  });

  return router;
}
