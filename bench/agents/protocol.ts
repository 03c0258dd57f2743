import type { HistogramData } from '../lib/histogram.js';
import type { OrderCounts } from '../lib/orderCheck.js';
import type { ChangeKind } from '../../test/support/changes.js';

/**
 * What a socket does besides receiving, for the send→deliver breakdown. No receiver ever emits anything
 * (no `sync`, no read marks), as a dashboard or a bot:
 *  - silent: connects with just its token and gets live messages at once;
 *  - resuming: declares its marks in the handshake (`auth.resume`), so the front node replays what follows
 *    them, emits `sync:done`, then live; the agent counts it connected at `sync:done`;
 *  - sender: the socket of a sending user, which also receives its channel (its own messages included).
 */
export const RECEIVER_KINDS = ['silent', 'resuming', 'sender'] as const;
export type ReceiverKind = (typeof RECEIVER_KINDS)[number];

/** One client socket a load agent opens. */
export interface SocketSpec {
  /** Unique within the run. */
  key: string;
  url: string;
  /**
   * Socket.IO handshake auth: {token} or {token, resume: {channelId: lastSeq}} for the product, {rooms}
   * for the plain baseline servers.
   */
  auth: Record<string, unknown>;
  /** Channels whose `message:new` this socket receives; each is checked for order, gaps and duplicates. */
  channels: string[];
  /** Sockets that send: the channel they send to, and a run-wide sender index (part of every clientMsgId). */
  send?: { channelId: string; index: number };
}

export interface LoadSpec {
  /** closed: every sender keeps `window` sends unacked; open: each sends `ratePerSender`/s, at most `window` unacked. */
  mode: 'closed' | 'open';
  window: number;
  ratePerSender?: number;
  durationMs: number;
  bodyBytes: number;
  /** Makes this phase's clientMsgIds unique: the product deduplicates (user, clientMsgId) forever. */
  phase: string;
  /** Closed loop: each sender stops after this many sends (to stay within a per-user rate-limit budget). */
  maxSendsPerSender?: number;
  /**
   * Mixed phase: each op slot (a send of the other phases) is a send or a change, drawn with these weights
   * (see OpMix). Without it every op is a send.
   */
  mix?: OpMix;
}

/**
 * Weights of the op kinds of a mixed load (any scale; the default is 70/15/10/5). Changes target messages
 * sent earlier: edits and deletes only the sender's own, reactions any recent message of its channel
 * (reactions are adds and removes of the sender's own reactions, each a real change: no event-less no-ops).
 * A change with no message to target is a send instead.
 */
export interface OpMix {
  send: number;
  reaction: number;
  edit: number;
  delete: number;
}

/** The changes of the contract and the events they make, as the tests name them. */
export { CHANGE_EVENTS, CHANGE_KINDS, REV_EVENTS, type ChangeKind, type RevEvent } from '../../test/support/changes.js';

/**
 * One change acked by the product: the channel rev its ack reported (the message's `rev` after the change),
 * when it was (scheduled to be) made, µs, and its kind (index into CHANGE_KINDS). Receivers match the
 * events they got by (channel, rev) to time change → event.
 */
export type ChangeIssue = [rev: number, kind: number, sentAtUs: number];

/** What the changes of a phase did, per kind, as one agent measured them. */
export interface ChangeData {
  sent: number;
  acked: number;
  failed: number;
  errors: Record<string, number>;
  /** change → ack, µs (sender side). */
  ack: HistogramData;
  /** change → its event at every receiving socket of the channel, µs. */
  event: HistogramData;
}

/** Rev order at the receivers (mixed phase): every event kind of a channel, one gap-free rev sequence. */
export interface RevOrderCounts extends OrderCounts {
  /** Change events (not message:new) whose (channel, rev) no acked change of the run reported. */
  unmatched: number;
  /** Events whose kind is not the one the acked change at that rev should produce. */
  mismatched: number;
  /** Acks of changes that break the contract: not ok-shaped, no rev, or a message that does not show the change. */
  badAcks: number;
}

export interface AgentStats {
  sent: number;
  acked: number;
  failed: number;
  delivered: number;
  /** Sockets that dropped after connecting. */
  disconnects: number;
  /** Mixed phase: changes made and answered (sends are counted above only). */
  changesSent: number;
  changesSettled: number;
  /** Events of any kind received past the rev base, when the phase checks revs. */
  revEvents: number;
}

export interface AgentResult extends AgentStats {
  /** send → ack and send → deliver, µs, from the (scheduled) send time taken in the sending client. */
  ack: HistogramData;
  deliver: HistogramData;
  /** send → deliver split by what the receiving socket is (see ReceiverKind). */
  deliverBy: Record<ReceiverKind, HistogramData>;
  /**
   * send → the start of the worker's transaction that stored the message (its createdAt, PostgreSQL's
   * now()), µs on the wall clock at ms resolution: the part of send → ack spent before persisting (the
   * partition's previous batch, enqueue, pick-up).
   */
  persistStart: HistogramData;
  /** Open loop: how long after its scheduled time each send went out, µs (this agent's own lag). */
  sendLag: HistogramData;
  errors: Record<string, number>;
  order: OrderCounts;
  /** Acks whose seq is not above the seq of the same socket's previous send. */
  ackOrderViolations: number;
  /** Open loop: sends that went out more than 1 ms after their scheduled time because the window was full. */
  lateSends: number;
  firstSendUs: number;
  lastAckUs: number;
  lastDeliverUs: number;
  /** Mixed phase: per change kind. */
  changes: Record<ChangeKind, ChangeData>;
  /** Present when the phase checked revs. */
  revOrder?: RevOrderCounts;
}

export type AgentCommand =
  | { type: 'connect'; sockets: SocketSpec[]; concurrency: number }
  /** Per channel, the lowest of the highest seq each of the agent's sockets received (-1: one saw nothing). */
  | { type: 'watermarks' }
  /** Each listed sender socket sends one warm-up message; replies with the seq each got, by channel. */
  | { type: 'probe'; keys: string[]; phase: string }
  /**
   * Starts counting: seqs above `bases` are the run's. Resets counters and histograms. With `revBases`,
   * every socket also checks each channel's events of every kind for gap-free increasing revs above them.
   */
  | { type: 'arm'; bases: Record<string, number>; revBases?: Record<string, number> }
  | { type: 'load'; spec: LoadSpec }
  | { type: 'stop' }
  /** Per channel, the highest rev any of the agent's sender sockets got in an ack (sends and changes). */
  | { type: 'revs' }
  /** The changes this agent's senders made and got acked since arm, by channel. */
  | { type: 'issues' }
  /**
   * Ends the phase: `finalRevs` (with a rev check) are the channels' last revs; `issues` every agent's
   * acked changes, to time change → event at this agent's receivers.
   */
  | { type: 'collect'; finals: Record<string, number>; finalRevs?: Record<string, number>; issues?: Record<string, ChangeIssue[]> }
  /** GETs the URLs one after the other with the token, each timed; replies with TimedPage[] in order. */
  | { type: 'get'; urls: string[]; token: string }
  | { type: 'close' };

export type AgentRequest = { id: number } & AgentCommand;

export type AgentMessage =
  | { type: 'reply'; id: number; ok: true; result: unknown }
  | { type: 'reply'; id: number; ok: false; error: string }
  | { type: 'stats'; stats: AgentStats };

/** One timed GET of a history page (or any JSON): seqs are those of `messages` in the body, if any. */
export interface TimedPage {
  status: number;
  /** Request start to the last byte of the body, µs. */
  us: number;
  seqs: number[];
}
