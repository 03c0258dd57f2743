import { fork, type ChildProcess } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { killOnExit } from '../../scripts/child-process.js';
import { Histogram } from '../lib/histogram.js';
import { addOrderCounts, noOrderErrors } from '../lib/orderCheck.js';
import {
  CHANGE_KINDS,
  RECEIVER_KINDS,
  type AgentCommand,
  type AgentMessage,
  type AgentResult,
  type AgentStats,
  type ChangeIssue,
  type ChangeKind,
  type LoadSpec,
  type ReceiverKind,
  type RevOrderCounts,
  type SocketSpec,
  type TimedPage,
} from './protocol.js';

const REPO_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const AGENT_ENTRY = path.join('bench', 'agents', 'agent.ts');

interface Agent {
  child: ChildProcess;
  pending: Map<number, { resolve: (v: unknown) => void; reject: (e: Error) => void }>;
  stats: AgentStats;
  keys: Set<string>;
  disarm: () => void;
}

const emptyStats = (): AgentStats => ({ sent: 0, acked: 0, failed: 0, delivered: 0, disconnects: 0, changesSent: 0, changesSettled: 0, revEvents: 0 });

/** One change kind of a phase, every agent merged. */
export interface PoolChange {
  sent: number;
  acked: number;
  failed: number;
  errors: Record<string, number>;
  ack: Histogram;
  event: Histogram;
}

/** Merged results of every agent for one phase. */
export interface PoolResult {
  sent: number;
  acked: number;
  failed: number;
  delivered: number;
  disconnects: number;
  ack: Histogram;
  deliver: Histogram;
  deliverBy: Record<ReceiverKind, Histogram>;
  persistStart: Histogram;
  sendLag: Histogram;
  errors: Record<string, number>;
  order: { violations: number; gaps: number; duplicates: number; ackOrder: number };
  lateSends: number;
  firstSendUs: number;
  lastAckUs: number;
  lastDeliverUs: number;
  /** Mixed phase: per change kind (all zero otherwise). */
  changes: Record<ChangeKind, PoolChange>;
  /** When the phase checked revs. */
  revOrder?: RevOrderCounts;
}

/**
 * The load generator's processes: `size` forked agents; sockets are spread over them round-robin, and every
 * command goes to all of them (or to the ones owning the named sockets).
 */
export class AgentPool {
  private readonly agents: Agent[] = [];
  private nextId = 1;

  private constructor() {}

  static async start(size: number): Promise<AgentPool> {
    const pool = new AgentPool();
    for (let i = 0; i < size; i++) pool.agents.push(pool.spawn());
    return pool;
  }

  get pids(): number[] {
    return this.agents.map((a) => a.child.pid!);
  }

  private spawn(): Agent {
    const child = fork(AGENT_ENTRY, [], {
      cwd: REPO_ROOT,
      execArgv: ['--import', 'tsx'],
      stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
    });
    const agent: Agent = { child, pending: new Map(), stats: emptyStats(), keys: new Set(), disarm: killOnExit(child.pid!, 'SIGKILL') };
    child.on('message', (message: AgentMessage) => {
      if (message.type === 'stats') {
        agent.stats = message.stats;
        return;
      }
      const waiter = agent.pending.get(message.id);
      agent.pending.delete(message.id);
      if (message.ok) waiter?.resolve(message.result);
      else waiter?.reject(new Error(`load agent ${child.pid}: ${message.error}`));
    });
    child.on('exit', (code, signal) => {
      agent.disarm();
      for (const waiter of agent.pending.values()) waiter.reject(new Error(`load agent ${child.pid} exited (${signal ?? code})`));
      agent.pending.clear();
    });
    return agent;
  }

  private call<T>(agent: Agent, command: AgentCommand): Promise<T> {
    const id = this.nextId++;
    return new Promise<T>((resolve, reject) => {
      agent.pending.set(id, { resolve: resolve as (v: unknown) => void, reject });
      agent.child.send({ id, ...command }, (err) => {
        if (err) {
          agent.pending.delete(id);
          reject(err);
        }
      });
    });
  }

  private all<T>(command: AgentCommand): Promise<T[]> {
    return Promise.all(this.agents.map((a) => this.call<T>(a, command)));
  }

  /** Starts one more agent; its index is for connect()'s `on`. */
  addAgent(): number {
    this.agents.push(this.spawn());
    return this.agents.length - 1;
  }

  /**
   * Connects the sockets, spread over the agents (or only those listed in `on`), `concurrency` connects
   * at a time per agent.
   */
  async connect(sockets: SocketSpec[], concurrency = 25, on?: number[]): Promise<void> {
    const share: SocketSpec[][] = this.agents.map(() => []);
    const targets = on ?? this.agents.map((_, i) => i);
    sockets.forEach((spec, i) => share[targets[i % targets.length]].push(spec));
    await Promise.all(
      this.agents.map((agent, i) => {
        for (const spec of share[i]) agent.keys.add(spec.key);
        return share[i].length > 0 ? this.call(agent, { type: 'connect', sockets: share[i], concurrency }) : undefined;
      }),
    );
  }

  /** Per channel, the lowest seq that every socket watching it has reached (-1: some socket saw none yet). */
  async watermarks(): Promise<Record<string, number>> {
    const low: Record<string, number> = {};
    for (const marks of await this.all<Record<string, number>>({ type: 'watermarks' })) {
      for (const [channelId, seq] of Object.entries(marks)) low[channelId] = Math.min(low[channelId] ?? Infinity, seq);
    }
    return low;
  }

  /** The named sender sockets each send one warm-up message; the highest acked seq per channel. */
  async probe(keys: string[], phase: string): Promise<Record<string, number>> {
    const seqs: Record<string, number> = {};
    await Promise.all(
      this.agents.map(async (agent) => {
        const mine = keys.filter((k) => agent.keys.has(k));
        if (mine.length === 0) return;
        const result = await this.call<Record<string, number>>(agent, { type: 'probe', keys: mine, phase });
        for (const [channelId, seq] of Object.entries(result)) seqs[channelId] = Math.max(seqs[channelId] ?? 0, seq);
      }),
    );
    return seqs;
  }

  /** With `revBases`, the sockets also check every event kind's revs (see RevCheck). */
  async arm(bases: Record<string, number>, revBases?: Record<string, number>): Promise<void> {
    await this.all({ type: 'arm', bases, revBases });
  }

  /** Per channel, the highest rev any sender's ack reported (the channel's latest once every op is answered). */
  async revs(): Promise<Record<string, number>> {
    const out: Record<string, number> = {};
    for (const marks of await this.all<Record<string, number>>({ type: 'revs' })) {
      for (const [channelId, rev] of Object.entries(marks)) out[channelId] = Math.max(out[channelId] ?? 0, rev);
    }
    return out;
  }

  async load(spec: LoadSpec): Promise<void> {
    await this.all({ type: 'load', spec });
  }

  async stopLoad(): Promise<void> {
    await this.all({ type: 'stop' });
  }

  /** The agents' latest pushed counters, summed (at most one stats interval old). */
  stats(): AgentStats {
    const total = emptyStats();
    for (const { stats } of this.agents) {
      total.sent += stats.sent;
      total.acked += stats.acked;
      total.failed += stats.failed;
      total.delivered += stats.delivered;
      total.disconnects += stats.disconnects;
      total.changesSent += stats.changesSent ?? 0;
      total.changesSettled += stats.changesSettled ?? 0;
      total.revEvents += stats.revEvents ?? 0;
    }
    return total;
  }

  /** Makes the next stats() start from zero until the agents push again (after arm). */
  resetStats(): void {
    for (const agent of this.agents) agent.stats = emptyStats();
  }

  /**
   * Ends the phase. With `finalRevs` (a rev-checked phase), every agent's acked changes are gathered first
   * and handed to every agent, whose receivers time change → event against them.
   */
  async collect(finals: Record<string, number>, finalRevs?: Record<string, number>): Promise<PoolResult> {
    let issues: Record<string, ChangeIssue[]> | undefined;
    if (finalRevs) {
      issues = {};
      for (const part of await this.all<Record<string, ChangeIssue[]>>({ type: 'issues' })) {
        for (const [channelId, list] of Object.entries(part)) (issues[channelId] ??= []).push(...list);
      }
    }
    const results = await this.all<AgentResult>({ type: 'collect', finals, finalRevs, issues });
    const merged: PoolResult = {
      sent: 0,
      acked: 0,
      failed: 0,
      delivered: 0,
      disconnects: 0,
      ack: new Histogram(),
      deliver: new Histogram(),
      deliverBy: Object.fromEntries(RECEIVER_KINDS.map((k) => [k, new Histogram()])) as Record<ReceiverKind, Histogram>,
      persistStart: new Histogram(),
      sendLag: new Histogram(),
      errors: {},
      order: { ...noOrderErrors(), ackOrder: 0 },
      lateSends: 0,
      firstSendUs: Infinity,
      lastAckUs: 0,
      lastDeliverUs: 0,
      changes: Object.fromEntries(
        CHANGE_KINDS.map((k) => [k, { sent: 0, acked: 0, failed: 0, errors: {}, ack: new Histogram(), event: new Histogram() }]),
      ) as Record<ChangeKind, PoolChange>,
    };
    for (const r of results) {
      merged.sent += r.sent;
      merged.acked += r.acked;
      merged.failed += r.failed;
      merged.delivered += r.delivered;
      merged.disconnects += r.disconnects;
      merged.ack.merge(r.ack);
      merged.deliver.merge(r.deliver);
      for (const k of RECEIVER_KINDS) merged.deliverBy[k].merge(r.deliverBy[k]);
      merged.persistStart.merge(r.persistStart);
      merged.sendLag.merge(r.sendLag);
      for (const [code, n] of Object.entries(r.errors)) merged.errors[code] = (merged.errors[code] ?? 0) + n;
      merged.order = { ...addOrderCounts(merged.order, r.order), ackOrder: merged.order.ackOrder + r.ackOrderViolations };
      merged.lateSends += r.lateSends;
      if (r.firstSendUs > 0) merged.firstSendUs = Math.min(merged.firstSendUs, r.firstSendUs);
      merged.lastAckUs = Math.max(merged.lastAckUs, r.lastAckUs);
      merged.lastDeliverUs = Math.max(merged.lastDeliverUs, r.lastDeliverUs);
      for (const k of CHANGE_KINDS) {
        const from = r.changes?.[k];
        if (!from) continue;
        const to = merged.changes[k];
        to.sent += from.sent;
        to.acked += from.acked;
        to.failed += from.failed;
        for (const [code, n] of Object.entries(from.errors)) to.errors[code] = (to.errors[code] ?? 0) + n;
        to.ack.merge(from.ack);
        to.event.merge(from.event);
      }
      if (r.revOrder) {
        const a = merged.revOrder ?? { violations: 0, gaps: 0, duplicates: 0, unmatched: 0, mismatched: 0, badAcks: 0 };
        merged.revOrder = {
          violations: a.violations + r.revOrder.violations,
          gaps: a.gaps + r.revOrder.gaps,
          duplicates: a.duplicates + r.revOrder.duplicates,
          unmatched: a.unmatched + r.revOrder.unmatched,
          mismatched: a.mismatched + r.revOrder.mismatched,
          badAcks: a.badAcks + r.revOrder.badAcks,
        };
      }
    }
    if (merged.firstSendUs === Infinity) merged.firstSendUs = 0;
    this.resetStats();
    return merged;
  }

  /** Timed GETs from one agent, one after the other: latencies taken away from the bench's own event loop. */
  timedGets(urls: string[], token: string): Promise<TimedPage[]> {
    return this.call<TimedPage[]>(this.agents[0], { type: 'get', urls, token });
  }

  /** Closes every socket (the agents stay up for the next phase). */
  async disconnect(): Promise<void> {
    await this.all({ type: 'close' });
    for (const agent of this.agents) agent.keys.clear();
    this.resetStats();
  }

  async stop(): Promise<void> {
    await Promise.all(
      this.agents.map(
        (agent) =>
          new Promise<void>((resolve) => {
            if (agent.child.exitCode !== null || agent.child.signalCode !== null) return resolve();
            const timer = setTimeout(() => agent.child.kill('SIGKILL'), 5_000);
            agent.child.once('exit', () => {
              clearTimeout(timer);
              resolve();
            });
            agent.child.disconnect();
          }),
      ),
    );
  }
}
