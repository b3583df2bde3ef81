/** The director's programmatic API (see README.md). */
export { initDirector, startDirector, type StartOptions, type RunningDirector } from './director.ts';
export { signDeviceToken, parseDeviceToken, TOKEN_MAX_LIFETIME_S } from '@upfleet/core';
export { DirectorServices, type ProgressEvent } from './services.ts';
export { Topics, DEFAULT_PREFIX } from './mqtt-topics.ts';
export { DIRECTOR_USERNAME } from './mqtt-broker.ts';
export { ImageRepoClient, HttpFetcher, DirectoryMetadataStore } from './image-repo-client.ts';
export * from './errors.ts';
export type * from './store.ts';
