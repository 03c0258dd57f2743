import jwt from 'jsonwebtoken';
import passport from 'passport';
import { ExtractJwt, Strategy as JwtStrategy } from 'passport-jwt';
import type { Config } from '../shared/config.js';
import { UnauthorizedError } from '../shared/errors.js';
import { User } from '../shared/models/index.js';

/** Pinned: a token signed with any other algorithm (including "none") is refused. */
const ALGORITHM = 'HS256' as const;
const USER_CACHE_MS = 30_000;
const USER_CACHE_SIZE = 10_000;
const MAX_TOKEN_LENGTH = 4096;

export interface TokenService {
  sign(userId: string): string;
  /** The user a valid, unexpired bearer token names (a socket's `auth.token`), or UnauthorizedError. */
  authenticate(token: unknown): Promise<User>;
  /** The same check for an HTTP request's `Authorization: Bearer` header. */
  authenticateRequest(req: object): Promise<User>;
}

export function createTokenService(config: Config): TokenService {
  const secret = config.jwt.secret;

  // Users are never deleted or edited through this API, so a user row read for a token stays valid for
  // a short while: most requests then skip a database round trip.
  const recent = new Map<string, { user: User; until: number }>();

  async function userFor(sub: unknown): Promise<User> {
    if (typeof sub !== 'string' || !/^[0-9a-f-]{36}$/i.test(sub)) throw new UnauthorizedError();
    const now = Date.now();
    const hit = recent.get(sub);
    if (hit && hit.until > now) return hit.user;
    const user = await User.query().findById(sub);
    if (!user) throw new UnauthorizedError();
    if (recent.size >= USER_CACHE_SIZE) recent.delete(recent.keys().next().value!);
    recent.set(sub, { user, until: now + USER_CACHE_MS });
    return user;
  }

  const instance = new passport.Passport();
  instance.use(
    new JwtStrategy(
      { jwtFromRequest: ExtractJwt.fromAuthHeaderAsBearerToken(), secretOrKey: secret, algorithms: [ALGORITHM] },
      (payload: { sub?: unknown }, done: (err: unknown, user?: User | false) => void) => {
        userFor(payload.sub).then(
          (user) => done(null, user),
          (err) => (err instanceof UnauthorizedError ? done(null, false) : done(err)),
        );
      },
    ),
  );

  /** The one verification path, REST and sockets alike: passport-jwt, algorithm pinned. */
  function verify(req: object): Promise<User> {
    return new Promise((resolve, reject) => {
      const authenticate = instance.authenticate('jwt', { session: false }, (err: unknown, user: User | false) => {
        if (err) reject(err);
        else if (!user) reject(new UnauthorizedError());
        else resolve(user);
      }) as (req: object, res: object, next: (err?: unknown) => void) => void;
      authenticate(req, {}, reject);
    });
  }

  return {
    sign(userId) {
      return jwt.sign({}, secret, {
        algorithm: ALGORITHM,
        subject: userId,
        expiresIn: config.jwt.expiresIn as jwt.SignOptions['expiresIn'],
      });
    },
    async authenticate(token) {
      if (typeof token !== 'string' || token.length === 0 || token.length > MAX_TOKEN_LENGTH) throw new UnauthorizedError();
      return verify({ headers: { authorization: `Bearer ${token}` } });
    },
    authenticateRequest: verify,
  };
}
