export * from './User.js';
export * from './Workspace.js';
export * from './Channel.js';
export * from './Message.js';
