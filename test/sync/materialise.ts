/**
 * A client-side materialiser of a channel's message changes (docs/API.md, "Edits, deletes, reactions and threads"): it applies the
 * server → client events (`message:new`, `message:updated`, `message:deleted`, `reaction:added`,
 * `reaction:removed`) in rev order to a per-channel Map<messageId, message>, following the contract's
 * rules exactly, so that what a client ends up with can be compared, field by field, with the REST history.
 *
 * It also checks, while applying, what the contract promises about the stream itself: per channel the revs
 * arrive once, strictly increasing and without a gap (after a resume from rev n the first event is n+1), a
 * reply's creation and deletion are followed at once by its parent's `message:updated`, and each payload
 * agrees with what the client already has. Any breach throws a MaterialiseError.
 */
import { isDeepStrictEqual } from 'node:util';
import type { ChannelEvent, MessageDeleted, MessageUpdated, ReactionChanged } from '../../shared/events.js';
import type { MessageDto, ReactionDto } from '../../shared/models/Message.js';
import type { RevEvent } from '../support/changes.js';

/** The contract's shapes, as the product defines them (shared/), under the names this module uses. */
export type ReactionState = ReactionDto;
export type ChangeMessage = MessageDto;
export type MessageUpdatedEvent = MessageUpdated;
export type MessageDeletedEvent = MessageDeleted;
export type ReactionEvent = ReactionChanged;
export type ChangeEvent = ChannelEvent;


/** A resume point by rev, as `auth.resume` and `sync` take it. */
export interface RevPoint {
  rev: number;
}

/** The sync ack of one channel resumed by rev, or its refusal. */
export type RevSyncChannelAck = { replayed: number; latestRev: number; hasMore: boolean } | { error: { code: string; message?: string } };
export type RevSyncAck = { ok: true; channels: Record<string, RevSyncChannelAck> } | { ok: false; error: { code: string; message?: string } };
export interface RevSyncDone {
  channels: Record<string, RevSyncChannelAck>;
}

/** `userIds` lists at most this many users (count stays exact). */
export const REACTION_USERS_SHOWN = 50;

export class MaterialiseError extends Error {
  override name = 'MaterialiseError';
}

/** The fields a change never alters. */
const FIXED_FIELDS = ['id', 'channelId', 'seq', 'userId', 'clientMsgId', 'parentId', 'createdAt'] as const;

const show = (v: unknown) => JSON.stringify(v);

/** One channel as a client materialises it. */
export class ChannelState {
  /** The rev of the last event applied (0: nothing yet). */
  rev = 0;
  private readonly byId = new Map<string, ChangeMessage>();
  /** Per message, per emoji, the users with a current reaction, each with the rev they reacted at. */
  private readonly reactors = new Map<string, Map<string, Map<string, number>>>();
  /** After a reply was created or deleted: its parent, whose `message:updated` must be the very next event. */
  private parentDue: { parentId: string; cause: string } | null = null;
  /**
   * Messages that came with their content erased (body "") while not deleted: a replay of a message
   * deleted since. Each must be deleted by a later event.
   */
  private readonly erased = new Set<string>();
  /** How many events came with erased content (replays of messages deleted since). */
  erasedSeen = 0;
  /** Every event applied, one line each, for failure reports. */
  readonly log: string[] = [];

  constructor(readonly channelId: string) {}

  get size(): number {
    return this.byId.size;
  }

  get(id: string): ChangeMessage | undefined {
    const m = this.byId.get(id);
    return m && structuredClone(m);
  }

  /** Every message, sorted by seq, as copies. */
  snapshot(): ChangeMessage[] {
    return [...this.byId.values()].sort((a, b) => a.seq - b.seq).map((m) => structuredClone(m));
  }

  /** What is still owed once the stream has settled: a parent's update, the deletion of an erased message. */
  pending(): string[] {
    const out: string[] = [];
    if (this.parentDue) out.push(`the parent ${this.parentDue.parentId} still owes its message:updated after ${this.parentDue.cause}`);
    for (const id of this.erased) {
      if (!this.byId.get(id)?.deleted) out.push(`message ${id} came with its content erased (body "") but was never deleted`);
    }
    return out;
  }

  apply(name: RevEvent, payload: unknown): void {
    const p = payload as { channelId?: unknown; rev?: unknown } | null;
    const where = `${name} ${show(payload)}`;
    if (!p || typeof p !== 'object') this.fail(`${where}: not an object`);
    if (p.channelId !== this.channelId) this.fail(`${where}: for channel ${show(p.channelId)}, applied to ${this.channelId}`);
    const rev = p.rev;
    if (typeof rev !== 'number' || !Number.isInteger(rev)) this.fail(`${where}: rev is not an integer`);
    if (rev !== this.rev + 1) {
      this.fail(
        `${name} with rev ${rev} after rev ${this.rev}: expected rev ${this.rev + 1} (revs reach a socket once each, strictly increasing, without gaps)`,
      );
    }
    const due = this.parentDue;
    if (due) {
      const updated = name === 'message:updated' ? (payload as MessageUpdatedEvent).message?.id : undefined;
      if (updated !== due.parentId) {
        this.fail(`${name} at rev ${rev}: expected message:updated of the thread parent ${due.parentId} right after ${due.cause}`);
      }
      this.parentDue = null;
    }
    switch (name) {
      case 'message:new':
        this.created(payload as ChangeMessage);
        break;
      case 'message:updated':
        this.updated(payload as MessageUpdatedEvent);
        break;
      case 'message:deleted':
        this.deleted(payload as MessageDeletedEvent);
        break;
      case 'reaction:added':
      case 'reaction:removed':
        this.reacted(name, payload as ReactionEvent);
        break;
      default:
        this.fail(`unknown event ${name as string}`);
    }
    this.rev = rev;
  }

  private fail(message: string): never {
    throw new MaterialiseError(`channel ${this.channelId} at rev ${this.rev}: ${message}`);
  }

  private existing(id: unknown, what: string): ChangeMessage {
    const m = typeof id === 'string' ? this.byId.get(id) : undefined;
    if (!m) this.fail(`${what}: message ${show(id)} is unknown to this client (no message:new for it came before)`);
    return m;
  }

  /** `message:new`: the message as it was when created (its content erased if it was deleted since). */
  private created(m: ChangeMessage): void {
    const what = `message:new rev ${m.rev} ${show(m)}`;
    if (typeof m.id !== 'string') this.fail(`${what}: no id`);
    if (this.byId.has(m.id)) this.fail(`${what}: message ${m.id} was created before (a second message:new)`);
    // Seqs are gap-free per channel and taken in creation order, as revs are.
    if (m.seq !== this.byId.size + 1) this.fail(`${what}: seq ${m.seq}, expected ${this.byId.size + 1}`);
    if (m.deleted !== false || m.editedAt !== null || m.replyCount !== 0 || m.lastReplyAt !== null || !isDeepStrictEqual(m.reactions, [])) {
      this.fail(`${what}: not the message as it was when created (deleted false, editedAt null, no replies, no reactions)`);
    }
    if (!Array.isArray(m.mentions)) this.fail(`${what}: mentions is not an array`);
    if (m.body === '') {
      if (m.mentions.length > 0) this.fail(`${what}: erased body but mentions kept`);
      this.erased.add(m.id);
      this.erasedSeen++;
    }
    if (m.parentId !== null) {
      const parent = this.existing(m.parentId, `${what} (its parent)`);
      if (parent.parentId !== null || parent.deleted) this.fail(`${what}: its parent is ${parent.parentId !== null ? 'a reply' : 'deleted'}`);
      this.parentDue = { parentId: parent.id, cause: `the creation of its reply ${m.id} at rev ${m.rev}` };
    }
    this.byId.set(m.id, structuredClone(m));
    this.log.push(`r${m.rev} new #${m.seq}${m.parentId ? ` reply to #${this.byId.get(m.parentId)!.seq}` : ''} by ${m.userId.slice(0, 8)}`);
  }

  /** The thread of a top-level message as its replies here say: not deleted replies, newest createdAt. */
  private thread(id: string): { replyCount: number; lastReplyAt: string | null } {
    let replyCount = 0;
    let lastReplyAt: string | null = null;
    for (const m of this.byId.values()) {
      if (m.parentId !== id || m.deleted) continue;
      replyCount++;
      if (lastReplyAt === null || Date.parse(m.createdAt) > Date.parse(lastReplyAt)) lastReplyAt = m.createdAt;
    }
    return { replyCount, lastReplyAt };
  }

  /**
   * `message:updated` (an edit, or a thread parent's replyCount/lastReplyAt): takes the edited content and
   * the thread fields; reactions and `deleted` are the client's own (the payload must agree with them).
   */
  private updated(e: MessageUpdatedEvent): void {
    const u = e.message;
    const what = `message:updated rev ${e.rev} ${show(e)}`;
    if (!u || typeof u !== 'object') this.fail(`${what}: no message`);
    const local = this.existing(u.id, what);
    if (u.rev !== e.rev) this.fail(`${what}: message.rev ${u.rev} is not the event's rev ${e.rev}`);
    for (const f of FIXED_FIELDS) {
      if (u[f] !== local[f]) this.fail(`${what}: ${f} ${show(u[f])} differs from the client's ${show(local[f])}`);
    }
    if (u.deleted !== local.deleted) this.fail(`${what}: deleted ${u.deleted}, but the client has deleted ${local.deleted}`);
    const thread = this.thread(local.id);
    if (u.replyCount !== thread.replyCount || u.lastReplyAt !== thread.lastReplyAt) {
      this.fail(`${what}: replyCount ${u.replyCount}, lastReplyAt ${show(u.lastReplyAt)}; its replies here say ${show(thread)}`);
    }
    if (!Array.isArray(u.mentions) || !Array.isArray(u.reactions)) this.fail(`${what}: mentions or reactions not an array`);
    if (local.deleted) {
      if (u.body !== '' || u.mentions.length > 0 || u.reactions.length > 0) this.fail(`${what}: a deleted message with content`);
    } else if (u.body === '') {
      // Content erased: the message was deleted after this change (a replay); its deletion must follow.
      if (u.mentions.length > 0) this.fail(`${what}: erased body but mentions kept`);
      if (u.reactions.length > 0 && !isDeepStrictEqual(u.reactions, local.reactions)) {
        this.fail(`${what}: reactions ${show(u.reactions)}, but the client has ${show(local.reactions)}`);
      }
      this.erased.add(local.id);
      this.erasedSeen++;
    } else if (!isDeepStrictEqual(u.reactions, local.reactions)) {
      this.fail(`${what}: reactions ${show(u.reactions)}, but the client has ${show(local.reactions)}`);
    }
    this.byId.set(local.id, {
      ...local,
      body: u.body,
      mentions: [...u.mentions],
      editedAt: u.editedAt,
      replyCount: thread.replyCount,
      lastReplyAt: thread.lastReplyAt,
      rev: e.rev,
    });
    this.log.push(`r${e.rev} updated #${local.seq}${u.editedAt !== local.editedAt ? ' (edit)' : ''} replies ${thread.replyCount}`);
  }

  /** `message:deleted`: body "", mentions [], reactions [], deleted true, rev = the event's; seq and id stay. */
  private deleted(e: MessageDeletedEvent): void {
    const what = `message:deleted ${show(e)}`;
    const local = this.existing(e.messageId, what);
    if (local.deleted) this.fail(`${what}: message #${local.seq} was deleted before`);
    if (e.seq !== local.seq) this.fail(`${what}: seq ${e.seq}, the message has seq ${local.seq}`);
    this.reactors.delete(local.id);
    this.byId.set(local.id, { ...local, body: '', mentions: [], reactions: [], deleted: true, rev: e.rev });
    if (local.parentId !== null) this.parentDue = { parentId: local.parentId, cause: `the deletion of its reply ${local.id} at rev ${e.rev}` };
    this.log.push(`r${e.rev} deleted #${local.seq}`);
  }

  /**
   * `reaction:added` / `reaction:removed`: one user's reaction with one emoji comes or goes (each only when
   * it changes something: no event for a second add or a missing removal); the message takes the event's rev.
   */
  private reacted(name: 'reaction:added' | 'reaction:removed', e: ReactionEvent): void {
    const what = `${name} ${show(e)}`;
    const local = this.existing(e.messageId, what);
    if (local.deleted) this.fail(`${what}: message #${local.seq} is deleted`);
    if (typeof e.emoji !== 'string' || typeof e.userId !== 'string') this.fail(`${what}: emoji or userId missing`);
    let byEmoji = this.reactors.get(local.id);
    if (!byEmoji) this.reactors.set(local.id, (byEmoji = new Map()));
    let users = byEmoji.get(e.emoji);
    if (!users) byEmoji.set(e.emoji, (users = new Map()));
    if (name === 'reaction:added') {
      if (users.has(e.userId)) this.fail(`${what}: that user already reacts with ${e.emoji} (since rev ${users.get(e.userId)})`);
      users.set(e.userId, e.rev);
    } else {
      if (!users.has(e.userId)) this.fail(`${what}: that user has no ${e.emoji} reaction to remove`);
      users.delete(e.userId);
      if (users.size === 0) byEmoji.delete(e.emoji);
    }
    this.byId.set(local.id, { ...local, reactions: reactionsOf(byEmoji), rev: e.rev });
    this.log.push(`r${e.rev} ${name === 'reaction:added' ? '+' : '-'}${e.emoji} #${local.seq} by ${e.userId.slice(0, 8)}`);
  }
}

/**
 * The contract's reactions: one entry per emoji with a reactor, ordered by the rev of the oldest current
 * reaction of that emoji; userIds by the rev each reacted, at most REACTION_USERS_SHOWN; count exact.
 */
export function reactionsOf(byEmoji: Map<string, Map<string, number>>): ReactionState[] {
  return [...byEmoji]
    .filter(([, users]) => users.size > 0)
    .map(([emoji, users]) => {
      const ordered = [...users].sort((a, b) => a[1] - b[1]);
      return { emoji, oldest: ordered[0][1], count: users.size, userIds: ordered.slice(0, REACTION_USERS_SHOWN).map(([u]) => u) };
    })
    .sort((a, b) => a.oldest - b.oldest)
    .map(({ emoji, count, userIds }) => ({ emoji, count, userIds }));
}

/** A client's channels, each materialised on its own. */
export class Materialiser {
  readonly channels = new Map<string, ChannelState>();

  constructor(channelIds: string[]) {
    for (const id of channelIds) this.channels.set(id, new ChannelState(id));
  }

  channel(id: string): ChannelState {
    const state = this.channels.get(id);
    if (!state) throw new MaterialiseError(`channel ${id} is not followed by this client`);
    return state;
  }

  /** Routes one event to its channel; an event of a channel the client does not follow is an error. */
  apply(name: RevEvent, payload: unknown): void {
    const channelId = (payload as { channelId?: unknown } | null)?.channelId;
    const state = typeof channelId === 'string' ? this.channels.get(channelId) : undefined;
    if (!state) throw new MaterialiseError(`${name} for channel ${show(channelId)}, which this client does not follow: ${show(payload)}`);
    state.apply(name, payload);
  }

  /** Where to resume every channel from: the last rev applied. */
  resumePoints(): Record<string, RevPoint> {
    return Object.fromEntries([...this.channels].map(([id, s]) => [id, { rev: s.rev }]));
  }

  revs(): Record<string, number> {
    return Object.fromEntries([...this.channels].map(([id, s]) => [id, s.rev]));
  }
}
