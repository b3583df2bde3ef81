/**
 * Events fed to the transition function: what a step found out. Failure
 * events carry the typed error itself; the transition function flattens it
 * into a FailureRecord for storage.
 */
import type { PlannedInstall } from './states.ts';

export type Event =
  | { type: 'wake'; cycleId: string }
  | { type: 'manifestQueued' }
  | { type: 'noUpdate' }
  | { type: 'directorUpdated'; directorTargetsVersion: number; plan: PlannedInstall[] }
  | { type: 'targetsMatched'; plan: PlannedInstall[] }
  | { type: 'imagesDownloaded' }
  | { type: 'imagesInstalled' }
  | { type: 'ecuActivated'; ecuSerial: string }
  | { type: 'activated' }
  | { type: 'failed'; error: Error; ecuSerial?: string }
  | { type: 'rolledBack' }
  | { type: 'reported' };

export type EventType = Event['type'];
