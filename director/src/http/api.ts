/**
 * The director's HTTP routes: the device API (register, metadata, manifest,
 * progress) and the admin API (devices, assignments, campaigns), plus
 * /metrics, /healthz and the OpenAPI document. Handlers only parse, authorize
 * and call a service; the services own every rule.
 */
import { Key, MalformedMetadataError, utf8 } from '@upfleet/core';
import { publicDevice, type DirectorServices } from '../services.ts';
import { BadRequestError, NotFoundError } from '../errors.ts';
import { checkId } from '../ids.ts';
import { parseRegistration, parseTags } from '../inventory.ts';
import { parseCampaignSpec } from '../campaigns.ts';
import type { AssignmentRequest } from '../assignments.ts';
import type { CampaignDetail } from '../admin-records.ts';
import type { DeviceStatus, EventKind } from '../store.ts';
import { openApiDocument } from './openapi.ts';
import { parseQuery, type QueryRule } from './query.ts';
import type { Router, Request, Reply } from './router.ts';
import type { AdminAccess } from './admin-access.ts';

const DEVICE_STATUSES: readonly DeviceStatus[] = ['preregistered', 'pending', 'active', 'decommissioned'];
const EVENT_KINDS: readonly EventKind[] = ['attack', 'manifest_refused', 'installation_failure'];
const METADATA_FILE = /^(?:(\d+)\.(root|snapshot|targets)|(root|timestamp))\.json$/;

function ok(body: unknown, status = 200): Reply {
  return { status, body };
}

function parseKey(json: unknown, field: string): Key {
  try {
    const key = Key.fromJSON(json, field);
    if (key.keytype !== 'ed25519' || key.scheme !== 'ed25519' || !/^[0-9a-f]{64}$/.test(key.keyval.public ?? '')) throw new BadRequestError(`${field} must be an ed25519 key`, { field });
    return key;
  } catch (cause) {
    if (cause instanceof MalformedMetadataError) throw new BadRequestError(cause.message, { field }, { cause });
    throw cause;
  }
}

function parseAssignmentRequests(json: unknown): AssignmentRequest[] {
  const o = json as { ecus?: unknown };
  if (!Array.isArray(o?.ecus)) throw new BadRequestError('ecus must be an array of { ecuSerial, image }', { field: 'ecus' });
  return o.ecus.map((e: unknown, i) => {
    const r = e as Record<string, unknown>;
    if (typeof r?.ecuSerial !== 'string' || typeof r.image !== 'string' || r.image.length === 0) {
      throw new BadRequestError(`ecus[${i}] needs ecuSerial and image`, { field: `ecus[${i}]` });
    }
    const req: AssignmentRequest = { ecuSerial: r.ecuSerial, image: r.image };
    if (r.length !== undefined) {
      if (typeof r.length !== 'number' || !Number.isSafeInteger(r.length) || r.length < 0) throw new BadRequestError(`ecus[${i}].length is not a length`);
      req.length = r.length;
    }
    if (r.hashes !== undefined) {
      if (typeof r.hashes !== 'object' || r.hashes === null || Object.values(r.hashes).some((h) => typeof h !== 'string')) throw new BadRequestError(`ecus[${i}].hashes is not a hash map`);
      req.hashes = r.hashes as Record<string, string>;
    }
    return req;
  });
}

/** `access` decides who may call the admin routes: bearer tokens (operator, viewer) and console sessions. */
export function addRoutes(router: Router, s: DirectorServices, access: AdminAccess): void {
  const { auth } = s;
  const device = async (req: Request) => {
    const id = checkId('deviceId', req.params.deviceId);
    await auth.device(req.headers.authorization, id);
    return id;
  };
  /** Authorizes an admin request and checks its query against `rules` (no rules: no query parameters). */
  const admin = <S extends Record<string, QueryRule>>(req: Request, rules: S = {} as S) => {
    access.authorize(req);
    return parseQuery(req.query, rules);
  };

  // Device API
  router.add('POST', '/api/v1/devices/{deviceId}/register', async (req) => {
    auth.provisioning(req.headers.authorization);
    const reg = parseRegistration(req.params.deviceId!, await req.json());
    const { device: d, created } = await s.inventory.register(reg);
    return ok({ deviceId: d.id, status: d.status, rootVersion: s.roots.latestVersion }, created ? 201 : 200);
  });
  router.add('GET', '/api/v1/devices/{deviceId}/metadata/{file}', async (req) => {
    const id = await device(req);
    await s.inventory.requireActive(id);
    const m = METADATA_FILE.exec(req.params.file!);
    if (!m) throw new NotFoundError('metadata file', req.params.file!);
    let bytes: Uint8Array | undefined;
    if (m[2] === 'root') bytes = s.roots.get(Number(m[1]));
    else if (m[3] === 'root') bytes = s.roots.get(s.roots.latestVersion);
    else if (m[3] === 'timestamp') bytes = await s.metadataTimestamp(id);
    else bytes = await s.store.getMetadataFile(id, req.params.file!);
    if (!bytes) throw new NotFoundError('metadata file', req.params.file!);
    return { status: 200, bytes, contentType: 'application/json', headers: { 'cache-control': 'no-store' } };
  });
  router.add('POST', '/api/v1/devices/{deviceId}/manifest', async (req) => {
    const id = await device(req);
    const result = await s.manifests.ingest(id, await req.body(), 'http', true);
    return ok({ accepted: true, counter: result.counter, changed: result.changed });
  });
  router.add('POST', '/api/v1/devices/{deviceId}/progress', async (req) => {
    const id = await device(req);
    await s.progress(id, await req.json());
    return { status: 204 };
  });

  // Admin API
  router.add('GET', '/api/v1/admin/devices', async (req) => {
    const { status } = admin(req, { status: { type: 'enum', values: DEVICE_STATUSES } });
    return ok({ devices: (await s.store.listDevices(status ? { status: status as DeviceStatus } : {})).map(publicDevice) });
  });
  router.add('POST', '/api/v1/admin/devices', async (req) => {
    admin(req);
    const body = (await req.json()) as Record<string, unknown>;
    return ok(publicDevice(await s.inventory.preregister(checkId('deviceId', body.deviceId), parseTags(body.tags))), 201);
  });
  router.add('GET', '/api/v1/admin/devices/{deviceId}', async (req) => {
    admin(req);
    return ok(await s.deviceView(req.params.deviceId!));
  });
  router.add('POST', '/api/v1/admin/devices/{deviceId}/approve', async (req) => {
    admin(req);
    return ok(publicDevice(await s.inventory.approve(req.params.deviceId!)));
  });
  router.add('POST', '/api/v1/admin/devices/{deviceId}/decommission', async (req) => {
    admin(req);
    return ok(publicDevice(await s.inventory.decommission(req.params.deviceId!)));
  });
  router.add('POST', '/api/v1/admin/devices/{deviceId}/ecus/{ecuSerial}/replace', async (req) => {
    admin(req);
    const body = (await req.json()) as Record<string, unknown>;
    return ok(await s.inventory.replaceEcu(req.params.deviceId!, req.params.ecuSerial!, {
      ecuSerial: checkId('ecuSerial', body.ecuSerial ?? req.params.ecuSerial),
      hardwareId: checkId('hardwareId', body.hardwareId),
      publicKey: parseKey(body.publicKey, 'publicKey'),
    }));
  });
  router.add('GET', '/api/v1/admin/devices/{deviceId}/manifests', async (req) => {
    const { limit } = admin(req, { limit: { type: 'integer', min: 1, max: 1000, default: 100 } });
    await s.inventory.get(req.params.deviceId!);
    return ok({ manifests: await s.store.manifestsOf(req.params.deviceId!, limit) });
  });
  router.add('GET', '/api/v1/admin/devices/{deviceId}/events', async (req) => {
    const { kind } = admin(req, { kind: { type: 'enum', values: EVENT_KINDS } });
    await s.inventory.get(req.params.deviceId!);
    const events = (await s.store.eventsOf(req.params.deviceId!)).filter((e) => kind === undefined || e.kind === kind);
    return ok({ events });
  });
  router.add('GET', '/api/v1/admin/devices/{deviceId}/assignments', async (req) => {
    admin(req);
    await s.inventory.get(req.params.deviceId!);
    return ok({ assignments: await s.store.assignmentsOf(req.params.deviceId!) });
  });
  router.add('POST', '/api/v1/admin/devices/{deviceId}/assignments', async (req) => {
    admin(req);
    const requests = parseAssignmentRequests(await req.json());
    return ok(await s.assignments.create(req.params.deviceId!, requests), 201);
  });
  router.add('GET', '/api/v1/admin/assignments/{id}', async (req) => {
    admin(req);
    return ok(await s.assignments.get(req.params.id!));
  });
  router.add('GET', '/api/v1/admin/campaigns', async (req) => {
    admin(req);
    return ok({ campaigns: await s.campaigns.list() });
  });
  router.add('POST', '/api/v1/admin/campaigns', async (req) => {
    admin(req);
    const c = await s.campaigns.create(parseCampaignSpec(await req.json()));
    return ok(await s.campaigns.status(c.id), 201);
  });
  router.add('GET', '/api/v1/admin/campaigns/{id}', async (req) => {
    admin(req);
    const detail: CampaignDetail = { ...(await s.campaigns.status(req.params.id!)), deviceStatus: await s.campaigns.devices(req.params.id!) };
    return ok(detail);
  });
  for (const action of ['start', 'pause', 'resume', 'abort'] as const) {
    router.add('POST', `/api/v1/admin/campaigns/{id}/${action}`, async (req) => {
      admin(req);
      return ok(await s.campaigns[action](req.params.id!));
    });
  }

  // Operations
  router.add('GET', '/api/v1/openapi.json', () => ok(openApiDocument()));
  router.add('GET', '/healthz', () => ok({ ok: true }));
  router.add('GET', '/metrics', async () => ({
    status: 200, bytes: utf8(await s.metrics.registry.metrics()), contentType: s.metrics.registry.contentType,
  }));
}
