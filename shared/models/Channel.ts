import { BaseModel } from './BaseModel.js';

/** 'channel': named, public or private, open to joins and invitations; 'dm': a direct message (see Channel.dmUserIds). */
export type ChannelKind = 'channel' | 'dm';

export interface ChannelDto {
  id: string;
  workspaceId: string;
  kind: ChannelKind;
  /** Null for a DM. */
  name: string | null;
  isPrivate: boolean;
  topic: string;
  /** Archived: history and members kept, sends and joins refused (FORBIDDEN). */
  archived: boolean;
  createdAt: string;
}

export class Channel extends BaseModel {
  static override tableName = 'channels';

  id!: string;
  workspaceId!: string;
  kind!: ChannelKind;
  name!: string | null;
  /** A DM's people, sorted, as it was opened (its key in the workspace); null for other channels. */
  dmUserIds!: string[] | null;
  isPrivate!: boolean;
  topic!: string;
  lastSeq!: number;
  /** The rev of its latest change (message, edit, delete, reaction): 0 before the first. */
  lastRev!: number;
  archived!: boolean;
  /** Its creator (who may rename and archive it); null once that user is gone. */
  createdBy!: string | null;
  createdAt!: Date;

  toDto(): ChannelDto {
    return {
      id: this.id,
      workspaceId: this.workspaceId,
      kind: this.kind,
      name: this.name,
      isPrivate: this.isPrivate,
      topic: this.topic,
      archived: this.archived,
      createdAt: this.createdAt.toISOString(),
    };
  }
}

export class ChannelMember extends BaseModel {
  static override tableName = 'channel_members';
  static override get idColumn() {
    return ['channel_id', 'user_id'];
  }

  channelId!: string;
  userId!: string;
  lastReadSeq!: number;
  createdAt!: Date;
}
