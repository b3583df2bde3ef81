/**
 * Attacks by a lying primary on a secondary ECU, on the real serial path: a
 * socat pty pair, node-serialport at both ends, a simulated ECU on one, core's
 * PrimarySession (the liar) or the agent's SerialSecondary (the honest primary)
 * on the other. A refused or abandoned transfer must leave the ECU able to take
 * the next honest update.
 */
import { after, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { SerialPort } from 'serialport';
import { digestHex, Ed25519Signer } from '@upfleet/core';
import { NEED_DATA, PrimarySession, type Event, type Reply, type Request } from '@upfleet/core/link/index.ts';
import { SerialSecondary } from '@upfleet/agent/secondaries/serial-secondary.ts';
import { createPtyPair, makeUpdateFixture, prng, servePort, SimulatedEcu } from '@upfleet/device-sim/src/index.ts';

const cleanups: Array<() => Promise<void> | void> = [];
after(async () => {
  for (const c of cleanups.reverse()) await c();
});

async function openPort(path: string): Promise<SerialPort> {
  const port = new SerialPort({ path, baudRate: 115_200, autoOpen: false });
  await new Promise<void>((resolve, reject) => port.open((e) => (e ? reject(e) : resolve())));
  return port;
}

/** A compromised primary: speaks the link protocol through core's session, one request at a time, on `path`. */
async function lyingPrimary(path: string) {
  const port = await openPort(path);
  const session = new PrimarySession({ rtoMs: 1000 });
  const events: Event[] = [];
  let wake: (() => void) | undefined;
  port.on('data', (b: Buffer) => {
    session.receive(b);
    for (let e = session.nextEvent(performance.now()); e !== NEED_DATA; e = session.nextEvent(performance.now())) {
      if (typeof e === 'object') events.push(e);
    }
    wake?.();
  });
  return {
    async request(r: Request): Promise<Reply> {
      port.write(session.send(r, performance.now()));
      for (;;) {
        const e = events.shift();
        if (e) return e as Reply;
        await new Promise<void>((resolve) => (wake = resolve));
      }
    },
    hello: () => session.hello(),
    /** Hangs up: closes its end of the line mid-transfer. */
    hangUp: () => new Promise<void>((resolve) => port.close(() => resolve())),
  };
}

describe('a lying primary against a secondary ECU', () => {
  it('32 half metadata files left behind do not block the next honest update', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'upfleet-attack-ecu-'));
    const r = prng(17);
    const bytes = new Uint8Array(20_000).map(() => Math.floor(r() * 256));
    const fx = makeUpdateFixture({ now: new Date(), images: [{ ecuSerial: 'brake-1', hardwareId: 'brake', name: 'brake-2.0.bin', bytes }] });
    const ecu = new SimulatedEcu({
      dir, ecuSerial: 'brake-1', hardwareId: 'brake', signer: Ed25519Signer.generate(), verification: 'partial',
      directorRoot: fx.directorRoot, rebootMs: 100,
    });
    const pty = await createPtyPair();
    const served = await servePort(ecu, pty.a);
    cleanups.push(() => rmSync(dir, { recursive: true, force: true }), () => pty.close(), () => served.close());

    const liar = await lyingPrimary(pty.b);
    assert.equal((await liar.request(liar.hello())).type, 'HelloReply');
    // The ECU's limit per transfer: 32 files. Each is left half sent.
    for (let i = 0; i < 32; i++) {
      const reply = await liar.request({ type: 'MetadataPart', repo: 'director', name: `${i + 2}.root.json`, total: 1000, offset: 0, data: new Uint8Array(500) });
      assert.deepEqual(reply, { type: 'Ok' }, `half file ${i}`);
    }
    await liar.hangUp();

    const honest = await SerialSecondary.open({ path: pty.b, baudRate: 115_200, ecuSerial: 'brake-1' });
    cleanups.push(() => honest.close());
    await honest.putMetadata(fx.bundle());
    await honest.install({
      name: 'brake-2.0.bin', length: bytes.length, releaseCounter: 0,
      hashes: { sha256: digestHex('sha256', bytes), sha512: digestHex('sha512', bytes) },
      async *open(offset: number) {
        yield bytes.subarray(offset);
      },
    });
    await honest.activate();
    assert.equal((await honest.info()).installed?.filename, 'brake-2.0.bin');
    assert.deepEqual(ecu.store.readActive(), bytes);
    const report = await honest.versionReport('after-the-attack');
    assert.doesNotMatch(report.signed.attacksDetected, /too many metadata files/);
    assert.equal(report.signed.attacksDetected, '');
  });
});
