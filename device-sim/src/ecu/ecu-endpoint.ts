/**
 * Serves a SimulatedEcu over a byte stream (an in-process Duplex, a pty opened
 * with serialport, or an emulated link): the ECU-side transport of the link.
 *
 * Invariants:
 * - Events are handled one at a time, in arrival order; a reply is written
 *   before the next request is read (the session is PAUSED meanwhile).
 * - A peer protocol error is answered with an unsolicited PROTOCOL refusal and
 *   a session reset, so a confused primary starts over with Hello.
 * - After a successful Activate the ECU "reboots": it drops every byte for
 *   `rebootMs`, then starts a fresh session.
 */
import type { Duplex } from 'node:stream';
import { EcuSession, NEED_DATA, PAUSED, refusal, RemoteProtocolError } from '@upfleet/core/link/index.ts';
import type { SimulatedEcu } from './simulated-ecu.ts';

export class EcuEndpoint {
  readonly session = new EcuSession();
  #rebooting = false;
  #running = false;
  #closed = false;
  #rebootTimer: NodeJS.Timeout | undefined;
  readonly #onData = (b: Buffer) => {
    if (this.#rebooting || this.#closed) return;
    this.session.receive(b);
    void this.#pump();
  };

  constructor(readonly ecu: SimulatedEcu, readonly stream: Duplex) {
    stream.on('data', this.#onData);
  }

  #write(bytes: Uint8Array): void {
    if (bytes.length > 0 && !this.#closed && !this.stream.destroyed) this.stream.write(bytes);
  }

  async #pump(): Promise<void> {
    if (this.#running) return;
    this.#running = true;
    try {
      while (!this.#closed && !this.#rebooting) {
        let e;
        try {
          e = this.session.nextEvent();
        } catch (err) {
          if (!(err instanceof RemoteProtocolError)) throw err;
          this.ecu.emit('protocol-error', err);
          this.#write(this.session.send(refusal('PROTOCOL', err.reason.slice(0, 200))));
          this.session.reset();
          continue;
        }
        this.#write(this.session.takeOutgoing());
        if (e === NEED_DATA || e === PAUSED) break;
        if (e.type === 'ImageData') {
          const next = await this.ecu.storeChunk(e);
          this.#write(this.session.send({ type: 'ImageAck', next }));
          continue;
        }
        if (e.type === 'ImageAck' || e.type === 'ImageNak') continue;
        const reply = await this.ecu.handle(e as Parameters<SimulatedEcu['handle']>[0]);
        this.#write(this.session.send(reply));
        if (e.type === 'Activate' && reply.type === 'Ok') this.#reboot();
      }
    } finally {
      this.#running = false;
    }
  }

  #reboot(): void {
    this.#rebooting = true;
    this.#rebootTimer = setTimeout(() => {
      this.#rebooting = false;
      this.session.reset();
      this.ecu.emit('rebooted');
    }, this.ecu.options.rebootMs ?? 0);
  }

  /** Stops serving; the stream stays open (its owner closes it). */
  close(): void {
    this.#closed = true;
    clearTimeout(this.#rebootTimer);
    this.stream.off('data', this.#onData);
    this.ecu.close();
  }
}
