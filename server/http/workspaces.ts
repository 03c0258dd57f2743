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
import { arrayOf, object, ref, type RouteDoc } from './openapi.js';
import { CHANNEL_NAME, CHANNEL_TOPIC, idParam, noBody, parse } from './validation.js';
import { channelCursor, pageDoc, pageHeaders, pageSchema, sendPage, timeIdCursor } from './pages.js';

const workspaceSchema = Joi.object({ name: Joi.string().trim().minChars(1).maxChars(80).required() });
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

const member = { description: 'the member', schema: object({ member: ref('WorkspaceMember') }) };

/** The routes below in the API reference (server/http/openapi.ts). */
export const workspaceApi: RouteDoc[] = [
  {
    method: 'post',
    path: '/workspaces',
    summary: 'Create a workspace',
    description: 'The creator is its `owner`.',
    body: workspaceSchema,
    responses: { 201: { description: 'the workspace', schema: object({ workspace: ref('Workspace') }) } },
    errors: [],
    example: { body: { name: 'Analytical Engines' } },
  },
  {
    method: 'get',
    path: '/workspaces',
    summary: "The caller's workspaces",
    description: `In the order they were created. ${pageDoc('workspaces')}`,
    query: pageSchema,
    example: { query: { limit: 100 } },
    responses: {
      200: { description: "each with the caller's role", schema: object({ workspaces: arrayOf(ref('WorkspaceListItem')) }), headers: pageHeaders('workspaces') },
    },
    errors: [],
  },
  {
    method: 'get',
    path: '/workspaces/:workspaceId',
    summary: 'A workspace',
    responses: { 200: { description: 'the workspace', schema: object({ workspace: ref('Workspace') }) } },
    errors: ['NOT_FOUND'],
  },
  {
    method: 'post',
    path: '/workspaces/:workspaceId/members',
    summary: 'Add a member',
    description: 'Owners and admins; by the email the user registered with.',
    body: addMemberSchema,
    responses: { 201: member },
    errors: ['FORBIDDEN', 'NOT_FOUND', 'CONFLICT'],
    example: { body: { email: 'grace@example.com', role: 'member' } },
  },
  {
    method: 'get',
    path: '/workspaces/:workspaceId/members',
    summary: 'The members',
    description: `In the order they joined; to a guest, only themself and the members of the channels they are in. ${pageDoc('members')}`,
    query: pageSchema,
    example: { query: { limit: 100 } },
    responses: { 200: { description: 'the members', schema: object({ members: arrayOf(ref('WorkspaceMember')) }), headers: pageHeaders('members') } },
    errors: ['NOT_FOUND'],
  },
  {
    method: 'delete',
    path: '/workspaces/:workspaceId/members/:userId',
    summary: 'Remove a member',
    description: 'Owners and admins; only owners remove an owner, never the last one. Also removes them from every channel of the workspace.',
    responses: { 204: { description: 'removed' } },
    errors: ['FORBIDDEN', 'NOT_FOUND'],
  },
  {
    method: 'patch',
    path: '/workspaces/:workspaceId/members/:userId',
    summary: "Change a member's role",
    description: 'Owners change any role; admins change members and guests only, to member, guest or admin. The last owner cannot be demoted.',
    body: setRoleSchema,
    responses: { 200: member },
    errors: ['FORBIDDEN', 'NOT_FOUND'],
    example: { body: { role: 'admin' } },
  },
  {
    method: 'post',
    path: '/workspaces/:workspaceId/leave',
    summary: 'Leave the workspace',
    description: 'And every channel of it; the last owner cannot.',
    responses: { 204: { description: 'left' } },
    errors: ['FORBIDDEN', 'NOT_FOUND'],
  },
  {
    method: 'post',
    path: '/workspaces/:workspaceId/channels',
    summary: 'Create a channel',
    description: 'The creator is a member; guests cannot.',
    body: channelSchema,
    responses: { 201: { description: 'the channel', schema: object({ channel: ref('Channel') }) } },
    errors: ['FORBIDDEN', 'NOT_FOUND', 'CONFLICT'],
    example: { body: { name: 'general', isPrivate: false, topic: 'Anything goes' } },
  },
  {
    method: 'get',
    path: '/workspaces/:workspaceId/channels',
    summary: 'The channels',
    description: `By name: public channels and the private ones the caller is in (to a guest: only theirs), archived ones included; no DMs. ${pageDoc('channels')}`,
    query: pageSchema,
    example: { query: { limit: 100 } },
    responses: { 200: { description: 'the channels', schema: object({ channels: arrayOf(ref('ChannelListItem')) }), headers: pageHeaders('channels') } },
    errors: ['NOT_FOUND'],
  },
];

/** Routes under /workspaces; every one needs an authenticated caller. */
export function workspaceRoutes(deps: { subscriptions: Subscriptions }): Router {
  const router = Router();

  router.post('/workspaces', async (req, res) => {
    const { name } = parse(workspaceSchema, req.body);
    const workspace = await createWorkspace(currentUser(req).id, name);
    res.status(201).json({ workspace: workspace.toDto() });
  });

  router.get('/workspaces', async (req, res) => {
    await sendPage(req, res, 'workspaces', timeIdCursor, (page) => listWorkspaces(currentUser(req).id, page));
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
    const id = idParam(req.params.workspaceId, 'Workspace');
    await sendPage(req, res, 'members', timeIdCursor, (page) => listWorkspaceMembers(currentUser(req).id, id, page));
  });

  router.delete('/workspaces/:workspaceId/members/:userId', async (req, res) => {
    noBody(req);
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
    res.json({ member: await setMemberRole(deps, currentUser(req).id, workspaceId, userId, role) });
  });

  router.post('/workspaces/:workspaceId/leave', async (req, res) => {
    noBody(req);
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
    const id = idParam(req.params.workspaceId, 'Workspace');
    await sendPage(req, res, 'channels', channelCursor, (page) => listChannels(currentUser(req).id, id, page));
  });

  return router;
}
