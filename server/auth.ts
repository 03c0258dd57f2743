import { createHmac, randomUUID, timingSafeEqual } from 'node:crypto';
import type { Redis } from 'ioredis';
import { isRedisUnavailable } from '../shared/redis.js';
import jwt from 'jsonwebtoken';
import passport from 'passport';
import { ExtractJwt, Strategy as JwtStrategy } from 'passport-jwt';
import type { Config } from '../shared/config.js';
import { UnauthorizedError } from '../shared/errors.js';
import { User } from '../shared/models/index.js';

/** Pinned: a token signed with any other algorithm (including "none") is refused. */
const ALGORITHM = 'HS256' as const;
/** Set in every token and required of every token presented. */
export const TOKEN_ISSUER = 'slack-style-backend';
export const TOKEN_AUDIENCE = 'slack-style-api';
const MAX_TOKEN_LENGTH = 4096;
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

/** A verified token: who it names, its id and its validity (seconds since the epoch). */
export interface Session {
  readonly user: User;
  readonly jti: string;
  readonly iat: number;
  readonly exp: number;
}

/** Told when tokens are revoked, to disconnect their sockets on every front node. */
export interface RevocationListener {
  tokenRevoked(jti: string): void;
  userTokensRevoked(userId: string): void;
}

export interface TokenService {
  /** A fresh token for the user, never issued before the user's cut-off (`tokensValidAfter`). */
  sign(user: Pick<User, 'id' | 'tokensValidAfter'>): string;
  /** The session a valid, unexpired, unrevoked bearer token opens (a socket's `auth.token`), or UnauthorizedError. */
  authenticate(token: unknown): Promise<Session>;
  /** The same check for an HTTP request's `Authorization: Bearer` header. */
  authenticateRequest(req: object): Promise<Session>;
  /** Whether the session was revoked since it was authenticated (Redis only, no database read). */
  isRevoked(session: Session): Promise<boolean>;
  /** Logout: the session's token is refused from now on, on every front node; its sockets are disconnected. */
  revoke(session: Session): Promise<void>;
  /**
   * After a password change committed the user's new cut-off: every token issued before it is refused from
   * now on, on every front node; all the user's sockets are disconnected.
   */
  revokeIssuedBefore(userId: string, cutoff: Date): Promise<void>;
}

/** `JWT_EXPIRES_IN` (`900`, `15m`, `12h`, `7d`, `1500ms`) in whole seconds; a bare number is seconds. */
export function lifetimeSeconds(expiresIn: string): number {
  const match = /^(\d+)(ms|s|m|h|d)?$/.exec(expiresIn);
  if (!match) throw new Error(`not a duration: ${expiresIn}`);
  const n = Number(match[1]);
  const unit = match[2] ?? 's';
  const seconds = unit === 'ms' ? Math.ceil(n / 1000) : n * { s: 1, m: 60, h: 3600, d: 86_400 }[unit as 's' | 'm' | 'h' | 'd'];
  return Math.max(1, seconds);
}

/** The first whole second at which tokens are valid again after a cut-off at `at`: strictly after it. */
export function cutoffAfter(at: Date): Date {
  return new Date((Math.floor(at.getTime() / 1000) + 1) * 1000);
}

const seconds = (date: Date) => Math.floor(date.getTime() / 1000);

/**
 * Of the accepted secrets (the signing one first), the one whose HS256 signature `token` carries, else the
 * signing one, so that verification fails as it would have. Only picks the key: passport-jwt then verifies
 * the token with it, algorithm, issuer, audience and expiry pinned as always. Tokens carry no key id, so
 * tokens issued before a rotation need none: an HMAC per accepted secret (at most four) costs microseconds.
 */
export function secretFor(token: string, accepted: readonly string[]): string {
  const dot = token.lastIndexOf('.');
  if (accepted.length > 1 && dot > 0) {
    const given = Buffer.from(token.slice(dot + 1), 'base64url');
    const signed = token.slice(0, dot);
    for (const secret of accepted) {
      const mac = createHmac('sha256', secret).update(signed).digest();
      if (mac.length === given.length && timingSafeEqual(mac, given)) return secret;
    }
  }
  return accepted[0];
}

export function createTokenService(config: Config, deps: { redis: Redis; listener: RevocationListener }): TokenService {
  const secret = config.jwt.secret;
  const accepted = [secret, ...config.jwt.verifySecrets];
  const lifetime = lifetimeSeconds(config.jwt.expiresIn);
  const { redis } = deps;
  const revokedKey = (jti: string) => `${config.redis.prefix}:auth:revoked:${jti}`;
  const cutoffKey = (userId: string) => `${config.redis.prefix}:auth:valid-after:${userId}`;

  // Read at every authentication, never cached: a user deleted from the database (by an operator: the API
  // deletes no user) is refused at their next request, as a revoked token is (issue #10).
  async function userFor(sub: string): Promise<User> {
    const user = await User.query().findById(sub);
    if (!user) throw new UnauthorizedError();
    return user;
  }

  /**
   * One Redis round trip: the token's jti on the revocation list, or issued before its user's cut-off.
   * While Redis is unreachable, not revoked: reading history must keep working from PostgreSQL through a
   * Redis outage, and the cut-off of a password change is checked in PostgreSQL too (users.tokens_valid_after);
   * only a logout made before the outage goes unseen until Redis is back (docs/SECURITY.md).
   */
  async function revokedInRedis(userId: string, jti: string, iat: number): Promise<boolean> {
    let found: (string | null)[];
    try {
      found = await redis.mget(revokedKey(jti), cutoffKey(userId));
    } catch (err) {
      if (isRedisUnavailable(err)) return false;
      throw err;
    }
    const [revoked, cutoff] = found;
    return revoked !== null || (cutoff !== null && iat < Number(cutoff));
  }

  interface Claims {
    sub: string;
    jti: string;
    iat: number;
    exp: number;
  }

  function claimsOf(payload: Record<string, unknown>): Claims {
    const { sub, jti, iat, exp } = payload;
    // jsonwebtoken checks `exp` only when present: a token without one would never expire.
    if (typeof exp !== 'number' || typeof iat !== 'number' || !Number.isFinite(exp) || !Number.isFinite(iat)) {
      throw new UnauthorizedError();
    }
    if (typeof sub !== 'string' || !UUID.test(sub) || typeof jti !== 'string' || jti.length === 0 || jti.length > 64) {
      throw new UnauthorizedError();
    }
    return { sub, jti, iat, exp };
  }

  async function sessionFor(payload: Record<string, unknown>): Promise<Session> {
    const { sub, jti, iat, exp } = claimsOf(payload);
    const [revoked, user] = await Promise.all([revokedInRedis(sub, jti, iat), userFor(sub)]);
    if (revoked) throw new UnauthorizedError();
    if (user.tokensValidAfter && iat < seconds(user.tokensValidAfter)) throw new UnauthorizedError();
    return { user, jti, iat, exp };
  }

  const instance = new passport.Passport();
  instance.use(
    new JwtStrategy(
      {
        jwtFromRequest: ExtractJwt.fromAuthHeaderAsBearerToken(),
        secretOrKeyProvider: (_req: unknown, rawToken: string, done: (err: unknown, secret?: string) => void) => done(null, secretFor(rawToken, accepted)),
        algorithms: [ALGORITHM],
        issuer: TOKEN_ISSUER,
        audience: TOKEN_AUDIENCE,
      },
      (payload: Record<string, unknown>, done: (err: unknown, session?: Session | false) => void) => {
        sessionFor(payload ?? {}).then(
          (session) => done(null, session),
          (err) => (err instanceof UnauthorizedError ? done(null, false) : done(err)),
        );
      },
    ),
  );

  /** The one verification path, REST and sockets alike: passport-jwt, algorithm, issuer and audience pinned. */
  function verify(req: object): Promise<Session> {
    return new Promise((resolve, reject) => {
      const authenticate = instance.authenticate('jwt', { session: false }, (err: unknown, session: Session | false) => {
        if (err) reject(err);
        else if (!session) reject(new UnauthorizedError());
        else resolve(session);
      }) as (req: object, res: object, next: (err?: unknown) => void) => void;
      authenticate(req, {}, reject);
    });
  }

  return {
    sign(user) {
      // A token issued in the very second of a password change must not fall before the cut-off.
      const iat = Math.max(Math.floor(Date.now() / 1000), user.tokensValidAfter ? seconds(user.tokensValidAfter) : 0);
      return jwt.sign({ iat, exp: iat + lifetime }, secret, {
        algorithm: ALGORITHM,
        subject: user.id,
        issuer: TOKEN_ISSUER,
        audience: TOKEN_AUDIENCE,
        jwtid: randomUUID(),
      });
    },
    async authenticate(token) {
      if (typeof token !== 'string' || token.length === 0 || token.length > MAX_TOKEN_LENGTH) throw new UnauthorizedError();
      return verify({ headers: { authorization: `Bearer ${token}` } });
    },
    authenticateRequest: verify,
    isRevoked(session) {
      return revokedInRedis(session.user.id, session.jti, session.iat);
    },
    async revoke(session) {
      const ttl = Math.ceil(session.exp - Date.now() / 1000);
      if (ttl > 0) await redis.set(revokedKey(session.jti), '1', 'EX', ttl);
      deps.listener.tokenRevoked(session.jti);
    },
    async revokeIssuedBefore(userId, cutoff) {
      // Outlives every token issued before the cut-off, with a minute to spare for nodes whose clocks lag.
      await redis.set(cutoffKey(userId), String(seconds(cutoff)), 'EX', lifetime + 60);
      deps.listener.userTokensRevoked(userId);
    },
  };
}
