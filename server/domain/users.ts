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
    .patch({ passwordHash, tokensValidAfter: cutoffAfter(new Date()) })
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
export async function lockUser(email: string): Promise<User> {
  const [user] = await User.query()
    .patch({ passwordHash: NO_PASSWORD, tokensValidAfter: cutoffAfter(new Date()) })
    .whereRaw('lower(email) = lower(?)', [email])
    .returning('*');
  if (!user) throw new NotFoundError('User');
  return user;
}
