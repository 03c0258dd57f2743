import type { HistogramData } from '../lib/histogram.js';
import type { OrderCounts } from '../lib/orderCheck.js';

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
}

export interface AgentStats {
  sent: number;
  acked: number;
  failed: number;
  delivered: number;
  /** Sockets that dropped after connecting. */
  disconnects: number;
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
}

export type AgentCommand =
  | { type: 'connect'; sockets: SocketSpec[]; concurrency: number }
  /** Per channel, the lowest of the highest seq each of the agent's sockets received (-1: one saw nothing). */
  | { type: 'watermarks' }
  /** Each listed sender socket sends one warm-up message; replies with the seq each got, by channel. */
  | { type: 'probe'; keys: string[]; phase: string }
  /** Starts counting: seqs above `bases` are the run's. Resets counters and histograms. */
  | { type: 'arm'; bases: Record<string, number> }
  | { type: 'load'; spec: LoadSpec }
  | { type: 'stop' }
  | { type: 'collect'; finals: Record<string, number> }
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
