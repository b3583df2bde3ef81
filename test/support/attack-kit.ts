/**
 * Shared setup of the attack suite: one stack per test file (image repository
 * with a 2-of-3 root, director, two loopback proxies in front of them), two
 * published firmware generations (release counters 1 and 2, brake firmware
 * through a supplier delegation), and a fresh vehicle per test, so tests never
 * see each other's agent state.
 *
 * Every attack test checks the same three things (`expectRefused`):
 * 1. the agent refuses, with the typed error of the check that must fire;
 * 2. nothing is installed: every ECU runs what it ran before the cycle;
 * 3. the director records it in the device's security event log: from the
 *    manifest that follows the refusal (the agent reports it), or, for a
 *    manifest the director itself refuses, from that manifest (`expectLogged`).
 */
import assert from 'node:assert/strict';
import { after, before, beforeEach } from 'node:test';
import { randomBytes } from 'node:crypto';
import type { CycleOutcome } from '@upfleet/agent';
import type { EventKind, EventRecord } from '@upfleet/director';
import { Stack, type StackOptions } from './stack.ts';
import { Vehicle, type VehicleOptions } from './vehicle.ts';
import { AttackProxy } from './proxy.ts';
import { DEMO_SECONDARIES, publishDemoFirmware, SUPPLIER_ROLE, type FirmwareSet } from './firmware.ts';

export interface AttackWorld {
  stack: Stack;
  imageProxy: AttackProxy;
  directorProxy: AttackProxy;
  v1: FirmwareSet;
  v2: FirmwareSet;
  /** The supplier's key file (Stack.addSupplier). */
  supplierKeyFile: string;
  vehicles: Vehicle[];
  close(): Promise<void>;
}

export async function attackWorld(options: Pick<StackOptions, 'directorClock' | 'directorExpiries'> = {}): Promise<AttackWorld> {
  const stack = await Stack.start({ mqtt: 'none', rootKeys: 3, rootThreshold: 2, ...options });
  const imageProxy = await new AttackProxy(stack.imageRepo.url).start();
  const directorProxy = await new AttackProxy(stack.director.url).start();
  const small = { gateway: 20_000, brake: 8_000, door: 6_000 };
  const v1 = await publishDemoFirmware(stack, { sizes: small, version: '1.0.0', releaseCounter: 1 });
  const v2 = await publishDemoFirmware(stack, { sizes: small, version: '2.0.0', releaseCounter: 2, delegated: true, data: (n) => randomBytes(n) });
  const vehicles: Vehicle[] = [];
  return {
    stack, imageProxy, directorProxy, v1, v2, vehicles,
    supplierKeyFile: stack.supplierKeyFiles(SUPPLIER_ROLE)[0]!,
    async close() {
      for (const v of vehicles) await v.close();
      await imageProxy.close();
      await directorProxy.close();
      await stack.close();
    },
  };
}

/**
 * One attack world for a test file: started before its tests, both proxies cleared
 * before each test, closed after them. The handle is filled in when the world starts.
 */
export function attackWorldForFile(options: Parameters<typeof attackWorld>[0] = {}): AttackWorld {
  const handle = {} as AttackWorld;
  before(async () => {
    Object.assign(handle, await attackWorld(options));
  });
  after(async () => {
    await handle.close?.();
  });
  beforeEach(() => {
    handle.imageProxy.clear();
    handle.directorProxy.clear();
  });
  return handle;
}

let counter = 0;

/** A new vehicle behind both proxies (local secondaries unless `link` says otherwise). */
export async function freshVehicle(w: AttackWorld, options: Partial<VehicleOptions> = {}): Promise<Vehicle> {
  const deviceId = options.deviceId ?? `attack-car-${++counter}`;
  const v = await Vehicle.create(w.stack, {
    deviceId, secondaries: DEMO_SECONDARIES(deviceId), link: 'local',
    directorUrl: w.directorProxy.url, imageRepoUrl: w.imageProxy.url,
    limits: { maxMetadataBytes: 256 * 1024, downloadAttempts: 1, ...options.limits },
    ...options,
  });
  w.vehicles.push(v);
  return v;
}

/** Assigns firmware set `fw` to every ECU of `v` (or only `only`'s hardware). */
export async function assign(w: AttackWorld, v: Vehicle, fw: FirmwareSet, only?: string[]): Promise<void> {
  const ecus = Object.entries(fw.byEcu(v))
    .filter(([, f]) => !only || only.includes(f.hardwareId))
    .map(([ecuSerial, f]) => ({ ecuSerial, image: f.name }));
  await w.stack.assign(v.deviceId, ecus);
}

export interface Refusal {
  /** The typed error's `code` (and optionally `name`, the failing ECU, a field). */
  code: string;
  name?: string;
  ecuSerial?: string;
  field?: string;
  /** The director records this kind of event (default 'attack'). */
  kind?: EventKind;
  /** The result code the director records: the attack's name (core attack-codes.ts; default VERIFICATION_FAILED for attacks). */
  resultCode?: string;
  /**
   * When the refused cycle could not sign its result manifest (an ECU was
   * unreachable), this restores the scene; a second cycle then sends the
   * manifest carrying the result, and must install nothing either.
   */
  thenRecover?: () => Promise<void> | void;
}

/**
 * Runs one agent cycle and checks the three things every attack test asserts.
 * @returns the cycle's outcome, for extra assertions
 */
export async function expectRefused(w: AttackWorld, v: Vehicle, r: Refusal): Promise<CycleOutcome> {
  const before = v.installed();
  const eventsBefore = (await w.stack.events(v.deviceId)).length;
  const out = await v.agent!.checkOnce();
  // 1. The agent refuses, with the error of the intended check.
  assert.equal(out.result, 'failure', `expected a refusal, got ${out.result}`);
  assert.ok(out.failure, 'a failure record');
  assert.equal(out.failure.code, r.code, `${out.failure.name}: ${out.failure.message}`);
  if (r.name) assert.equal(out.failure.name, r.name, out.failure.message);
  if (r.ecuSerial) assert.equal(out.failure.ecuSerial, r.ecuSerial);
  if (r.field) assert.equal((out.failure.fields as { field?: string }).field, r.field, out.failure.message);
  // 2. Nothing is installed.
  assert.deepEqual(v.installed(), before, 'every ECU still runs what it ran before');
  // 3. The director records it from the next manifest.
  if (r.thenRecover) {
    await r.thenRecover();
    const again = await v.agent!.checkOnce();
    assert.notEqual(again.result, 'success', 'the refused update is not retried');
    assert.deepEqual(v.installed(), before, 'still nothing installed');
    assert.equal(again.undelivered, 0, 'the manifest carrying the result reached the director');
  } else {
    assert.equal(out.undelivered, 0, 'the manifest after the refusal reached the director');
  }
  const kind = r.kind ?? 'attack';
  const resultCode = r.resultCode ?? (kind === 'attack' ? 'VERIFICATION_FAILED' : undefined);
  await expectLogged(w, v, eventsBefore, { kind, ...(resultCode && { code: resultCode }), ...(r.ecuSerial && { ecuSerial: r.ecuSerial }) });
  return out;
}

/**
 * Checks that the director logged a security event for `v` after the first
 * `since` events: of `kind`, with `code` when given, about `ecuSerial` when
 * given (an event about the whole vehicle, ecuSerial null, also matches).
 * @returns the event
 */
export async function expectLogged(
  w: AttackWorld, v: Vehicle, since: number, e: { kind: EventKind; code?: string; ecuSerial?: string },
): Promise<EventRecord> {
  const fresh = (await w.stack.events(v.deviceId)).slice(since);
  const hit = fresh.find((x) => x.kind === e.kind && (!e.code || x.code === e.code) && (!e.ecuSerial || x.ecuSerial === e.ecuSerial || x.ecuSerial === null));
  assert.ok(hit, `the director logged a ${e.kind}${e.code ? ` ${e.code}` : ''} event${e.ecuSerial ? ` for ${e.ecuSerial}` : ''}; it has ${JSON.stringify(fresh)}`);
  return hit;
}

/** Runs a cycle that must succeed (setting the scene for rollback tests). */
export async function expectInstalled(v: Vehicle): Promise<void> {
  const out = await v.agent!.checkOnce();
  assert.equal(out.result, 'success', JSON.stringify(out.failure));
}

/** Flips one byte in the middle of a body. */
export function flipByte(body: Buffer): Uint8Array {
  const out = Buffer.from(body);
  const i = Math.floor(out.length / 2);
  out[i] = out[i]! ^ 0x01;
  return out;
}
