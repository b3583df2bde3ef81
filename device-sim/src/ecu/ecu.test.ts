import { after, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { digestHex, Ed25519Signer, RepositoryBuilder, TargetFile } from '@upfleet/core';
import { EcuRefusedError, type Reply, type Request } from '@upfleet/core/link/index.ts';
import { rtoForLine, SerialSecondary } from '../../../agent/src/secondaries/serial-secondary.ts';
import type { ImageToInstall } from '../../../agent/src/secondaries/secondary.ts';
import { connectInProcess, makeUpdateFixture, prng, SimulatedEcu, type EmulatorOptions, type SimulatedEcuOptions, type UpdateFixture } from '../index.ts';

const NOW = new Date();
const dirs: string[] = [];
const closers: Array<() => Promise<void>> = [];
after(async () => {
  for (const c of closers) await c();
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

function randomImage(n: number, seed: number): Uint8Array {
  const r = prng(seed);
  return new Uint8Array(n).map(() => Math.floor(r() * 256));
}

function source(name: string, bytes: Uint8Array, pieces = 1000): ImageToInstall {
  return {
    name, length: bytes.length, releaseCounter: 0,
    hashes: { sha256: digestHex('sha256', bytes), sha512: digestHex('sha512', bytes) },
    async *open(offset: number) {
      for (let o = offset; o < bytes.length; o += pieces) yield bytes.subarray(o, Math.min(o + pieces, bytes.length));
    },
  };
}

/** One ECU with fresh keys and repositories, connected in-process (optionally emulated). */
function setup(opts: { size?: number; emulation?: EmulatorOptions; ecu?: Partial<SimulatedEcuOptions>; secondary?: object } = {}) {
  const dir = mkdtempSync(join(tmpdir(), 'upfleet-ecu-'));
  dirs.push(dir);
  const bytes = randomImage(opts.size ?? 20_000, 7);
  const fx = makeUpdateFixture({ now: NOW, images: [{ ecuSerial: 'brake-1', hardwareId: 'brake', name: 'brake-2.0.bin', bytes, releaseCounter: 2 }] });
  const ecu = new SimulatedEcu({
    dir, ecuSerial: 'brake-1', hardwareId: 'brake', signer: Ed25519Signer.generate(), verification: 'partial',
    directorRoot: fx.directorRoot, imageRoot: fx.imageRoot, ...opts.ecu,
  });
  const link = connectInProcess(ecu, opts.emulation);
  // Paced lines queue a whole window: the RTO must cover it (rtoForLine).
  const rtoMs = opts.emulation?.baud ? rtoForLine(opts.emulation.baud) : 200;
  const secondary = new SerialSecondary(link.primary, { ecuSerial: 'brake-1', rtoMs, ...opts.secondary });
  closers.push(async () => {
    await secondary.close();
    await link.close();
  });
  return { dir, bytes, fx, ecu, link, secondary, image: source('brake-2.0.bin', bytes) };
}

/** Every file of the ECU's trusted metadata stores, by repository and name. */
function storedMetadata(ecu: SimulatedEcu): Record<string, string> {
  const out: Record<string, string> = {};
  for (const repo of ['director', 'image']) {
    const dir = join(ecu.store.dir, 'metadata', repo);
    if (!existsSync(dir)) continue;
    for (const name of readdirSync(dir)) out[`${repo}/${name}`] = readFileSync(join(dir, name), 'hex');
  }
  return out;
}

const refusedWith = (code: string) => (e: unknown) => e instanceof EcuRefusedError && e.ecuCode === code;

describe('simulated ECU over an in-process link', () => {
  it('answers info and a signed version report for the nonce', async () => {
    const { secondary, ecu } = setup();
    const info = await secondary.info();
    assert.equal(info.ecuSerial, 'brake-1');
    assert.equal(info.hardwareId, 'brake');
    assert.equal(info.installed?.filename, 'factory-brake.bin');
    assert.equal(info.publicKey.keyid, ecu.options.signer.keyid);
    const report = await secondary.versionReport('nonce-42');
    assert.equal(report.signed.nonce, 'nonce-42');
    assert.equal(report.signed.ecuSerial, 'brake-1');
  });

  it('verifies metadata, installs byte-exact and activates', async () => {
    const { secondary, ecu, fx, image, bytes } = setup();
    await secondary.putMetadata(fx.bundle());
    const phases: string[] = [];
    await secondary.install(image, (p) => phases.push(p.phase));
    assert.deepEqual([...new Set(phases)], ['transfer', 'verify', 'flash']);
    assert.deepEqual(ecu.store.readInactive(), bytes);
    await secondary.activate();
    const info = await secondary.info();
    assert.equal(info.installed?.filename, 'brake-2.0.bin');
    assert.equal(info.installed?.hashes.sha256, image.hashes.sha256);
    assert.equal(info.releaseCounter, 2, 'a partial ECU records the release counter the director copied from the image repository');
    assert.deepEqual(ecu.store.readActive(), bytes);
  });

  it('refuses director targets signed by a key the pinned root does not trust', async () => {
    const { secondary, fx } = setup();
    const bundle = fx.bundle();
    const rogue = new RepositoryBuilder({ now: NOW });
    rogue.setTarget('brake-2.0.bin', fx.director.targets.targets['brake-2.0.bin']!);
    rogue.commit();
    await assert.rejects(secondary.putMetadata({ director: { ...bundle.director, 'targets.json': rogue.bytes('targets') } }), refusedWith('METADATA_UNSIGNED'));
  });

  it('refuses expired director targets', async () => {
    const { secondary, fx } = setup({ ecu: { now: () => new Date(NOW.getTime() + 200 * 86400_000) } });
    await assert.rejects(secondary.putMetadata(fx.bundle()), refusedWith('METADATA_EXPIRED'));
  });

  it('refuses a target for another hardware ID', async () => {
    const { secondary, fx } = setup({ ecu: { hardwareId: 'telematics' } });
    await assert.rejects(secondary.putMetadata(fx.bundle()), refusedWith('HARDWARE_ID_MISMATCH'));
  });

  it('refuses an image before any verified metadata', async () => {
    const { secondary, image } = setup();
    await assert.rejects(secondary.install(image), refusedWith('NO_METADATA'));
  });

  it('refuses an announced image that differs from the signed target', async () => {
    const { secondary, fx, bytes } = setup();
    await secondary.putMetadata(fx.bundle());
    const other = bytes.slice();
    other[0]! ^= 1;
    await assert.rejects(secondary.install(source('brake-2.0.bin', other)), refusedWith('IMAGE_MISMATCH'));
  });

  it('refuses a lying primary that announces the signed hashes but streams other bytes, and keeps the old slot', async () => {
    const { secondary, fx, ecu, bytes, image } = setup();
    await secondary.putMetadata(fx.bundle());
    const evil = bytes.slice();
    evil[12_345]! ^= 0x80;
    await assert.rejects(secondary.install({ ...image, open: source('x', evil).open }), refusedWith('HASH_MISMATCH'));
    await assert.rejects(secondary.activate(), refusedWith('NO_IMAGE'));
    assert.equal((await secondary.info()).installed?.filename, 'factory-brake.bin');
    assert.match(ecu.store.state.attacksDetected, /HASH_MISMATCH/);
    assert.match((await secondary.versionReport('n')).signed.attacksDetected, /HASH_MISMATCH/);
  });

  it('answers BUSY while erasing, and the driver waits', async () => {
    const { secondary, fx, image, bytes, ecu } = setup({ ecu: { eraseMs: 150 } });
    await secondary.putMetadata(fx.bundle());
    const t0 = performance.now();
    await secondary.install(image);
    assert.ok(performance.now() - t0 >= 150);
    assert.deepEqual(ecu.store.readInactive(), bytes);
  });

  it('a failed flash write ends the transfer with FLASH_ERROR, and the next install resumes', async () => {
    const { secondary, fx, ecu, image, bytes } = setup();
    await secondary.putMetadata(fx.bundle());
    const store = ecu.storeChunk.bind(ecu);
    let failOnce = true;
    ecu.storeChunk = async (d) => {
      if (failOnce && d.offset >= 8192) {
        failOnce = false;
        throw new Error('simulated flash write failure');
      }
      return store(d);
    };
    await assert.rejects(secondary.install(image), refusedWith('FLASH_ERROR'));
    const begins: number[] = [];
    ecu.on('begin', (o: number) => begins.push(o));
    await secondary.install(image);
    assert.ok(begins[0]! >= 8192, `resumed at ${begins[0]}`);
    assert.deepEqual(ecu.store.readInactive(), bytes);
  });

  it('refuses on demand (low battery) with the ECU code', async () => {
    const { secondary, fx, image } = setup({ ecu: { refuse: 'LOW_BATTERY' } });
    await secondary.putMetadata(fx.bundle());
    await assert.rejects(secondary.install(image), (e: unknown) => refusedWith('LOW_BATTERY')(e) && (e as EcuRefusedError).ecuSerial === 'brake-1');
  });

  it('resumes an interrupted install from the offset the ECU holds', async () => {
    const { secondary, fx, ecu, link, image, bytes } = setup({ size: 60_000, emulation: { baud: 921_600 }, secondary: { maxAttempts: 3 } });
    await secondary.putMetadata(fx.bundle());
    const begins: number[] = [];
    ecu.on('begin', (o: number) => begins.push(o));
    let cut = false;
    const install = secondary.install(image, (p) => {
      if (!cut && p.done > 20_000) {
        cut = true;
        link.emulator!.disconnect();
        // Longer than maxAttempts RTOs: the driver must give up, reconnect and resume.
        setTimeout(() => link.emulator!.reconnect(), 1500);
      }
    });
    await install;
    assert.ok(begins.length >= 2, `begins ${begins}`);
    assert.equal(begins[0], 0);
    assert.ok(begins.at(-1)! > 20_000, `resumed at ${begins.at(-1)}`);
    assert.deepEqual(ecu.store.readInactive(), bytes);
  });

  it('an Activate whose Ok is lost succeeds once the rebooted ECU runs the new image', async () => {
    const { secondary, fx, ecu, link, image } = setup({ emulation: { baud: 921_600 } });
    await secondary.putMetadata(fx.bundle());
    await secondary.install(image);
    // The Ok dies on the line; the retransmitted Activate meets the ECU's fresh session (HELLO_REQUIRED).
    ecu.once('activated', () => {
      link.emulator!.disconnect();
      setTimeout(() => link.emulator!.reconnect(), 50);
    });
    await secondary.activate();
    assert.equal((await secondary.info()).installed?.hashes.sha256, image.hashes.sha256);
  });

  for (const [label, emulation] of [
    ['bit errors (BER 1e-4)', { baud: 921_600, ber: 1e-4, seed: 11 }],
    ['dropped bytes (1e-4)', { baud: 921_600, dropRate: 1e-4, seed: 12 }],
    ['latency 5 ms and BER 3e-5', { baud: 460_800, ber: 3e-5, latencyMs: 5, seed: 13 }],
  ] as const) {
    it(`delivers byte-exact through ${label}`, async () => {
      const { secondary, fx, ecu, link, image, bytes } = setup({ size: 50_000, emulation, secondary: { maxAttempts: 10 } });
      await secondary.putMetadata(fx.bundle());
      await secondary.install(image);
      assert.deepEqual(ecu.store.readInactive(), bytes);
      const st = link.emulator!.aToB.stats;
      assert.ok(st.bitsFlipped + st.bytesDropped > 0, 'faults were injected');
      await secondary.activate();
      assert.equal((await secondary.info()).installed?.hashes.sha256, image.hashes.sha256);
    });
  }

  it('full verification: installs when both repositories agree, with the image repository release counter', async () => {
    const { secondary, fx, ecu, image, bytes } = setup({ ecu: { verification: 'full' } });
    assert.equal((await secondary.info()).verification, 'full');
    await secondary.putMetadata(fx.bundle());
    await secondary.install(image);
    await secondary.activate();
    assert.equal((await secondary.info()).releaseCounter, 2);
    assert.deepEqual(ecu.store.readActive(), bytes);
  });

  it('full verification: refuses a director target the image repository does not back', async () => {
    const { secondary, fx } = setup({ ecu: { verification: 'full' } });
    const t = fx.director.targets.targets['brake-2.0.bin']!;
    fx.director.setTarget('brake-2.0.bin', new TargetFile(t.length + 1, { ...t.hashes }, t.custom));
    fx.director.commit();
    await assert.rejects(secondary.putMetadata(fx.bundle()), refusedWith('TARGET_MISMATCH'));
    await assert.rejects(secondary.putMetadata({ director: fx.bundle().director }), refusedWith('METADATA_INCOMPLETE'));
  });
});

describe('simulated ECU: the lifetime of a metadata transfer', () => {
  const HELLO: Request = { type: 'Hello', versions: [1], maxChunk: 512, maxWindow: 16 };
  /** Sends every file of `bundle` in 512-byte parts straight to the ECU (no session, so no Hello in between), then MetadataEnd. */
  async function sendBundle(ecu: SimulatedEcu, bundle: ReturnType<UpdateFixture['bundle']>): Promise<Reply> {
    for (const repo of ['director', 'image'] as const) {
      for (const [name, bytes] of Object.entries(bundle[repo])) {
        for (let offset = 0; offset === 0 || offset < bytes.length; offset += 512) {
          const reply = await ecu.handle({ type: 'MetadataPart', repo, name, total: bytes.length, offset, data: bytes.subarray(offset, offset + 512) });
          assert.equal(reply.type, 'Ok', `${repo}/${name} at ${offset}: ${JSON.stringify(reply)}`);
        }
      }
    }
    return ecu.handle({ type: 'MetadataEnd' });
  }
  /** What a lying primary leaves behind: the first half of `count` files (named `names`, then junk-N.json). */
  async function halfFiles(ecu: SimulatedEcu, count: number, names: string[] = []): Promise<void> {
    for (let i = 0; i < count; i++) {
      const name = names[i] ?? `junk-${i}.json`;
      assert.equal((await ecu.handle({ type: 'MetadataPart', repo: 'director', name, total: 100, offset: 0, data: new Uint8Array(50) })).type, 'Ok');
    }
  }
  const accepted = (ecu: SimulatedEcu, reply: Reply) => {
    assert.deepEqual(reply, { type: 'Ok' });
    assert.equal(ecu.store.state.verified?.name, 'brake-2.0.bin');
    assert.equal(ecu.store.state.attacksDetected, '');
  };
  const refusal = (reply: Reply, code: string, detail: RegExp) => {
    assert.equal(reply.type, 'Refusal');
    assert.equal((reply as Reply & { type: 'Refusal' }).code, code);
    assert.match((reply as Reply & { type: 'Refusal' }).detail, detail);
  };

  for (const [label, reset] of [
    ['Hello (a new session)', HELLO],
    ['Abort', { type: 'Abort' }],
    ['a request other than a part (ReportRequest)', { type: 'ReportRequest', nonce: 'n' }],
  ] as const) {
    it(`32 half files abandoned before ${label} do not block the next transfer`, async () => {
      const { ecu, fx } = setup();
      await halfFiles(ecu, 32);
      await ecu.handle(reset as Request);
      accepted(ecu, await sendBundle(ecu, fx.bundle()));
    });
  }

  it('a refused MetadataEnd (incomplete files) discards the transfer and changes no persisted state', async () => {
    const { ecu, fx } = setup();
    const before = readFileSync(ecu.store.statePath, 'utf8');
    await halfFiles(ecu, 32);
    refusal(await ecu.handle({ type: 'MetadataEnd' }), 'METADATA_INCOMPLETE', /junk-0\.json: 50 of 100 bytes/);
    assert.equal(readFileSync(ecu.store.statePath, 'utf8'), before);
    accepted(ecu, await sendBundle(ecu, fx.bundle()));
  });

  it('a refused MetadataEnd (bad signature) keeps the trust and verified target, records the attack, and discards the transfer', async () => {
    const { ecu, fx } = setup();
    accepted(ecu, await sendBundle(ecu, fx.bundle()));
    const trusted = storedMetadata(ecu);
    const { verified } = structuredClone(ecu.store.state);
    const rogue = new RepositoryBuilder({ now: NOW });
    rogue.setTarget('brake-2.0.bin', fx.director.targets.targets['brake-2.0.bin']!);
    rogue.commit();
    const bundle = fx.bundle();
    refusal(await sendBundle(ecu, { ...bundle, director: { ...bundle.director, 'targets.json': rogue.bytes('targets') } }), 'METADATA_UNSIGNED', /./);
    assert.deepEqual(storedMetadata(ecu), trusted);
    assert.deepEqual(ecu.store.state.verified, verified);
    assert.match(ecu.store.state.attacksDetected, /METADATA_UNSIGNED/);
    refusal(await ecu.handle({ type: 'MetadataEnd' }), 'METADATA_INCOMPLETE', /./);
  });

  it('a part at offset 0 for a file the transfer already holds starts a new set', async () => {
    const { ecu, fx } = setup();
    const first = Object.keys(fx.bundle().director)[0]!;
    await halfFiles(ecu, 2, [first]);
    accepted(ecu, await sendBundle(ecu, fx.bundle()));
  });

  describe('limits of one transfer', () => {
    it('refuses a 33rd file, and the refusal ends the transfer', async () => {
      const { ecu, fx } = setup();
      await halfFiles(ecu, 32);
      refusal(await ecu.handle({ type: 'MetadataPart', repo: 'image', name: 'one-more.json', total: 10, offset: 0, data: new Uint8Array(10) }), 'METADATA_MALFORMED', /too many metadata files/);
      accepted(ecu, await sendBundle(ecu, fx.bundle()));
    });

    it('refuses a file larger than 2 MB', async () => {
      const { ecu } = setup();
      refusal(await ecu.handle({ type: 'MetadataPart', repo: 'director', name: 'targets.json', total: 2_000_001, offset: 0, data: new Uint8Array(10) }), 'METADATA_MALFORMED', /larger than 2000000 bytes/);
      assert.deepEqual(await ecu.handle({ type: 'MetadataPart', repo: 'director', name: 'targets.json', total: 2_000_000, offset: 0, data: new Uint8Array(10) }), { type: 'Ok' });
    });

    it('refuses a part that changes the total or skips ahead', async () => {
      const { ecu } = setup();
      await halfFiles(ecu, 1);
      refusal(await ecu.handle({ type: 'MetadataPart', repo: 'director', name: 'junk-0.json', total: 101, offset: 50, data: new Uint8Array(10) }), 'PROTOCOL', /total 101, was 100/);
      await halfFiles(ecu, 1);
      refusal(await ecu.handle({ type: 'MetadataPart', repo: 'director', name: 'junk-0.json', total: 100, offset: 60, data: new Uint8Array(10) }), 'PROTOCOL', /part at 60, expected 50/);
    });
  });
});
