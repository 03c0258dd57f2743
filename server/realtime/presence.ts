import { randomUUID } from 'node:crypto';
import type { Redis } from 'ioredis';
import { userRoom, type PresenceEvent, type PresenceStatus } from '../../shared/events.js';
import { ChannelMember, WorkspaceMember } from '../../shared/models/index.js';
import type { Logger } from '../../shared/logger.js';
import Joi, { UUID_PATTERN } from '../../shared/validation.js';
import { can } from '../../shared/policy.js';
import type { IoServer, IoSocket } from './types.js';

export type PresenceAck = { ok: true; presence: Record<string, PresenceStatus> };

/** Most users one `presence:subscribe` or `presence:unsubscribe` names. */
export const MAX_PRESENCE_USERS = 500;

export const presenceSchema = Joi.object<{ userIds: string[] }>({
  userIds: Joi.array().items(Joi.string().max(64)).max(MAX_PRESENCE_USERS).required(),
});

/**
 * A socket with at least this many packets waiting in its Engine.IO buffer is behind (a slow client, or a
 * polling client that has not come back for them): its presence events are dropped while it is, and only
 * the latest status of each user it missed is sent once the buffer flushes. Messages are never dropped.
 */
const BACKLOG_PACKETS = 64;
/** After a graceful stop, how long the node's users stay online for their clients to reconnect elsewhere. */
const RECONNECT_GRACE_MS = 5000;
/** Dead nodes one reaper call removes (each with all its users); the next call takes the rest. */
const REAP_BATCH = 10;

/*
 * Presence in Redis, under the configured prefix:
 * - `<p>:presence:nodes`: sorted set of live front nodes, scored with the time (Redis's clock, ms) after
 *   which a node that stopped heartbeating counts as dead;
 * - `<p>:presence:node:<node>`: set of the users with a socket on that node;
 * - `<p>:presence:user:<userId>`: set of the nodes the user has a socket on; the user is online while it
 *   is not empty.
 * The scripts change them and publish each status change on `<p>:presence` in the same step, so every
 * node hears a user's changes in the order they happened. Several keys per script: one Redis, not a cluster.
 */
const NOW = `local t = redis.call('TIME') local now = t[1] * 1000 + math.floor(t[2] / 1000)`;
const PUBLISH = `local function publish(prefix, user, status)
  redis.call('PUBLISH', prefix .. ':presence', cjson.encode({userId = user, status = status}))
end`;

/** ARGV: prefix, node, ms to live, '1' if the node must already be registered. -1: it was reaped. */
const HEARTBEAT = `${NOW}
local nodes = ARGV[1] .. ':presence:nodes'
if ARGV[4] == '1' and not redis.call('ZSCORE', nodes, ARGV[2]) then return -1 end
redis.call('ZADD', nodes, now + tonumber(ARGV[3]), ARGV[2])
return 0`;

/** ARGV: prefix, node, then pairs of userId and '1' (has a socket on the node) or '0'. -1: the node was reaped. */
const SET_USERS = `${PUBLISH}
local prefix, node = ARGV[1], ARGV[2]
if not redis.call('ZSCORE', prefix .. ':presence:nodes', node) then return -1 end
local here = prefix .. ':presence:node:' .. node
for i = 3, #ARGV, 2 do
  local user = ARGV[i]
  local key = prefix .. ':presence:user:' .. user
  if ARGV[i + 1] == '1' then
    redis.call('SADD', here, user)
    if redis.call('SADD', key, node) == 1 and redis.call('SCARD', key) == 1 then publish(prefix, user, 'online') end
  else
    redis.call('SREM', here, user)
    if redis.call('SREM', key, node) == 1 and redis.call('SCARD', key) == 0 then publish(prefix, user, 'offline') end
  end
end
return 0`;

/** ARGV: prefix. Removes nodes past their time with their users; returns how many. */
const REAP = `${NOW}
${PUBLISH}
local prefix = ARGV[1]
local nodes = prefix .. ':presence:nodes'
local dead = redis.call('ZRANGEBYSCORE', nodes, '-inf', now, 'LIMIT', 0, ${REAP_BATCH})
for _, node in ipairs(dead) do
  redis.call('ZREM', nodes, node)
  local here = prefix .. ':presence:node:' .. node
  for _, user in ipairs(redis.call('SMEMBERS', here)) do
    local key = prefix .. ':presence:user:' .. user
    if redis.call('SREM', key, node) == 1 and redis.call('SCARD', key) == 0 then publish(prefix, user, 'offline') end
  end
  redis.call('DEL', here)
end
return #dead`;

/**
 * This node's part of presence in Redis: which users have a socket here, kept alive by a heartbeat.
 *
 * A node that dies stops heartbeating; past its time (`ttlMs` after its last heartbeat, at most) any
 * live node's reaper removes it, and its users with no socket elsewhere go offline. Each process is a
 * node of its own (a fresh id), so a restarted node never touches what its previous life left: users who
 * reconnected elsewhere in between are online through it all. A node found reaped while alive (cut off
 * from Redis for longer than its TTL) takes a fresh id and registers its users again.
 */
class PresenceRegistry {
  private node = randomUUID();
  /** Sockets per user on this node: Redis is told only when a user's first arrives or last leaves. */
  private readonly local = new Map<string, number>();
  /** Users whose state Redis may have missed (a failed call): written again on the next tick. */
  private readonly dirty = new Set<string>();
  private timer: NodeJS.Timeout | undefined;
  private stopped = false;
  private reincarnating: Promise<void> | undefined;
  /** A tick that outlasts its interval (Redis slow) is not overlapped by the next. */
  private ticking = false;
  private readonly tickMs: number;

  constructor(private readonly deps: { redis: Redis; prefix: string; ttlMs: number; logger: Logger }) {
    // Six heartbeats per TTL: a node is declared dead only after missing several, and its time is
    // `ttlMs − tickMs` after its last heartbeat, so a reaper ticking as often finds it within `ttlMs`.
    this.tickMs = Math.max(100, Math.floor(deps.ttlMs / 6));
  }

  async start(): Promise<void> {
    await this.heartbeat(this.deps.ttlMs - this.tickMs, false);
    this.timer = setInterval(() => void this.tick(), this.tickMs);
    this.timer.unref();
    await this.reap();
  }

  /**
   * Stops heartbeating and leaves the node's users online for a short grace, for their clients to
   * reconnect to another node without going offline; the other nodes' reapers remove what is left.
   */
  async stop(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    clearInterval(this.timer);
    await this.heartbeat(Math.min(RECONNECT_GRACE_MS, this.deps.ttlMs), true).catch((err: unknown) => {
      this.deps.logger.warn({ err }, 'presence: could not shorten this node’s time; it expires with its TTL');
    });
  }

  async add(userId: string): Promise<void> {
    const count = (this.local.get(userId) ?? 0) + 1;
    this.local.set(userId, count);
    if (count === 1) await this.write([userId]);
  }

  async remove(userId: string): Promise<void> {
    const count = (this.local.get(userId) ?? 0) - 1;
    if (count > 0) return void this.local.set(userId, count);
    this.local.delete(userId);
    await this.write([userId]);
  }

  /** Each user's status, from Redis. */
  async statuses(userIds: string[]): Promise<Map<string, PresenceStatus>> {
    if (userIds.length === 0) return new Map();
    const results = await this.deps.redis.pipeline(userIds.map((u) => ['exists', this.userKey(u)])).exec();
    const statuses = new Map<string, PresenceStatus>();
    userIds.forEach((u, i) => {
      const [err, exists] = results![i];
      if (err) throw err;
      statuses.set(u, exists === 1 ? 'online' : 'offline');
    });
    return statuses;
  }

  private userKey(userId: string): string {
    return `${this.deps.prefix}:presence:user:${userId}`;
  }

  private async heartbeat(ttlMs: number, mustExist: boolean): Promise<number> {
    const result = await this.deps.redis.eval(HEARTBEAT, 0, this.deps.prefix, this.node, ttlMs, mustExist ? '1' : '0');
    return Number(result);
  }

  /** Tells Redis where `users` stand on this node now (absolute, so writing twice or late does no harm). */
  private async write(users: string[]): Promise<void> {
    if (this.stopped || users.length === 0) return;
    const node = this.node;
    const args = users.flatMap((u) => [u, this.local.has(u) ? '1' : '0']);
    try {
      const result = await this.deps.redis.eval(SET_USERS, 0, this.deps.prefix, node, ...args);
      if (Number(result) === -1 && node === this.node) await this.reincarnate();
    } catch (err) {
      for (const u of users) this.dirty.add(u);
      this.deps.logger.warn({ err, users: users.length }, 'presence: Redis missed a change; retried on the next heartbeat');
    }
  }

  private async tick(): Promise<void> {
    if (this.ticking) return;
    this.ticking = true;
    try {
      if ((await this.heartbeat(this.deps.ttlMs - this.tickMs, true)) === -1) await this.reincarnate();
      const retry = [...this.dirty];
      this.dirty.clear();
      for (let i = 0; i < retry.length; i += MAX_PRESENCE_USERS) await this.write(retry.slice(i, i + MAX_PRESENCE_USERS));
      await this.reap();
    } catch (err) {
      this.deps.logger.warn({ err }, 'presence: heartbeat failed');
    } finally {
      this.ticking = false;
    }
  }

  private async reap(): Promise<void> {
    while (!this.stopped && Number(await this.deps.redis.eval(REAP, 0, this.deps.prefix)) === REAP_BATCH);
  }

  /** This node was declared dead while alive: it registers again under a fresh id, with every local user. */
  private reincarnate(): Promise<void> {
    this.reincarnating ??= (async () => {
      this.node = randomUUID();
      this.deps.logger.warn({ node: this.node }, 'presence: this node was reaped while alive; registering its users again');
      try {
        await this.heartbeat(this.deps.ttlMs - this.tickMs, false);
        const users = [...this.local.keys()];
        for (let i = 0; i < users.length; i += MAX_PRESENCE_USERS) await this.write(users.slice(i, i + MAX_PRESENCE_USERS));
      } finally {
        this.reincarnating = undefined;
      }
    })();
    return this.reincarnating;
  }
}

/** What one socket follows. */
interface SocketWatch {
  users: Set<string>;
  /** Subscriptions being answered: changes heard meanwhile go into their ack, not out as events. */
  pending: Array<Map<string, PresenceStatus | undefined>>;
  /** Users whose change was dropped while the socket was behind: their latest status follows the next flush. */
  stale: Set<string>;
}

/** What Engine.IO keeps per connection and does not type publicly. */
interface EngineConnection {
  writeBuffer: unknown[];
  once(event: 'drain', listener: () => void): void;
}

/** Which of `userIds` the caller may follow: the members of their workspaces, to a guest those of their channels. */
async function visibleUsers(callerId: string, userIds: string[]): Promise<string[]> {
  if (userIds.length === 0) return [];
  const memberships = await WorkspaceMember.query().where('user_id', callerId).select('workspace_id', 'role');
  const everyone: string[] = [];
  const channelsOnly: string[] = [];
  for (const { workspaceId, role } of memberships) {
    const allowed = can({ userId: callerId, role }, 'workspace.members.listAll', { workspaceId }).allow;
    (allowed ? everyone : channelsOnly).push(workspaceId);
  }
  const visible = new Set<string>(memberships.length > 0 ? [callerId] : []);
  if (everyone.length > 0) {
    const rows = await WorkspaceMember.query().whereIn('workspace_id', everyone).whereIn('user_id', userIds).distinct('user_id');
    for (const row of rows) visible.add(row.userId);
  }
  if (channelsOnly.length > 0) {
    const rows = await ChannelMember.query()
      .alias('mine')
      .join('channels as c', 'c.id', 'mine.channel_id')
      .join('channel_members as theirs', 'theirs.channel_id', 'mine.channel_id')
      .where('mine.user_id', callerId)
      .whereIn('c.workspace_id', channelsOnly)
      .whereIn('theirs.user_id', userIds)
      .distinct('theirs.user_id as user_id');
    for (const row of rows) visible.add(row.userId);
  }
  return userIds.filter((u) => visible.has(u));
}

/**
 * Presence, subscription-based: a user is online while any of their sockets is connected to any front
 * node. A socket subscribes to the users it shows (`presence:subscribe`), gets their status in the ack,
 * and a `presence` event on each later change, for as long as it lives.
 *
 * Every node hears every change once (Redis pub/sub, published by the script that made it) and emits it
 * to its own sockets subscribed to that user.
 */
export function createPresence(deps: { io: IoServer; redis: Redis; subscriber: Redis; redisPrefix: string; ttlMs: number; logger: Logger }) {
  const { io } = deps;
  const { logger } = deps;
  const registry = new PresenceRegistry({ redis: deps.redis, prefix: deps.redisPrefix, ttlMs: deps.ttlMs, logger });
  const changes = `${deps.redisPrefix}:presence`;
  /** userId → this node's sockets subscribed to them. */
  const watchers = new Map<string, Set<IoSocket>>();
  /** The last status heard of each user watched here. */
  const last = new Map<string, PresenceStatus>();
  const watches = new Map<string, SocketWatch>();
  /** Sockets of this node counted in presence. */
  const tracked = new Set<string>();
  /** Counts recheck() calls: a subscription whose check overlapped one checks again (see subscribe). */
  let narrowings = 0;

  const engine = (socket: IoSocket) => socket.conn as unknown as EngineConnection;

  function deliver(userId: string, status: PresenceStatus): void {
    const sockets = watchers.get(userId);
    if (!sockets) return;
    last.set(userId, status);
    const ready: string[] = [];
    for (const socket of sockets) {
      const watch = watches.get(socket.id)!;
      const pending = watch.pending.find((p) => p.has(userId));
      if (pending) pending.set(userId, status);
      else if (engine(socket).writeBuffer.length >= BACKLOG_PACKETS) markStale(socket, watch, userId);
      else ready.push(socket.id);
    }
    // Serialised once for all of them.
    if (ready.length > 0) io.local.to(ready).emit('presence', { userId, status });
  }

  function markStale(socket: IoSocket, watch: SocketWatch, userId: string): void {
    if (watch.stale.size === 0) {
      engine(socket).once('drain', () => {
        const users = [...watch.stale];
        watch.stale.clear();
        for (const u of users) {
          const status = last.get(u);
          if (watch.users.has(u) && status) io.local.to(socket.id).emit('presence', { userId: u, status });
        }
      });
    }
    watch.stale.add(userId);
  }

  function watchOf(socket: IoSocket): SocketWatch {
    let watch = watches.get(socket.id);
    if (!watch) {
      watch = { users: new Set(), pending: [], stale: new Set() };
      watches.set(socket.id, watch);
      socket.once('disconnect', () => {
        unwatch(socket, [...watch!.users]);
        watches.delete(socket.id);
      });
    }
    return watch;
  }

  function unwatch(socket: IoSocket, userIds: string[]): void {
    const watch = watches.get(socket.id);
    for (const u of userIds) {
      watch?.users.delete(u);
      const sockets = watchers.get(u);
      sockets?.delete(socket);
      if (sockets?.size === 0) {
        watchers.delete(u);
        last.delete(u);
      }
    }
  }

  /** Drops the subscriptions of `socket` among `followed` that policy no longer allows its user. */
  async function dropDisallowed(socket: IoSocket, followed: string[]): Promise<void> {
    const allowed = new Set(await visibleUsers(socket.data.userId, followed));
    unwatch(socket, followed.filter((u) => !allowed.has(u)));
  }

  /** After the subscriber connection was lost (pub/sub drops what it missed meanwhile): every change since. */
  async function catchUp(): Promise<void> {
    const users = [...watchers.keys()];
    for (let i = 0; i < users.length; i += MAX_PRESENCE_USERS) {
      const statuses = await registry.statuses(users.slice(i, i + MAX_PRESENCE_USERS));
      for (const [u, status] of statuses) if (last.get(u) !== status) deliver(u, status);
    }
  }

  deps.subscriber.on('message', (channel: string, text: string) => {
    if (channel !== changes) return;
    const { userId, status } = JSON.parse(text) as PresenceEvent;
    deliver(userId, status);
  });
  let subscribed = false;
  deps.subscriber.on('ready', () => {
    if (!subscribed) return;
    catchUp().catch((err: unknown) => logger.warn({ err }, 'presence: catching up after a Redis reconnect failed'));
  });

  return {
    async start(): Promise<void> {
      await deps.subscriber.subscribe(changes);
      subscribed = true;
      await registry.start();
    },

    /** See PresenceRegistry.stop(): the node's users stay online a moment, for their clients to reconnect elsewhere. */
    stop: () => registry.stop(),

    /**
     * Counts the socket's user online on this node until the socket ends; resolves once Redis knows, so a
     * client that sees `connect` is online for everyone. Called during the handshake, so also a socket
     * that never gets to `connection` (its client left meanwhile) is let go, when its connection closes.
     */
    async track(socket: IoSocket): Promise<void> {
      const userId = socket.data.userId;
      tracked.add(socket.id);
      const release = () => {
        if (tracked.delete(socket.id)) void registry.remove(userId);
      };
      socket.once('disconnect', release);
      socket.conn.once('close', release);
      await registry.add(userId);
    },

    async subscribe(socket: IoSocket, value: { userIds: string[] }): Promise<PresenceAck> {
      const requested = [...new Set(value.userIds.filter((u) => UUID_PATTERN.test(u)).map((u) => u.toLowerCase()))];
      let users: string[];
      let seen: number;
      // A membership narrowed while the check ran may have been read before it committed, and its recheck
      // found nothing of this subscription yet to drop: check again.
      do {
        seen = narrowings;
        users = await visibleUsers(socket.data.userId, requested);
      } while (seen !== narrowings);
      if (!socket.connected) return { ok: true, presence: {} };
      const watch = watchOf(socket);
      const added = users.filter((u) => !watch.users.has(u));
      const pending = new Map<string, PresenceStatus | undefined>(users.map((u) => [u, undefined]));
      watch.pending.push(pending);
      for (const u of users) {
        watch.users.add(u);
        let sockets = watchers.get(u);
        if (!sockets) watchers.set(u, (sockets = new Set()));
        sockets.add(socket);
      }
      let statuses: Map<string, PresenceStatus>;
      try {
        statuses = await registry.statuses(users);
      } catch (err) {
        unwatch(socket, added);
        throw err;
      } finally {
        watch.pending.splice(watch.pending.indexOf(pending), 1);
      }
      const presence: Record<string, PresenceStatus> = {};
      for (const u of users) {
        // A change heard while Redis was asked is at least as new as its answer.
        const status = pending.get(u) ?? statuses.get(u)!;
        presence[u] = status;
        if (!last.has(u) && watchers.has(u)) last.set(u, status);
      }
      return { ok: true, presence };
    },

    /**
     * After `userId` may share fewer people (MembershipChange.narrowed): drops this node's subscriptions
     * that policy no longer allows, theirs to others and others' to them. Resolves when they are dropped.
     */
    async recheck(userId: string): Promise<void> {
      narrowings++;
      const theirs = [...(io.of('/').adapter.rooms.get(userRoom(userId)) ?? [])].flatMap((id) => {
        const socket = io.of('/').sockets.get(id);
        const watch = watches.get(id);
        return socket && watch && watch.users.size > 0 ? [{ socket, followed: [...watch.users] }] : [];
      });
      for (const { socket, followed } of theirs) await dropDisallowed(socket, followed);
      const followers = new Map<string, IoSocket[]>();
      for (const socket of watchers.get(userId) ?? []) {
        const owner = socket.data.userId;
        if (owner !== userId) followers.set(owner, [...(followers.get(owner) ?? []), socket]);
      }
      for (const [owner, sockets] of followers) {
        if ((await visibleUsers(owner, [userId])).length === 0) for (const socket of sockets) unwatch(socket, [userId]);
      }
    },

    /**
     * Every subscription of this node checked against policy again, for when membership changes may have
     * been missed (the adapter's subscription to Redis was lost and is back): what it no longer allows is
     * dropped. One read per subscribed socket.
     */
    async recheckAll(): Promise<void> {
      narrowings++;
      for (const [socketId, watch] of [...watches]) {
        const socket = io.of('/').sockets.get(socketId);
        const followed = [...watch.users];
        if (socket && followed.length > 0) await dropDisallowed(socket, followed);
      }
    },

    async unsubscribe(socket: IoSocket, value: { userIds: string[] }): Promise<{ ok: true }> {
      unwatch(socket, value.userIds.map((u) => u.toLowerCase()));
      return { ok: true };
    },
  };
}

export type Presence = ReturnType<typeof createPresence>;
