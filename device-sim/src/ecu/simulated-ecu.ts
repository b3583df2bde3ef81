/**
 * A simulated secondary ECU: answers the link protocol's requests the way a
 * brake controller or telematics MCU would. Transport-free: an EcuEndpoint feeds
 * it events from an EcuSession; tests and the demo run many in one process.
 *
 * Invariants:
 * - Nothing the primary claims is trusted: ImageBegin must name exactly the
 *   target that metadata this ECU verified itself names for it; ImageEnd checks
 *   the received bytes against that verified target, not against the primary.
 * - Chunks are written in order to the inactive slot and acked after the write,
 *   so the inactive slot's size is the resume offset.
 * - Activation only switches to a slot whose image passed verification.
 * - Erasing the inactive slot takes `eraseMs`; meanwhile ImageBegin answers BUSY.
 * - A metadata transfer is an unbroken run of MetadataParts ended by
 *   MetadataEnd, and lives in RAM only. Any other request (Hello: a new
 *   session; Abort), a refused part, a part at offset 0 for a file this
 *   transfer already holds (a new set), and MetadataEnd itself, accepted or
 *   refused, discard it: what a primary abandons cannot count against the
 *   limits of the next transfer. Only an accepted MetadataEnd changes the
 *   persisted trust and verified target.
 *
 * Events (for logs, tests and the demo): 'verified' (target), 'begin' (offset),
 * 'image-verified' (target), 'activated' (slot, target), 'refused' (code, detail);
 * the EcuEndpoint adds 'rebooted', 'protocol-error' (error) and 'link-error' (error).
 */
import { closeSync, openSync, writeFileSync, writeSync } from 'node:fs';
import { createHash } from 'node:crypto';
import { EventEmitter } from 'node:events';
import { canonicalize, digestHex, ImageVerifier, signEcuReport, verifyForEcu, type Ed25519Signer } from '@upfleet/core';
import {
  event, negotiate, refusal, refusalCodeFor,
  type EcuInfo, type EcuLimits, type ErrorCodeName, type ImageData, type Refusal, type Reply, type Request,
  type Verification,
} from '@upfleet/core/link/index.ts';
import { EcuStore } from './ecu-store.ts';

export interface SimulatedEcuOptions {
  /** Directory of the ECU's state and slot files. */
  dir: string;
  ecuSerial: string;
  hardwareId: string;
  signer: Ed25519Signer;
  verification: Verification;
  /** Roots pinned at manufacture (used when the directory has no state yet). */
  directorRoot: Uint8Array;
  imageRoot?: Uint8Array;
  /** Flash write speed in bytes per second (0: instant). */
  flashBytesPerSecond?: number;
  eraseMs?: number;
  /** How long the ECU is gone after activation. */
  rebootMs?: number;
  limits?: EcuLimits;
  /** The image in slot A at first start (default: 64 bytes derived from the serial). */
  factoryImage?: { name: string; bytes: Uint8Array };
  /** A refusal on demand for ImageBegin and Activate (e.g. LOW_BATTERY). */
  refuse?: ErrorCodeName | null;
  /** The ECU's clock (metadata expiry). */
  now?: () => Date;
}

/** Per metadata file of the transfer in progress: its bytes so far. */
interface Staged {
  total: number;
  bytes: Uint8Array;
  filled: number;
}

/** Limits of one metadata transfer (the ECU's RAM). */
const MAX_METADATA_FILE = 2_000_000;
const MAX_METADATA_FILES = 32;

export class SimulatedEcu extends EventEmitter {
  readonly store: EcuStore;
  refuse: ErrorCodeName | null;
  /** The metadata transfer in progress, by `${repo}/${name}`. */
  #staged = new Map<string, Staged>();
  #erasingUntil = 0;
  #fd: number | undefined;
  #flashFreeAt = 0;

  constructor(readonly options: SimulatedEcuOptions) {
    super();
    this.store = new EcuStore(options.dir, { directorRoot: options.directorRoot, ...(options.imageRoot && { imageRoot: options.imageRoot }) });
    this.refuse = options.refuse ?? null;
    if (!this.store.state.slots.a) this.#installFactoryImage();
  }

  #installFactoryImage(): void {
    const f = this.options.factoryImage ?? {
      name: `factory-${this.options.hardwareId}.bin`,
      bytes: new Uint8Array(createHash('sha512').update(`factory ${this.options.ecuSerial}`).digest()).subarray(0, 64),
    };
    writeFileSync(this.store.slotPath('a'), f.bytes);
    this.store.state.slots.a = {
      filename: f.name, length: f.bytes.length,
      hashes: { sha256: digestHex('sha256', f.bytes), sha512: digestHex('sha512', f.bytes) },
    };
    this.store.save();
  }

  get ecuSerial(): string {
    return this.options.ecuSerial;
  }

  get info(): EcuInfo {
    const s = this.store.state;
    return {
      ecuSerial: this.options.ecuSerial,
      hardwareId: this.options.hardwareId,
      publicKey: new Uint8Array(Buffer.from(this.options.signer.key.keyval.public!, 'hex')),
      verification: this.options.verification,
      installed: s.slots[s.activeSlot],
      releaseCounter: s.releaseCounter,
    };
  }

  #now(): Date {
    return this.options.now?.() ?? new Date();
  }

  /** The reply to one request. */
  async handle(r: Request): Promise<Reply> {
    const staged = this.#staged;
    if (r.type !== 'MetadataPart') this.#staged = new Map();
    switch (r.type) {
      case 'Hello': {
        const n = negotiate(r, this.options.limits);
        return 'type' in n ? n : event({ type: 'HelloReply', ...n, info: this.info });
      }
      case 'InfoRequest':
        return event({ type: 'Info', info: this.info });
      case 'ReportRequest':
        return event({ type: 'Report', report: canonicalize(this.#report(r.nonce)) });
      case 'MetadataPart': {
        const reply = this.#metadataPart(r);
        if (reply.type === 'Refusal') this.#staged = new Map();
        return reply;
      }
      case 'MetadataEnd':
        return this.#metadataEnd(staged);
      case 'ImageBegin':
        return this.#imageBegin(r);
      case 'ImageEnd':
        return this.#imageEnd();
      case 'Activate':
        return this.#activate();
      case 'Abort':
        this.#closeSlot();
        this.store.state.pending = null;
        this.store.truncateInactive(0);
        this.store.save();
        return event({ type: 'Ok' });
    }
  }

  #report(nonce: string) {
    const s = this.store.state;
    const installed = s.slots[s.activeSlot];
    return signEcuReport({
      ecuSerial: this.options.ecuSerial,
      hardwareId: this.options.hardwareId,
      installedImage: { filename: installed!.filename, length: installed!.length, hashes: { ...installed!.hashes } },
      releaseCounter: s.releaseCounter,
      nonce,
      attacksDetected: s.attacksDetected,
      latestVerifiedTime: s.latestVerifiedTime,
      timestamp: this.#now().toISOString(),
    }, this.options.signer);
  }

  /** Stages one part; a refusal here ends the transfer (handle discards it). */
  #metadataPart(r: Request & { type: 'MetadataPart' }): Reply {
    const key = `${r.repo}/${r.name}`;
    // A file sent again from its start: the primary began a new set.
    if (r.offset === 0 && this.#staged.has(key)) this.#staged = new Map();
    let st = this.#staged.get(key);
    if (!st) {
      if (r.total > MAX_METADATA_FILE) return refusal('METADATA_MALFORMED', `${r.name} is larger than ${MAX_METADATA_FILE} bytes`);
      if (this.#staged.size >= MAX_METADATA_FILES) return refusal('METADATA_MALFORMED', 'too many metadata files');
      st = { total: r.total, bytes: new Uint8Array(r.total), filled: 0 };
    }
    if (r.total !== st.total) return refusal('PROTOCOL', `${r.name}: total ${r.total}, was ${st.total}`);
    if (r.offset > st.filled) return refusal('PROTOCOL', `${r.name}: part at ${r.offset}, expected ${st.filled}`);
    this.#staged.set(key, st);
    st.bytes.set(r.data, r.offset);
    st.filled = Math.max(st.filled, r.offset + r.data.length);
    return event({ type: 'Ok' });
  }

  /** Verifies the transfer `staged` (already discarded by handle, whatever the outcome). */
  async #metadataEnd(staged: ReadonlyMap<string, Staged>): Promise<Reply> {
    const files = { director: new Map<string, Uint8Array>(), image: new Map<string, Uint8Array>() };
    for (const [key, st] of staged) {
      const [repo, name] = [key.slice(0, key.indexOf('/')), key.slice(key.indexOf('/') + 1)];
      if (st.filled !== st.total) return refusal('METADATA_INCOMPLETE', `${key}: ${st.filled} of ${st.total} bytes`);
      files[repo as 'director' | 'image'].set(name, st.bytes);
    }
    const s = this.store.state;
    try {
      const target = await verifyForEcu({
        mode: this.options.verification, ecuSerial: this.options.ecuSerial, hardwareId: this.options.hardwareId,
        stores: this.store.metadata, director: files.director, image: files.image, now: this.#now(), installedReleaseCounter: s.releaseCounter,
      });
      s.verified = target;
      s.latestVerifiedTime = this.#now().toISOString();
      this.store.save();
      this.emit('verified', target);
      return event({ type: 'Ok' });
    } catch (e) {
      return this.#attack('metadata', e);
    }
  }

  /** Records a refusal as an attack the next version report carries. */
  #attack(what: string, e: unknown, code: ErrorCodeName = refusalCodeFor(e)): Refusal {
    const detail = e instanceof Error ? e.message : String(e);
    this.store.state.attacksDetected = `${what}: ${code}: ${detail}`;
    this.store.save();
    this.emit('refused', code, detail);
    return refusal(code, detail.slice(0, 500));
  }

  #imageBegin(r: Request & { type: 'ImageBegin' }): Reply {
    if (this.refuse) return refusal(this.refuse, 'refused on demand');
    const s = this.store.state;
    const target = s.verified;
    if (!target) return refusal('NO_METADATA', 'no verified metadata names an image for this ECU');
    if (r.name !== target.name || r.length !== target.length || !hashesAgree(r.hashes, target.hashes)) {
      const detail = `primary announced ${r.name} (${r.length} bytes, ${JSON.stringify(r.hashes)}), verified metadata says ${target.name} (${target.length} bytes)`;
      return this.#attack('image', new Error(detail), 'IMAGE_MISMATCH');
    }
    const now = Date.now();
    if (now < this.#erasingUntil) return refusal('BUSY', 'erasing flash', Math.ceil(this.#erasingUntil - now));
    const p = s.pending;
    if (p && p.target.name === target.name && sameHashes(p.target.hashes, target.hashes) && !p.verified) {
      const offset = Math.min(this.store.inactiveLength(), target.length);
      this.store.truncateInactive(offset);
      this.#openSlot();
      this.emit('begin', offset);
      return event({ type: 'ImageReady', offset });
    }
    // A new image: erase the inactive slot first.
    this.#closeSlot();
    this.store.truncateInactive(0);
    s.pending = { target, verified: false };
    this.store.save();
    const eraseMs = this.options.eraseMs ?? 0;
    if (eraseMs > 0) {
      this.#erasingUntil = now + eraseMs;
      return refusal('BUSY', 'erasing flash', eraseMs);
    }
    this.#openSlot();
    this.emit('begin', 0);
    return event({ type: 'ImageReady', offset: 0 });
  }

  #openSlot(): void {
    this.#closeSlot();
    this.#fd = openSync(this.store.slotPath(this.store.inactiveSlot), 'r+');
  }

  #closeSlot(): void {
    if (this.#fd !== undefined) closeSync(this.#fd);
    this.#fd = undefined;
  }

  /**
   * Writes one in-order chunk to the inactive slot at flash speed.
   * @returns the new resume offset, to ack.
   */
  async storeChunk(d: ImageData): Promise<number> {
    if (this.#fd === undefined) this.#openSlot();
    writeSync(this.#fd!, d.data, 0, d.data.length, d.offset);
    const speed = this.options.flashBytesPerSecond ?? 0;
    if (speed > 0) {
      const now = performance.now();
      this.#flashFreeAt = Math.max(this.#flashFreeAt, now) + (d.data.length / speed) * 1000;
      if (this.#flashFreeAt - now > 4) await new Promise((r) => setTimeout(r, this.#flashFreeAt - now));
    }
    return d.offset + d.data.length;
  }

  #imageEnd(): Reply {
    const s = this.store.state;
    const p = s.pending;
    this.#closeSlot();
    if (!p || p.verified) return refusal('NO_TRANSFER', 'no image transfer in progress');
    try {
      const v = new ImageVerifier(p.target);
      v.update(this.store.readInactive());
      v.finish();
    } catch (e) {
      // The bytes are not the signed image: drop them, a retry starts over.
      s.pending = null;
      this.store.truncateInactive(0);
      return this.#attack('image', e);
    }
    p.verified = true;
    this.store.save();
    this.emit('image-verified', p.target);
    return event({ type: 'Ok' });
  }

  #activate(): Reply {
    if (this.refuse) return refusal(this.refuse, 'refused on demand');
    const s = this.store.state;
    const p = s.pending;
    if (!p?.verified) return refusal('NO_IMAGE', 'no verified image to activate');
    const slot = this.store.inactiveSlot;
    s.slots[slot] = { filename: p.target.name, length: p.target.length, hashes: { ...p.target.hashes } };
    s.activeSlot = slot;
    s.releaseCounter = Math.max(s.releaseCounter, p.target.releaseCounter);
    s.pending = null;
    s.attacksDetected = '';
    this.store.save();
    this.emit('activated', slot, p.target);
    return event({ type: 'Ok' });
  }

  /** Releases the open slot file. */
  close(): void {
    this.#closeSlot();
  }
}

/** Every announced hash is one the signed target lists, with the same value (and there is at least one). */
function hashesAgree(announced: Readonly<Record<string, string>>, signed: Readonly<Record<string, string>>): boolean {
  const names = Object.keys(announced);
  return names.length > 0 && names.every((k) => Object.hasOwn(signed, k) && signed[k] === announced[k]);
}

function sameHashes(a: Readonly<Record<string, string>>, b: Readonly<Record<string, string>>): boolean {
  const ka = Object.keys(a).sort();
  const kb = Object.keys(b).sort();
  return ka.length === kb.length && ka.every((k, i) => k === kb[i] && a[k] === b[k]);
}
