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
import { CHANNEL_NAME, CHANNEL_TOPIC, idParam, parse } from './validation.js';

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
    const channel = await setChannelArchived(deps.notifyChannel, currentUser(req).id, channelId(req.params.channelId), true);
    res.json({ channel: channel.toDto() });
  });

  router.post('/channels/:channelId/unarchive', async (req, res) => {
    const channel = await setChannelArchived(deps.notifyChannel, currentUser(req).id, channelId(req.params.channelId), false);
    res.json({ channel: channel.toDto() });
  });

  router.post('/channels/:channelId/join', async (req, res) => {
    const channel = await joinChannel(deps, currentUser(req).id, channelId(req.params.channelId));
    res.json({ channel: channel.toDto() });
  });

  router.post('/channels/:channelId/leave', async (req, res) => {
    const channel = await leaveChannel(deps, currentUser(req).id, channelId(req.params.channelId));
    res.json({ channel: channel.toDto() });
  });

  router.get('/channels/:channelId/members', async (req, res) => {
    res.json({ members: await listChannelMembers(currentUser(req).id, channelId(req.params.channelId)) });
  });

  router.post('/channels/:channelId/members', async (req, res) => {
    const id = channelId(req.params.channelId);
    const { userId } = parse(addMemberSchema, req.body);
    const member = await addChannelMember(deps, currentUser(req).id, id, idParam(userId, 'User'));
    res.status(201).json({ member });
  });

  router.delete('/channels/:channelId/members/:userId', async (req, res) => {
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
