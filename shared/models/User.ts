import { BaseModel } from './BaseModel.js';

export interface UserDto {
  id: string;
  email: string;
  displayName: string;
  createdAt: string;
}

export class User extends BaseModel {
  static override tableName = 'users';

  id!: string;
  email!: string;
  displayName!: string;
  passwordHash!: string;
  /** Tokens issued (JWT `iat`) before this instant are refused; set by a password change. */
  tokensValidAfter!: Date | null;
  createdAt!: Date;

  // The hash never leaves the database layer, even if a model is serialised by mistake.
  override $formatJson(json: Record<string, unknown>) {
    const out = super.$formatJson(json);
    delete out.passwordHash;
    return out;
  }

  toDto(): UserDto {
    return { id: this.id, email: this.email, displayName: this.displayName, createdAt: this.createdAt.toISOString() };
  }
}
