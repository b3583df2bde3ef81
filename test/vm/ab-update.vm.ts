/**
 * `npm run test:vm` (docs/vm-test.md; not part of `npm test`): the real thing. A Debian
 * gateway (mmdebstrap, GRUB, RAUC, systemd, the single-file agent as its service) boots
 * from an A/B disk in qemu-system-x86_64 under software emulation; its secondary ECU is
 * `upfleet-sim ecu` on the host behind the guest's ttyS1; the director and the image
 * repository run on the host's loopback, reached through QEMU's restricted user
 * networking only.
 *
 *  1. gateway 2.0.0 (a RAUC bundle) and a secondary image: install into slot B, reboot,
 *     commit; the director holds a verified manifest with both new images. Idle RSS of
 *     the agent and the state directory's footprint are read in the guest.
 *  2. gateway 3.0.0, whose health check fails: it boots in slot A, fails, rolls back to
 *     B; the failure is reported and slot B still runs 2.0.0.
 *  3. gateway 4.0.0 with a power cut (SIGKILL of qemu) during `rauc install`: the next
 *     boot resumes (or rolls back) and the director gets a verified manifest that says
 *     which, matching what runs in the guest.
 *
 * Each boot's time, the wall time and the figures are printed and written to
 * <cache>/last-run.json.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes, createHash } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { ensureVmImage, type VmImage } from '../../scripts/vm/image.ts';
import { GatewayWorld, GUEST_CONFIG } from './gateway-world.ts';
import type { Boot } from './qemu-vm.ts';

// Interrupted: exit, so that the 'exit' handlers power the VM off and stop the ECU.
for (const signal of ['SIGINT', 'SIGTERM'] as const) process.once(signal, () => process.exit(130));

const t0 = performance.now();
const elapsed = () => ((performance.now() - t0) / 1000).toFixed(0).padStart(5);
const log = (line: string) => process.stderr.write(`[vm ${elapsed()} s] ${line}\n`);

const DEVICE = GUEST_CONFIG.deviceId;
const PRIMARY = GUEST_CONFIG.ecus.primary;
const SECONDARY = GUEST_CONFIG.ecus.secondaries[0]!;
const STEP_MS = 15 * 60_000;

async function waitFor<T>(what: string, probe: () => Promise<T | undefined>, timeoutMs = STEP_MS): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await probe().catch(() => undefined);
    if (v !== undefined) return v;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs / 1000} s waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 2000));
  }
}

interface Figures {
  buildSeconds: VmImage['built'];
  boots: Boot[];
  agentIdleRssKiB?: number;
  stateDirKiB?: number;
  stateDirDetail?: string;
  powerCut?: { at: string; outcome: string };
  wallSeconds?: number;
}

describe('VM: a Debian gateway updated through RAUC with an A/B disk, GRUB, a serial secondary, fallback and a power cut', { timeout: 150 * 60_000 }, () => {
  let image: VmImage;
  let world: GatewayWorld;
  const figures: Figures = { buildSeconds: {}, boots: [] };
  const images: Record<string, { name: string; sha256: string }> = {};
  let broken = false;

  before(async () => {
    const tools = (await import('../../scripts/system-tools.mjs' as string)) as { ensureSystemTools(o?: { quiet?: boolean; set?: string }): string[] };
    const missing = tools.ensureSystemTools({ set: 'vm' });
    if (missing.length > 0) throw new Error(`missing tools (run as root to install them): ${missing.join(' ')}`);
    image = await ensureVmImage({ log });
    figures.buildSeconds = image.built;
    log(`image ${image.dir} (built now: ${JSON.stringify(image.built)})`);
    world = await GatewayWorld.start(image, log);
    log(`run directory ${world.dir}; director ${world.stack.director.url}, image repository ${world.stack.imageRepo.url}`);
  });

  after(async () => {
    figures.boots = world?.boots ?? [];
    figures.wallSeconds = (performance.now() - t0) / 1000;
    await world?.close();
    const report = [
      `boots: ${figures.boots.map((b, i) => `#${i + 1} ${b.slot} ${b.seconds.toFixed(1)} s`).join(', ')}`,
      `first build: ${JSON.stringify(figures.buildSeconds)}`,
      `agent idle RSS ${figures.agentIdleRssKiB ?? '?'} KiB; state directory ${figures.stateDirKiB ?? '?'} KiB after an update`,
      `power cut: ${JSON.stringify(figures.powerCut)}`,
      `wall time ${figures.wallSeconds.toFixed(0)} s`,
    ];
    for (const line of report) log(line);
    if (image) writeFileSync(join(image.dir, '..', 'last-run.json'), JSON.stringify({ at: new Date().toISOString(), ...figures }, null, 1) + '\n');
  });

  /** Runs a step only when every step before it passed (they build on each other). */
  function step(name: string, fn: () => Promise<void>): void {
    it(name, async (t) => {
      if (broken) return t.skip('an earlier step failed');
      try {
        await fn();
      } catch (e) {
        broken = true;
        throw e;
      }
    });
  }

  async function publish(key: string, name: string, data: Uint8Array, hardwareId: string, version: string, releaseCounter: number): Promise<void> {
    await world.stack.publish({ name, data, hardwareIds: [hardwareId], version, releaseCounter });
    images[key] = { name, sha256: createHash('sha256').update(data).digest('hex') };
  }

  async function assignment(id: string): Promise<{ status: string }> {
    const view = await world.stack.device(DEVICE);
    return view.assignments.find((a: { id: string }) => a.id === id);
  }

  async function settled(id: string): Promise<string> {
    return waitFor(`assignment ${id} to settle`, async () => {
      const a = await assignment(id);
      return a && ['succeeded', 'failed'].includes(a.status) ? a.status : undefined;
    });
  }

  async function newestManifest(): Promise<{ receivedAt: string; summary: { installed: Record<string, { filename: string; hashes: { sha256: string } }> } }> {
    return (await world.stack.manifests(DEVICE))[0];
  }

  async function guestRelease(): Promise<string> {
    return (await world.vm!.sh('cat /etc/upfleet-release')).trim();
  }

  step('boots slot A, provisions the agent and registers at the director', async () => {
    await world.powerOn();
    const boot = await world.nextBoot();
    assert.equal(boot.slot, 'A');
    assert.equal(await guestRelease(), '1.0.0');
    await waitFor('the first verified manifest', async () => ((await world.stack.manifests(DEVICE)).length > 0 ? true : undefined));
    log(`first boot: ${(await world.vm!.exec('systemd-analyze time; systemd-analyze blame | head -6')).out.trim()}`);
    const view = await world.stack.device(DEVICE);
    assert.deepEqual(view.ecus.map((e: { serial: string }) => e.serial).sort(), [PRIMARY.serial, SECONDARY.serial].sort());
  });

  step('updates the gateway (RAUC bundle 2.0.0) and the secondary, reboots into slot B and commits', async () => {
    await publish('gw2', 'upfleet-vm-rootfs-2.0.0.raucb', new Uint8Array(readFileSync(image.bundles.v2)), PRIMARY.hardwareId, '2.0.0', 2);
    await publish('ecu2', 'upfleet-vm-ecu-2.0.0.bin', randomBytes(96 * 1024), SECONDARY.hardwareId, '2.0.0', 2);
    const { id } = await world.stack.assign(DEVICE, [{ ecuSerial: PRIMARY.serial, image: images.gw2!.name }, { ecuSerial: SECONDARY.serial, image: images.ecu2!.name }]);
    const boot = await world.nextBoot();
    assert.equal(boot.slot, 'B', 'the new slot boots');
    assert.equal(await settled(id), 'succeeded');
    const m = await newestManifest();
    assert.equal(m.summary.installed[PRIMARY.serial]?.filename, images.gw2!.name);
    assert.equal(m.summary.installed[PRIMARY.serial]?.hashes.sha256, images.gw2!.sha256);
    assert.equal(m.summary.installed[SECONDARY.serial]?.filename, images.ecu2!.name);
    assert.equal(m.summary.installed[SECONDARY.serial]?.hashes.sha256, images.ecu2!.sha256);
    assert.equal(await guestRelease(), '2.0.0');
    const env = await world.vm!.sh('grub-editenv /boot/grub-env/grub/grubenv list');
    assert.match(env, /^ORDER=B A$/m);
    assert.match(env, /^B_OK=1$/m);
    assert.match(env, /^B_TRY=0$/m, 'committed: GRUB keeps booting B');
  });

  step('reads the agent idle RSS and the state directory footprint in the guest', async () => {
    await new Promise((r) => setTimeout(r, 15_000));
    const pid = (await world.vm!.sh('systemctl show -p MainPID --value upfleet-agent.service')).trim();
    assert.match(pid, /^[1-9]\d*$/, 'the agent service runs');
    const rss = /VmRSS:\s+(\d+) kB/.exec(await world.vm!.sh(`cat /proc/${pid}/status`));
    figures.agentIdleRssKiB = Number(rss![1]);
    figures.stateDirKiB = Number((await world.vm!.sh('du -sk /var/lib/upfleet')).split(/\s/)[0]);
    figures.stateDirDetail = (await world.vm!.sh('du -sk /var/lib/upfleet/* | sort -rn | head -8')).trim();
    log(`agent idle RSS ${figures.agentIdleRssKiB} KiB; /var/lib/upfleet ${figures.stateDirKiB} KiB:\n${figures.stateDirDetail}`);
    assert.ok(figures.agentIdleRssKiB > 0);
  });

  step('a gateway image whose health check fails: slot A boots, fails, the agent goes back to B and reports it', async () => {
    await publish('gw3', 'upfleet-vm-rootfs-3.0.0.raucb', new Uint8Array(readFileSync(image.bundles.v3Unhealthy)), PRIMARY.hardwareId, '3.0.0', 3);
    const { id } = await world.stack.assign(DEVICE, [{ ecuSerial: PRIMARY.serial, image: images.gw3!.name }]);
    assert.equal((await world.nextBoot()).slot, 'A', 'the new slot is tried');
    assert.equal((await world.nextBoot()).slot, 'B', 'then the old slot runs again');
    assert.equal(await settled(id), 'failed');
    const events = await world.stack.events(DEVICE);
    const failure = events.find((e) => e.ecuSerial === PRIMARY.serial && e.code === 'HEALTH_CHECK_FAILED');
    assert.ok(failure, JSON.stringify(events));
    assert.match(failure.detail, /fails on purpose/, 'the health check\'s own words reach the director');
    log(`reported: ${failure.code} ${failure.detail}`);
    const m = await newestManifest();
    assert.equal(m.summary.installed[PRIMARY.serial]?.filename, images.gw2!.name, 'the gateway still reports 2.0.0');
    assert.equal(await guestRelease(), '2.0.0');
    const env = await world.vm!.sh('grub-editenv /boot/grub-env/grub/grubenv list');
    assert.match(env, /^A_OK=0$/m, 'slot A is marked bad');
    assert.match(env, /^ORDER=B A$/m, 'slot B is the first choice again');
    // GRUB marked B tried at this boot; only the agent's start confirms it (no other unit does).
    await waitFor('the agent to confirm slot B at its start (B_TRY=0)', async () => (/^B_TRY=0$/m.test(await world.vm!.sh('grub-editenv /boot/grub-env/grub/grubenv list')) ? true : undefined));
  });

  step('a power cut during `rauc install` of 4.0.0: the next boot resumes or rolls back, with a verified manifest', async () => {
    await publish('gw4', 'upfleet-vm-rootfs-4.0.0.raucb', new Uint8Array(readFileSync(image.bundles.v4)), PRIMARY.hardwareId, '4.0.0', 4);
    const { id } = await world.stack.assign(DEVICE, [{ ecuSerial: PRIMARY.serial, image: images.gw4!.name }]);
    // RAUC's own view (its D-Bus Installer interface), polled in the guest: the cut comes
    // a moment after the install started writing, whatever the command channel's latency.
    const installer = 'busctl get-property de.pengutronix.rauc / de.pengutronix.rauc.Installer';
    const progress = (await world.vm!.sh(
      `until [ "$(${installer} Operation 2>/dev/null)" = 's "installing"' ]; do sleep 0.3; done; sleep ${(2 + Math.random() * 3).toFixed(1)}; ${installer} Operation Progress`,
      STEP_MS,
    )).trim();
    const cutAt = new Date().toISOString();
    await world.vm!.powerCut();
    figures.powerCut = { at: progress.replace(/\s+/g, ' ').trim(), outcome: 'pending' };
    log(`power cut during the install (${figures.powerCut.at})`);

    await world.powerOn();
    assert.equal((await world.nextBoot()).slot, 'B', 'after the cut the committed slot boots');
    const status = await settled(id);
    const m = await waitFor('a manifest after the power cut', async () => {
      const newest = await newestManifest();
      return newest.receivedAt > cutAt ? newest : undefined;
    });
    const running = await guestRelease();
    if (status === 'succeeded') {
      figures.powerCut.outcome = 'resumed';
      assert.equal(m.summary.installed[PRIMARY.serial]?.filename, images.gw4!.name);
      assert.equal(m.summary.installed[PRIMARY.serial]?.hashes.sha256, images.gw4!.sha256);
      assert.equal(world.boots.at(-1)!.slot, 'A');
      assert.equal(running, '4.0.0');
    } else {
      figures.powerCut.outcome = 'rolled back';
      assert.equal(m.summary.installed[PRIMARY.serial]?.filename, images.gw2!.name);
      assert.equal(running, '2.0.0');
    }
    assert.equal(m.summary.installed[SECONDARY.serial]?.filename, images.ecu2!.name, 'the secondary kept its image');
    log(`after the power cut the update ${figures.powerCut.outcome}`);
  });
});
