/**
 * Tokens a test signs itself with the deployment's secret: by default exactly what the server issues
 * (HS256, iss, aud, a random jti, an hour's lifetime), and any claim or option can be overridden or
 * removed (`undefined`) to build the tokens the server must refuse.
 */
import { randomUUID } from 'node:crypto';
import jwt from 'jsonwebtoken';
import { TOKEN_AUDIENCE, TOKEN_ISSUER } from '../../server/auth.js';

export { TOKEN_AUDIENCE, TOKEN_ISSUER };

export function signToken(
  secret: string,
  userId: string,
  claims: Record<string, unknown> = {},
  algorithm: jwt.Algorithm = 'HS256',
): string {
  const now = Math.floor(Date.now() / 1000);
  const payload: Record<string, unknown> = {
    sub: userId,
    iss: TOKEN_ISSUER,
    aud: TOKEN_AUDIENCE,
    jti: randomUUID(),
    iat: now,
    exp: now + 3600,
    ...claims,
  };
  for (const key of Object.keys(payload)) if (payload[key] === undefined) delete payload[key];
  return jwt.sign(payload, secret, { algorithm, noTimestamp: !('iat' in payload) });
}
