/**
 * The serial-secondary driver on real pty pairs (socat), node-serialport on the
 * agent's end, a simulated ECU on the other (device-sim).
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { digestHex, Ed25519Signer } from '@upfleet/core';
import { EcuRefusedError } from '@upfleet/core/link/index.ts';
import { createPtyPair, makeUpdateFixture, prng, servePort, SimulatedEcu, type EmulatorOptions } from '../../../device-sim/src/index.ts';
import { LinkClosedError, SerialSecondary, WrongEcuError } from './serial-secondary.ts';
import type { ImageToInstall } from './secondary.ts';

const NOW = new Date();
const cleanups: Array<() => Promise<void> | void> = [];
after(async () => {
  for (const c of cleanups.reverse()) await c();
});

function imageOf(bytes: Uint8Array, name: string): ImageToInstall {
  return {
    name, length: bytes.length, releaseCounter: 0,
    hashes: { sha256: digestHex('sha256', bytes) , sha512: digestHex('sha512', bytes) },
    async *open(offset: number) {
      for (let o = offset; o < bytes.length; o += 4096) yield bytes.subarray(o, Math.min(o + 4096, bytes.length));
    },
  };
}

async function ptyEcu(serial: string, emulation?: EmulatorOptions) {
  const dir = mkdtempSync(join(tmpdir(), 'upfleet-pty-ecu-'));
  const r = prng(99);
  const bytes = new Uint8Array(80_000).map(() => Math.floor(r() * 256));
  const fx = makeUpdateFixture({ now: NOW, images: [{ ecuSerial: serial, hardwareId: 'telematics', name: 'tcu-3.1.bin', bytes }] });
  const ecu = new SimulatedEcu({
    dir, ecuSerial: serial, hardwareId: 'telematics', signer: Ed25519Signer.generate(), verification: 'partial',
    directorRoot: fx.directorRoot, rebootMs: 300,
  });
  const pty = await createPtyPair();
  const served = await servePort(ecu, pty.a, emulation);
  cleanups.push(() => rmSync(dir, { recursive: true, force: true }), () => pty.close(), () => served.close());
  return { ecu, pty, served, fx, bytes, image: imageOf(bytes, 'tcu-3.1.bin') };
}

describe('SerialSecondary on a pty pair', () => {
  let setup: Awaited<ReturnType<typeof ptyEcu>>;
  let secondary: SerialSecondary;
  before(async () => {
    // The emulator in front of the ECU's pty paces the line and can cut it.
    setup = await ptyEcu('tcu-1', { baud: 921_600, seed: 5 });
    secondary = await SerialSecondary.open({ path: setup.pty.b, baudRate: 921_600, ecuSerial: 'tcu-1', maxAttempts: 3 });
    cleanups.push(() => secondary.close());
  });

  it('reads info and a signed version report', async () => {
    const info = await secondary.info();
    assert.equal(info.ecuSerial, 'tcu-1');
    assert.equal(info.publicKey.keyid, setup.ecu.options.signer.keyid);
    const report = await secondary.versionReport('abc');
    assert.equal(report.signed.nonce, 'abc');
    assert.equal(report.signed.installedImage.filename, info.installed?.filename);
  });

  it('puts metadata, installs with a resume after a disconnect, and activates', async () => {
    await secondary.putMetadata(setup.fx.bundle());
    const begins: number[] = [];
    setup.ecu.on('begin', (o: number) => begins.push(o));
    let cut = false;
    await secondary.install(setup.image, (p) => {
      if (!cut && p.phase === 'transfer' && p.done > 30_000) {
        cut = true;
        setup.served.emulator!.disconnect();
        // Longer than maxAttempts RTOs: the driver must give up, reconnect and resume.
        setTimeout(() => setup.served.emulator!.reconnect(), 1500);
      }
    });
    assert.ok(cut);
    assert.ok(begins.length >= 2, `begins ${begins}`);
    assert.ok(begins.at(-1)! > 30_000, `resumed at ${begins.at(-1)}`);
    assert.deepEqual(setup.ecu.store.readInactive(), setup.bytes);
    await secondary.activate();
    const info = await secondary.info();
    assert.equal(info.installed?.filename, 'tcu-3.1.bin');
    assert.equal(info.installed?.hashes.sha256, setup.image.hashes.sha256);
  });

  it('a refusal after activation carries the ECU code', async () => {
    await assert.rejects(secondary.activate(), (e: unknown) => e instanceof EcuRefusedError && e.ecuCode === 'NO_IMAGE');
  });
});

describe('SerialSecondary on a bare pty pair (no emulator)', () => {
  it('installs byte-exact at pty speed', async () => {
    const s = await ptyEcu('tcu-2');
    const secondary = await SerialSecondary.open({ path: s.pty.b, baudRate: 115_200, ecuSerial: 'tcu-2' });
    cleanups.push(() => secondary.close());
    await secondary.putMetadata(s.fx.bundle());
    await secondary.install(s.image);
    assert.deepEqual(s.ecu.store.readInactive(), s.bytes);
  });

  it('refuses a line with another ECU than configured', async () => {
    const s = await ptyEcu('tcu-3');
    const secondary = await SerialSecondary.open({ path: s.pty.b, baudRate: 115_200, ecuSerial: 'not-tcu-3' });
    cleanups.push(() => secondary.close());
    await assert.rejects(secondary.info(), (e: unknown) => e instanceof WrongEcuError && e.actual === 'tcu-3');
  });
});

describe('SerialSecondary.close', () => {
  it('does not wait for an install in flight: the install fails with LinkClosedError', async () => {
    // Paced at 115200 baud, the 80 kB image would take about 7 s.
    const s = await ptyEcu('tcu-4', { baud: 115_200, seed: 6 });
    const secondary = await SerialSecondary.open({ path: s.pty.b, baudRate: 115_200, ecuSerial: 'tcu-4' });
    await secondary.putMetadata(s.fx.bundle());
    let closed: Promise<void> | undefined;
    const install = secondary.install(s.image, (p) => {
      if (p.done > 0) closed ??= secondary.close();
    });
    await assert.rejects(install, LinkClosedError);
    assert.ok(closed, 'closed during the transfer');
    await closed;
    await assert.rejects(secondary.info(), LinkClosedError);
  });
});
