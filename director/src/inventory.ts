/**
 * Inventory and provisioning: devices, their ECUs and ECU keys.
 * - A device registers once with the fleet provisioning token; the same
 *   registration again is idempotent, a different one is a conflict: replacing
 *   an ECU or a key takes an admin (`replaceEcu`).
 * - ECU serials are unique across the fleet; a decommissioned device keeps its
 *   record (history) and can never register again.
 * - Registration creates the device's repository (empty targets, version 1).
 */
import { Key, MalformedMetadataError } from '@upfleet/core';
import { BadRequestError, ConflictError, ForbiddenError, NotFoundError } from './errors.ts';
import { checkId } from './ids.ts';
import type { Context } from './context.ts';
import type { DeviceRecord, EcuRecord } from './store.ts';
import type { Assignments } from './assignments.ts';
import { requireActiveDevice } from './manifest-checks.ts';

export interface EcuRegistration {
  ecuSerial: string;
  hardwareId: string;
  publicKey: Key;
}

export interface Registration {
  deviceId: string;
  primary: EcuRegistration;
  secondaries: EcuRegistration[];
  tags: string[];
}

function parseEcu(json: unknown, path: string): EcuRegistration {
  if (typeof json !== 'object' || json === null) throw new BadRequestError(`${path} is not an object`);
  const o = json as Record<string, unknown>;
  let publicKey: Key;
  try {
    publicKey = Key.fromJSON(o.publicKey, `${path}.publicKey`);
  } catch (cause) {
    if (cause instanceof MalformedMetadataError) throw new BadRequestError(cause.message, { field: `${path}.publicKey` }, { cause });
    throw cause;
  }
  if (publicKey.keytype !== 'ed25519' || publicKey.scheme !== 'ed25519' || !/^[0-9a-f]{64}$/.test(publicKey.keyval.public ?? '')) {
    throw new BadRequestError(`${path}.publicKey must be an ed25519 key`, { field: `${path}.publicKey` });
  }
  return { ecuSerial: checkId('ecuSerial', o.ecuSerial), hardwareId: checkId('hardwareId', o.hardwareId), publicKey };
}

export function parseTags(json: unknown): string[] {
  if (json === undefined) return [];
  if (!Array.isArray(json) || json.some((t) => typeof t !== 'string' || t.length === 0 || t.length > 64)) {
    throw new BadRequestError('tags must be an array of non-empty strings', { field: 'tags' });
  }
  return [...new Set(json as string[])].sort();
}

/** @throws BadRequestError */
export function parseRegistration(deviceId: string, json: unknown): Registration {
  if (typeof json !== 'object' || json === null) throw new BadRequestError('registration is not an object');
  const o = json as Record<string, unknown>;
  const secondariesJson = o.secondaries ?? [];
  if (!Array.isArray(secondariesJson)) throw new BadRequestError('secondaries is not an array');
  const reg: Registration = {
    deviceId: checkId('deviceId', deviceId),
    primary: parseEcu(o.primary, 'primary'),
    secondaries: secondariesJson.map((s, i) => parseEcu(s, `secondaries[${i}]`)),
    tags: parseTags(o.tags),
  };
  const serials = [reg.primary, ...reg.secondaries].map((e) => e.ecuSerial);
  if (new Set(serials).size !== serials.length) throw new BadRequestError('an ECU serial appears twice', { field: 'ecuSerial' });
  return reg;
}

function sameEcus(existing: EcuRecord[], reg: Registration): boolean {
  const wanted = [reg.primary, ...reg.secondaries];
  if (existing.length !== wanted.length) return false;
  return wanted.every((w, i) => {
    const e = existing.find((x) => x.serial === w.ecuSerial);
    return e !== undefined && e.hardwareId === w.hardwareId && e.primary === (i === 0) && Key.fromJSON(e.publicKey).keyid === w.publicKey.keyid;
  });
}

export class Inventory {
  /** Set after construction: inventory and assignments refer to each other. */
  assignments!: Assignments;

  constructor(
    private readonly ctx: Context,
    private readonly approval: 'auto' | 'manual',
  ) {}

  /**
   * Registers a device (provisioning).
   * @throws ConflictError (registered differently, ECU serial taken), ForbiddenError (decommissioned)
   */
  async register(reg: Registration): Promise<{ device: DeviceRecord; created: boolean }> {
    const result = await this.#register(reg);
    if (result.created) {
      this.ctx.log.info({ deviceId: reg.deviceId, status: result.device.status, ecus: 1 + reg.secondaries.length, tags: result.device.tags }, 'device registered');
    }
    return result;
  }

  #register(reg: Registration): Promise<{ device: DeviceRecord; created: boolean }> {
    return this.ctx.commit(async () => {
      const { store } = this.ctx;
      // A registration racing this one in another process inserts first: then this transaction runs again and finds it.
      await store.lockDevice(reg.deviceId);
      const existing = await store.getDevice(reg.deviceId);
      if (existing?.status === 'decommissioned') throw new ForbiddenError('DEVICE_DECOMMISSIONED', `${reg.deviceId} is decommissioned`, { deviceId: reg.deviceId });
      const ecus = existing ? await store.ecusOf(reg.deviceId) : [];
      if (existing && ecus.length > 0) {
        if (!sameEcus(ecus, reg)) {
          throw new ConflictError('ALREADY_REGISTERED', `${reg.deviceId} is registered with other ECUs or keys; an admin must replace ECUs`, { deviceId: reg.deviceId });
        }
        return { device: existing, created: false };
      }
      for (const e of [reg.primary, ...reg.secondaries]) {
        if (await store.getEcu(e.ecuSerial)) throw new ConflictError('ECU_TAKEN', `ECU ${e.ecuSerial} belongs to another device`, { ecuSerial: e.ecuSerial });
      }
      const now = this.ctx.nowIso();
      const status = existing?.status === 'preregistered' || this.approval === 'auto' ? 'active' : 'pending';
      if (existing) {
        await store.updateDevice(reg.deviceId, { status, tags: [...new Set([...existing.tags, ...reg.tags])].sort(), updatedAt: now });
      } else {
        await store.insertDevice({ id: reg.deviceId, status, tags: reg.tags, manifestCounter: -1, recentNonces: {}, online: false, lastSeen: null, createdAt: now, updatedAt: now });
      }
      for (const [i, e] of [reg.primary, ...reg.secondaries].entries()) {
        await store.insertEcu({
          serial: e.ecuSerial, deviceId: reg.deviceId, hardwareId: e.hardwareId, publicKey: e.publicKey.toJSON(),
          primary: i === 0, installed: null, releaseCounter: 0,
        });
      }
      await this.ctx.repo.publish(reg.deviceId, {});
      return { device: (await store.getDevice(reg.deviceId))!, created: true };
    });
  }

  /** @throws ConflictError when the device exists */
  async preregister(deviceId: string, tags: string[]): Promise<DeviceRecord> {
    checkId('deviceId', deviceId);
    return this.ctx.commit(async () => {
      if (await this.ctx.store.getDevice(deviceId)) throw new ConflictError('DEVICE_EXISTS', `${deviceId} exists`, { deviceId });
      const now = this.ctx.nowIso();
      const device: DeviceRecord = { id: deviceId, status: 'preregistered', tags, manifestCounter: -1, recentNonces: {}, online: false, lastSeen: null, createdAt: now, updatedAt: now };
      await this.ctx.store.insertDevice(device);
      return device;
    });
  }

  /** @throws NotFoundError, ConflictError unless the device is pending */
  approve(deviceId: string): Promise<DeviceRecord> {
    return this.ctx.commit(async () => {
      await this.ctx.store.lockDevice(deviceId);
      const device = await this.get(deviceId);
      if (device.status === 'active') return device;
      if (device.status !== 'pending') throw new ConflictError('BAD_STATE', `${deviceId} is ${device.status}, not pending`, { deviceId, status: device.status });
      await this.ctx.store.updateDevice(deviceId, { status: 'active', updatedAt: this.ctx.nowIso() });
      return this.get(deviceId);
    });
  }

  /** Decommissions a device and cancels its open assignments. @throws NotFoundError */
  decommission(deviceId: string): Promise<DeviceRecord> {
    return this.ctx.commit(async () => {
      await this.ctx.store.lockDevice(deviceId);
      await this.get(deviceId);
      await this.ctx.store.updateDevice(deviceId, { status: 'decommissioned', updatedAt: this.ctx.nowIso() });
      await this.assignments.cancelOpen(deviceId, 'DEVICE_DECOMMISSIONED');
      return this.get(deviceId);
    });
  }

  /**
   * Replaces an ECU (new hardware, new key): open assignments on it are cancelled.
   * @throws NotFoundError, ConflictError (the new serial is taken)
   */
  replaceEcu(deviceId: string, oldSerial: string, replacement: EcuRegistration): Promise<EcuRecord> {
    return this.ctx.commit(async () => {
      await this.ctx.store.lockDevice(deviceId);
      await this.get(deviceId);
      const old = await this.ctx.store.getEcu(oldSerial);
      if (!old || old.deviceId !== deviceId) throw new NotFoundError('ECU', `${deviceId}/${oldSerial}`);
      if (replacement.ecuSerial !== oldSerial && (await this.ctx.store.getEcu(replacement.ecuSerial))) {
        throw new ConflictError('ECU_TAKEN', `ECU ${replacement.ecuSerial} exists`, { ecuSerial: replacement.ecuSerial });
      }
      await this.assignments.cancelOpen(deviceId, 'ECU_REPLACED', oldSerial);
      await this.ctx.store.deleteEcu(oldSerial);
      const ecu: EcuRecord = {
        serial: replacement.ecuSerial, deviceId, hardwareId: replacement.hardwareId, publicKey: replacement.publicKey.toJSON(),
        primary: old.primary, installed: null, releaseCounter: 0,
      };
      await this.ctx.store.insertEcu(ecu);
      await this.ctx.store.updateDevice(deviceId, { updatedAt: this.ctx.nowIso() });
      return ecu;
    });
  }

  /** @throws NotFoundError */
  async get(deviceId: string): Promise<DeviceRecord> {
    const device = await this.ctx.store.getDevice(deviceId);
    if (!device) throw new NotFoundError('device', deviceId);
    return device;
  }

  /** The device, checked to be active. @throws NotFoundError, ForbiddenError */
  async requireActive(deviceId: string): Promise<DeviceRecord> {
    return requireActiveDevice(deviceId, await this.ctx.store.getDevice(deviceId));
  }

}
