import bcrypt from 'bcrypt';
import { ConflictError, InvalidCredentialsError } from '../../shared/errors.js';
import { isUniqueViolation } from '../../shared/db.js';
import { User } from '../../shared/models/index.js';

// Compared against when the email is unknown, so a login takes as long whether or not the account exists.
const DUMMY_HASH = bcrypt.hashSync('not-a-real-password', 10);

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

export async function verifyCredentials(email: string, password: string): Promise<User> {
  const user = await User.query().whereRaw('lower(email) = lower(?)', [email]).first();
  const ok = await bcrypt.compare(password, user?.passwordHash ?? DUMMY_HASH);
  if (!user || !ok) throw new InvalidCredentialsError();
  return user;
}
