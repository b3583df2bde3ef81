/**
 * The persisted states of one update cycle (Uptane 2.1.0 primary, 5.4.2).
 *
 * Invariants:
 * - A State is plain JSON: the runner stores it in SQLite before it acts on it,
 *   so a power loss at any point leaves a state the next start can resume.
 * - `cycle` accumulates what earlier steps learned (the plan, the failure);
 *   steps never keep cross-step knowledge anywhere else.
 */

import type { PlannedImage } from '@upfleet/core';

export const STATE_NAMES = [
  'idle',
  'sendingManifest',
  'checkingDirector',
  'checkingImages',
  'downloading',
  'installing',
  'activating',
  'rollingBack',
  'reporting',
] as const;

export type StateName = (typeof STATE_NAMES)[number];

/** One director target bound to one ECU, after matching against the image repository (core's verified plan). */
export type PlannedInstall = PlannedImage;

/** A typed error flattened for storage: class name, code, message and its own fields. */
export interface FailureRecord {
  name: string;
  code: string;
  message: string;
  /** The state the failure happened in. */
  state: StateName;
  /** The ECU it concerns, when one does. */
  ecuSerial?: string;
  /** True when the failure is a refusal of remote data (an attack or a bad repository). */
  attack: boolean;
  fields: Record<string, unknown>;
}

export interface CycleData {
  /** Random per cycle; names the cycle in logs and progress events. */
  cycleId: string;
  /** Director targets version this cycle answers (0 before it is known). */
  directorTargetsVersion: number;
  /**
   * ECUs to update, in install order. After checkingDirector: the director's images
   * not yet installed, unverified, kept only so a refusal can name them; after
   * checkingImages: the verified plan, the only input of every later step.
   */
  plan: PlannedInstall[];
  /** ECU serials whose image is activated (kept across power loss, so activation is not repeated). */
  activated: string[];
  failure?: FailureRecord;
}

export interface State {
  name: StateName;
  cycle: CycleData;
}

export const IDLE: State = Object.freeze({
  name: 'idle',
  cycle: Object.freeze({ cycleId: '', directorTargetsVersion: 0, plan: [], activated: [] }),
}) as State;
