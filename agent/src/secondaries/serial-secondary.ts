/**
 * The primary's driver for a secondary ECU on a serial line: a Secondary over
 * any byte stream (a node-serialport SerialPort in production, an in-process or
 * emulated link in tests), speaking the link protocol through core's
 * PrimarySession. The session decides what to send; this driver only moves bytes
 * and runs the session's retransmission timer.
 *
 * Invariants:
 * - One operation at a time (calls queue up); each waits for its reply.
 * - Every link failure (timeout, peer protocol error) surfaces as the typed
 *   error; the next operation starts a fresh session with Hello, retrying for
 *   `reconnectMs`, so a line that comes back is used again.
 * - install() resumes: after a link failure it reconnects and asks the ECU
 *   which offset it holds, up to `maxResumes` times. BUSY answers wait the
 *   ECU's retryAfterMs.
 * - The ECU's refusals become EcuRefusedError carrying the ECU's code.
 * - close() does not wait for an operation in flight: that one fails with
 *   LinkClosedError at its next wait for the ECU, as do any queued after it.
 */
import { performance } from 'node:perf_hooks';
import type { Duplex } from 'node:stream';
import { Key, LengthOrHashMismatchError, parseEcuReport, verifyEcuReport, type SignedEcuReport, fromUtf8, UpfleetError, isInstalled } from '@upfleet/core';
import {
  EcuRefusedError, LinkTimeoutError, NEED_DATA, PRIMARY_DEFAULTS, PrimarySession, REPLIES_TO, RemoteProtocolError,
  type EcuInfo, type Event, type PrimaryOptions, type Refusal, type Reply, type Request,
} from '@upfleet/core/link/index.ts';
import type { ImageToInstall, MetadataBundle, Progress, Secondary, SecondaryInfo } from './secondary.ts';

export interface SerialSecondaryOptions extends PrimaryOptions {
  /** The ECU serial expected on this line; a different one is refused. */
  ecuSerial: string;
  /** How long to keep trying Hello after a link loss or a reboot. */
  reconnectMs?: number;
  /** Reconnect-and-resume attempts per install. */
  maxResumes?: number;
}

/**
 * A retransmission timeout for a line of `baud` bits per second: twice the time
 * a full window of frames takes on the wire (a chunk may queue behind a whole
 * window before it is sent, and its ack follows it), plus scheduling slack.
 */
export function rtoForLine(baud: number, chunk: number = PRIMARY_DEFAULTS.maxChunk, window: number = PRIMARY_DEFAULTS.maxWindow): number {
  const frameBytes = chunk + 16;
  return Math.ceil(100 + (2 * window * frameBytes * 10 * 1000) / baud);
}

/**
 * A window for a line of `baud` bits per second: about 100 ms of line time, at
 * least 4 and at most 16 chunks. A bigger window only lengthens the queue a
 * resent chunk waits behind; a smaller one lets timer jitter idle the line.
 */
export function windowForLine(baud: number, chunk: number = PRIMARY_DEFAULTS.maxChunk): number {
  const frames = Math.ceil((0.1 * baud) / 10 / (chunk + 16));
  return Math.min(16, Math.max(4, frames));
}

/** The line answers, but with another ECU than configured. */
export class WrongEcuError extends UpfleetError {
  override name = 'WrongEcuError';
  override readonly code = 'WRONG_ECU';
  constructor(readonly expected: string, readonly actual: string) {
    super(`expected ECU ${expected} on this line, found ${actual}`);
  }
}

/** The stream closed under the driver. */
export class LinkClosedError extends UpfleetError {
  override name = 'LinkClosedError';
  override readonly code = 'LINK_CLOSED';
}

/** Failures after which reconnecting can help: silence, garbage, or an ECU that restarted. */
const isLinkFailure = (e: unknown) =>
  e instanceof LinkTimeoutError || e instanceof RemoteProtocolError ||
  (e instanceof EcuRefusedError && (e.ecuCode === 'HELLO_REQUIRED' || e.ecuCode === 'PROTOCOL'));
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export class SerialSecondary implements Secondary {
  readonly ecuSerial: string;
  readonly session: PrimarySession;
  #events: Event[] = [];
  /** The image the last install() sent: what a successful Activate makes the ECU run. */
  #staged: ImageToInstall | undefined;
  #wake: (() => void) | undefined;
  #failure: Error | undefined;
  #timer: NodeJS.Timeout | undefined;
  #chain: Promise<unknown> = Promise.resolve();
  #closed = false;
  readonly #onData = (b: Buffer) => {
    this.session.receive(b);
    this.#pump();
  };
  readonly #onClose = () => this.#fail(new LinkClosedError('serial stream closed'));
  readonly #onError = (e: Error) => this.#fail(new LinkClosedError(`serial stream failed: ${e.message}`, { cause: e }));

  /**
   * Opens `path` with node-serialport and returns a driver on it; window and RTO
   * default to what suits `baudRate` (windowForLine, rtoForLine).
   * (Never calls SerialPort.list(): it needs udev.)
   */
  static async open(options: SerialSecondaryOptions & { path: string; baudRate: number }): Promise<SerialSecondary> {
    const { SerialPort } = await import('serialport');
    const port = new SerialPort({ path: options.path, baudRate: options.baudRate, autoOpen: false });
    await new Promise<void>((resolve, reject) => port.open((e) => (e ? reject(e) : resolve())));
    const maxWindow = options.maxWindow ?? windowForLine(options.baudRate, options.maxChunk);
    const rtoMs = rtoForLine(options.baudRate, options.maxChunk, maxWindow);
    return new SerialSecondary(port, { rtoMs, maxWindow, ...options }, () => new Promise<void>((r) => (port.isOpen ? port.close(() => r()) : r())));
  }

  constructor(
    readonly stream: Duplex,
    readonly options: SerialSecondaryOptions,
    private readonly closeStream: () => Promise<void> = async () => {},
  ) {
    this.ecuSerial = options.ecuSerial;
    this.session = new PrimarySession(options);
    stream.on('data', this.#onData);
    stream.on('close', this.#onClose);
    stream.on('error', this.#onError);
  }

  // ---- byte and timer plumbing ------------------------------------------------

  #write(bytes: Uint8Array): void {
    if (bytes.length > 0 && !this.stream.destroyed) this.stream.write(bytes);
  }

  #pump(): void {
    try {
      for (let e = this.session.nextEvent(performance.now()); e !== NEED_DATA; e = this.session.nextEvent(performance.now())) {
        if (typeof e === 'object') this.#events.push(e);
      }
    } catch (e) {
      this.#fail(e as Error);
    }
    this.#write(this.session.takeOutgoing());
    this.#arm();
    this.#wake?.();
  }

  #arm(): void {
    clearTimeout(this.#timer);
    this.#timer = undefined;
    const d = this.session.deadline();
    if (d === undefined || this.#closed) return;
    this.#timer = setTimeout(() => {
      try {
        this.#write(this.session.timeout(performance.now()));
        this.#arm();
      } catch (e) {
        this.#fail(e as Error);
      }
    }, Math.max(0, d - performance.now()) + 1);
  }

  #fail(e: Error): void {
    this.#failure ??= e;
    this.#wake?.();
  }

  /** The next event from the ECU. @throws the link failure, if any */
  async #next(): Promise<Event> {
    for (;;) {
      const e = this.#events.shift();
      if (e) return e;
      if (this.#failure) {
        const f = this.#failure;
        if (!(f instanceof LinkClosedError)) this.#failure = undefined;
        throw f;
      }
      await new Promise<void>((r) => (this.#wake = r));
      this.#wake = undefined;
    }
  }

  /** Sends a request and returns its reply (a Refusal included). */
  async #request(r: Request): Promise<Reply> {
    if (this.#failure instanceof LinkClosedError) throw this.#failure;
    this.#events = [];
    this.#write(this.session.send(r, performance.now()));
    this.#arm();
    for (;;) {
      const e = await this.#next();
      if (e.type === 'Refusal' || REPLIES_TO[r.type].includes(e.type)) return e as Reply;
    }
  }

  /** As #request, but a refusal throws EcuRefusedError. */
  async #call(r: Request): Promise<Reply> {
    const reply = await this.#request(r);
    if (reply.type === 'Refusal') throw this.#refused(r.type, reply);
    return reply;
  }

  #refused(request: string, r: Refusal): EcuRefusedError {
    return new EcuRefusedError(this.ecuSerial, request, r.code, r.detail, r.retryAfterMs);
  }

  /** Runs operations one at a time. */
  #serial<T>(op: () => Promise<T>): Promise<T> {
    const run = this.#chain.then(op, op);
    this.#chain = run.catch(() => undefined);
    return run;
  }

  /** Makes sure a session is up: Hello, retried for reconnectMs across link failures. */
  async #connect(): Promise<EcuInfo> {
    const state = this.session.state;
    if (state === 'READY' || state === 'TRANSFER') return this.session.negotiated!.info;
    const until = performance.now() + (this.options.reconnectMs ?? 10_000);
    for (;;) {
      this.session.reset();
      this.#events = [];
      try {
        const reply = await this.#call(this.session.hello());
        if (reply.type !== 'HelloReply') continue;
        if (reply.info.ecuSerial !== this.ecuSerial) throw new WrongEcuError(this.ecuSerial, reply.info.ecuSerial);
        return reply.info;
      } catch (e) {
        if (!isLinkFailure(e) || performance.now() > until) throw e;
      }
    }
  }

  // ---- Secondary ---------------------------------------------------------------

  info(): Promise<SecondaryInfo> {
    return this.#serial(async () => {
      await this.#connect();
      const reply = await this.#call({ type: 'InfoRequest' });
      return toSecondaryInfo((reply as Event & { type: 'Info' }).info);
    });
  }

  /** @throws BadDocumentSignatureError when the report is not signed by the ECU's key */
  versionReport(nonce: string): Promise<SignedEcuReport> {
    return this.#serial(async () => {
      const info = await this.#connect();
      const reply = await this.#call({ type: 'ReportRequest', nonce });
      const report = parseEcuReport(JSON.parse(fromUtf8((reply as Event & { type: 'Report' }).report)));
      verifyEcuReport(report, Key.ed25519(info.publicKey));
      return report;
    });
  }

  putMetadata(bundle: MetadataBundle): Promise<void> {
    return this.#serial(async () => {
      await this.#connect();
      const chunk = this.session.negotiated!.chunkSize;
      for (const repo of ['director', 'image'] as const) {
        for (const [name, bytes] of Object.entries(bundle[repo] ?? {})) {
          for (let offset = 0; offset === 0 || offset < bytes.length; offset += chunk) {
            const data = bytes.subarray(offset, offset + chunk);
            await this.#call({ type: 'MetadataPart', repo, name, total: bytes.length, offset, data });
          }
        }
      }
      await this.#call({ type: 'MetadataEnd' });
    });
  }

  install(image: ImageToInstall, onProgress?: (p: Progress) => void): Promise<void> {
    return this.#serial(async () => {
      this.#staged = image;
      const maxResumes = this.options.maxResumes ?? 5;
      for (let attempt = 0; ; attempt++) {
        try {
          await this.#transfer(image, onProgress);
          return;
        } catch (e) {
          if (!isLinkFailure(e) || attempt >= maxResumes) throw e;
        }
      }
    });
  }

  async #begin(image: ImageToInstall): Promise<number> {
    for (;;) {
      const reply = await this.#request({ type: 'ImageBegin', name: image.name, length: image.length, hashes: image.hashes });
      if (reply.type === 'ImageReady') return reply.offset;
      if (reply.type === 'Refusal' && reply.code === 'BUSY') {
        await sleep(Math.max(10, reply.retryAfterMs));
        continue;
      }
      throw this.#refused('ImageBegin', reply as Refusal);
    }
  }

  async #transfer(image: ImageToInstall, onProgress?: (p: Progress) => void): Promise<void> {
    await this.#connect();
    const offset = await this.#begin(image);
    const total = image.length;
    const progress = (phase: Progress['phase'], done: number) => onProgress?.({ ecuSerial: this.ecuSerial, phase, done, total });
    progress('transfer', offset);
    const chunks = rechunk(image.open(offset), this.session.negotiated!.chunkSize, image.name, total - offset)[Symbol.asyncIterator]();
    try {
      let sent = offset;
      for (;;) {
        // Reading the image is asynchronous: a refusal may end the transfer meanwhile.
        while (this.session.windowOpen) {
          const next = await chunks.next();
          if (next.done) throw new LengthOrHashMismatchError(image.name, 'length', total, sent);
          if (!this.session.windowOpen) break;
          this.#write(this.session.send({ type: 'ImageData', offset: sent, data: next.value }, performance.now()));
          sent += next.value.length;
          this.#arm();
        }
        if (this.session.state === 'TRANSFER' && this.session.transfer!.acked === total) break;
        const e = await this.#next();
        if (e.type === 'Refusal') throw this.#refused('ImageData', e);
        if (this.session.state !== 'TRANSFER') {
          // Acks queued before the refusal that ended the transfer: read on to it.
          const refusal = this.#events.find((x): x is Refusal => x.type === 'Refusal');
          if (refusal) throw this.#refused('ImageData', refusal);
          throw new EcuRefusedError(this.ecuSerial, 'ImageData', 'ABORTED', `transfer ended in state ${this.session.state}`);
        }
        if (e.type === 'ImageAck' || e.type === 'ImageNak') progress('transfer', this.session.transfer!.acked);
      }
    } finally {
      await chunks.return?.(undefined);
    }
    progress('verify', total);
    await this.#call({ type: 'ImageEnd' });
    progress('flash', total);
  }

  activate(): Promise<void> {
    return this.#serial(async () => {
      await this.#connect();
      try {
        await this.#call({ type: 'Activate' });
      } catch (e) {
        // The ECU's Ok was lost and the retransmission reached the rebooted ECU's fresh
        // session: it may have activated. The image it runs after the reconnect tells.
        if (!(e instanceof EcuRefusedError && e.ecuCode === 'HELLO_REQUIRED') || !this.#staged) throw e;
        if (!isInstalled(toSecondaryInfo(await this.#connect()).installed, this.#staged)) throw e;
        return;
      }
      // The ECU reboots into the new slot; wait until it answers again.
      await this.#connect();
    });
  }

  abort(): Promise<void> {
    return this.#serial(async () => {
      await this.#connect();
      await this.#call({ type: 'Abort' });
    });
  }

  close(): Promise<void> {
    // Over any failure not yet seen: a link failure would only make the operation reconnect.
    this.#failure = new LinkClosedError('the driver was closed');
    this.#wake?.();
    return this.#serial(async () => {
      this.#closed = true;
      clearTimeout(this.#timer);
      this.stream.off('data', this.#onData);
      this.stream.off('close', this.#onClose);
      this.stream.off('error', this.#onError);
      await this.closeStream();
    });
  }
}

function toSecondaryInfo(info: EcuInfo): SecondaryInfo {
  return {
    ecuSerial: info.ecuSerial,
    hardwareId: info.hardwareId,
    publicKey: Key.ed25519(info.publicKey),
    verification: info.verification,
    installed: info.installed && { filename: info.installed.filename, length: info.installed.length, hashes: { ...info.installed.hashes } },
    releaseCounter: info.releaseCounter,
  };
}

/** Re-cuts a byte stream into `size`-byte chunks (the last may be shorter); refuses more than `expected` bytes. */
async function* rechunk(source: AsyncIterable<Uint8Array>, size: number, name: string, expected: number): AsyncGenerator<Uint8Array> {
  let buf = new Uint8Array(size);
  let fill = 0;
  let seen = 0;
  for await (const piece of source) {
    seen += piece.length;
    if (seen > expected) throw new LengthOrHashMismatchError(name, 'length', expected, seen);
    let o = 0;
    while (o < piece.length) {
      const n = Math.min(size - fill, piece.length - o);
      buf.set(piece.subarray(o, o + n), fill);
      fill += n;
      o += n;
      if (fill === size) {
        yield buf;
        buf = new Uint8Array(size);
        fill = 0;
      }
    }
  }
  if (fill > 0) yield buf.subarray(0, fill);
}
