/**
 * Serves a SimulatedEcu over a byte stream (an in-process Duplex, a pty opened
 * with serialport, or an emulated link): the ECU-side transport of the link.
 *
 * Invariants:
 * - Events are handled one at a time, in arrival order; a reply is written
 *   before the next request is read (the session is PAUSED meanwhile).
 * - A peer protocol error is answered with an unsolicited PROTOCOL refusal and
 *   a session reset, so a confused primary starts over with Hello. A failed
 *   flash write ends the transfer with FLASH_ERROR; any other failure of the ECU
 *   logic is a REFUSED reply: the endpoint never dies with the line up.
 * - After a successful Activate the ECU "reboots": it drops every byte for
 *   `rebootMs`, then starts a fresh session.
 * - After any session reset the session answers HELLO_REQUIRED until Hello,
 *   and Hello makes the ECU discard a half-received metadata transfer: no
 *   separate clean-up here.
 */
import type { Duplex } from 'node:stream';
import { EcuSession, NEED_DATA, PAUSED, refusal, RemoteProtocolError, type Reply, type Request } from '@upfleet/core/link/index.ts';
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

  readonly #onError = (e: Error) => this.ecu.emit('link-error', e);

  constructor(readonly ecu: SimulatedEcu, readonly stream: Duplex) {
    stream.on('data', this.#onData);
    stream.on('error', this.#onError);
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
          let next: number;
          try {
            next = await this.ecu.storeChunk(e);
          } catch (err) {
            // The transfer ends; the primary gets the code and may start over.
            this.#write(this.session.send(refusal('FLASH_ERROR', (err as Error).message.slice(0, 200))));
            continue;
          }
          this.#write(this.session.send({ type: 'ImageAck', next }));
          continue;
        }
        let reply: Reply;
        try {
          reply = await this.ecu.handle(e as Request);
        } catch (err) {
          reply = refusal('REFUSED', (err as Error).message.slice(0, 200));
        }
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

  /** Stops serving; the stream stays open (its owner closes it). A stream error is emitted on the ECU as 'link-error'. */
  close(): void {
    this.#closed = true;
    clearTimeout(this.#rebootTimer);
    this.stream.off('data', this.#onData);
    this.stream.off('error', this.#onError);
    this.ecu.close();
  }
}
