/**
 * The OpenAPI 3.1 description of the image repository's HTTP API, served at
 * GET /api/v1/openapi.json.
 *
 * One operation per (method, path) of the server's ROUTES, and nothing else (openapi.test.ts
 * checks both ways, validates the document against the OpenAPI 3.1 schema, and real answers
 * against these response schemas). Each operation lists its success answers and every error
 * status it can give; `op` adds 401 to the upload API's operations and 500 to all.
 * Target names contain `/`: the `{target}` and `{name}` parameters take the rest of the path.
 */
import { errorResponses, json, ref, SHARED_SCHEMAS } from '@upfleet/core/openapi.ts';

const string = { type: 'string' };
const record = (properties: Record<string, unknown>, optional: string[] = []) => ({
  type: 'object', additionalProperties: false, properties,
  required: Object.keys(properties).filter((k) => !optional.includes(k)),
});
const header = (name: string, description: string) => ({ name, in: 'header', required: false, schema: string, description });
const path = (name: string, description: string, pattern?: string) => ({ name, in: 'path', required: true, description, schema: { type: 'string', ...(pattern && { pattern }) } });

interface OpOptions {
  params?: unknown[];
  body?: { mediaType: string; schema: unknown };
  /** Success and other non-error answers: status -> response object. */
  answers: Record<string, unknown>;
  errors?: number[];
}

function op(summary: string, security: 'none' | 'upload', options: OpOptions) {
  const errors = new Set(options.errors ?? []);
  if (security === 'upload') errors.add(401);
  errors.add(500);
  return {
    summary,
    security: security === 'none' ? [] : [{ upload: [] }],
    ...(options.params && { parameters: options.params }),
    ...(options.body && { requestBody: { required: true, ...json(options.body.schema, options.body.mediaType) } }),
    responses: { ...options.answers, ...errorResponses([...errors].sort((a, b) => a - b)) },
  };
}

const fileParam = path('file', 'N.root.json, root.json (the newest), timestamp.json, N.snapshot.json, N.targets.json or N.<delegated role>.json', '^[^/]+\\.json$');
const targetParam = path('target', '<dir/><sha256|sha512>.<base> as TUF clients ask (consistent snapshots), or <hash>.<dir/base>; may contain /');
const ifNoneMatch = header('If-None-Match', 'the ETag of a copy held: 304 when it is current');
const notModified = { description: 'the ETag matches: no body' };

const metadataAnswers = (body: boolean) => ({
  200: { description: 'the metadata file; ETag, Cache-Control immutable for versioned files, no-cache for timestamp.json and root.json', ...(body && json(ref('SignedMetadata'))) },
  304: notModified,
});
const metadataOp = (method: string, body: boolean) => op(`${method} a published metadata file`, 'none', { params: [fileParam, ifNoneMatch], answers: metadataAnswers(body), errors: [400, 404] });

const binary = { type: 'string', contentMediaType: 'application/octet-stream' };
const targetAnswers = (body: boolean) => ({
  200: { description: 'the whole image; ETag, Accept-Ranges: bytes', ...(body && json(binary, 'application/octet-stream')) },
  206: { description: 'the requested range; Content-Range', ...(body && json(binary, 'application/octet-stream')) },
  304: notModified,
});
const targetOp = (method: string, body: boolean) => op(`${method} a published image`, 'none', {
  params: [targetParam, header('Range', 'one bytes= range (RFC 9110); several ranges or a malformed one get the whole image'), header('If-Range', 'the ETag: the range applies only while it is current'), ifNoneMatch],
  answers: targetAnswers(body), errors: [400, 404, 416],
});

const schemas = {
  ...SHARED_SCHEMAS,
  ImageStored: record({ name: string, length: { type: 'integer', minimum: 0 }, hashes: record({ sha256: { type: 'string', pattern: '^[0-9a-f]{64}$' }, sha512: { type: 'string', pattern: '^[0-9a-f]{128}$' } }) }),
  PublishRequest: {
    type: 'object', additionalProperties: false, minProperties: 1, description: 'signed metadata to verify and publish in one transaction; at least one of the three',
    properties: {
      roots: { type: 'array', items: ref('SignedMetadata'), description: 'new root versions, in order, each signed by the previous root\'s threshold and its own' },
      targets: { ...ref('SignedMetadata'), description: 'a new top-level targets version, signed by the root\'s targets keys' },
      delegated: { type: 'object', description: 'delegated role name -> a new version, signed by the keys its delegator lists', additionalProperties: ref('SignedMetadata') },
    },
  },
  PublishResult: record({ versions: ref('Versions'), warnings: { type: 'array', items: string, description: 'delegated roles that need re-signing' } }),
  Status: record({
    versions: ref('Versions'),
    targets: { type: 'array', items: record({ name: string, role: { type: 'string', description: 'targets, or the delegated role that signs it' }, length: { type: 'integer', minimum: 0 }, custom: ref('TargetCustom') }, ['custom']) },
  }),
  Health: record({ ok: { const: true }, versions: ref('Versions') }),
};

export function openApiDocument(): Record<string, unknown> {
  return {
    openapi: '3.1.0',
    info: {
      title: 'Upfleet image repository', version: '1',
      description: 'The Uptane image repository: a static TUF layout with consistent snapshots, and an upload API (bearer token) that verifies and publishes signed metadata. ' +
        'See image-repo/README.md. A path no route serves is 404 NOT_FOUND, another method on a served path 405 METHOD_NOT_ALLOWED; bad percent-encoding in a path is 400.',
    },
    components: {
      securitySchemes: { upload: { type: 'http', scheme: 'bearer', description: 'the upload token (serve --token, UPFLEET_REPO_TOKEN)' } },
      schemas,
    },
    paths: {
      '/metadata/{file}': { get: metadataOp('GET', true), head: metadataOp('HEAD', false) },
      '/targets/{target}': { get: targetOp('GET', true), head: targetOp('HEAD', false) },
      '/api/v1/images/{name}': { put: op('store an image (not yet published: publish metadata that lists it)', 'upload', {
        params: [path('name', 'the target name: /-separated segments of letters, digits and ._+- ; may contain /')],
        body: { mediaType: 'application/octet-stream', schema: binary },
        answers: { 201: { description: 'stored; its length and hashes', ...json(ref('ImageStored')) } },
        errors: [400, 413],
      }) },
      '/api/v1/publish': { post: op('verify and publish signed metadata atomically (400 UNSIGNED_METADATA, MALFORMED_METADATA, EXPIRED_METADATA, LENGTH_OR_HASH_MISMATCH, BAD_TARGET; 403 DELEGATION_VIOLATION; 409 BAD_VERSION, MISSING_IMAGE, ONLINE_KEY_MISSING)', 'upload', {
        body: { mediaType: 'application/json', schema: ref('PublishRequest') },
        answers: { 200: { description: 'published: the new versions', ...json(ref('PublishResult')) } },
        errors: [400, 403, 409, 413],
      }) },
      '/api/v1/status': { get: op('current versions and every published target', 'none', { answers: { 200: { description: 'done', ...json(ref('Status')) } } }) },
      '/api/v1/openapi.json': { get: op('this document', 'none', { answers: { 200: { description: 'done', ...json(ref('OpenApiDocument')) } } }) },
      '/metrics': { get: op('Prometheus metrics', 'none', { answers: { 200: { description: 'text exposition', ...json(ref('Metrics'), 'text/plain') } } }) },
      '/healthz': { get: op('liveness, with the current versions', 'none', { answers: { 200: { description: 'done', ...json(ref('Health')) } } }) },
    },
  };
}
