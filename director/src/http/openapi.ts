/** The OpenAPI 3.1 description of the director's HTTP API, served at GET /api/v1/openapi.json. */
import { ID_PATTERN } from '@upfleet/core';
import { EVENTS_PER_DEVICE } from '../store.ts';

const error = { $ref: '#/components/responses/Error' };
const json = (schema: unknown) => ({ content: { 'application/json': { schema } } });
const ref = (name: string) => ({ $ref: `#/components/schemas/${name}` });
const deviceId = { name: 'deviceId', in: 'path', required: true, schema: { type: 'string', pattern: ID_PATTERN.source } };
const idParam = { name: 'id', in: 'path', required: true, schema: { type: 'string' } };

function op(summary: string, security: string, options: { params?: unknown[]; body?: unknown; ok?: unknown; status?: string } = {}) {
  return {
    summary,
    security: security === 'none' ? [] : [{ [security]: [] }],
    ...(options.params && { parameters: options.params }),
    ...(options.body !== undefined && { requestBody: { required: true, ...json(options.body) } }),
    responses: {
      [options.status ?? '200']: options.ok === undefined ? { description: 'done' } : { description: 'done', ...json(options.ok) },
      400: error, 401: error, 403: error, 404: error, 409: error, 422: error,
    },
  };
}

const campaignAction = (action: string) => ({ post: op(`${action} a campaign`, 'admin', { params: [idParam], ok: ref('Campaign') }) });

export function openApiDocument(): Record<string, unknown> {
  return {
    openapi: '3.1.0',
    info: { title: 'Upfleet director', version: '1', description: 'Per-device Uptane director: device API (device tokens) and admin API (bearer token). See director/README.md.' },
    components: {
      securitySchemes: {
        admin: { type: 'http', scheme: 'bearer', description: 'the admin token' },
        provisioning: { type: 'http', scheme: 'bearer', description: 'the fleet provisioning token' },
        device: { type: 'apiKey', in: 'header', name: 'Authorization', description: 'UpfleetDevice <deviceId>:<expires>:<hex ed25519 signature over "upfleet-device-token/v1:<deviceId>:<expires>">' },
        ...CONSOLE_SECURITY_SCHEMES,
      },
      responses: { Error: { description: 'a typed error', ...json(ref('Error')) } },
      schemas: {
        Error: { type: 'object', required: ['error'], properties: { error: { type: 'object', required: ['code', 'message'], properties: { code: { type: 'string' }, message: { type: 'string' } }, additionalProperties: true } } },
        Key: { type: 'object', required: ['keytype', 'scheme', 'keyval'], properties: { keytype: { const: 'ed25519' }, scheme: { const: 'ed25519' }, keyval: { type: 'object', required: ['public'], properties: { public: { type: 'string', pattern: '^[0-9a-f]{64}$' } } } } },
        Ecu: { type: 'object', required: ['ecuSerial', 'hardwareId', 'publicKey'], properties: { ecuSerial: { type: 'string' }, hardwareId: { type: 'string' }, publicKey: ref('Key') } },
        Registration: { type: 'object', required: ['primary'], properties: { primary: ref('Ecu'), secondaries: { type: 'array', items: ref('Ecu') }, tags: { type: 'array', items: { type: 'string' } } } },
        Progress: { type: 'object', required: ['state'], description: 'moves the open assignments naming the ECU (all, without ecuSerial) forward to state; with ecuSerial, done and total, also the ECU\'s latest progress', properties: { ecuSerial: { type: 'string' }, state: { enum: ['downloading', 'installing'] }, done: { type: 'integer', minimum: 0, description: 'bytes done, at most total' }, total: { type: 'integer', minimum: 0 } } },
        EcuProgress: { type: 'object', required: ['phase', 'done', 'total', 'at'], properties: { phase: { enum: ['downloading', 'installing'] }, done: { type: 'integer' }, total: { type: 'integer' }, at: { type: 'string', format: 'date-time', description: 'when the director received it' } } },
        Device: { type: 'object', properties: { id: { type: 'string' }, status: { enum: ['pending', 'preregistered', 'active', 'decommissioned'] }, tags: { type: 'array', items: { type: 'string' } }, manifestCounter: { type: 'integer' }, online: { type: 'boolean' }, lastSeen: { type: ['string', 'null'] } } },
        AssignmentRequest: { type: 'object', required: ['ecus'], properties: { ecus: { type: 'array', items: { type: 'object', required: ['ecuSerial', 'image'], properties: { ecuSerial: { type: 'string' }, image: { type: 'string' }, length: { type: 'integer' }, hashes: { type: 'object', additionalProperties: { type: 'string' } } } } } } },
        Assignment: { type: 'object', properties: { id: { type: 'string' }, deviceId: { type: 'string' }, campaignId: { type: ['string', 'null'] }, status: { enum: ['pending', 'downloading', 'installing', 'succeeded', 'failed', 'cancelled'] }, items: { type: 'array' }, targetsVersion: { type: 'integer' }, errorCode: { type: ['string', 'null'] }, progress: { type: 'object', description: 'ECU serial -> its latest progress while the assignment was open', additionalProperties: ref('EcuProgress') } } },
        CampaignRequest: { type: 'object', required: ['name', 'images'], properties: { name: { type: 'string' }, images: { type: 'array', items: { type: 'object', required: ['hardwareId', 'image'], properties: { hardwareId: { type: 'string' }, image: { type: 'string' } } } }, tags: { type: 'array', items: { type: 'string' } }, waves: { type: 'array', items: { type: 'number' } }, successThreshold: { type: 'number' } } },
        SecurityEvent: { type: 'object', required: ['id', 'deviceId', 'ecuSerial', 'kind', 'code', 'detail', 'at'], properties: { id: { type: 'integer' }, deviceId: { type: 'string' }, ecuSerial: { type: ['string', 'null'] }, kind: { enum: ['attack', 'manifest_refused', 'installation_failure'], description: 'attack: the device reported one (attacksDetected, or a result code naming the attack: METADATA_ROLLBACK, IMAGE_ROLLBACK, FREEZE, MIX_AND_MATCH, ARBITRARY_SOFTWARE, WRONG_HARDWARE, DEVICE_MISMATCH, ENDLESS_DATA, SLOW_RETRIEVAL, or VERIFICATION_FAILED for another refusal); manifest_refused: the director refused a manifest the authenticated device sent (code: MANIFEST_REPLAY, BAD_SIGNATURE, BAD_ECU_SIGNATURE, UNKNOWN_ECU, STALE_NONCE...); installation_failure: another failed result' }, code: { type: 'string' }, detail: { type: 'string' }, at: { type: 'string', format: 'date-time' } } },
        ...CONSOLE_SCHEMAS,
        Campaign: { type: 'object', properties: { id: { type: 'string' }, status: { enum: ['draft', 'running', 'paused', 'halted', 'completed', 'aborted'] }, counts: { type: 'object', additionalProperties: { type: 'integer' } }, currentWave: { type: 'integer' }, totalWaves: { type: 'integer' }, devices: { type: 'array', items: { type: 'string' } }, deviceStatus: { type: 'array', description: 'GET one campaign only: per device in rollout order, its wave and latest assignment', items: { type: 'object', properties: { deviceId: { type: 'string' }, wave: { type: 'integer' }, status: { enum: ['waiting', 'pending', 'downloading', 'installing', 'succeeded', 'failed', 'cancelled'] }, assignmentId: { type: ['string', 'null'] }, errorCode: { type: ['string', 'null'] }, updatedAt: { type: ['string', 'null'] }, progress: { type: 'object', description: "the latest assignment's per-ECU progress", additionalProperties: ref('EcuProgress') } } } } } },
      },
    },
    paths: {
      '/api/v1/devices/{deviceId}/register': { post: op('register a device and its ECUs', 'provisioning', { params: [deviceId], body: ref('Registration'), status: '201' }) },
      '/api/v1/devices/{deviceId}/metadata/{file}': { get: op('director metadata for this device: N.root.json, root.json, timestamp.json, N.snapshot.json, N.targets.json', 'device', { params: [deviceId, { name: 'file', in: 'path', required: true, schema: { type: 'string' } }] }) },
      '/api/v1/devices/{deviceId}/manifest': { post: op('upload a signed vehicle version manifest', 'device', { params: [deviceId], body: { type: 'object' } }) },
      '/api/v1/devices/{deviceId}/progress': { post: op('report download/install progress', 'device', { params: [deviceId], body: ref('Progress'), status: '204' }) },
      '/api/v1/admin/devices': {
        get: op('list devices', 'admin', { params: [{ name: 'status', in: 'query', schema: { enum: ['preregistered', 'pending', 'active', 'decommissioned'] } }] }),
        post: op('pre-register a device', 'admin', { body: { type: 'object', required: ['deviceId'], properties: { deviceId: { type: 'string' }, tags: { type: 'array', items: { type: 'string' } } } }, ok: ref('Device'), status: '201' }),
      },
      '/api/v1/admin/devices/{deviceId}': { get: op('a device with its ECUs, assignments (each with its ECUs\' latest progress), events and metadata', 'admin', { params: [deviceId], ok: { allOf: [ref('Device'), { type: 'object', properties: { assignments: { type: 'array', items: ref('Assignment') } } }] } }) },
      '/api/v1/admin/devices/{deviceId}/approve': { post: op('approve a pending device', 'admin', { params: [deviceId], ok: ref('Device') }) },
      '/api/v1/admin/devices/{deviceId}/decommission': { post: op('decommission a device', 'admin', { params: [deviceId], ok: ref('Device') }) },
      '/api/v1/admin/devices/{deviceId}/ecus/{ecuSerial}/replace': { post: op('replace an ECU', 'admin', { params: [deviceId, { name: 'ecuSerial', in: 'path', required: true, schema: { type: 'string' } }], body: ref('Ecu') }) },
      '/api/v1/admin/devices/{deviceId}/manifests': { get: op('accepted manifest history, newest first', 'admin', { params: [deviceId, { name: 'limit', in: 'query', schema: { type: 'integer', minimum: 1, maximum: 1000, default: 100 } }] }) },
      '/api/v1/admin/devices/{deviceId}/events': { get: op(`the device's security event log, oldest first (the newest ${EVENTS_PER_DEVICE} are kept)`, 'admin', {
        params: [deviceId, { name: 'kind', in: 'query', schema: { enum: ['attack', 'manifest_refused', 'installation_failure'] } }],
        ok: { type: 'object', required: ['events'], properties: { events: { type: 'array', items: ref('SecurityEvent') } } },
      }) },
      '/api/v1/admin/devices/{deviceId}/assignments': {
        get: op('assignments of a device', 'admin', { params: [deviceId], ok: { type: 'object', required: ['assignments'], properties: { assignments: { type: 'array', items: ref('Assignment') } } } }),
        post: op('assign images to ECUs', 'admin', { params: [deviceId], body: ref('AssignmentRequest'), ok: ref('Assignment'), status: '201' }),
      },
      '/api/v1/admin/assignments/{id}': { get: op('one assignment', 'admin', { params: [idParam], ok: ref('Assignment') }) },
      '/api/v1/admin/campaigns': {
        get: op('list campaigns', 'admin'),
        post: op('create a campaign (draft)', 'admin', { body: ref('CampaignRequest'), ok: ref('Campaign'), status: '201' }),
      },
      '/api/v1/admin/campaigns/{id}': { get: op('campaign status and counts', 'admin', { params: [idParam], ok: ref('Campaign') }) },
      '/api/v1/admin/campaigns/{id}/start': campaignAction('start'),
      '/api/v1/admin/campaigns/{id}/pause': campaignAction('pause'),
      '/api/v1/admin/campaigns/{id}/resume': campaignAction('resume'),
      '/api/v1/admin/campaigns/{id}/abort': campaignAction('abort'),
      ...CONSOLE_PATHS,
      '/metrics': { get: { summary: 'Prometheus metrics', security: [], responses: { 200: { description: 'text exposition' } } } },
      '/healthz': { get: { summary: 'liveness', security: [], responses: { 200: { description: 'ok' } } } },
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
const consoleError = (statuses: number[]) => Object.fromEntries(statuses.map((s) => [s, error]));

const CONSOLE_PATHS = {
  '/': { get: { summary: 'the web console page (503 with how to build it when director/console/dist is missing)', security: [], responses: { 200: { description: 'the page', content: { 'text/html': { schema: { type: 'string' } } } }, 503: { description: 'the console is not built', content: { 'text/html': { schema: { type: 'string' } } } } } } },
  '/assets/{file}': { get: { summary: 'a hashed console asset (immutable, cached for a year)', security: [], parameters: [{ name: 'file', in: 'path', required: true, schema: { type: 'string' } }], responses: { 200: { description: 'the file', content: { 'text/javascript': { schema: { type: 'string' } }, 'text/css': { schema: { type: 'string' } } } }, ...consoleError([404]) } } },
  '/api/v1/console/login': { post: {
    summary: 'open a console session with the admin token (operator) or the viewer token (viewer)', security: [],
    requestBody: { required: true, ...json({ type: 'object', required: ['token'], properties: { token: { type: 'string' } } }) },
    responses: { 200: { description: 'the session; its cookie is in Set-Cookie', headers: { 'Set-Cookie': { schema: { type: 'string' }, description: 'upfleet_session=...; Path=/; HttpOnly; SameSite=Strict; Max-Age=...' } }, ...json(ref('ConsoleSession')) }, ...consoleError([400, 401]) },
  } },
  '/api/v1/console/session': { get: { summary: "the session of the request's cookie, with its CSRF token", security: [{ consoleSession: [] }], responses: { 200: { description: 'the session', ...json(ref('ConsoleSession')) }, ...consoleError([400, 401]) } } },
  '/api/v1/console/logout': { post: { summary: 'end the session in the browser (expires the cookie; any role)', security: [{ consoleSession: [], csrf: [] }], responses: { 204: { description: 'cookie expired' }, ...consoleError([400, 401, 403]) } } },
  '/api/v1/admin/fleet': { get: { summary: 'the fleet at a glance: devices by status and online, versions per hardware ID, recent failures and security events', security: readBy, responses: { 200: { description: 'the summary', ...json(ref('FleetSummary')) }, ...consoleError([400, 401, 403]) } } },
  '/api/v1/admin/images': { get: { summary: 'what the image repository lists, verified: hardware IDs, versions, release counters and the signing role', security: readBy, responses: { 200: { description: 'the images, by name', ...json({ type: 'object', required: ['images'], properties: { images: { type: 'array', items: ref('Image') } } }) }, ...consoleError([400, 401, 403, 502]) } } },
  '/api/v1/admin/events/stream': { get: {
    summary: 'Server-Sent Events: `ready` on connect, then `change` (data: FleetChange) whenever devices, open assignments or running campaigns change in the store (read about once a second, so changes written by any director process are seen); ends when a console session expires',
    security: readBy,
    responses: { 200: { description: 'an event stream', content: { 'text/event-stream': { schema: { type: 'string' }, example: 'event: change\ndata: {"devices":[],"assignments":["..."],"campaigns":[]}\n\n' } } }, ...consoleError([400, 401, 403]) },
  } },
};
