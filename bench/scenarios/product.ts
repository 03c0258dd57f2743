/**
 * Socket layouts and phase targets for the product: users seeded through REST, one socket spec per socket,
 * a designated sender per channel for warm-up messages, final seqs read back through REST.
 */
import type { RegisteredUser } from '../../test/support/api.js';
import type { LoadSpec, SocketSpec } from '../agents/protocol.js';
import type { BenchContext } from '../context.js';
import { lastSeqs, type SeededChannel, type Team } from '../seed.js';
import type { PhaseTarget } from './phase.js';

export interface Layout {
  team: Team;
  channels: SeededChannel[];
  sockets: SocketSpec[];
  /** Channel id → sockets receiving it. */
  receivers: Record<string, number>;
  /** One sender socket key per channel, for warm-up messages. */
  probeKeys: string[];
  senders: number;
  /** Receive-only users per channel whose sockets resume in the handshake; the others' are silent. */
  resuming: number;
}

let nextSenderIndex = 0;

/**
 * Every member opens `socketsPerUser` sockets, spread over `urls` in turn; the first `senders` members of each
 * channel send on their first socket. Every socket receives its channel, and no receiver ever emits: the
 * next `resuming` members' sockets declare the channel's mark in the handshake (`auth.resume`: replay, then
 * `sync:done`, then live), at most all receivers but one; the rest connect with their token only.
 * The channels are fresh (seq 0) when their sockets connect.
 */
export function layout(
  team: Team,
  channels: SeededChannel[],
  o: { urls: string[]; senders: number; socketsPerUser: number; resuming: number; tag: string },
): Layout {
  const resuming = Math.max(0, Math.min(o.resuming, ...channels.map((c) => c.members.length - o.senders - 1)));
  const sockets: SocketSpec[] = [];
  const receivers: Record<string, number> = {};
  const probeKeys: string[] = [];
  let senders = 0;
  for (const channel of channels) {
    receivers[channel.id] = channel.members.length * o.socketsPerUser;
    channel.members.forEach((member: RegisteredUser, m) => {
      for (let k = 0; k < o.socketsPerUser; k++) {
        const key = `${o.tag}-${member.user.id}-${k}`;
        const resumes = m >= o.senders && m < o.senders + resuming;
        const auth = resumes ? { token: member.token, resume: { [channel.id]: 0 } } : { token: member.token };
        const spec: SocketSpec = { key, url: o.urls[sockets.length % o.urls.length], auth, channels: [channel.id] };
        if (k === 0 && m < o.senders) {
          spec.send = { channelId: channel.id, index: nextSenderIndex++ };
          senders++;
          if (m === 0) probeKeys.push(key);
        }
        sockets.push(spec);
      }
    });
  }
  return { team, channels, sockets, receivers, probeKeys, senders, resuming };
}

export function productTarget(ctx: BenchContext, l: Layout, label: string, load: Omit<LoadSpec, 'phase'>): PhaseTarget {
  const phase = ctx.phaseId();
  const channelIds = l.channels.map((c) => c.id);
  return {
    label,
    pool: ctx.pool,
    receivers: l.receivers,
    probe: () => ctx.pool.probe(l.probeKeys, `${phase}w`),
    start: () => ctx.pool.load({ ...load, phase }),
    finals: () => lastSeqs(l.team.baseUrl, l.team.owner.token, channelIds),
    durationMs: load.durationMs,
    cpu: ctx.cpuGroups(),
    profiler: ctx.profiler,
  };
}
