/**
 * The demo's firmware set, shared by the demo and the end-to-end tests: one
 * image per ECU kind, the brake controller's signed by a supplier through a
 * delegation (`supplier-brakes`, paths `brakes/*`, hardware `brake-ecu`).
 */
import { createHash, randomBytes } from 'node:crypto';
import type { Stack } from './stack.ts';
import type { EcuSpec, Vehicle } from './vehicle.ts';

export const SUPPLIER_ROLE = 'supplier-brakes';

/** The two secondaries of a demo vehicle: the brake controller verifies everything itself. */
export function DEMO_SECONDARIES(deviceId: string): EcuSpec[] {
  return [
    { serial: `${deviceId}-brake`, hardwareId: 'brake-ecu', verification: 'full' },
    { serial: `${deviceId}-door`, hardwareId: 'door-ecu', verification: 'partial' },
  ];
}

export interface Firmware {
  name: string;
  hardwareId: string;
  version: string;
  releaseCounter: number;
  length: number;
  sha256: string;
  signedBy: string;
}

export interface FirmwareSet {
  images: Firmware[];
  /** The image for each ECU of `vehicle`, by serial. */
  byEcu(vehicle: Vehicle): Record<string, Firmware>;
}

export interface PublishOptions {
  sizes?: Partial<Record<'gateway' | 'brake' | 'door', number>>;
  version?: string;
  releaseCounter?: number;
  data?: (n: number) => Uint8Array;
  /** Skip the delegation (already made on this stack). */
  delegated?: boolean;
}

/** Publishes gateway, brake (through the supplier) and door firmware. */
export async function publishDemoFirmware(stack: Stack, o: PublishOptions = {}): Promise<FirmwareSet> {
  const version = o.version ?? '2.0.0';
  const releaseCounter = o.releaseCounter ?? 2;
  const data = o.data ?? ((n: number) => randomBytes(n));
  if (!o.delegated) await stack.addSupplier(SUPPLIER_ROLE, ['brakes/*'], ['brake-ecu']);
  const specs = [
    { kind: 'gateway', name: `gateway-${version}.bin`, hardwareId: 'gateway', size: o.sizes?.gateway ?? 256_000 },
    { kind: 'brake', name: `brakes/brake-${version}.bin`, hardwareId: 'brake-ecu', size: o.sizes?.brake ?? 24_000, supplier: SUPPLIER_ROLE },
    { kind: 'door', name: `door-${version}.bin`, hardwareId: 'door-ecu', size: o.sizes?.door ?? 16_000 },
  ];
  const images: Firmware[] = [];
  for (const s of specs) {
    const bytes = data(s.size);
    await stack.publish({ name: s.name, data: bytes, hardwareIds: [s.hardwareId], version, releaseCounter, ...(s.supplier && { supplier: s.supplier }) });
    images.push({
      name: s.name, hardwareId: s.hardwareId, version, releaseCounter, length: bytes.length,
      sha256: createHash('sha256').update(bytes).digest('hex'), signedBy: s.supplier ?? 'targets',
    });
  }
  return {
    images,
    byEcu(vehicle: Vehicle) {
      const out: Record<string, Firmware> = {};
      out[vehicle.primarySerial] = images.find((i) => i.hardwareId === vehicle.config.ecus.primary.hardwareId)!;
      for (const s of vehicle.config.ecus.secondaries) out[s.serial] = images.find((i) => i.hardwareId === s.hardwareId)!;
      return out;
    },
  };
}

/** One assignment of the set to every ECU of the vehicle. */
export async function assignDemoFirmware(stack: Stack, vehicle: Vehicle, fw: FirmwareSet): Promise<{ id: string }> {
  return stack.assign(vehicle.deviceId, Object.entries(fw.byEcu(vehicle)).map(([ecuSerial, f]) => ({ ecuSerial, image: f.name })));
}
