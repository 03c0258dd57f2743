/**
 * Messages and channel events for the unit tests of the sequencer and of delivery: a message in the full
 * shape clients see, and an event of any kind at a given rev about it.
 */
import type { ChannelEvent, ChannelEventName } from '../../shared/events.js';
import type { MessageDto } from '../../shared/models/Message.js';

/** A message in its full current shape; `rev` defaults to its seq (created, never changed since). */
export function message(seq: number, channelId = 'c1', over: Partial<MessageDto> = {}): MessageDto {
  return {
    id: `${channelId}-${seq}`,
    channelId,
    seq,
    rev: seq,
    userId: 'u1',
    body: `message ${seq}`,
    clientMsgId: null,
    parentId: null,
    createdAt: new Date(1_700_000_000_000 + seq).toISOString(),
    editedAt: null,
    deleted: false,
    replyCount: 0,
    lastReplyAt: null,
    reactions: [],
    mentions: [],
    ...over,
  };
}

/** The `message:new` event of message `seq`, created at rev = seq. */
export function msg(seq: number, channelId = 'c1'): ChannelEvent {
  return { name: 'message:new', payload: message(seq, channelId) };
}

export const msgs = (seqs: number[], channelId = 'c1') => seqs.map((s) => msg(s, channelId));

/** An event of any kind at `rev`, about message `messageSeq` (default 1). */
export function ev(name: ChannelEventName, rev: number, channelId = 'c1', messageSeq = 1): ChannelEvent {
  const messageId = `${channelId}-${messageSeq}`;
  switch (name) {
    case 'message:new':
      return { name, payload: message(messageSeq, channelId, { rev }) };
    case 'message:updated':
      return { name, payload: { channelId, rev, message: message(messageSeq, channelId, { rev, body: `edited at ${rev}`, editedAt: new Date(1_700_000_100_000 + rev).toISOString() }) } };
    case 'message:deleted':
      return { name, payload: { channelId, rev, messageId, seq: messageSeq } };
    default:
      return { name, payload: { channelId, rev, messageId, emoji: 'thumbsup', userId: `u${rev}` } };
  }
}
