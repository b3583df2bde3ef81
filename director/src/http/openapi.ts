/**
 * The OpenAPI 3.1 description of the director's HTTP API, served at GET /api/v1/openapi.json.
 *
 * Every route `addRoutes` registers has one operation here, and every operation a route
 * (director/src/http/openapi.test.ts checks both ways against the router, validates the document
 * against the OpenAPI 3.1 schema, and real answers against these response schemas). Each
 * operation lists its success answer and every error status it can give; `op` adds the ones
 * every operation of a kind shares (401/403 with credentials, 400 for the admin API's query check,
 * 400/413 with a body, 500).
 */
import { ID_PATTERN } from '@upfleet/core';
import { errorResponses, json, ref, SHARED_SCHEMAS } from '@upfleet/core/openapi.ts';
import { EVENTS_PER_DEVICE } from '../store.ts';

const deviceId = { name: 'deviceId', in: 'path', required: true, schema: { type: 'string', pattern: ID_PATTERN.source } };
const idParam = { name: 'id', in: 'path', required: true, schema: { type: 'string' } };
const ecuSerialParam = { name: 'ecuSerial', in: 'path', required: true, schema: { type: 'string' } };
const nullable = (schema: Record<string, unknown>) => ({ oneOf: [schema, { type: 'null' }] });
const string = { type: 'string' };
const dateTime = { type: 'string', format: 'date-time' };
const strings = { type: 'array', items: string };
/** A fixed-shape object: every property required, nothing else allowed. */
const record = (properties: Record<string, unknown>, optional: string[] = []) => ({
  type: 'object', additionalProperties: false, properties,
  required: Object.keys(properties).filter((k) => !optional.includes(k)),
});

interface OpOptions {
  params?: unknown[];
  body?: unknown;
  /** The success answer's schema; none: an empty answer. */
  ok?: unknown;
  status?: string;
  /** Error statuses particular to this operation (400, 404, 409, 422, 502...). */
  errors?: number[];
  /** More success answers (status -> response object). */
  also?: Record<string, unknown>;
}

function op(summary: string, security: string, options: OpOptions = {}) {
  const errors = new Set(options.errors ?? []);
  if (security !== 'none') [401, 403].forEach((s) => errors.add(s));
  if (security === 'admin') errors.add(400); // every admin route checks its query parameters
  if (options.body !== undefined) [400, 413].forEach((s) => errors.add(s));
  errors.add(500);
  return {
    summary,
    security: security === 'none' ? [] : [{ [security]: [] }],
    ...(options.params && { parameters: options.params }),
    ...(options.body !== undefined && { requestBody: { required: true, ...json(options.body) } }),
    responses: {
      [options.status ?? '200']: options.ok === undefined ? { description: 'done, no body' } : { description: 'done', ...json(options.ok) },
      ...options.also,
      ...errorResponses([...errors].sort((a, b) => a - b)),
    },
  };
}

const campaignAction = (action: string, errors: number[]) => ({ post: op(`${action} a campaign`, 'admin', { params: [idParam], ok: ref('Campaign'), errors: [404, 409, ...errors] }) });

const deviceProperties = {
  id: string,
  status: { enum: ['pending', 'preregistered', 'active', 'decommissioned'] },
  tags: strings,
  manifestCounter: { type: 'integer', minimum: -1, description: 'the highest accepted manifest counter; -1 before the first' },
  online: { type: 'boolean', description: 'the MQTT status the device last published' },
  lastSeen: nullable(dateTime),
  createdAt: dateTime,
  updatedAt: dateTime,
};

const assignmentStatus = { enum: ['pending', 'downloading', 'installing', 'succeeded', 'failed', 'cancelled'] };

const schemas = {
  ...SHARED_SCHEMAS,
  Key: { type: 'object', required: ['keytype', 'scheme', 'keyval'], properties: { keytype: { const: 'ed25519' }, scheme: { const: 'ed25519' }, keyval: { type: 'object', required: ['public'], properties: { public: { type: 'string', pattern: '^[0-9a-f]{64}$' } } } } },
  Ecu: { type: 'object', required: ['ecuSerial', 'hardwareId', 'publicKey'], description: 'an ECU as a registration or a replacement names it', properties: { ecuSerial: string, hardwareId: string, publicKey: ref('Key') } },
  InstalledImage: record({ filename: string, length: { type: 'integer', minimum: 0 }, hashes: ref('Hashes') }),
  EcuRecord: record({
    serial: string, deviceId: string, hardwareId: string, publicKey: ref('Key'), primary: { type: 'boolean' },
    installed: nullable(ref('InstalledImage')), releaseCounter: { type: 'integer', minimum: 0, description: 'as the ECU last reported it' },
  }),
  Registration: { type: 'object', required: ['primary'], properties: { primary: ref('Ecu'), secondaries: { type: 'array', items: ref('Ecu') }, tags: strings } },
  RegistrationResult: record({ deviceId: string, status: deviceProperties.status, rootVersion: { type: 'integer', minimum: 1, description: 'the director root the device should reach' } }),
  VehicleManifest: {
    type: 'object', required: ['signed', 'signatures'], description: 'the signed vehicle version manifest (agent/README.md); every ECU report signed by its ECU',
    properties: {
      signed: {
        type: 'object', required: ['deviceId', 'primaryEcuSerial', 'ecuVersionReports', 'counter', 'timestamp'],
        properties: {
          deviceId: string, primaryEcuSerial: string, counter: { type: 'integer', minimum: 0 }, timestamp: dateTime,
          ecuVersionReports: { type: 'object', description: 'ECU serial -> its signed version report', additionalProperties: { type: 'object', required: ['signed', 'signatures'] } },
          installationResult: { type: 'object' },
        },
      },
      signatures: { type: 'array', items: { type: 'object', required: ['keyid', 'sig'], properties: { keyid: string, sig: string } } },
    },
  },
  ManifestAccepted: record({
    accepted: { const: true }, counter: { type: 'integer' },
    changed: { type: 'array', description: 'assignments whose status the manifest changed', items: record({ id: string, status: assignmentStatus }) },
  }),
  Progress: { type: 'object', required: ['state'], description: 'moves the open assignments naming the ECU (all, without ecuSerial) forward to state; with ecuSerial, done and total, also the ECU\'s latest progress', properties: { ecuSerial: string, state: { enum: ['downloading', 'installing'] }, done: { type: 'integer', minimum: 0, description: 'bytes done, at most total' }, total: { type: 'integer', minimum: 0 } } },
  EcuProgress: record({ phase: { enum: ['downloading', 'installing'] }, done: { type: 'integer', minimum: 0 }, total: { type: 'integer', minimum: 0 }, at: { ...dateTime, description: 'when the director received it' } }),
  Device: record(deviceProperties),
  DeviceList: record({ devices: { type: 'array', items: ref('Device') } }),
  Preregistration: { type: 'object', required: ['deviceId'], properties: { deviceId: { type: 'string', pattern: ID_PATTERN.source }, tags: strings } },
  RepoState: { ...nullable(record({ deviceId: string, targetsVersion: { type: 'integer' }, targetsExpires: dateTime, snapshotVersion: { type: 'integer' }, snapshotExpires: dateTime, timestampVersion: { type: 'integer' }, timestampExpires: dateTime })), description: 'the device repository\'s current versions and expiries; null before its first targets' },
  DeviceView: {
    ...record({
      ...deviceProperties,
      ecus: { type: 'array', items: ref('EcuRecord') },
      assignments: { type: 'array', items: ref('Assignment') },
      events: { type: 'array', items: ref('SecurityEvent') },
      metadata: ref('RepoState'),
      targets: { type: 'object', description: 'the device\'s current director targets: name -> TUF target', additionalProperties: { type: 'object', required: ['length', 'hashes'], properties: { length: { type: 'integer' }, hashes: ref('Hashes'), custom: { type: 'object' } } } },
    }),
  },
  AssignmentRequest: { type: 'object', required: ['ecus'], properties: { ecus: { type: 'array', items: { type: 'object', required: ['ecuSerial', 'image'], properties: { ecuSerial: string, image: string, length: { type: 'integer', minimum: 0, description: 'what the admin expects; refused when the image repository differs' }, hashes: ref('Hashes') } } } } },
  AssignmentItem: record({
    ecuSerial: string, hardwareId: string, image: string, length: { type: 'integer', minimum: 0 }, hashes: ref('Hashes'),
    releaseCounter: { type: 'integer', minimum: 0 }, version: string, previous: { ...nullable(ref('InstalledImage')), description: 'what the ECU ran when the assignment was made' },
  }, ['version']),
  Assignment: record({
    id: string, deviceId: string, campaignId: nullable(string), status: assignmentStatus,
    items: { type: 'array', items: ref('AssignmentItem') },
    targetsVersion: { type: 'integer', description: 'the first director targets version that lists it' },
    errorCode: nullable(string), errorMessage: nullable(string), createdAt: dateTime, updatedAt: dateTime,
    progress: { type: 'object', description: 'ECU serial -> its latest progress while the assignment was open', additionalProperties: ref('EcuProgress') },
  }),
  AssignmentList: record({ assignments: { type: 'array', items: ref('Assignment') } }),
  ManifestRecord: record({
    id: { type: 'integer' }, deviceId: string, counter: { type: 'integer' }, receivedAt: dateTime, via: { enum: ['http', 'mqtt', 'function'] },
    summary: record({
      digest: { type: 'string', pattern: '^[0-9a-f]{64}$', description: 'sha256 of the manifest bytes' },
      installed: { type: 'object', description: 'ECU serial -> the image it reported', additionalProperties: ref('InstalledImage') },
      installationResult: { type: 'object', description: 'the installation result the device reported' },
    }, ['installationResult']),
  }),
  ManifestList: record({ manifests: { type: 'array', items: ref('ManifestRecord') } }),
  SecurityEvent: record({ id: { type: 'integer' }, deviceId: string, ecuSerial: nullable(string), kind: { enum: ['attack', 'manifest_refused', 'installation_failure'], description: 'attack: the device reported one (attacksDetected, or a result code naming the attack: METADATA_ROLLBACK, IMAGE_ROLLBACK, FREEZE, MIX_AND_MATCH, ARBITRARY_SOFTWARE, WRONG_HARDWARE, DEVICE_MISMATCH, ENDLESS_DATA, SLOW_RETRIEVAL, or VERIFICATION_FAILED for another refusal); manifest_refused: the director refused a manifest the authenticated device sent (code: MANIFEST_REPLAY, BAD_SIGNATURE, BAD_ECU_SIGNATURE, UNKNOWN_ECU, STALE_NONCE...); installation_failure: another failed result' }, code: string, detail: string, at: dateTime }),
  EventList: record({ events: { type: 'array', items: ref('SecurityEvent') } }),
  CampaignImage: record({ hardwareId: string, image: string }),
  CampaignRequest: { type: 'object', required: ['name', 'images'], properties: { name: string, images: { type: 'array', minItems: 1, items: ref('CampaignImage') }, tags: strings, waves: { type: 'array', items: { type: 'number' }, description: 'cumulative percentages of the group, ascending, ending at 100 (default 1, 10, 50, 100)' }, successThreshold: { type: 'number', minimum: 0, maximum: 1, description: 'default 0.9' } } },
  CampaignSpec: record({
    name: string, images: { type: 'array', items: ref('CampaignImage') }, tags: strings, waves: { type: 'array', items: { type: 'number' } }, successThreshold: { type: 'number' },
    resolved: { type: 'array', description: 'filled at start: what the image repository listed for each image then', items: record({ hardwareId: string, image: string, length: { type: 'integer' }, hashes: ref('Hashes'), custom: ref('TargetCustom') }) },
  }, ['resolved']),
  CampaignDevice: record({ deviceId: string, wave: { type: 'integer', minimum: 1 }, status: { enum: ['waiting', ...assignmentStatus.enum] }, assignmentId: nullable(string), errorCode: nullable(string), updatedAt: nullable(dateTime),
    progress: { type: 'object', description: "the latest assignment's per-ECU progress", additionalProperties: ref('EcuProgress') } }),
  Campaign: record({
    id: string, status: { enum: ['draft', 'running', 'paused', 'halted', 'completed', 'aborted'] }, spec: ref('CampaignSpec'),
    devices: { ...strings, description: 'the group in rollout order, fixed at start' }, wavesLaunched: { type: 'integer', minimum: 0, description: 'waves whose launch has begun' },
    launchedCount: { type: 'integer', minimum: 0, description: 'devices of the group, in rollout order, launched so far: a wave launches in chunks, and its launch is complete when this reaches its end' },
    reason: nullable(string), createdAt: dateTime, updatedAt: dateTime,
    counts: record(Object.fromEntries(['waiting', ...assignmentStatus.enum].map((s) => [s, { type: 'integer', minimum: 0 }]))),
    currentWave: { type: 'integer', minimum: 0 }, totalWaves: { type: 'integer', minimum: 1 },
    deviceStatus: { type: 'array', description: 'GET one campaign only: per device in rollout order, its wave and latest assignment', items: ref('CampaignDevice') },
  }, ['deviceStatus']),
  CampaignList: record({ campaigns: { type: 'array', items: ref('Campaign') } }),
  Health: record({ ok: { const: true } }),
};

export function openApiDocument(): Record<string, unknown> {
  return {
    openapi: '3.1.0',
    info: {
      title: 'Upfleet director', version: '1',
      description: 'Per-device Uptane director: device API (device tokens) and admin API (bearer token). See director/README.md. ' +
        'A path no route serves is 404 NOT_FOUND, another method on a served path 405 METHOD_NOT_ALLOWED; bad percent-encoding in a path is 400.',
    },
    components: {
      securitySchemes: {
        admin: { type: 'http', scheme: 'bearer', description: 'the admin token' },
        provisioning: { type: 'http', scheme: 'bearer', description: 'the fleet provisioning token' },
        device: { type: 'apiKey', in: 'header', name: 'Authorization', description: 'UpfleetDevice <deviceId>:<expires>:<hex ed25519 signature over "upfleet-device-token/v1:<deviceId>:<expires>">' },
        ...CONSOLE_SECURITY_SCHEMES,
      },
      schemas: { ...schemas, ...CONSOLE_SCHEMAS },
    },
    paths: {
      // Device API
      '/api/v1/devices/{deviceId}/register': { post: op('register a device and its ECUs (201; 200 when it is registered already with the same ECUs and keys)', 'provisioning', {
        params: [deviceId], body: ref('Registration'), ok: ref('RegistrationResult'), status: '201', errors: [409],
        also: { 200: { description: 'registered already, with the same ECUs and keys', ...json(ref('RegistrationResult')) } },
      }) },
      '/api/v1/devices/{deviceId}/metadata/{file}': { get: op('director metadata for this device: N.root.json, root.json, timestamp.json, N.snapshot.json, N.targets.json', 'device', {
        params: [deviceId, { name: 'file', in: 'path', required: true, schema: { type: 'string', pattern: '^([0-9]+\\.(root|snapshot|targets)|root|timestamp)\\.json$' } }],
        ok: ref('SignedMetadata'), errors: [400, 404],
      }) },
      '/api/v1/devices/{deviceId}/manifest': { post: op('upload a signed vehicle version manifest (409 MANIFEST_REPLAY carries lastCounter; 422 names the rule; 503 when the verify workers are saturated or failing, or the database is unavailable: send it again)', 'device', {
        params: [deviceId], body: ref('VehicleManifest'), ok: ref('ManifestAccepted'), errors: [404, 409, 422, 503],
      }) },
      '/api/v1/devices/{deviceId}/progress': { post: op('report download/install progress', 'device', { params: [deviceId], body: ref('Progress'), status: '204', errors: [404] }) },

      // Admin API
      '/api/v1/admin/devices': {
        get: op('list devices', 'admin', { params: [{ name: 'status', in: 'query', schema: deviceProperties.status }], ok: ref('DeviceList'), errors: [400] }),
        post: op('pre-register a device', 'admin', { body: ref('Preregistration'), ok: ref('Device'), status: '201', errors: [409] }),
      },
      '/api/v1/admin/devices/{deviceId}': { get: op('a device with its ECUs, assignments (each with its ECUs\' latest progress), events and metadata', 'admin', { params: [deviceId], ok: ref('DeviceView'), errors: [400, 404] }) },
      '/api/v1/admin/devices/{deviceId}/approve': { post: op('approve a pending device', 'admin', { params: [deviceId], ok: ref('Device'), errors: [400, 404, 409] }) },
      '/api/v1/admin/devices/{deviceId}/decommission': { post: op('decommission a device (cancels its open assignments)', 'admin', { params: [deviceId], ok: ref('Device'), errors: [400, 404] }) },
      '/api/v1/admin/devices/{deviceId}/ecus/{ecuSerial}/replace': { post: op('replace an ECU (new hardware, new key); cancels open assignments on it', 'admin', {
        params: [deviceId, ecuSerialParam], body: ref('Ecu'), ok: ref('EcuRecord'), errors: [404, 409],
      }) },
      '/api/v1/admin/devices/{deviceId}/manifests': { get: op('accepted manifest history, newest first', 'admin', {
        params: [deviceId, { name: 'limit', in: 'query', schema: { type: 'integer', minimum: 1, maximum: 1000, default: 100 } }], ok: ref('ManifestList'), errors: [400, 404],
      }) },
      '/api/v1/admin/devices/{deviceId}/events': { get: op(`the device's security event log, oldest first (the newest ${EVENTS_PER_DEVICE} are kept)`, 'admin', {
        params: [deviceId, { name: 'kind', in: 'query', schema: { enum: ['attack', 'manifest_refused', 'installation_failure'] } }], ok: ref('EventList'), errors: [400, 404],
      }) },
      '/api/v1/admin/devices/{deviceId}/assignments': {
        get: op('assignments of a device, oldest first', 'admin', { params: [deviceId], ok: ref('AssignmentList'), errors: [400, 404] }),
        post: op('assign images to ECUs (422 ASSIGNMENT_REFUSED with field when the image repository does not back it)', 'admin', {
          params: [deviceId], body: ref('AssignmentRequest'), ok: ref('Assignment'), status: '201', errors: [403, 404, 409, 422, 502],
        }),
      },
      '/api/v1/admin/assignments/{id}': { get: op('one assignment', 'admin', { params: [idParam], ok: ref('Assignment'), errors: [404] }) },
      '/api/v1/admin/campaigns': {
        get: op('list campaigns', 'admin', { ok: ref('CampaignList'), errors: [400] }),
        post: op('create a campaign (draft); 422 ASSIGNMENT_REFUSED when the image repository lists no such image for the hardware', 'admin', {
          body: ref('CampaignRequest'), ok: ref('Campaign'), status: '201', errors: [422, 502],
        }),
      },
      '/api/v1/admin/campaigns/{id}': { get: op('campaign status, counts, and per device its wave and latest assignment', 'admin', {
        params: [idParam], ok: { allOf: [ref('Campaign')], required: ['deviceStatus'] }, errors: [400, 404],
      }) },
      '/api/v1/admin/campaigns/{id}/start': campaignAction('start', [422, 502]),
      '/api/v1/admin/campaigns/{id}/pause': campaignAction('pause', []),
      '/api/v1/admin/campaigns/{id}/resume': campaignAction('resume', []),
      '/api/v1/admin/campaigns/{id}/abort': campaignAction('abort', []),

      // Console (session, event stream, fleet and images listings)
      ...CONSOLE_PATHS,

      // Operations
      '/api/v1/openapi.json': { get: op('this document', 'none', { ok: ref('OpenApiDocument') }) },
      '/metrics': { get: { summary: 'Prometheus metrics', security: [], responses: { 200: { description: 'text exposition', ...json(ref('Metrics'), 'text/plain') }, ...errorResponses([500]) } } },
      '/healthz': { get: op('liveness', 'none', { ok: ref('Health') }) },
    },
  };
}

// --- Web console and its admin additions (director/src/http/console-routes.ts, admin-access.ts) ---

const CONSOLE_SECURITY_SCHEMES = {
  viewer: { type: 'http', scheme: 'bearer', description: 'the viewer token (--viewer-token): every admin GET; any other method is 403 READ_ONLY_ROLE. Every admin operation also accepts it.' },
  consoleSession: { type: 'apiKey', in: 'cookie', name: 'upfleet_session', description: 'a web console session (POST /api/v1/console/login): HMAC-signed, expiring, HttpOnly, SameSite=Strict; accepted by every admin operation in place of a bearer token, with the role it was opened with. A request with it that changes state also needs X-Upfleet-CSRF.' },
  csrf: { type: 'apiKey', in: 'header', name: 'X-Upfleet-CSRF', description: "the session's CSRF token (csrfToken of the login or session answer); without it: 403 CSRF_TOKEN_MISSING, another one: 403 BAD_CSRF_TOKEN" },
};

const CONSOLE_SCHEMAS = {
  ConsoleSession: { type: 'object', required: ['role', 'csrfToken', 'expires'], properties: { role: { enum: ['operator', 'viewer'] }, csrfToken: { type: 'string', description: 'send as X-Upfleet-CSRF on every state change made with the session cookie' }, expires: { type: 'integer', description: 'Unix seconds' } } },
  Image: { type: 'object', required: ['name', 'length', 'hashes', 'hardwareIds', 'version', 'releaseCounter', 'role'], properties: { name: { type: 'string' }, length: { type: 'integer', minimum: 0 }, hashes: { type: 'object', additionalProperties: { type: 'string' } }, hardwareIds: { type: 'array', items: { type: 'string' } }, version: { type: ['string', 'null'] }, releaseCounter: { type: ['integer', 'null'] }, role: { type: 'string', description: 'the targets role that signed the entry: targets, or a delegated (supplier) role' } } },
  FleetSummary: { type: 'object', required: ['devices', 'versions', 'recentFailures', 'recentEvents'], properties: {
    devices: { type: 'object', required: ['total', 'online', 'byStatus'], properties: { total: { type: 'integer' }, online: { type: 'integer' }, byStatus: { type: 'object', required: ['preregistered', 'pending', 'active', 'decommissioned'], properties: { preregistered: { type: 'integer' }, pending: { type: 'integer' }, active: { type: 'integer' }, decommissioned: { type: 'integer' } } } } },
    versions: { type: 'array', description: 'per hardware ID and installed image (null: none reported), the number of ECUs (decommissioned devices left out)', items: { type: 'object', required: ['hardwareId', 'image', 'releaseCounter', 'ecus'], properties: { hardwareId: { type: 'string' }, image: { type: ['string', 'null'] }, releaseCounter: { type: 'integer' }, ecus: { type: 'integer' } } } },
    recentFailures: { type: 'array', description: 'failed assignments, newest first (at most 20)', items: { type: 'object', required: ['deviceId', 'assignmentId', 'campaignId', 'errorCode', 'errorMessage', 'at'], properties: { deviceId: { type: 'string' }, assignmentId: { type: 'string' }, campaignId: { type: ['string', 'null'] }, errorCode: { type: ['string', 'null'] }, errorMessage: { type: ['string', 'null'] }, at: { type: 'string', format: 'date-time' } } } },
    recentEvents: { type: 'array', description: 'security events of every device, newest first (at most 20)', items: ref('SecurityEvent') },
  } },
  FleetChange: { type: 'object', required: ['devices', 'assignments', 'campaigns'], description: 'the IDs whose records changed, appeared or disappeared since the previous event', properties: { devices: { type: 'array', items: { type: 'string' } }, assignments: { type: 'array', items: { type: 'string' } }, campaigns: { type: 'array', items: { type: 'string' } } } },
};

const readBy = [{ admin: [] }, { viewer: [] }, { consoleSession: [] }];
const consoleError = (statuses: number[]) => errorResponses([...new Set([...statuses, 500])].sort((a, b) => a - b));

const CONSOLE_PATHS = {
  '/': { get: { summary: 'the web console page (503 with how to build it when director/console/dist is missing)', security: [], responses: { 200: { description: 'the page', content: { 'text/html': { schema: { type: 'string' } } } }, 503: { description: 'the console is not built', content: { 'text/html': { schema: { type: 'string' } } } }, ...consoleError([]) } } },
  '/assets/{file}': { get: { summary: 'a hashed console asset (immutable, cached for a year)', security: [], parameters: [{ name: 'file', in: 'path', required: true, schema: { type: 'string' } }], responses: { 200: { description: 'the file', content: { 'text/javascript': { schema: { type: 'string' } }, 'text/css': { schema: { type: 'string' } } } }, ...consoleError([404]) } } },
  '/api/v1/console/login': { post: {
    summary: 'open a console session with the admin token (operator) or the viewer token (viewer)', security: [],
    requestBody: { required: true, ...json({ type: 'object', required: ['token'], properties: { token: { type: 'string' } } }) },
    responses: { 200: { description: 'the session; its cookie is in Set-Cookie', headers: { 'Set-Cookie': { schema: { type: 'string' }, description: 'upfleet_session=...; Path=/; HttpOnly; SameSite=Strict; Max-Age=...' } }, ...json(ref('ConsoleSession')) }, ...consoleError([400, 401, 413]) },
  } },
  '/api/v1/console/session': { get: { summary: "the session of the request's cookie, with its CSRF token", security: [{ consoleSession: [] }], responses: { 200: { description: 'the session', ...json(ref('ConsoleSession')) }, ...consoleError([400, 401, 403]) } } },
  '/api/v1/console/logout': { post: { summary: 'end the session in the browser (expires the cookie; any role)', security: [{ consoleSession: [], csrf: [] }], responses: { 204: { description: 'cookie expired' }, ...consoleError([400, 401, 403]) } } },
  '/api/v1/admin/fleet': { get: { summary: 'the fleet at a glance: devices by status and online, versions per hardware ID, recent failures and security events', security: readBy, responses: { 200: { description: 'the summary', ...json(ref('FleetSummary')) }, ...consoleError([400, 401, 403]) } } },
  '/api/v1/admin/images': { get: { summary: 'what the image repository lists, verified: hardware IDs, versions, release counters and the signing role', security: readBy, responses: { 200: { description: 'the images, by name', ...json({ type: 'object', required: ['images'], properties: { images: { type: 'array', items: ref('Image') } } }) }, ...consoleError([400, 401, 403, 502]) } } },
  '/api/v1/admin/events/stream': { get: {
    summary: 'Server-Sent Events: `ready` on connect, then `change` (data: FleetChange) whenever devices, assignments or campaigns are written in the store (read about once a second, so changes written by any director process are seen); ends when a console session expires',
    security: readBy,
    responses: { 200: { description: 'an event stream', content: { 'text/event-stream': { schema: { type: 'string' }, example: 'event: change\ndata: {"devices":[],"assignments":["..."],"campaigns":[]}\n\n' } } }, ...consoleError([400, 401, 403]) },
  } },
};
