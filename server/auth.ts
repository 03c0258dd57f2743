import jwt from 'jsonwebtoken';
import passport from 'passport';
import { ExtractJwt, Strategy as JwtStrategy } from 'passport-jwt';
import type { Config } from '../shared/config.js';
import { UnauthorizedError } from '../shared/errors.js';
import { User } from '../shared/models/index.js';

/** Pinned: a token signed with any other algorithm (including "none") is refused. */
const ALGORITHM = 'HS256' as const;

export interface TokenService {
  sign(userId: string): string;
  /** The user a valid, unexpired token names, or UnauthorizedError. */
  authenticate(token: unknown): Promise<User>;
  passport: passport.PassportStatic;
}

export function createTokenService(config: Config): TokenService {
  const secret = config.jwt.secret;

  async function userFor(sub: unknown): Promise<User> {
    if (typeof sub !== 'string' || !/^[0-9a-f-]{36}$/i.test(sub)) throw new UnauthorizedError();
    const user = await User.query().findById(sub);
    if (!user) throw new UnauthorizedError();
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

  return {
    sign(userId) {
      return jwt.sign({}, secret, {
        algorithm: ALGORITHM,
        subject: userId,
        expiresIn: config.jwt.expiresIn as jwt.SignOptions['expiresIn'],
      });
    },
    async authenticate(token) {
      if (typeof token !== 'string' || token.length === 0 || token.length > 4096) throw new UnauthorizedError();
      let payload: jwt.JwtPayload | string;
      try {
        payload = jwt.verify(token, secret, { algorithms: [ALGORITHM] });
      } catch {
        throw new UnauthorizedError();
      }
      return userFor(typeof payload === 'string' ? undefined : payload.sub);
    },
    passport: instance as unknown as passport.PassportStatic,
  };
}
