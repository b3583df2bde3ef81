/**
 * device-sim public API: simulated ECUs, their transports and the link emulator.
 *
 * In-process ECU (tests, demo):
 *   const ecu = new SimulatedEcu({ dir, ecuSerial, hardwareId, signer, verification: 'partial', directorRoot });
 *   const link = connectInProcess(ecu, { baud: 115200, ber: 1e-5 });   // emulator options optional
 *   const secondary = new SerialSecondary(link.primary, { ecuSerial });  // agent driver
 *   ...; await link.close();
 * ECU on a pty (as `upfleet-sim ecu --port PATH` does):
 *   const pty = await createPtyPair();
 *   const served = await servePort(ecu, pty.a, { baud: 115200 });      // emulator in front of the pty
 *   const secondary = await SerialSecondary.open({ path: pty.b, baudRate: 115200, ecuSerial });
 */
import type { Duplex } from 'node:stream';
import { duplexPair } from './duplex-pair.ts';
import { EcuEndpoint } from './ecu/ecu-endpoint.ts';
import type { SimulatedEcu } from './ecu/simulated-ecu.ts';
import { LinkEmulator, type EmulatorOptions } from './link-emulator.ts';

export { duplexPair } from './duplex-pair.ts';
export { LinkEmulator, type EmulatorOptions, type ChannelOptions, type ChannelStats } from './link-emulator.ts';
export { createPtyPair, PtyError, type PtyPair } from './pty.ts';
export { SimulatedEcu, type SimulatedEcuOptions } from './ecu/simulated-ecu.ts';
export { EcuEndpoint } from './ecu/ecu-endpoint.ts';
export { EcuStore, type EcuState } from './ecu/ecu-store.ts';
export { makeUpdateFixture, type UpdateFixture, type FixtureImage } from './fixtures.ts';
export { prng } from '@upfleet/core';

export interface ServedEcu {
  /** The primary's end of the line (in-process only). */
  readonly primary: Duplex;
  readonly endpoint: EcuEndpoint;
  /** Present when emulator options were given: disconnect(), set({ ber }), stats. */
  readonly emulator: LinkEmulator | undefined;
  close(): Promise<void>;
}

/**
 * Connects `ecu` to a new in-process line; with `emulation`, through a LinkEmulator
 * (endpoint a is the primary's side).
 */
export function connectInProcess(ecu: SimulatedEcu, emulation?: EmulatorOptions): ServedEcu {
  const [primary, far] = duplexPair();
  let ecuSide = far;
  let emulator: LinkEmulator | undefined;
  if (emulation) {
    const [near, ecuEnd] = duplexPair();
    emulator = new LinkEmulator(far, near, emulation);
    ecuSide = ecuEnd;
  }
  const endpoint = new EcuEndpoint(ecu, ecuSide);
  return {
    primary, endpoint, emulator,
    close: async () => {
      endpoint.close();
      emulator?.close();
    },
  };
}

/**
 * Serves `ecu` on a serial device (a pty end) opened with node-serialport; with
 * `emulation`, a LinkEmulator sits between the port and the ECU (ptys ignore baud
 * rates, so pacing and faults come from the emulator).
 */
export async function servePort(ecu: SimulatedEcu, path: string, emulation?: EmulatorOptions): Promise<Omit<ServedEcu, 'primary'>> {
  const { SerialPort } = await import('serialport');
  const port = new SerialPort({ path, baudRate: emulation?.baud || 115200, autoOpen: false });
  await new Promise<void>((resolve, reject) => port.open((e) => (e ? reject(e) : resolve())));
  let ecuSide: Duplex = port;
  let emulator: LinkEmulator | undefined;
  if (emulation) {
    const [near, ecuEnd] = duplexPair();
    emulator = new LinkEmulator(port, near, emulation);
    ecuSide = ecuEnd;
  }
  const endpoint = new EcuEndpoint(ecu, ecuSide);
  return {
    endpoint, emulator,
    close: async () => {
      endpoint.close();
      emulator?.close();
      if (port.isOpen) await new Promise<void>((r) => port.close(() => r()));
    },
  };
}
