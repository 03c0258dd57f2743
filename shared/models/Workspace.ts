import { BaseModel } from './BaseModel.js';

/** Highest first: owner > admin > member > guest. */
export const WORKSPACE_ROLES = ['owner', 'admin', 'member', 'guest'] as const;
export type WorkspaceRole = (typeof WORKSPACE_ROLES)[number];

export interface WorkspaceDto {
  id: string;
  name: string;
  createdAt: string;
}

export class Workspace extends BaseModel {
  static override tableName = 'workspaces';

  id!: string;
  name!: string;
  createdAt!: Date;

  toDto(): WorkspaceDto {
    return { id: this.id, name: this.name, createdAt: this.createdAt.toISOString() };
  }
}

export class WorkspaceMember extends BaseModel {
  static override tableName = 'workspace_members';
  static override get idColumn() {
    return ['workspace_id', 'user_id'];
  }

  workspaceId!: string;
  userId!: string;
  role!: WorkspaceRole;
  createdAt!: Date;
}
