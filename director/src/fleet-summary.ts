/**
 * The fleet at a glance (GET /api/v1/admin/fleet): devices by status and online,
 * which image each hardware ID runs on how many ECUs, and the latest failures
 * (failed assignments and security events). One read of the store per call,
 * behind this one function.
 */
import { EVENTS_PER_DEVICE, type DeviceStatus, type DirectorStore, type EventRecord } from './store.ts';

export interface FleetSummary {
  devices: { total: number; online: number; byStatus: Record<DeviceStatus, number> };
  /** Per hardware ID and installed image (null: nothing reported yet), the number of ECUs; by hardware ID, then most ECUs first. */
  versions: Array<{ hardwareId: string; image: string | null; releaseCounter: number; ecus: number }>;
  /** Failed assignments, newest first. */
  recentFailures: Array<{ deviceId: string; assignmentId: string; campaignId: string | null; errorCode: string | null; errorMessage: string | null; at: string }>;
  /** Security events of every device, newest first. */
  recentEvents: EventRecord[];
}

export async function fleetSummary(store: DirectorStore, limit = 20): Promise<FleetSummary> {
  const byStatus: Record<DeviceStatus, number> = { preregistered: 0, pending: 0, active: 0, decommissioned: 0 };
  const versions = new Map<string, FleetSummary['versions'][number]>();
  const failures: FleetSummary['recentFailures'] = [];
  const events: EventRecord[] = [];
  let online = 0;
  const devices = await store.listDevices();
  for (const d of devices) {
    byStatus[d.status]++;
    if (d.online) online++;
    if (d.status === 'decommissioned') continue;
    for (const e of await store.ecusOf(d.id)) {
      const image = e.installed?.filename ?? null;
      const key = JSON.stringify([e.hardwareId, image, e.releaseCounter]);
      const v = versions.get(key) ?? { hardwareId: e.hardwareId, image, releaseCounter: e.releaseCounter, ecus: 0 };
      v.ecus++;
      versions.set(key, v);
    }
    for (const a of await store.assignmentsOf(d.id)) {
      if (a.status === 'failed') failures.push({ deviceId: d.id, assignmentId: a.id, campaignId: a.campaignId, errorCode: a.errorCode, errorMessage: a.errorMessage, at: a.updatedAt });
    }
    events.push(...(await store.eventsOf(d.id)).slice(-Math.min(limit, EVENTS_PER_DEVICE)));
  }
  const newest = <T extends { at: string }>(list: T[]) => list.sort((a, b) => b.at.localeCompare(a.at)).slice(0, limit);
  return {
    devices: { total: devices.length, online, byStatus },
    versions: [...versions.values()].sort((a, b) => a.hardwareId.localeCompare(b.hardwareId) || b.ecus - a.ecus),
    recentFailures: newest(failures),
    recentEvents: newest(events),
  };
}
