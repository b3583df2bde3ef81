/**
 * The fleet at a glance (GET /api/v1/admin/fleet): devices by status and online,
 * which image each hardware ID runs on how many ECUs, and the latest failures
 * (failed assignments and security events). Aggregate queries only: no device's
 * rows are read one by one, whatever the fleet's size.
 */
import type { FleetSummary } from './admin-records.ts';
import type { DirectorStore } from './store.ts';

export async function fleetSummary(store: DirectorStore, limit = 20): Promise<FleetSummary> {
  return {
    devices: await store.countDevices(),
    versions: await store.ecuVersions(),
    recentFailures: (await store.recentFailures(limit)).map((a) => ({
      deviceId: a.deviceId, assignmentId: a.id, campaignId: a.campaignId, errorCode: a.errorCode, errorMessage: a.errorMessage, at: a.updatedAt,
    })),
    recentEvents: await store.recentEvents(limit),
  };
}
