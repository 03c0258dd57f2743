import { Router, type Request } from 'express';
import Joi from '../../shared/validation.js';
import { AppError } from '../../shared/errors.js';
import {
  addChannelMember,
  getChannel,
  joinChannel,
  leaveChannel,
  listChannelMembers,
  removeChannelMember,
  setChannelArchived,
  updateChannel,
  type ChannelNotifier,
} from '../domain/channels.js';
import { deleteMessage, editMessage, reactToMessage } from '../domain/messageChanges.js';
import { CLIENT_ID, listHistory, sendMessage, type MessagingDeps } from '../domain/messages.js';
import type { MessageDto } from '../../shared/models/index.js';
import type { SendOutcome } from '../../shared/queues.js';
import { markRead, type ReadNotifier } from '../domain/readState.js';
import type { Subscriptions } from '../domain/subscriptions.js';
import { currentUser } from './auth.js';
import { EXAMPLE_USER_ID, arrayOf, object, ref, type RouteDoc } from './openapi.js';
import { CHANNEL_NAME, CHANNEL_TOPIC, idParam, noBody, parse } from './validation.js';
import { pageDoc, pageHeaders, pageSchema, sendPage, timeIdCursor } from './pages.js';

const addMemberSchema = Joi.object({ userId: Joi.string().required() });
const updateSchema = Joi.object({ name: CHANNEL_NAME, topic: CHANNEL_TOPIC }).or('name', 'topic');
const historySchema = Joi.object({
  limit: Joi.number().integer().min(1).max(200).default(50),
  before: Joi.number().integer().min(1),
  after: Joi.number().integer().min(0),
}).oxor('before', 'after');
const readSchema = Joi.object({ seq: Joi.number().integer().min(0).required() });
const sendSchema = Joi.object({
  body: Joi.string().required(),
  clientMsgId: CLIENT_ID.allow(null),
  parentId: Joi.string().max(64).allow(null),
});
const editSchema = Joi.object({ body: Joi.string().required(), clientChangeId: CLIENT_ID.allow(null).default(null) });
/** DELETE and PUT of a change take an optional body with the client's retry key. */
const changeSchema = Joi.object({ clientChangeId: CLIENT_ID.allow(null).default(null) });

const channel = { description: 'the channel', schema: object({ channel: ref('Channel') }) };
const message = { description: 'the message, once stored', schema: object({ message: ref('Message') }) };
const page = { description: 'a page, ascending by seq', schema: ref('MessagePage') };
const change = {
  description: 'Members of the channel only (anyone else 404); a message of that channel that is not deleted (404); not archived (403).',
  bodyOptional: true,
  body: changeSchema,
  responses: { 200: message },
  errors: ['FORBIDDEN', 'NOT_FOUND', 'RATE_LIMITED'] as RouteDoc['errors'],
  example: { body: { clientChangeId: 'ada-change-1' } },
};

/** The routes below in the API reference (server/http/openapi.ts). */
export const channelApi: RouteDoc[] = [
  {
    method: 'get',
    path: '/channels/:channelId',
    summary: 'A channel',
    description: 'Private: members only (else 404); a guest outside a public channel: 403.',
    responses: { 200: channel },
    errors: ['FORBIDDEN', 'NOT_FOUND'],
  },
  {
    method: 'patch',
    path: '/channels/:channelId',
    summary: 'Rename or re-topic a channel',
    description: "The channel's creator and workspace owners and admins; `channel:updated` to its members.",
    body: updateSchema,
    responses: { 200: channel },
    errors: ['FORBIDDEN', 'NOT_FOUND', 'CONFLICT'],
    example: { body: { topic: 'Release planning' } },
  },
  {
    method: 'post',
    path: '/channels/:channelId/archive',
    summary: 'Archive a channel',
    description: 'History and members are kept; sends, edits, deletes, reactions and joins are refused (403).',
    responses: { 200: channel },
    errors: ['FORBIDDEN', 'NOT_FOUND'],
  },
  { method: 'post', path: '/channels/:channelId/unarchive', summary: 'Unarchive a channel', responses: { 200: channel }, errors: ['FORBIDDEN', 'NOT_FOUND'] },
  {
    method: 'post',
    path: '/channels/:channelId/join',
    summary: 'Join a public channel',
    description: 'Private: 404; guests and archived channels: 403; joining twice is a no-op.',
    responses: { 200: channel },
    errors: ['FORBIDDEN', 'NOT_FOUND'],
  },
  {
    method: 'post',
    path: '/channels/:channelId/leave',
    summary: 'Leave a channel',
    description: 'Leaving a channel you are not in is a no-op.',
    responses: { 200: channel },
    errors: ['FORBIDDEN', 'NOT_FOUND'],
  },
  {
    method: 'get',
    path: '/channels/:channelId/members',
    summary: 'The members of a channel',
    description: `In the order they joined. ${pageDoc('members')}`,
    query: pageSchema,
    example: { query: { limit: 100 } },
    responses: { 200: { description: 'the members', schema: object({ members: arrayOf(ref('ChannelMember')) }), headers: pageHeaders('members') } },
    errors: ['FORBIDDEN', 'NOT_FOUND'],
  },
  {
    method: 'post',
    path: '/channels/:channelId/members',
    summary: 'Add a member to a channel',
    description: 'Public channel: a channel member or workspace owner/admin; private: its members only. The user must be in the workspace.',
    body: addMemberSchema,
    responses: { 201: { description: 'the member', schema: object({ member: ref('ChannelMember') }) } },
    errors: ['FORBIDDEN', 'NOT_FOUND', 'CONFLICT'],
    example: { body: { userId: EXAMPLE_USER_ID } },
  },
  {
    method: 'delete',
    path: '/channels/:channelId/members/:userId',
    summary: 'Remove a member from a channel',
    description: 'Oneself, or a workspace owner or admin.',
    responses: { 204: { description: 'removed' } },
    errors: ['FORBIDDEN', 'NOT_FOUND'],
  },
  {
    method: 'get',
    path: '/channels/:channelId/messages',
    summary: 'History',
    description:
      'No cursor: the newest `limit`. `before`: the newest `limit` with seq < before. `after`: the oldest `limit` with seq > after (at most one of them). Replies and deleted messages included.',
    query: historySchema,
    responses: { 200: page },
    errors: ['FORBIDDEN', 'NOT_FOUND'],
    example: { query: { limit: 50, after: 0 } },
  },
  {
    method: 'post',
    path: '/channels/:channelId/messages',
    summary: 'Send a message',
    description:
      'Answers once the message is stored, through the same queue and worker as a socket send. A retry with the same `clientMsgId` answers the first message; `parentId` makes it a reply in that thread.',
    body: sendSchema,
    responses: { 201: message },
    errors: ['FORBIDDEN', 'NOT_FOUND', 'RATE_LIMITED'],
    example: { body: { body: 'Hello!', clientMsgId: 'ada-1' } },
  },
  {
    ...change,
    method: 'patch',
    path: '/channels/:channelId/messages/:messageId',
    summary: 'Edit a message',
    description: `Its author only. ${change.description}`,
    bodyOptional: false,
    body: editSchema,
    example: { body: { body: 'Hello again', clientChangeId: 'ada-edit-1' } },
  },
  { ...change, method: 'delete', path: '/channels/:channelId/messages/:messageId', summary: 'Delete a message' },
  {
    method: 'get',
    path: '/channels/:channelId/messages/:messageId/replies',
    summary: "A thread's replies",
    description: 'Paged like the history.',
    query: historySchema,
    responses: { 200: page },
    errors: ['FORBIDDEN', 'NOT_FOUND'],
    example: { query: { limit: 20 } },
  },
  { ...change, method: 'put', path: '/channels/:channelId/messages/:messageId/reactions/:emoji', summary: 'React to a message' },
  { ...change, method: 'delete', path: '/channels/:channelId/messages/:messageId/reactions/:emoji', summary: 'Remove your reaction' },
  {
    method: 'post',
    path: '/channels/:channelId/read',
    summary: 'Move the read mark',
    description: "Forward to `seq`, never back, never past the channel's last seq.",
    body: readSchema,
    responses: { 200: { description: 'where the read mark stands', schema: ref('ReadState') } },
    errors: ['FORBIDDEN', 'NOT_FOUND'],
    example: { body: { seq: 1 } },
  },
];

/** A send's or change's outcome as a REST answer: the message, or the refusal as an error. */
function answer(outcome: SendOutcome): { message: MessageDto } {
  if (!outcome.ok) throw new AppError(outcome.error.code, outcome.error.message, outcome.error.details);
  return { message: outcome.message };
}

/** Routes under /channels; every one needs an authenticated caller. */
export function channelRoutes(deps: {
  subscriptions: Subscriptions;
  messaging: MessagingDeps;
  notifyRead: ReadNotifier;
  notifyChannel: ChannelNotifier;
}): Router {
  const router = Router();
  const channelId = (raw: unknown) => idParam(raw, 'Channel');

  router.get('/channels/:channelId', async (req, res) => {
    res.json({ channel: (await getChannel(currentUser(req).id, channelId(req.params.channelId))).toDto() });
  });

  router.patch('/channels/:channelId', async (req, res) => {
    const id = channelId(req.params.channelId);
    const input = parse(updateSchema, req.body);
    res.json({ channel: (await updateChannel(deps.notifyChannel, currentUser(req).id, id, input)).toDto() });
  });

  router.post('/channels/:channelId/archive', async (req, res) => {
    noBody(req);
    const channel = await setChannelArchived(deps.notifyChannel, currentUser(req).id, channelId(req.params.channelId), true);
    res.json({ channel: channel.toDto() });
  });

  router.post('/channels/:channelId/unarchive', async (req, res) => {
    noBody(req);
    const channel = await setChannelArchived(deps.notifyChannel, currentUser(req).id, channelId(req.params.channelId), false);
    res.json({ channel: channel.toDto() });
  });

  router.post('/channels/:channelId/join', async (req, res) => {
    noBody(req);
    const channel = await joinChannel(deps, currentUser(req).id, channelId(req.params.channelId));
    res.json({ channel: channel.toDto() });
  });

  router.post('/channels/:channelId/leave', async (req, res) => {
    noBody(req);
    const channel = await leaveChannel(deps, currentUser(req).id, channelId(req.params.channelId));
    res.json({ channel: channel.toDto() });
  });

  router.get('/channels/:channelId/members', async (req, res) => {
    const id = channelId(req.params.channelId);
    await sendPage(req, res, 'members', timeIdCursor, (page) => listChannelMembers(currentUser(req).id, id, page));
  });

  router.post('/channels/:channelId/members', async (req, res) => {
    const id = channelId(req.params.channelId);
    const { userId } = parse(addMemberSchema, req.body);
    const member = await addChannelMember(deps, currentUser(req).id, id, idParam(userId, 'User'));
    res.status(201).json({ member });
  });

  router.delete('/channels/:channelId/members/:userId', async (req, res) => {
    noBody(req);
    await removeChannelMember(deps, currentUser(req).id, channelId(req.params.channelId), idParam(req.params.userId, 'Member'));
    res.status(204).end();
  });

  router.get('/channels/:channelId/messages', async (req, res) => {
    const id = channelId(req.params.channelId);
    const query = parse(historySchema, { ...req.query });
    res.json(await listHistory(currentUser(req).id, id, query));
  });

  router.post('/channels/:channelId/messages', async (req, res) => {
    const id = channelId(req.params.channelId);
    const input = parse(sendSchema, req.body);
    const outcome = await sendMessage(deps.messaging, currentUser(req).id, {
      channelId: id,
      body: input.body,
      clientMsgId: input.clientMsgId ?? null,
      parentId: input.parentId ?? null,
    });
    res.status(201).json(answer(outcome));
  });

  const target = (req: Request, schema: Joi.ObjectSchema = changeSchema) => {
    const input = parse(schema, req.body ?? {});
    return {
      channelId: channelId(req.params.channelId),
      messageId: idParam(req.params.messageId, 'Message'),
      clientChangeId: input.clientChangeId as string | null,
      input,
    };
  };

  router.patch('/channels/:channelId/messages/:messageId', async (req, res) => {
    const { input, ...change } = target(req, editSchema);
    res.json(answer(await editMessage(deps.messaging, currentUser(req).id, { ...change, body: input.body as string })));
  });

  router.delete('/channels/:channelId/messages/:messageId', async (req, res) => {
    const { input: _input, ...change } = target(req);
    res.json(answer(await deleteMessage(deps.messaging, currentUser(req).id, change)));
  });

  router.get('/channels/:channelId/messages/:messageId/replies', async (req, res) => {
    const id = channelId(req.params.channelId);
    const parentId = idParam(req.params.messageId, 'Message');
    const query = parse(historySchema, { ...req.query });
    res.json(await listHistory(currentUser(req).id, id, query, parentId));
  });

  for (const [method, kind] of [
    ['put', 'reaction:add'],
    ['delete', 'reaction:remove'],
  ] as const) {
    router[method]('/channels/:channelId/messages/:messageId/reactions/:emoji', async (req, res) => {
      const { input: _input, ...change } = target(req);
      const emoji = req.params.emoji as string;
      res.json(answer(await reactToMessage(deps.messaging, currentUser(req).id, kind, { ...change, emoji })));
    });
  }

  router.post('/channels/:channelId/read', async (req, res) => {
    const id = channelId(req.params.channelId);
    const { seq } = parse(readSchema, req.body);
    res.json(await markRead(deps.notifyRead, currentUser(req).id, id, seq));
  });

  return router;
}
