import bcrypt from 'bcrypt';
import { ConflictError, InvalidCredentialsError, NotFoundError } from '../../shared/errors.js';
import { isUniqueViolation } from '../../shared/db.js';
import { User } from '../../shared/models/index.js';
import { cutoffAfter } from '../auth.js';

// Compared against when the email is unknown, so a login takes as long whether or not the account exists:
// one bcrypt.compare either way, against a hash of the same cost as the users' (BCRYPT_ROUNDS).
const dummyHashes = new Map<number, string>();
function dummyHash(rounds: number): string {
  let hash = dummyHashes.get(rounds);
  if (!hash) {
    hash = bcrypt.hashSync('not-a-real-password', rounds);
    dummyHashes.set(rounds, hash);
  }
  return hash;
}

/**
 * The token cut-off of a password change: the next whole second, and past the previous cut-off too. A
 * token issued right after a change carries that change's cut-off as its `iat` (up to a second ahead), so
 * a second change within the same second must move past it to refuse that token as well.
 */
function nextCutoff() {
  return User.raw("greatest(?::timestamptz, tokens_valid_after + interval '1 second')", [cutoffAfter(new Date())]);
}

export async function registerUser(
  input: { email: string; password: string; displayName: string },
  bcryptRounds: number,
): Promise<User> {
  const passwordHash = await bcrypt.hash(input.password, bcryptRounds);
  try {
    return await User.query().insert({ email: input.email, displayName: input.displayName, passwordHash }).returning('*');
  } catch (err) {
    if (isUniqueViolation(err, 'users_email_lower_unique')) throw new ConflictError('Email is already registered');
    throw err;
  }
}

export async function verifyCredentials(email: string, password: string, bcryptRounds = 10): Promise<User> {
  const user = await User.query().whereRaw('lower(email) = lower(?)', [email]).first();
  const ok = await bcrypt.compare(password, user?.passwordHash ?? dummyHash(bcryptRounds));
  if (!user || !ok) throw new InvalidCredentialsError();
  return user;
}

/**
 * Replaces the password after checking the current one (read afresh, not from a cache), and moves the
 * user's token cut-off past now: every token issued so far is refused from then on. Resolves with the
 * updated user, whose `tokensValidAfter` the caller's new token is issued at.
 */
export async function changePassword(
  userId: string,
  input: { currentPassword: string; newPassword: string },
  bcryptRounds: number,
): Promise<User> {
  const user = await User.query().findById(userId);
  if (!user || !(await bcrypt.compare(input.currentPassword, user.passwordHash))) throw new InvalidCredentialsError();
  const passwordHash = await bcrypt.hash(input.newPassword, bcryptRounds);
  // Only over the hash just checked: a concurrent change wins, and this one must prove the password again.
  const [updated] = await User.query()
    .patch({ passwordHash, tokensValidAfter: nextCutoff() })
    .where({ id: userId, password_hash: user.passwordHash })
    .returning('*');
  if (!updated) throw new InvalidCredentialsError();
  return updated;
}

/** No bcrypt hash: every password compared against it fails, as a wrong one does. */
const NO_PASSWORD = '!';

/**
 * Locks a user out (a stolen account, a person who left): no password logs them in from now on, and every
 * token issued so far is refused from the cut-off on. Their messages, reactions and memberships stay.
 * Resolves with the updated user, whose `tokensValidAfter` is the cut-off.
 */
export function lockUser(email: string): Promise<User> {
  return replacePassword(email, NO_PASSWORD);
}

/**
 * An operator sets a user's password (one who forgot it, or was locked out and may come back): every token
 * issued so far is refused from the cut-off on, as after a password change.
 */
export async function setPassword(email: string, password: string, bcryptRounds: number): Promise<User> {
  return replacePassword(email, await bcrypt.hash(password, bcryptRounds));
}

async function replacePassword(email: string, passwordHash: string): Promise<User> {
  const [user] = await User.query()
    .patch({ passwordHash, tokensValidAfter: nextCutoff() })
    .whereRaw('lower(email) = lower(?)', [email])
    .returning('*');
  if (!user) throw new NotFoundError('User');
  return user;
}
