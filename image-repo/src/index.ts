/**
 * The programmatic API of the image repository, for the demo and end-to-end
 * tests: the server, and the offline operations the CLI runs.
 */
export { startImageRepoServer, parseRange, type ImageRepoServer, type ImageRepoServerOptions } from './server.ts';
export {
  initRepository,
  addTarget,
  removeTarget,
  delegate,
  signDelegated,
  rotateKey,
  status,
  generateKeyFile,
  loadPublicKey,
  migrateKeys,
  type RepoContext,
  type InitOptions,
  type InitResult,
  type TargetSpec,
  type DelegateOptions,
  type SignDelegatedOptions,
  type RotateOptions,
  type MigrateKeysOptions,
  type MigrateKeysResult,
  type RepoStatus,
  type ChangeResult,
} from './operations.ts';
export { Workspace, DEFAULT_EXPIRIES, ONLINE_ROLES, type Expiries } from './workspace.ts';
export { MemoryKeyring, KeyDirKeyring, onlinePassphrase, type OnlineKeyring } from './online-keys.ts';
export type { PublishBatch, PublishResult } from './publisher.ts';
export * from './errors.ts';
