import { io, type Socket } from 'socket.io-client';
import type { MessageDto } from '../../shared/models/Message.js';
import type { SendOutcome } from '../../shared/queues.js';

/** Untyped on purpose: tests also emit malformed payloads. */
export type ClientSocket = Socket;

const open = new Set<ClientSocket>();

/**
 * How a test socket reaches the server:
 * - `websocket`: WebSocket only, no HTTP long-polling (what the tests used to use everywhere);
 * - `polling`: HTTP long-polling only, what browsers behind proxies that block WebSocket use all the time;
 * - `default`: socket.io-client's own defaults, as in the README: long-polling first, then the upgrade to
 *   WebSocket. This is what most users run.
 */
export const TRANSPORTS = ['websocket', 'polling', 'default'] as const;
export type Transport = (typeof TRANSPORTS)[number];

export interface ConnectOptions {
  /** Default `websocket`. */
  transport?: Transport;
  /** How long to wait for `connect` (or `connect_error`); default 10 s. */
  timeoutMs?: number;
}

function settings(options: ConnectOptions | number | undefined): { transport: Transport; timeoutMs: number } {
  const o = typeof options === 'number' ? { timeoutMs: options } : (options ?? {});
  return { transport: o.transport ?? 'websocket', timeoutMs: o.timeoutMs ?? 10_000 };
}

function options(auth: Record<string, unknown>, transport: Transport) {
  return {
    auth,
    // `default` passes no `transports` at all: exactly what a client with socket.io-client's defaults sends.
    ...(transport === 'default' ? {} : { transports: [transport] }),
    forceNew: true,
    // A dropped socket stays dropped: a test must see a disconnect, not a silent reconnect.
    reconnection: false,
    timeout: 10_000,
  };
}

/**
 * Connects (over `options.transport`, websocket by default); resolves once connected, rejects with the
 * connect_error. Tracked for disconnectAll(). A number as third argument is the timeout, as before.
 */
export function connect(url: string, token: string, connectOptions: ConnectOptions | number = {}): Promise<ClientSocket> {
  const { transport, timeoutMs } = settings(connectOptions);
  const socket = io(url, options({ token }, transport));
  open.add(socket);
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      socket.close();
      reject(new Error(`socket (${transport}) to ${url} did not connect within ${timeoutMs} ms`));
    }, timeoutMs);
    socket.once('connect', () => {
      clearTimeout(timer);
      resolve(socket);
    });
    socket.once('connect_error', (err) => {
      clearTimeout(timer);
      socket.close();
      reject(err);
    });
  });
}

/**
 * connect(), and over the default transports, also waits for the upgrade to WebSocket: until then the
 * socket's polling transport is busy between polls, and volatile events (typing) are dropped for it.
 */
export async function connectUpgraded(url: string, token: string, transport: Transport = 'websocket'): Promise<ClientSocket> {
  const socket = await connect(url, token, { transport });
  if (transport === 'default') await waitFor(() => socket.io.engine.transport.name === 'websocket', 10_000, () => 'no upgrade to WebSocket');
  return socket;
}

/**
 * Connects with `auth` as given (over `options.transport`, websocket by default) and resolves with the
 * connect_error; rejects if the socket connects instead.
 */
export function connectError(url: string, auth: Record<string, unknown>, connectOptions: ConnectOptions | number = {}): Promise<Error> {
  const { transport, timeoutMs } = settings(connectOptions);
  const socket = io(url, options(auth, transport));
  open.add(socket);
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      socket.close();
      reject(new Error(`socket (${transport}) to ${url} neither connected nor failed within ${timeoutMs} ms`));
    }, timeoutMs);
    socket.once('connect', () => {
      clearTimeout(timer);
      socket.close();
      reject(new Error('socket connected although it should have been refused'));
    });
    socket.once('connect_error', (err) => {
      clearTimeout(timer);
      socket.close();
      resolve(err);
    });
  });
}

/** Closes every socket connect() opened and is still open. */
export function disconnectAll(): void {
  for (const socket of open) socket.close();
  open.clear();
}

/** `message:send` with an ack, rejecting after `timeoutMs` without one. */
export async function send(socket: ClientSocket, payload: unknown, timeoutMs = 15_000): Promise<SendOutcome> {
  return (await socket.timeout(timeoutMs).emitWithAck('message:send', payload)) as SendOutcome;
}

/** Like send(), but fails the test unless the send was accepted; resolves with the stored message. */
export async function sendOk(socket: ClientSocket, payload: unknown, timeoutMs = 15_000): Promise<MessageDto> {
  const outcome = await send(socket, payload, timeoutMs);
  if (!outcome.ok) throw new Error(`send refused: ${JSON.stringify(outcome.error)} for ${JSON.stringify(payload)}`);
  return outcome.message;
}

/** Records every `message:new` a socket receives, per channel, in arrival order. */
export class Collector {
  readonly all: MessageDto[] = [];
  private readonly byChannel = new Map<string, MessageDto[]>();

  constructor(readonly socket: ClientSocket) {
    socket.on('message:new', (message: MessageDto) => {
      this.all.push(message);
      const list = this.byChannel.get(message.channelId) ?? [];
      list.push(message);
      this.byChannel.set(message.channelId, list);
    });
  }

  /** Messages received for `channelId`, in arrival order (a live view). */
  of(channelId: string): MessageDto[] {
    let list = this.byChannel.get(channelId);
    if (!list) {
      list = [];
      this.byChannel.set(channelId, list);
    }
    return list;
  }

  /** Seqs received for `channelId`, in arrival order. */
  seqs(channelId: string): number[] {
    return this.of(channelId).map((m) => m.seq);
  }

  count(channelId?: string): number {
    return channelId === undefined ? this.all.length : this.of(channelId).length;
  }
}

export const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

/** Polls `predicate` every `intervalMs` until it is true; rejects after `timeoutMs`, with `describe()` if given. */
export async function waitFor(
  predicate: () => boolean | Promise<boolean>,
  timeoutMs = 10_000,
  describe?: () => string,
  intervalMs = 25,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (await predicate()) return;
    if (Date.now() >= deadline) {
      throw new Error(`condition not met within ${timeoutMs} ms${describe ? `: ${describe()}` : ''}`);
    }
    await sleep(intervalMs);
  }
}

/** 1..n */
export function range(n: number, from = 1): number[] {
  return Array.from({ length: n }, (_, i) => from + i);
}
