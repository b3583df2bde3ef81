/**
 * The driver interface the agent uses for every secondary ECU it installs to,
 * whatever the transport (serial line, in-process simulator, ...).
 *
 * Invariants:
 * - The secondary verifies the signed metadata itself; the primary only relays
 *   bytes (`putMetadata`) and is never trusted to have checked them.
 * - `install` resumes: the ECU answers with the offset it already holds, and
 *   `image.open(offset)` streams from there to the end.
 * - Errors are typed; an ECU refusal carries the ECU's error code.
 */
import type { Key, InstalledImage, SignedEcuReport } from '@upfleet/core';

export type { InstalledImage, SignedEcuReport };

export interface SecondaryInfo {
  ecuSerial: string;
  hardwareId: string;
  publicKey: Key;
  verification: 'partial' | 'full';
  installed: InstalledImage | null;
  releaseCounter: number;
}

export interface ImageToInstall {
  name: string;
  length: number;
  hashes: Record<string, string>;
  /** From the verified plan: the counter the ECU records once the image runs. */
  releaseCounter: number;
  /** Bytes from `offset` to the end of the image. */
  open(offset: number): AsyncIterable<Uint8Array>;
  /**
   * The verified image file in the agent's cache, for an installer that hands
   * a file to a local program (rauc): it uses the file in place after checking
   * it again (image-file.ts verifyImageFile) instead of copying it.
   */
  localPath?: string;
}

/**
 * Role file name -> exact bytes: 'root.json' (latest trusted root), 'timestamp.json',
 * 'snapshot.json', 'targets.json', and delegated '<role>.json' for the image repo (full mode).
 */
export interface MetadataBundle {
  director: Record<string, Uint8Array>;
  image?: Record<string, Uint8Array>;
}

export interface Progress {
  ecuSerial: string;
  phase: 'transfer' | 'verify' | 'flash' | 'activate';
  done: number;
  total: number;
}

export interface Secondary {
  readonly ecuSerial: string;
  info(): Promise<SecondaryInfo>;
  versionReport(nonce: string): Promise<SignedEcuReport>;
  /** The ECU verifies the bundle itself. */
  putMetadata(bundle: MetadataBundle): Promise<void>;
  /** Transfers and verifies the image; resumes from the offset the ECU reports. */
  install(image: ImageToInstall, onProgress?: (p: Progress) => void): Promise<void>;
  /** Switches slot and "reboots". */
  activate(): Promise<void>;
  abort(): Promise<void>;
  /** Releases the ECU's line; an operation in flight may fail (the agent closes mid-operation only to abandon its cycle). */
  close(): Promise<void>;
}
