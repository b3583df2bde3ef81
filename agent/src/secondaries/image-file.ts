/**
 * What the primary's installers share: the verified image on disk, and the
 * commands they run.
 *
 * Invariants:
 * - An installer hands a file to an outside program (install handler, rauc)
 *   only after its length and every listed hash were checked here, just
 *   before use: `stageImage` checks while it copies, `verifyImageFile` checks
 *   a file in place.
 * - A staged copy resumes from the bytes already staged, re-hashing them first.
 * - A command gets `timeoutSeconds` and is then killed; a failure is an
 *   InstallError naming the ECU and phase, with the end of its stderr.
 */
import { spawn } from 'node:child_process';
import { createReadStream, existsSync, rmSync, statSync } from 'node:fs';
import { open } from 'node:fs/promises';
import { constants } from 'node:os';
import {
  LengthOrHashMismatchError,
  MultiHasher,
  digestHex,
  isSupportedHash,
  signEcuReport,
  type HashAlgorithm,
  type InstalledImage,
  type SignedEcuReport,
  type Signer,
} from '@upfleet/core';
import { InstallError } from '../errors.ts';
import { ReceiveBufferReleaser } from '../gc-pressure.ts';
import type { ImageToInstall, Progress, SecondaryInfo } from './secondary.ts';

/** What an ECU with no image from the repositories reports: the empty image (a report must list a hash). */
export const NO_IMAGE: InstalledImage = { filename: '', length: 0, hashes: { sha256: digestHex('sha256', new Uint8Array(0)) } };

/** What a primary-side installer keeps about itself between reports. */
export interface ReportedState {
  releaseCounter: number;
  attacksDetected: string;
  latestVerifiedTime: string;
}

/** The signed version report of an installer on the primary (its installed image, or NO_IMAGE). */
export function primaryReport(
  ecu: { ecuSerial: string; hardwareId: string; signer: Signer; now: Date },
  state: ReportedState,
  installed: InstalledImage | null | undefined,
  nonce: string,
): SignedEcuReport {
  return signEcuReport(
    {
      ecuSerial: ecu.ecuSerial,
      hardwareId: ecu.hardwareId,
      installedImage: installed ?? NO_IMAGE,
      releaseCounter: state.releaseCounter,
      nonce,
      attacksDetected: state.attacksDetected,
      latestVerifiedTime: state.latestVerifiedTime || ecu.now.toISOString(),
      timestamp: ecu.now.toISOString(),
    },
    ecu.signer,
  );
}

/** What an installer on the primary tells the agent about itself (it verifies in full: the primary verified both repositories). */
export function primaryInfo(
  ecu: { ecuSerial: string; hardwareId: string; signer: Signer },
  state: ReportedState,
  installed: InstalledImage | null | undefined,
): SecondaryInfo {
  return {
    ecuSerial: ecu.ecuSerial,
    hardwareId: ecu.hardwareId,
    publicKey: ecu.signer.key,
    verification: 'full',
    installed: installed ?? null,
    releaseCounter: state.releaseCounter,
  };
}

/** The image as an ECU reports it once installed. */
export function installedImage(image: ImageToInstall): InstalledImage {
  return { filename: image.name, length: image.length, hashes: image.hashes };
}

function hasherFor(image: ImageToInstall): { algs: HashAlgorithm[]; hasher: MultiHasher } {
  const algs = Object.keys(image.hashes).filter(isSupportedHash) as HashAlgorithm[];
  if (algs.length === 0) throw new LengthOrHashMismatchError(image.name, 'hashes', 'sha256/sha512', Object.keys(image.hashes).join(','));
  return { algs, hasher: new MultiHasher(algs) };
}

/** Compares every hash; a mismatch deletes `file`. @throws LengthOrHashMismatchError */
function expectDigests(image: ImageToInstall, algs: HashAlgorithm[], hasher: MultiHasher, file: string): void {
  const actual = hasher.digestHex();
  for (const a of algs) {
    if (actual[a] !== image.hashes[a]!.toLowerCase()) {
      rmSync(file, { force: true });
      throw new LengthOrHashMismatchError(image.name, a, image.hashes[a]!, actual[a]!);
    }
  }
}

async function hashFile(file: string, end: number, hasher: MultiHasher): Promise<void> {
  if (end <= 0) return;
  // Each read hands out a fresh buffer: collect them as we go (see gc-pressure.ts).
  const releaser = new ReceiveBufferReleaser(4 << 20);
  for await (const c of createReadStream(file, { end: end - 1, highWaterMark: 1 << 16 })) {
    hasher.update(c as Buffer);
    releaser.received((c as Buffer).byteLength);
  }
}

/**
 * Copies the image into `file`, checking length and hashes on the way; resumes
 * after the bytes already there.
 * @throws LengthOrHashMismatchError (and deletes `file` on a hash mismatch)
 */
export async function stageImage(image: ImageToInstall, file: string, ecuSerial: string, onProgress?: (p: Progress) => void): Promise<void> {
  const { algs, hasher } = hasherFor(image);
  const offset = existsSync(file) ? Math.min(statSync(file).size, image.length) : 0;
  await hashFile(file, offset, hasher);
  const releaser = new ReceiveBufferReleaser(4 << 20);
  const handle = await open(file, offset > 0 ? 'r+' : 'w');
  try {
    let done = offset;
    for await (const chunk of image.open(offset)) {
      if (done + chunk.byteLength > image.length) throw new LengthOrHashMismatchError(image.name, 'length', image.length, done + chunk.byteLength);
      hasher.update(chunk);
      releaser.received(chunk.byteLength);
      await handle.write(chunk, 0, chunk.byteLength, done);
      done += chunk.byteLength;
      onProgress?.({ ecuSerial, phase: 'transfer', done, total: image.length });
    }
    await handle.truncate(done);
    await handle.sync();
    if (done !== image.length) throw new LengthOrHashMismatchError(image.name, 'length', image.length, done);
  } finally {
    await handle.close();
  }
  expectDigests(image, algs, hasher, file);
}

/**
 * Checks a file that already holds the image (the agent's image cache) right
 * before an installer reads it.
 * @throws LengthOrHashMismatchError (and deletes `file` when it does not match)
 */
export async function verifyImageFile(image: ImageToInstall, file: string): Promise<void> {
  const { algs, hasher } = hasherFor(image);
  const size = existsSync(file) ? statSync(file).size : -1;
  if (size !== image.length) {
    rmSync(file, { force: true });
    throw new LengthOrHashMismatchError(image.name, 'length', image.length, Math.max(size, 0));
  }
  await hashFile(file, size, hasher);
  expectDigests(image, algs, hasher, file);
}

export interface CommandOptions {
  ecuSerial: string;
  /** Names the step in the InstallError (install, health, reboot...). */
  phase: string;
  timeoutSeconds: number;
  env?: NodeJS.ProcessEnv;
  /** Keep stdout (for commands whose answer is read); else it is discarded. */
  captureStdout?: boolean;
  /** What the error calls the command (default: the file run). */
  label?: string;
}

/**
 * A command that a signal ended which the agent did not send (its timeout is a
 * plain InstallError): e.g. the shutdown of a reboot stopping everything.
 */
export class CommandSignalledError extends InstallError {
  constructor(ecuSerial: string, phase: string, reason: string, readonly signal: NodeJS.Signals) {
    super(ecuSerial, phase, reason);
  }
}

/**
 * Runs `file args...` (no shell); resolves with stdout when asked for it.
 * @throws InstallError when it cannot start, times out or exits non-zero;
 *   CommandSignalledError when a signal from elsewhere ended it.
 */
export function runCommand(file: string, args: readonly string[], o: CommandOptions): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = spawn(file, args, { env: o.env ?? process.env, stdio: ['ignore', o.captureStdout ? 'pipe' : 'ignore', 'pipe'] });
    let stderr = '';
    const stdout: Buffer[] = [];
    child.stdout?.on('data', (d: Buffer) => stdout.push(d));
    child.stderr!.on('data', (d: Buffer) => (stderr = (stderr + d.toString()).slice(-500)));
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      child.kill('SIGKILL');
    }, o.timeoutSeconds * 1000);
    child.once('error', (e) => {
      clearTimeout(timer);
      reject(new InstallError(o.ecuSerial, o.phase, `cannot run ${file}: ${e.message}`, { cause: e }));
    });
    child.once('close', (code, signal) => {
      clearTimeout(timer);
      if (code === 0) return resolve(Buffer.concat(stdout).toString('utf8'));
      const how = timedOut ? `did not finish in ${o.timeoutSeconds} s` : `exited with ${signal ?? code}`;
      const reason = `${o.label ?? file} ${how}${stderr ? `: ${stderr.trim()}` : ''}`;
      // A shell whose child a signal ended exits with 128 + the signal's number.
      const by = timedOut ? null : (signal ?? (code !== null && code > 128 ? signalName(code - 128) : null));
      reject(by ? new CommandSignalledError(o.ecuSerial, o.phase, reason, by) : new InstallError(o.ecuSerial, o.phase, reason));
    });
  });
}

function signalName(n: number): NodeJS.Signals | null {
  return (Object.entries(constants.signals).find(([, v]) => v === n)?.[0] as NodeJS.Signals | undefined) ?? null;
}

/** Runs a configured command line through /bin/sh, with `args` as "$1"...; @throws InstallError */
export function runShell(commandLine: string, args: readonly string[], o: CommandOptions): Promise<string> {
  const positional = args.map((_, i) => `"$${i + 1}"`).join(' ');
  return runCommand('/bin/sh', ['-c', `${commandLine} ${positional}`.trimEnd(), 'upfleet', ...args], o);
}
